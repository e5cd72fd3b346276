"""Saving and loading localizers, and initialising the Q-Former from official BLIP-2 checkpoints.

Localizer specs (what the CLI will accept):

- ``default``: the localizer shipped inside the package (``radvlsm/stage1_localize/weights/default/``), for the
  default segmenter (dermoscopy, colonoscopy);
- ``ultrasound``: the one shipped for the ultrasound segmenter (``weights/ultrasound/``);
- ``DIR`` or ``DIR/model.safetensors``: our own weights with their ``config.json``.

Official BLIP-2 folders in Hugging Face format (``Blip2Model`` / ``Blip2ForConditionalGeneration`` /
``Blip2ForImageTextRetrieval``: ``config.json`` with ``qformer_config`` and ``num_query_tokens``,
``model.safetensors`` or sharded ``model.safetensors.index.json``) can initialise our Q-Former
(:func:`load_blip2_qformer`, :func:`init_qformer_from_blip2`): only the ``qformer.*`` and ``query_tokens``
tensors are read (lazily, shard by shard); our projections and heads keep their own (trained) weights.
Nothing is ever unpickled: ``pytorch_model.bin`` folders are refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import torch
from safetensors import safe_open

from radvlsm.errors import ConfigError
from radvlsm.stage1_localize.config import LocalizerConfig
from radvlsm.stage1_localize.modeling import PromptQFormer, TextPromptedLocalizer
from radvlsm.stage2_segment.build import WEIGHTS_FILE, load_state_checked, read_weights, save_weights
from radvlsm.stage2_segment.modeling import LesionSegmenter

log = logging.getLogger(__name__)

#: The embedded default localizer's folder inside the package.
DEFAULT_WEIGHTS_DIR = Path(__file__).parent / "weights" / "default"
#: Every embedded localizer by its spec name (that of the embedded segmenter it reads).
EMBEDDED_LOCALIZERS = {"default": DEFAULT_WEIGHTS_DIR, "ultrasound": DEFAULT_WEIGHTS_DIR.parent / "ultrasound"}


# --------------------------------------------------------------------------------------------- ours


def build_localizer(config: LocalizerConfig | None = None) -> TextPromptedLocalizer:
    """A localizer with freshly initialised weights."""
    return TextPromptedLocalizer(config or LocalizerConfig())


def save_localizer(model: TextPromptedLocalizer, out_dir: str | Path) -> Path:
    """Write ``model.safetensors`` (every parameter, the ITC temperature ``logit_scale`` included) and
    ``config.json`` into ``out_dir``, each atomically."""
    return save_weights(model, model.config.to_json(), out_dir, "localizer")


def load_own_localizer(path: str | Path) -> TextPromptedLocalizer:
    """Load our own localizer from a folder (or its ``model.safetensors``) holding ``config.json``."""
    cfg_path, text, state, weights = read_weights(path, "localizer")
    model = TextPromptedLocalizer(LocalizerConfig.from_json(text, cfg_path))
    load_state_checked(model, state, weights)
    return model.eval()


def load_default_localizer(name: str = "default") -> TextPromptedLocalizer:
    """An embedded localizer shipped with radvlsm (:data:`EMBEDDED_LOCALIZERS`)."""
    folder = EMBEDDED_LOCALIZERS[name]
    if not (folder / WEIGHTS_FILE).is_file():
        raise ConfigError(
            f"{folder}: the embedded {name} localizer is missing from this installation; "
            "train one with 'radvlsm train localizer' and pass its folder"
        )
    return load_own_localizer(folder)


def load_localizer(spec: str | Path) -> TextPromptedLocalizer:
    """Load a localizer from a spec: ``default``, or a folder / ``model.safetensors`` of our own."""
    if str(spec) in EMBEDDED_LOCALIZERS:
        return load_default_localizer(str(spec))
    path = Path(spec)
    if path.exists():
        return load_own_localizer(path)
    raise ConfigError(f"{spec}: not a localizer spec; use {' or '.join(EMBEDDED_LOCALIZERS)} or a folder with "
                      "model.safetensors + config.json")


# ---------------------------------------------------------------------------------- segmenter binding


def segmenter_fingerprint(segmenter: LesionSegmenter) -> str:
    """A short hash of the segmenter's image encoder (names, shapes, and values sampled from every tensor):
    it changes whenever the encoder's weights do, and costs milliseconds even for ViT-H."""
    h = hashlib.sha256()
    h.update(segmenter.config.to_json().encode())
    for name, t in sorted(segmenter.image_encoder.state_dict().items()):
        flat = t.detach().flatten().cpu()
        step = max(1, flat.numel() // 4096)
        sample = flat[::step].to(torch.float64) if flat.is_floating_point() else flat[::step].to(torch.int64)
        h.update(f"{name}:{tuple(t.shape)}".encode())
        h.update(sample.numpy().tobytes())
    return h.hexdigest()[:16]


def bind_to_segmenter(config: LocalizerConfig, segmenter: LesionSegmenter, name: str = "") -> LocalizerConfig:
    """``config`` with the image-side fields (dims, grid, size, fingerprint) of ``segmenter``."""
    sc = segmenter.config
    hires_dim = sc.embed_dim // 8 if sc.encoder == "compact" else 0  # only the compact encoder gives hires4
    return dataclasses.replace(
        config, image_dim=sc.embed_dim, image_grid=sc.embedding_size, image_size=sc.image_size, hires_dim=hires_dim,
        segmenter_name=name or sc.name, segmenter_fingerprint=segmenter_fingerprint(segmenter),
    )


def with_image_branch(config: LocalizerConfig, segmenter: LesionSegmenter) -> LocalizerConfig:
    """``config`` with an :class:`~radvlsm.stage1_localize.modeling.ImageBranch` shaped like ``segmenter``'s last
    encoder stage (its stride-8 input channels, width and blocks). Only the compact encoder has one."""
    sc = segmenter.config
    if sc.encoder != "compact":
        raise ConfigError(f"an image branch needs a compact-encoder segmenter (stride-8 features); "
                          f"{sc.name!r} has the {sc.encoder!r} encoder")
    return dataclasses.replace(config, branch_in_dim=sc.encoder_channels[2], branch_channels=sc.encoder_channels[3],
                               branch_blocks=sc.encoder_blocks[2])


def init_image_branch(model: TextPromptedLocalizer, segmenter: LesionSegmenter) -> None:
    """Start the localizer's image branch (if it has one) as a copy of the segmenter's last stage and neck."""
    if model.image_branch is not None:
        model.image_branch.copy_from(segmenter.image_encoder)  # type: ignore[arg-type]


def check_segmenter(config: LocalizerConfig, segmenter: LesionSegmenter, strict: bool = True) -> None:
    """Raise :class:`ConfigError` when ``segmenter`` is not the one whose features the localizer was trained
    on (different shapes always; a different fingerprint when ``strict``, a warning otherwise)."""
    sc = segmenter.config
    if (sc.embed_dim, sc.embedding_size, sc.image_size) != (config.image_dim, config.image_grid, config.image_size):
        raise ConfigError(
            f"the localizer was trained on {config.segmenter_name or 'a segmenter'} features "
            f"({config.image_dim} channels, {config.image_grid}² grid, {config.image_size}-px input); this "
            f"segmenter gives {sc.embed_dim} channels, {sc.embedding_size}² grid, {sc.image_size}-px input"
        )
    if config.segmenter_fingerprint and config.segmenter_fingerprint != segmenter_fingerprint(segmenter):
        msg = (f"the localizer was trained on the features of segmenter {config.segmenter_name!r} "
               f"(fingerprint {config.segmenter_fingerprint}); this segmenter's encoder weights differ")
        if strict:
            raise ConfigError(msg + "; retrain the localizer on it")
        log.warning("%s; its boxes may be poor", msg)


# ------------------------------------------------------------------------------------ official BLIP-2

#: LocalizerConfig field ← Blip2QFormerConfig attribute (``num_query_tokens`` is read off the top level).
_QFORMER_FIELDS = {
    "qformer_hidden": "hidden_size",
    "qformer_layers": "num_hidden_layers",
    "qformer_heads": "num_attention_heads",
    "qformer_intermediate": "intermediate_size",
    "cross_attention_frequency": "cross_attention_frequency",
    "encoder_hidden_size": "encoder_hidden_size",
    "qformer_hidden_act": "hidden_act",
    "qformer_layer_norm_eps": "layer_norm_eps",
}
#: The text feed-forward; BLIP-2 captioning checkpoints lack it (their Q-Former never saw text there).
_TEXT_FFN = (".intermediate.dense.", ".output.dense.", ".output.LayerNorm.")


def read_blip2_qformer_config(folder: str | Path) -> dict[str, object]:
    """The Q-Former settings of an HF BLIP-2 folder as ``LocalizerConfig`` field values."""
    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise ConfigError(f"{folder}: not a Hugging Face BLIP-2 folder (no config.json)")
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{cfg_path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("qformer_config"), dict):
        raise ConfigError(f"{cfg_path}: no 'qformer_config' here; a BLIP-2 config (model_type 'blip-2') is needed")
    if raw.get("model_type") not in (None, "blip-2"):
        raise ConfigError(f"{cfg_path}: model_type {raw.get('model_type')!r} is not 'blip-2'")
    from transformers import Blip2QFormerConfig

    q = {k: v for k, v in raw["qformer_config"].items() if not k.startswith("_")}
    try:
        qcfg = Blip2QFormerConfig.from_dict(q)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{cfg_path}: unreadable qformer_config ({exc})") from exc
    values: dict[str, object] = {ours: getattr(qcfg, theirs) for ours, theirs in _QFORMER_FIELDS.items()}
    values["num_query_tokens"] = int(raw.get("num_query_tokens", 32))
    return values


def localizer_config_from_blip2(folder: str | Path, base: LocalizerConfig | None = None) -> LocalizerConfig:
    """``base`` (default: ``LocalizerConfig()``) with the Q-Former fields of the BLIP-2 folder."""
    cfg = dataclasses.replace(base or LocalizerConfig(), **read_blip2_qformer_config(folder))  # type: ignore[arg-type]
    cfg.validate(Path(folder))
    return cfg


def _blip2_weight_files(folder: Path) -> list[Path]:
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(f"{index}: not a safetensors index ({exc})") from exc
        names = sorted({f for k, f in weight_map.items() if _qformer_key(k) is not None})
        if not names:
            raise ConfigError(f"{index}: lists no qformer.* / query_tokens tensors")
        files = [folder / n for n in names]
        absent = [f.name for f in files if not f.is_file()]
        if absent:
            raise ConfigError(f"{folder}: shard(s) {absent} named in {index.name} are missing")
        return files
    if any(folder.glob("*.bin")) or any(folder.glob("*.pth")):
        raise ConfigError(f"{folder}: only safetensors weights are read (pickled .bin/.pth files are never loaded); "
                          "convert them with save_pretrained(..., safe_serialization=True)")
    raise ConfigError(f"{folder}: no model.safetensors or model.safetensors.index.json")


def _qformer_key(key: str) -> str | None:
    """HF key → our PromptQFormer key (``qformer.*``, ``query_tokens``), ``None`` for everything else."""
    for prefix in ("", "model.", "blip."):
        if key.startswith(prefix):
            k = key[len(prefix):]
            if k == "query_tokens" or k.startswith("qformer."):
                return k
    return None


def read_blip2_qformer_state(folder: str | Path) -> dict[str, torch.Tensor]:
    """The ``qformer.*`` and ``query_tokens`` tensors of an HF BLIP-2 folder (float32, CPU)."""
    folder = Path(folder)
    state: dict[str, torch.Tensor] = {}
    for f in _blip2_weight_files(folder):
        try:
            with safe_open(str(f), framework="pt") as fh:
                for key in fh.keys():  # noqa: SIM118  (safe_open handles are not mappings)
                    ours = _qformer_key(key)
                    if ours is not None:
                        state[ours] = fh.get_tensor(key).float()
        except Exception as exc:  # safetensors raises its own SafetensorError and OSError
            raise ConfigError(f"{f}: not a readable safetensors file ({exc})") from exc
    if "query_tokens" not in state or not any(k.startswith("qformer.") for k in state):
        raise ConfigError(f"{folder}: no qformer.* and query_tokens tensors in its weights; not a BLIP-2 checkpoint")
    return state


def init_qformer_from_blip2(model: TextPromptedLocalizer, folder: str | Path) -> int:
    """Copy the Q-Former (and query tokens) of an HF BLIP-2 folder into ``model.qformer``, in place.

    The folder's Q-Former settings must equal ``model.config``'s (build the config with
    :func:`localizer_config_from_blip2`). Checkpoints without the text feed-forward (BLIP-2 captioning
    models) get it copied from the query feed-forward of the same layer (both start from the same BERT layer
    in BLIP-2). Returns the number of tensors loaded.

    Raises:
        ConfigError: not a BLIP-2 folder, settings or tensor shapes that differ, or missing tensors.
    """
    folder = Path(folder)
    theirs = read_blip2_qformer_config(folder)
    cfg = model.config
    diffs = [f"{k}: folder {v!r} vs config {getattr(cfg, k)!r}" for k, v in theirs.items() if getattr(cfg, k) != v]
    if diffs:
        raise ConfigError(
            f"{folder}: its Q-Former does not match the localizer config ({'; '.join(diffs)}); build the config "
            "with localizer_config_from_blip2(folder)"
        )
    state = read_blip2_qformer_state(folder)
    target: PromptQFormer = model.qformer
    own = target.state_dict()
    wrong = [f"{k}: {tuple(v.shape)} vs ours {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        raise ConfigError(f"{folder}: Q-Former tensor shapes differ from the config's ({len(wrong)}, e.g. {wrong[:3]})")
    unexpected = sorted(k for k in state if k not in own)
    if unexpected:
        raise ConfigError(f"{folder}: Q-Former tensors our Q-Former does not have ({len(unexpected)}, e.g. "
                          f"{unexpected[:3]})")
    copied = []
    for k in own:
        if k in state:
            continue
        if any(m in k for m in _TEXT_FFN):
            src = k.replace(".intermediate.", ".intermediate_query.").replace(".output.", ".output_query.")
            if src in state:
                state[k] = state[src].clone()
                copied.append(k)
                continue
        raise ConfigError(f"{folder}: its weights lack the Q-Former tensor {k!r}")
    if copied:
        log.info("%s: no text feed-forward in the checkpoint; %d tensors initialised from the query feed-forward",
                 folder, len(copied))
    target.load_state_dict(state, strict=True)
    return len(state) - len(copied)


def load_blip2_qformer(folder: str | Path, config: LocalizerConfig | None = None) -> TextPromptedLocalizer:
    """A new localizer whose Q-Former and query tokens come from an HF BLIP-2 folder.

    Args:
        folder: ``config.json`` (with ``qformer_config``) + safetensors weights of a ``Blip2Model``,
            ``Blip2ForConditionalGeneration`` or ``Blip2ForImageTextRetrieval``.
        config: the localizer config; its Q-Former fields must equal the folder's. Default: ``LocalizerConfig()``
            with the folder's Q-Former fields (:func:`localizer_config_from_blip2`).

    Our image/text projections and heads are freshly initialised: train them (``train_localizer`` with
    ``init_qformer=folder``).
    """
    cfg = config or localizer_config_from_blip2(folder)
    model = TextPromptedLocalizer(cfg)
    init_qformer_from_blip2(model, folder)
    return model

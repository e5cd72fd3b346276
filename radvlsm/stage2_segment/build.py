"""Builders of segmenters: a small registry, and loading from a model spec string.

Model specs (``--model`` on the command line):

- ``default``: the compact model shipped inside the package (dermoscopy and colonoscopy);
- ``ultrasound``: the compact model shipped for breast ultrasound (``weights/ultrasound/``);
- ``ct``: the compact model shipped for CT lung nodules, on zoomed axial-slice crops (``weights/ct/``; use it
  through :class:`radvlsm.stage2_segment.volume.VolumeSegmenter`);
- ``compact:DIR`` or ``DIR`` / ``FILE.safetensors``: our own weights with their ``config.json``;
- ``sam_vit_b:PATH``, ``sam_vit_l:PATH``, ``sam_vit_h:PATH``: official SAM checkpoints (``sam_vit_b_01ec64.pth`` …);
- ``medsam:PATH``: MedSAM's ViT-B checkpoint (SAM layout; MedSAM preprocessing: stretch to 1024², scale to 0..1).

Checkpoints are read with ``torch.load(weights_only=True)`` and our own weights with safetensors: nothing is
ever unpickled.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from segment_anything.modeling import ImageEncoderViT, PromptEncoder, TwoWayTransformer

from radvlsm.errors import ConfigError
from radvlsm.stage2_segment.aggregation import AGGREGATION_FILE, AggregationConfig
from radvlsm.stage2_segment.config import SegmenterConfig
from radvlsm.stage2_segment.modeling import BatchedMaskDecoder, CompactImageEncoder, LesionSegmenter

log = logging.getLogger(__name__)

#: The embedded default model's folder inside the package.
DEFAULT_WEIGHTS_DIR = Path(__file__).parent / "weights" / "default"
#: Every embedded model by its spec name (each a folder of weights with its config and model card).
EMBEDDED_MODELS = {
    "default": DEFAULT_WEIGHTS_DIR,
    "ultrasound": DEFAULT_WEIGHTS_DIR.parent / "ultrasound",
    "ct": DEFAULT_WEIGHTS_DIR.parent / "ct",
}
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

Builder = Callable[..., LesionSegmenter]
_REGISTRY: dict[str, Builder] = {}


def register_segmenter(fn: Builder) -> Builder:
    """Decorator: make a builder available to :func:`create_segmenter` under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_segmenters() -> list[str]:
    return sorted(_REGISTRY)


def create_segmenter(name: str, checkpoint: str | Path | None = None, **kwargs: object) -> LesionSegmenter:
    """Build the registered segmenter ``name``, loading ``checkpoint`` when given."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown segmenter {name!r}; known: {', '.join(list_segmenters())}")
    return _REGISTRY[name](checkpoint=checkpoint, **kwargs)


def _decoder_parts(cfg: SegmenterConfig) -> tuple[PromptEncoder, BatchedMaskDecoder]:
    e = cfg.embedding_size
    prompt_encoder = PromptEncoder(
        embed_dim=cfg.embed_dim,
        image_embedding_size=(e, e),
        input_image_size=(cfg.image_size, cfg.image_size),
        mask_in_chans=16,
    )
    mask_decoder = BatchedMaskDecoder(
        transformer_dim=cfg.embed_dim,
        transformer=TwoWayTransformer(
            depth=cfg.decoder_depth,
            embedding_dim=cfg.embed_dim,
            mlp_dim=cfg.decoder_mlp_dim,
            num_heads=cfg.decoder_heads,
        ),
        num_multimask_outputs=cfg.num_multimask_outputs,
        iou_head_depth=3,
        iou_head_hidden_dim=cfg.embed_dim,
        hires_skips=cfg.hires_skips,
        aux_heads=cfg.aux_heads,
    )
    return prompt_encoder, mask_decoder


def build_from_config(cfg: SegmenterConfig) -> LesionSegmenter:
    """A segmenter with freshly initialised weights for ``cfg`` (any encoder family)."""
    cfg.validate()
    prompt_encoder, mask_decoder = _decoder_parts(cfg)
    if cfg.encoder == "compact":
        encoder: torch.nn.Module = CompactImageEncoder(cfg.encoder_channels, cfg.encoder_blocks, cfg.embed_dim)
    else:
        encoder = _vit_encoder(cfg, _VIT_VARIANTS[cfg.encoder])
    return LesionSegmenter(cfg, encoder, prompt_encoder, mask_decoder)


# --------------------------------------------------------------------------------------------- ours


def save_weights(model: torch.nn.Module, config_json: str, out_dir: str | Path, kind: str) -> Path:
    """Write ``model.safetensors`` (the state dict) and ``config.json`` into ``out_dir``, each atomically: the
    layout of every model of our own (segmenter, localizer)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = out / f".{WEIGHTS_FILE}.tmp"
    save_file(state, str(tmp), metadata={"format": "pt", "radvlsm": kind})
    tmp.replace(out / WEIGHTS_FILE)
    tmp_cfg = out / f".{CONFIG_FILE}.tmp"
    tmp_cfg.write_text(config_json + "\n", encoding="utf-8")
    tmp_cfg.replace(out / CONFIG_FILE)
    return out


def read_weights(path: str | Path, kind: str) -> tuple[Path, str, dict[str, torch.Tensor], Path]:
    """Read a folder of our own (or its ``model.safetensors``) written by :func:`save_weights`.

    Returns:
        ``(config path, config text, state dict, weights path)``.

    Raises:
        ConfigError: no weights, no ``config.json`` beside them, or an unreadable safetensors file.
    """
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    weights = p if p.is_file() else folder / WEIGHTS_FILE
    cfg_path = folder / CONFIG_FILE
    if not weights.is_file():
        raise ConfigError(f"{weights}: no {kind} weights here")
    if not cfg_path.is_file():
        raise ConfigError(f"{cfg_path}: the config.json that travels with {weights.name} is missing")
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError
        raise ConfigError(f"{weights}: not a readable safetensors file ({exc})") from exc
    return cfg_path, cfg_path.read_text(encoding="utf-8"), state, weights


def save_segmenter(model: LesionSegmenter, out_dir: str | Path) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``out_dir`` (atomically, file by file)."""
    return save_weights(model, model.config.to_json(), out_dir, "segmenter")


def load_own(path: str | Path) -> LesionSegmenter:
    """Load our own segmenter from a folder (or its ``model.safetensors``) holding ``config.json``, with the
    folder's ``aggregation.json`` when there is one (``model.aggregation``, else ``None``)."""
    cfg_path, text, state, weights = read_weights(path, "model")
    model = build_from_config(SegmenterConfig.from_json(text, cfg_path))
    load_state_checked(model, state, weights)
    agg_path = cfg_path.parent / AGGREGATION_FILE
    if agg_path.is_file():
        model.aggregation = AggregationConfig.from_json(agg_path.read_text(encoding="utf-8"), agg_path)
    return model.eval()


@register_segmenter
def compact(checkpoint: str | Path | None = None, config: SegmenterConfig | None = None) -> LesionSegmenter:
    """Our compact encoder (the embedded default's architecture)."""
    if checkpoint is not None:
        return load_own(checkpoint)
    return build_from_config(config or SegmenterConfig())


def load_default(name: str = "default") -> LesionSegmenter:
    """An embedded model shipped with radvlsm (:data:`EMBEDDED_MODELS`)."""
    folder = EMBEDDED_MODELS[name]
    if not (folder / WEIGHTS_FILE).is_file():
        raise ConfigError(
            f"{folder}: the embedded {name} segmenter is missing from this installation; "
            "train it with 'radvlsm train segmenter' or pass --model"
        )
    return load_own(folder)


# --------------------------------------------------------------------------------------- official SAM


@dataclasses.dataclass(frozen=True)
class _VitVariant:
    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    mlp_ratio: float = 4.0


_VIT_VARIANTS: dict[str, _VitVariant] = {
    "sam_vit_b": _VitVariant(768, 12, 12, (2, 5, 8, 11)),
    "sam_vit_l": _VitVariant(1024, 24, 16, (5, 11, 17, 23)),
    "sam_vit_h": _VitVariant(1280, 32, 16, (7, 15, 23, 31)),
}


def _vit_encoder(cfg: SegmenterConfig, v: _VitVariant, window_size: int = 14) -> ImageEncoderViT:
    return ImageEncoderViT(
        depth=v.depth,
        embed_dim=v.embed_dim,
        img_size=cfg.image_size,
        mlp_ratio=v.mlp_ratio,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=v.num_heads,
        patch_size=cfg.embedding_stride,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=v.global_attn_indexes,
        window_size=window_size,
        out_chans=cfg.embed_dim,
    )


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError … for bad files
        raise ConfigError(f"{path}: not a loadable weights-only PyTorch checkpoint ({exc})") from exc
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"{path}: expected a state dict of tensors")
    return obj


def _infer_vit(state: dict[str, torch.Tensor], path: Path) -> tuple[_VitVariant, int, int, int]:
    """(variant, image_size, embed_dim, window_size) read off the tensor shapes of a SAM checkpoint."""
    try:
        patch = state["image_encoder.patch_embed.proj.weight"]  # (C, 3, p, p)
        pos = state["image_encoder.pos_embed"]  # (1, S/p, S/p, C)
        prompt_dim = int(state["prompt_encoder.no_mask_embed.weight"].shape[1])
    except KeyError as exc:
        raise ConfigError(f"{path}: not a SAM checkpoint (missing {exc.args[0]})") from exc
    embed_dim, patch_size, grid = int(patch.shape[0]), int(patch.shape[2]), int(pos.shape[1])
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))})
    depth = len(blocks)
    rel = [state[f"image_encoder.blocks.{i}.attn.rel_pos_h"] for i in blocks]
    head_dim = int(rel[0].shape[1])
    global_idx = tuple(i for i, r in zip(blocks, rel, strict=True) if int(r.shape[0]) == 2 * grid - 1)
    windowed = [int(r.shape[0]) for r in rel if int(r.shape[0]) != 2 * grid - 1]
    window = (windowed[0] + 1) // 2 if windowed else 14
    mlp_ratio = int(state[f"image_encoder.blocks.{blocks[0]}.mlp.lin1.weight"].shape[0]) / embed_dim
    variant = _VitVariant(embed_dim, depth, embed_dim // head_dim, global_idx, mlp_ratio)
    return variant, grid * patch_size, prompt_dim, window


def load_state_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """``load_state_dict`` that raises :class:`ConfigError` naming ``path`` on any shape or key mismatch."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensor shapes that differ from the model's
        first = str(exc).split("\n\t")[1] if "\n\t" in str(exc) else str(exc)
        raise ConfigError(f"{path}: weights do not fit the model ({first.strip()})") from exc
    if missing or unexpected:
        raise ConfigError(
            f"{path}: weights do not fit the model ({len(missing)} missing, e.g. {missing[:2]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:2]})"
        )


def _official(
    name: str, checkpoint: str | Path | None, resize_mode: str, pixel_mean: tuple, pixel_std: tuple
) -> LesionSegmenter:
    if checkpoint is None:
        cfg = SegmenterConfig(
            name=name, encoder=name if name in _VIT_VARIANTS else "sam_vit_b", image_size=1024,
            resize_mode=resize_mode, embed_dim=256, decoder_mlp_dim=2048, decoder_heads=8,
            num_multimask_outputs=3, hires_skips=False, aux_heads=False, pixel_mean=pixel_mean, pixel_std=pixel_std,
        )
        return build_from_config(cfg)  # random weights: for timing only
    path = Path(checkpoint)
    state = _read_checkpoint(path)
    variant, image_size, prompt_dim, window = _infer_vit(state, path)
    expected = _VIT_VARIANTS.get(name if name in _VIT_VARIANTS else "sam_vit_b")
    if expected is not None and (variant.embed_dim, variant.depth) != (expected.embed_dim, expected.depth):
        log.warning(
            "%s: checkpoint has a ViT of width %d and depth %d, not the %s layout; loading it as it is",
            path, variant.embed_dim, variant.depth, name,
        )
    mlp_dim = int(state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0])
    depth = len({k.split(".")[3] for k in state if k.startswith("mask_decoder.transformer.layers.")})
    n_mask_tokens = int(state["mask_decoder.mask_tokens.weight"].shape[0])
    cfg = SegmenterConfig(
        name=name, encoder=name if name in _VIT_VARIANTS else "sam_vit_b", image_size=image_size,
        resize_mode=resize_mode,
        embed_dim=prompt_dim, decoder_depth=depth, decoder_mlp_dim=mlp_dim, decoder_heads=8,
        num_multimask_outputs=n_mask_tokens - 1, hires_skips=False, aux_heads=False,
        pixel_mean=pixel_mean, pixel_std=pixel_std,
    )
    prompt_encoder, mask_decoder = _decoder_parts(cfg)
    model = LesionSegmenter(cfg, _vit_encoder(cfg, variant, window), prompt_encoder, mask_decoder)
    load_state_checked(model, state, path)
    log.info("loaded %s from %s (ViT width %d, depth %d, input %d px)", name, path, variant.embed_dim,
             variant.depth, image_size)
    return model.eval()


_SAM_MEAN, _SAM_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


@register_segmenter
def sam_vit_b(checkpoint: str | Path | None = None) -> LesionSegmenter:
    """Official SAM ViT-B (``sam_vit_b_01ec64.pth``); random weights without a checkpoint."""
    return _official("sam_vit_b", checkpoint, "longest_side", _SAM_MEAN, _SAM_STD)


@register_segmenter
def sam_vit_l(checkpoint: str | Path | None = None) -> LesionSegmenter:
    """Official SAM ViT-L (``sam_vit_l_0b3195.pth``)."""
    return _official("sam_vit_l", checkpoint, "longest_side", _SAM_MEAN, _SAM_STD)


@register_segmenter
def sam_vit_h(checkpoint: str | Path | None = None) -> LesionSegmenter:
    """Official SAM ViT-H (``sam_vit_h_4b8939.pth``)."""
    return _official("sam_vit_h", checkpoint, "longest_side", _SAM_MEAN, _SAM_STD)


@register_segmenter
def medsam(checkpoint: str | Path | None = None) -> LesionSegmenter:
    """MedSAM ViT-B (``medsam_vit_b.pth``): images stretched to 1024² and scaled to 0..1."""
    return _official("medsam", checkpoint, "stretch", (0.0, 0.0, 0.0), (255.0, 255.0, 255.0))


def load_segmenter(spec: str) -> LesionSegmenter:
    """Load a segmenter from a ``--model`` spec (see the module docstring)."""
    if spec in EMBEDDED_MODELS:
        return load_default(spec)
    name, sep, rest = spec.partition(":")
    if sep and name in _REGISTRY and rest:
        return create_segmenter(name, checkpoint=rest)
    path = Path(spec)
    if path.exists():
        if path.suffix in (".pth", ".pt"):
            raise ConfigError(f"{path}: say which layout this checkpoint has, e.g. sam_vit_b:{path} or medsam:{path}")
        return load_own(path)
    raise ConfigError(
        f"{spec}: not a model spec; use {' or '.join(EMBEDDED_MODELS)}, a folder with model.safetensors + config.json, "
        f"or one of {', '.join(n + ':PATH' for n in list_segmenters())}"
    )

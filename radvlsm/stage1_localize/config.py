"""The configuration that travels with a localizer's weights (``config.json`` beside ``model.safetensors``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from radvlsm.errors import ConfigError
from radvlsm.jsonconfig import check_keys, read_json_object

CONFIG_VERSION = 1


#: The image–text matching head's decision boundary as trained (binary cross-entropy): the probability at which
#: a phrase of another domain is rejected.
TRAINED_ITM_THRESHOLD = 0.5


@dataclass(frozen=True)
class LocalizerConfig:
    """Architecture, box extraction and provenance of a text-prompted localizer.

    Image side (from the segmenter it was trained on; the localizer reads that segmenter's ``ImageFeatures``):
        image_dim: channels of the segmenter embedding ``(B, image_dim, grid, grid)`` (its ``embed_dim``).
        image_grid: side of that embedding (segmenter ``image_size / 16``); the learned position embedding
            has this size (it is interpolated for another grid).
        image_size: the segmenter's input side ``S`` (pixels of the model frame).
        hires_dim: channels of the segmenter's stride-4 features ``hires4`` (``image_dim / 8``); 0 = the
            segmenter gives none, and the relevance map stays at ``image_grid`` resolution.
        branch_in_dim: channels of the segmenter's stride-8 features (``ImageFeatures.stride8``) that the
            localizer's own stride-16 stage (:class:`~radvlsm.stage1_localize.modeling.ImageBranch`) reads in place
            of the segmenter's embedding; 0 = no branch, the segmenter's embedding is read as it is.
        branch_channels, branch_blocks: width and inverted-residual blocks of that stage (those of the
            segmenter's last stage, which it starts from).
        segmenter_name, segmenter_fingerprint: which segmenter's features it was trained on (see
            :func:`radvlsm.stage1_localize.build.segmenter_fingerprint`); empty = not recorded.

    Q-Former (``transformers``' ``Blip2QFormerModel``; the names follow ``Blip2QFormerConfig``):
        qformer_hidden, qformer_layers, qformer_heads, qformer_intermediate, cross_attention_frequency,
        encoder_hidden_size (width of the image tokens the queries cross-attend to), qformer_hidden_act,
        qformer_layer_norm_eps, qformer_dropout, num_query_tokens.

    Text side:
        text_dim: width of the frozen sentence vectors (MiniLM-L6: 384).
        text_tokens: tokens the projected sentence vector becomes inside the Q-Former.

    Heads:
        embed_dim: shared space of the ITC features and of the relevance map's keys.
        hires_key_dim: width of the stride-4 keys that refine the map.
        map_context_blocks: prompt-modulated residual context blocks on the map's keys (dilations 1, 2, 4 …);
            0 = keys see a 3×3 neighbourhood only (the first default localizer).

    Box extraction (see :mod:`radvlsm.stage1_localize.boxes`):
        box_rel_thresholds: component thresholds as fractions of the map's maximum.
        box_abs_thresholds: absolute probability thresholds (used when below the map's maximum).
        min_peak: the map's maximum probability below which nothing is found.
        min_component_fraction: components smaller than this fraction of the map are dropped.
        peak_count: local maxima grown into extra candidates.
        nms_iou: candidates overlapping a better one by more than this are removed.
        top_k: candidates returned per image by default.
        itm_threshold: image–text matching probability below which the prompt is "not found" (the recipe may
            raise it above :data:`TRAINED_ITM_THRESHOLD` to reject images without a lesion, see
            :func:`radvlsm.stage1_localize.train.choose_itm_threshold`).
        score_mass_power: exponent of the mass term of the box score.
    """

    image_dim: int = 128
    image_grid: int = 16
    image_size: int = 256
    hires_dim: int = 16
    branch_in_dim: int = 0
    branch_channels: int = 0
    branch_blocks: int = 0
    segmenter_name: str = ""
    segmenter_fingerprint: str = ""
    qformer_hidden: int = 192
    qformer_layers: int = 2
    qformer_heads: int = 4
    qformer_intermediate: int = 384
    cross_attention_frequency: int = 1
    encoder_hidden_size: int = 128
    qformer_hidden_act: str = "gelu"
    qformer_layer_norm_eps: float = 1e-12
    qformer_dropout: float = 0.1
    num_query_tokens: int = 16
    text_dim: int = 384
    text_tokens: int = 1
    embed_dim: int = 128
    hires_key_dim: int = 32
    map_context_blocks: int = 0
    box_rel_thresholds: tuple[float, ...] = (0.35, 0.5, 0.65)
    box_abs_thresholds: tuple[float, ...] = (0.5,)
    min_peak: float = 0.3
    min_component_fraction: float = 0.002
    peak_count: int = 3
    nms_iou: float = 0.7
    top_k: int = 5
    itm_threshold: float = TRAINED_ITM_THRESHOLD
    score_mass_power: float = 0.5
    version: int = field(default=CONFIG_VERSION)

    @property
    def map_size(self) -> int:
        """Side of the relevance map: ``4 × image_grid`` with stride-4 features, else ``image_grid``."""
        return self.image_grid * 4 if self.hires_dim > 0 else self.image_grid

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: Path | None = None) -> LocalizerConfig:
        return cls.from_dict(read_json_object(text, source, "a localizer config"), source)

    @classmethod
    def from_dict(cls, raw: dict, source: Path | None = None) -> LocalizerConfig:
        kwargs = check_keys(raw, cls, source, "localizer config", CONFIG_VERSION)
        try:
            cfg = cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
        cfg.validate(source)
        return cfg

    def validate(self, source: Path | None = None) -> None:
        where = f"{source}: " if source else ""
        if self.qformer_hidden % self.qformer_heads:
            raise ConfigError(f"{where}qformer_hidden {self.qformer_hidden} is not a multiple of qformer_heads "
                              f"{self.qformer_heads}")
        for name in ("image_dim", "image_grid", "image_size", "qformer_hidden", "qformer_layers", "qformer_heads",
                     "qformer_intermediate", "cross_attention_frequency", "encoder_hidden_size", "num_query_tokens",
                     "text_dim", "text_tokens", "embed_dim", "hires_key_dim", "top_k"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{where}{name} must be at least 1, not {getattr(self, name)}")
        if self.map_context_blocks < 0:
            raise ConfigError(f"{where}map_context_blocks must be 0 or more, not {self.map_context_blocks}")
        if self.branch_in_dim < 0 or self.branch_blocks < 0:
            raise ConfigError(f"{where}branch_in_dim and branch_blocks must be 0 or more")
        if self.branch_in_dim > 0 and self.branch_channels < 1:
            raise ConfigError(f"{where}an image branch needs branch_channels of at least 1")
        if self.hires_dim < 0:
            raise ConfigError(f"{where}hires_dim must be 0 (no stride-4 features) or positive")
        if not self.box_rel_thresholds and not self.box_abs_thresholds:
            raise ConfigError(f"{where}give at least one box threshold")
        for t in (*self.box_rel_thresholds, *self.box_abs_thresholds, self.min_peak, self.itm_threshold,
                  self.nms_iou, self.min_component_fraction):
            if not 0.0 <= float(t) <= 1.0:
                raise ConfigError(f"{where}thresholds, fractions and IoUs must lie in [0, 1], got {t}")

"""The configuration that travels with a segmenter's weights (``config.json`` beside ``model.safetensors``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from radvlsm.errors import ConfigError
from radvlsm.jsonconfig import check_keys, read_json_object

ResizeMode = Literal["stretch", "longest_side"]
EncoderKind = Literal["compact", "sam_vit_b", "sam_vit_l", "sam_vit_h"]

CONFIG_VERSION = 1


@dataclass(frozen=True)
class SegmenterConfig:
    """Architecture and preprocessing of a box-prompted segmenter.

    Attributes:
        name: registry name of the builder that made it (``compact``, ``sam_vit_b`` …).
        encoder: image encoder family.
        image_size: side of the square model input, pixels.
        resize_mode: ``stretch`` resizes the image to ``image_size``² ignoring aspect (MedSAM, compact);
            ``longest_side`` scales the longest side to ``image_size`` and pads bottom/right (SAM).
        embed_dim: channels of the image embedding and of the prompt/decoder transformer.
        embedding_stride: image pixels per embedding cell (16 for every encoder here).
        encoder_channels: compact encoder widths at strides 2, 4, 8, 16.
        encoder_blocks: inverted-residual blocks at strides 4, 8, 16.
        decoder_depth, decoder_mlp_dim, decoder_heads: the two-way transformer.
        num_multimask_outputs: SAM's ambiguity outputs (3 for official checkpoints; 0 for ours, which
            predict one mask per box).
        hires_skips: fuse stride-4 and stride-2 encoder features into the mask features (ours only).
        aux_heads: boundary and lesion-presence heads (ours only; official checkpoints have none).
        box_prior: give the decoder, through SAM's mask-prompt input, the ellipse inscribed in each box as a
            dense prior, so that it learns corrections to that shape (ours only).
        pixel_mean, pixel_std: input normalisation on 0..255 RGB.
    """

    name: str = "compact"
    encoder: EncoderKind = "compact"
    image_size: int = 256
    resize_mode: ResizeMode = "stretch"
    embed_dim: int = 128
    embedding_stride: int = 16
    encoder_channels: tuple[int, int, int, int] = (24, 48, 96, 192)
    encoder_blocks: tuple[int, int, int] = (2, 3, 4)
    decoder_depth: int = 2
    decoder_mlp_dim: int = 512
    decoder_heads: int = 4
    num_multimask_outputs: int = 0
    hires_skips: bool = True
    aux_heads: bool = True
    box_prior: bool = False
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    version: int = field(default=CONFIG_VERSION)

    @property
    def embedding_size(self) -> int:
        return self.image_size // self.embedding_stride

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: Path | None = None) -> SegmenterConfig:
        raw = read_json_object(text, source, "a segmenter config")
        kwargs = check_keys(raw, cls, source, "segmenter config", CONFIG_VERSION)
        cfg = cls(**kwargs)
        cfg.validate(source)
        return cfg

    def validate(self, source: Path | None = None) -> None:
        where = f"{source}: " if source else ""
        if self.image_size % self.embedding_stride:
            raise ConfigError(f"{where}image_size {self.image_size} is not a multiple of {self.embedding_stride}")
        if self.resize_mode not in ("stretch", "longest_side"):
            raise ConfigError(f"{where}resize_mode must be 'stretch' or 'longest_side', not {self.resize_mode!r}")
        if self.embed_dim % 16:
            raise ConfigError(f"{where}embed_dim must be a multiple of 16")

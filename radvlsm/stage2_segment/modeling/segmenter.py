"""The box-prompted multitask segmenter: image encoder + SAM prompt encoder + batched mask decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from segment_anything.modeling import PromptEncoder
from torch import nn

from radvlsm.stage2_segment.aggregation import AggregationConfig
from radvlsm.stage2_segment.config import SegmenterConfig
from radvlsm.stage2_segment.modeling.mask_decoder import BatchedMaskDecoder, DecoderOutput


@dataclass(frozen=True)
class ImageFeatures:
    """What the image encoder computed for ``B`` images, reused by every prompt on them.

    Attributes:
        embedding: ``(B, D, S/16, S/16)``.
        hires: ``(hires4 (B, D/8, S/4, S/4), hires2 (B, D/8, S/2, S/2))`` for encoders that give them.
        stride8: ``(B, C, S/8, S/8)``, the input of the compact encoder's last stage (the localizer's own image
            branch reads it), or ``None``.
    """

    embedding: torch.Tensor
    hires: tuple[torch.Tensor, torch.Tensor] | None = None
    stride8: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.embedding.shape[0])


class LesionSegmenter(nn.Module):
    """Image encoder, SAM :class:`PromptEncoder` and :class:`BatchedMaskDecoder`.

    The submodules are named as in ``segment_anything``'s ``Sam`` (``image_encoder``, ``prompt_encoder``,
    ``mask_decoder``) so that official SAM and MedSAM state dicts load unchanged.
    """

    def __init__(
        self,
        config: SegmenterConfig,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: BatchedMaskDecoder,
    ) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(1, 3, 1, 1), persistent=False)
        self._dense_pe: torch.Tensor | None = None
        #: the aggregation settings that travel with the weights (``aggregation.json``), ``None``: defaults
        self.aggregation: AggregationConfig | None = None

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def _apply(self, fn, recurse: bool = True):  # type: ignore[no-untyped-def]
        self._dense_pe = None  # moved to another device or dtype: recompute the cached encoding
        return super()._apply(fn, recurse)

    def dense_pe(self) -> torch.Tensor:
        """``(1, D, S/16, S/16)`` positional encoding of the embedding grid; it depends on no input, so it is
        computed once and cached."""
        if self._dense_pe is None or self.training:
            pe = self.prompt_encoder.get_dense_pe()
            if self.training:
                return pe
            self._dense_pe = pe.detach()
        return self._dense_pe

    def embed(self, images: torch.Tensor) -> ImageFeatures:
        """Encode ``(B, 3, S, S)`` RGB images with values 0..255 (already resized by the transform)."""
        x = (images - self.pixel_mean) / self.pixel_std
        out = self.image_encoder(x)
        if isinstance(out, tuple):
            return ImageFeatures(embedding=out[0], hires=(out[1], out[2]), stride8=out[3] if len(out) > 3 else None)
        return ImageFeatures(embedding=out)

    def decode(self, features: ImageFeatures, boxes: torch.Tensor, image_index: torch.Tensor) -> DecoderOutput:
        """Decode ``N`` box prompts in one batched pass.

        Args:
            features: from :meth:`embed`, for ``B`` images.
            boxes: ``(N, 4)`` XYXY in pixels of the ``S``×``S`` model input.
            image_index: ``(N,)`` long, which image each box belongs to.
        """
        prior = self.box_prior_masks(boxes) if self.config.box_prior else None
        sparse, dense = self.prompt_encoder(points=None, boxes=boxes, masks=prior)
        return self.mask_decoder.forward_batched(
            image_embeddings=features.embedding,
            image_pe=self.dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense if prior is not None else dense[:1],
            image_index=image_index,
            hires=features.hires,
        )

    def box_prior_masks(self, boxes: torch.Tensor) -> torch.Tensor:
        """``(N, 1, 4h, 4w)`` masks (SAM's mask-prompt size) of the ellipses inscribed in ``boxes`` ``(N, 4)``
        (XYXY, model-input pixels), 1 inside, 0 outside, sampled at cell centres."""
        side = 4 * self.config.embedding_size
        step = self.config.image_size / side
        centres = (torch.arange(side, device=boxes.device, dtype=boxes.dtype) + 0.5) * step
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        ax = ((boxes[:, 2] - boxes[:, 0]) / 2).clamp_min(1e-3)
        ay = ((boxes[:, 3] - boxes[:, 1]) / 2).clamp_min(1e-3)
        dx = (centres.view(1, 1, -1) - cx.view(-1, 1, 1)) / ax.view(-1, 1, 1)
        dy = (centres.view(1, -1, 1) - cy.view(-1, 1, 1)) / ay.view(-1, 1, 1)
        return ((dx**2 + dy**2) <= 1.0).to(boxes.dtype).unsqueeze(1)

    def forward(self, images: torch.Tensor, boxes: torch.Tensor, image_index: torch.Tensor) -> DecoderOutput:
        return self.decode(self.embed(images), boxes, image_index)

"""The localizer's own stride-16 image stage on the segmenter's stride-8 features."""

from __future__ import annotations

import torch
from torch import nn

from radvlsm.stage2_segment.modeling.compact_encoder import CompactImageEncoder, sam_neck, stride16_stage


class ImageBranch(nn.Module):
    """Stride-8 features ``(B, C_in, S/8, S/8)`` → an embedding ``(B, D, S/16, S/16)`` of the localizer's own.

    The segmenter's last stage and neck learnt what a box-prompted mask decoder needs; telling a polyp from a
    fold is another task. This branch has the architecture of the compact encoder's last stage
    (:func:`~radvlsm.stage2_segment.modeling.compact_encoder.stride16_stage`) and neck, starts as a copy of them
    (:meth:`copy_from`), and is trained with the localizer, so the image is still encoded once up to stride 8 and
    the segmenter itself is untouched. Its batch-norm statistics stay those of the segmenter (the layers are kept
    in eval mode; their affine parameters train).
    """

    def __init__(self, in_channels: int, channels: int, blocks: int, embed_dim: int) -> None:
        super().__init__()
        self.stage = stride16_stage(in_channels, channels, blocks)
        self.neck = sam_neck(channels, embed_dim)
        self.train()  # batch norm in eval mode from the start

    def train(self, mode: bool = True) -> ImageBranch:
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def copy_from(self, encoder: CompactImageEncoder) -> None:
        """Start from the encoder's own last stage and neck (shapes must match)."""
        self.stage.load_state_dict(encoder.stage16.state_dict())
        self.neck.load_state_dict(encoder.neck.state_dict())

    def forward(self, stride8: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, S/8, S/8)`` → ``(B, D, S/16, S/16)``."""
        return self.neck(self.stage(stride8.float()))

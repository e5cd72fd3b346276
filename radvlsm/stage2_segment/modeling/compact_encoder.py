"""A lean convolutional image encoder, sized to train on two CPU cores."""

from __future__ import annotations

import torch
from segment_anything.modeling.common import LayerNorm2d
from torch import nn


def _conv_bn_act(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class InvertedResidual(nn.Module):
    """MobileNetV2-style block: 1x1 expand, 3x3 depthwise (optionally dilated), 1x1 project, residual."""

    def __init__(self, channels: int, expand: int = 2, dilation: int = 1) -> None:
        super().__init__()
        hidden = channels * expand
        self.block = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, 1, dilation, dilation=dilation, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def stride16_stage(c_in: int, channels: int, blocks: int) -> nn.Sequential:
    """Stride 8 → 16: a strided 3x3 conv ``c_in → channels`` then ``blocks`` inverted residuals dilated 1, 2, 4, 8
    in turn (the encoder's last stage; the localizer's own image branch is built alike)."""
    dilations = (1, 2, 4, 8)
    return nn.Sequential(
        _conv_bn_act(c_in, channels, 2),
        *[InvertedResidual(channels, dilation=dilations[i % len(dilations)]) for i in range(blocks)],
    )


def sam_neck(channels: int, embed_dim: int) -> nn.Sequential:
    """SAM-style neck: 1x1 conv ``channels → embed_dim``, LayerNorm, 3x3 conv, LayerNorm."""
    return nn.Sequential(
        nn.Conv2d(channels, embed_dim, 1, bias=False),
        LayerNorm2d(embed_dim),
        nn.Conv2d(embed_dim, embed_dim, 3, padding=1, bias=False),
        LayerNorm2d(embed_dim),
    )


class CompactImageEncoder(nn.Module):
    """Image ``(B, 3, S, S)`` → embedding ``(B, D, S/16, S/16)`` plus two high-resolution feature maps and the
    stride-8 features.

    Early downsampling (two strided 3x3 convs to stride 4) keeps the full-resolution work small; the body
    is depthwise-separable inverted-residual blocks, dilated at stride 16 to widen the receptive field; a
    SAM-style neck (1x1 conv, LayerNorm, 3x3 conv, LayerNorm) gives the embedding. The stride-4 and
    stride-2 maps are projected to ``D/8`` channels for the decoder's high-resolution skips.
    """

    def __init__(
        self,
        channels: tuple[int, int, int, int] = (24, 48, 96, 192),
        blocks: tuple[int, int, int] = (2, 3, 4),
        embed_dim: int = 128,
    ) -> None:
        super().__init__()
        c1, c2, c3, c4 = channels
        n4, n8, n16 = blocks
        self.stem = _conv_bn_act(3, c1, 2)
        self.stage4 = nn.Sequential(_conv_bn_act(c1, c2, 2), *[InvertedResidual(c2) for _ in range(n4)])
        self.stage8 = nn.Sequential(_conv_bn_act(c2, c3, 2), *[InvertedResidual(c3) for _ in range(n8)])
        self.stage16 = stride16_stage(c3, c4, n16)
        self.neck = sam_neck(c4, embed_dim)
        hires_dim = embed_dim // 8
        self.skip4 = nn.Sequential(nn.Conv2d(c2, hires_dim, 1), LayerNorm2d(hires_dim))
        self.skip2 = nn.Sequential(nn.Conv2d(c1, hires_dim, 1), LayerNorm2d(hires_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(embedding (B,D,S/16,S/16), hires4 (B,D/8,S/4,S/4), hires2 (B,D/8,S/2,S/2),
        stride8 (B,C3,S/8,S/8))`` (``C3 = channels[2]``, the input of the last stage)."""
        f2 = self.stem(x)
        f4 = self.stage4(f2)
        f8 = self.stage8(f4)
        return self.neck(self.stage16(f8)), self.skip4(f4), self.skip2(f2), f8

"""Text-conditioned spatial context for the relevance map's keys."""

from __future__ import annotations

import torch
from torch import nn


class MapContextBlock(nn.Module):
    """One residual block over a ``(N, P, g, g)`` key grid: GroupNorm → depthwise 3×3 conv (``dilation``) →
    1×1 conv ``P → 2P`` → GELU → 1×1 conv ``2P → P``, added to the input. Stacked with growing dilations the
    blocks let a cell's key see the whole grid (a fold beside a polyp, the rim of the endoscope's view) before
    the prompt's vector scores it."""

    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)
        self.spatial = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, groups=channels)
        self.mix = nn.Sequential(nn.Conv2d(channels, 2 * channels, 1), nn.GELU(), nn.Conv2d(2 * channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, P, g, g)`` → ``(N, P, g, g)``."""
        return x + self.mix(self.spatial(self.norm(x)))

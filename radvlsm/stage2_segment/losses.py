"""Training losses of the segmenter, one per head (see :mod:`radvlsm.stage2_segment.modeling.mask_decoder`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class LossWeights:
    mask: float = 1.0
    iou: float = 1.0
    boundary: float = 0.5
    presence: float = 0.5


@dataclass(frozen=True)
class LossTerms:
    total: torch.Tensor
    mask: float
    iou: float
    boundary: float
    presence: float


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """``1 - Dice`` per map, ``(N, H, W)`` logits and ``{0,1}`` targets → ``(N,)``."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    inter = (p * t).sum(1)
    return 1.0 - (2 * inter + eps) / (p.sum(1) + t.sum(1) + eps)


def boundary_band(mask: torch.Tensor, width: int = 1) -> torch.Tensor:
    """Morphological gradient of ``(N, H, W)`` binary masks: pixels within ``width`` of the contour."""
    k = 2 * width + 1
    m = mask.unsqueeze(1)
    dil = F.max_pool2d(m, k, 1, width)
    ero = -F.max_pool2d(-m, k, 1, width)
    return (dil - ero).squeeze(1)


def mask_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of ``(N, H, W)`` binary maps; 1 where both are empty."""
    p, t = pred.flatten(1), target.flatten(1)
    inter = (p * t).sum(1)
    union = p.sum(1) + t.sum(1) - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def segmenter_loss(
    mask_logits: torch.Tensor,
    iou_pred: torch.Tensor,
    presence_logit: torch.Tensor | None,
    boundary_logits: torch.Tensor | None,
    target: torch.Tensor,
    present: torch.Tensor,
    weights: LossWeights = LossWeights(),
) -> LossTerms:
    """All losses of one batch of ``N`` prompts.

    Args:
        mask_logits: ``(N, h, w)`` decoder output (any resolution; resized to the target's).
        iou_pred: ``(N,)``. presence_logit: ``(N,)`` or ``None``. boundary_logits: ``(N, h, w)`` or ``None``.
        target: ``(N, H, W)`` float {0,1}, the lesion a prompt should segment (empty for a box with no lesion).
        present: ``(N,)`` float {0,1}, whether the box holds a lesion.

    Mask head: BCE over all prompts + Dice over prompts with a lesion. IoU head: MSE to the IoU of the
    thresholded mask with the target, prompts with a lesion only. Boundary head: BCE against the target's
    contour band (at the boundary map's resolution), positives weighted by their rarity. Presence head: BCE.
    """
    logits = F.interpolate(mask_logits.unsqueeze(1), target.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    pos = present > 0.5
    bce = F.binary_cross_entropy_with_logits(logits, target)
    dice = soft_dice_loss(logits[pos], target[pos]).mean() if pos.any() else logits.sum() * 0
    l_mask = bce + dice

    with torch.no_grad():
        true_iou = mask_iou((logits > 0).float(), target)
    l_iou = F.mse_loss(iou_pred[pos], true_iou[pos]) if pos.any() else iou_pred.sum() * 0

    l_boundary = logits.sum() * 0
    if boundary_logits is not None:
        small = F.adaptive_avg_pool2d(target.unsqueeze(1), boundary_logits.shape[-2:])[:, 0]
        band = boundary_band((small > 0.5).float())
        frac = band.mean().clamp(1e-3, 0.5)
        l_boundary = F.binary_cross_entropy_with_logits(
            boundary_logits, band, pos_weight=((1 - frac) / frac).detach()
        )
    l_presence = logits.sum() * 0
    if presence_logit is not None:
        l_presence = F.binary_cross_entropy_with_logits(presence_logit, present)

    total = (
        weights.mask * l_mask + weights.iou * l_iou + weights.boundary * l_boundary + weights.presence * l_presence
    )
    return LossTerms(total, *(float(t.detach()) for t in (l_mask, l_iou, l_boundary, l_presence)))

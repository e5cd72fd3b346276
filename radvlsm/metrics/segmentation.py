"""Overlap and surface-distance metrics of binary masks (2-D and 3-D).

Conventions (all functions of this module):

* Masks are arrays of any dtype of the same shape, ``(H, W)`` or ``(Z, Y, X)`` (any ``ndim >= 1`` works);
  a pixel is foreground when it is non-zero.
* ``spacing`` is the physical size of one pixel along each array axis, **in array order** (for a
  ``(Z, Y, X)`` volume: ``(dz, dy, dx)``), in millimetres. With a spacing, distances are in mm and areas in
  mm² (mm³ for volumes); without one, distances are in pixels and areas are pixel counts.
* **Boundary** (surface) of a mask: its foreground pixels that have at least one *face* neighbour (4-neighbour
  in 2-D, 6-neighbour in 3-D) in the background. The space outside the array counts as background, so a
  foreground pixel on the edge of the array is a boundary pixel and every non-empty mask has a non-empty
  boundary. (This is SimpleITK's ``LabelContour(fullyConnected=False)`` of the mask padded by one background
  pixel.)
* **Surface distances**: for every boundary pixel of one mask, the Euclidean distance (with ``spacing``) to
  the nearest boundary pixel of the other mask; computed with :func:`scipy.ndimage.distance_transform_edt`.
* **HD95** (robust Hausdorff distance): ``max(P95(d(∂pred → ∂gt)), P95(d(∂gt → ∂pred)))``, the larger of the
  two *directed* 95th percentiles (numpy's default linear interpolation), as MONAI and DeepMind's
  ``surface-distance`` define it. With ``percentile=100`` it is the classical Hausdorff distance.
* **ASSD** (average symmetric surface distance, Heimann et al. 2009): the mean of the union of both directed
  distance sets, ``(Σ d(∂pred → ∂gt) + Σ d(∂gt → ∂pred)) / (|∂pred| + |∂gt|)``.

Empty masks:

=================  =====  =====  ============
case               Dice   IoU    HD95, ASSD
=================  =====  =====  ============
both empty         1.0    1.0    0.0
exactly one empty  0.0    0.0    NaN (undefined: there is no surface to measure from or to)
=================  =====  =====  ============

NaN is a value, not an error: no function here raises on empty masks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "SegmentationScores",
    "assd",
    "dice",
    "hausdorff_distance",
    "hd95",
    "iou",
    "mask_boundary",
    "score_masks",
    "surface_distances",
]

Unit = Literal["mm", "px"]


@dataclass(frozen=True)
class SegmentationScores:
    """The scores of one predicted mask against its ground truth.

    Attributes:
        dice: Dice coefficient, in [0, 1].
        iou: intersection over union (Jaccard index), in [0, 1].
        hd95: robust (95th-percentile) Hausdorff distance in ``unit``; NaN when exactly one mask is empty.
        assd: average symmetric surface distance in ``unit``; NaN when exactly one mask is empty.
        unit: ``"mm"`` when a spacing was given, else ``"px"``.
        pred_area: foreground size of the prediction: pixel (voxel) count times the pixel area (volume), i.e.
            mm² / mm³ with a spacing, a pixel count without.
        gt_area: the same for the ground truth.
    """

    dice: float
    iou: float
    hd95: float
    assd: float
    unit: Unit
    pred_area: float
    gt_area: float


def _as_bool(mask: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim == 0:
        raise ValueError(f"{name} must be an array with at least one axis, got a scalar")
    return arr.astype(bool, copy=False)


def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = _as_bool(pred, "pred")
    g = _as_bool(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(
            f"shape mismatch: pred mask has shape {p.shape} but gt mask has shape {g.shape}; "
            "both masks must have the same shape (resample the prediction onto the ground truth's grid)"
        )
    return p, g


def _check_spacing(spacing: Sequence[float] | None, ndim: int) -> tuple[float, ...] | None:
    if spacing is None:
        return None
    sp = tuple(float(s) for s in spacing)
    if len(sp) == 1:  # one value: the same for every axis
        sp = sp * ndim
    if len(sp) != ndim:
        raise ValueError(
            f"spacing has {len(sp)} values {sp} but the masks have {ndim} axes: give one spacing per "
            "array axis"
        )
    if not all(math.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing must be finite and positive, got {sp}")
    return sp


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice coefficient ``2|P∩G| / (|P|+|G|)`` of two same-shape masks; 1.0 when both are empty."""
    p, g = _pair(pred, gt)
    total = int(p.sum()) + int(g.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, g).sum()) / total


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union (Jaccard) ``|P∩G| / |P∪G|`` of same-shape masks; 1.0 when both are empty."""
    p, g = _pair(pred, gt)
    union = int(np.logical_or(p, g).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(p, g).sum()) / union


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a mask (see the module docstring): a ``bool`` array of the mask's shape."""
    m = _as_bool(mask, "mask")
    structure = ndi.generate_binary_structure(m.ndim, 1)
    return m & ~ndi.binary_erosion(m, structure=structure, border_value=0)


def _crop_pad(p: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop both masks to the bounding box of their union and pad by one background pixel.

    Distances between boundary pixels never leave that box, and the padding reproduces "outside is
    background", so the result is exact and much faster for small lesions in large images or volumes.
    """
    union = p | g
    slices = []
    for axis in range(union.ndim):
        other = tuple(a for a in range(union.ndim) if a != axis)
        idx = np.flatnonzero(union.any(axis=other))
        slices.append(slice(int(idx[0]), int(idx[-1]) + 1))
    box = tuple(slices)
    return np.pad(p[box], 1), np.pad(g[box], 1)


def surface_distances(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances between two masks.

    Args:
        pred, gt: same-shape masks.
        spacing: pixel size per array axis (mm), or ``None`` for pixels.

    Returns:
        ``(d_pred_to_gt, d_gt_to_pred)``: 1-D float64 arrays; the first holds, for each boundary pixel of
        ``pred``, the distance to the nearest boundary pixel of ``gt`` (length = number of boundary pixels of
        ``pred``), the second the converse. When either mask is empty both arrays are empty.

    Raises:
        ValueError: shapes differ, or ``spacing`` does not have one positive value per axis.
    """
    p, g = _pair(pred, gt)
    sp = _check_spacing(spacing, p.ndim)
    if not p.any() or not g.any():
        return np.empty(0), np.empty(0)
    p, g = _crop_pad(p, g)
    bp, bg = mask_boundary(p), mask_boundary(g)
    if np.array_equal(p, g):  # identical masks: every distance is 0 (exact shortcut, skips two transforms)
        return np.zeros(int(bp.sum())), np.zeros(int(bg.sum()))
    dist_to_g = ndi.distance_transform_edt(~bg, sampling=sp)
    dist_to_p = ndi.distance_transform_edt(~bp, sampling=sp)
    return np.asarray(dist_to_g[bp], dtype=np.float64), np.asarray(dist_to_p[bg], dtype=np.float64)


def _empty_case(p: np.ndarray, g: np.ndarray) -> float | None:
    """0.0 when both masks are empty, NaN when exactly one is, ``None`` when both have foreground."""
    has_p, has_g = bool(p.any()), bool(g.any())
    if not has_p and not has_g:
        return 0.0
    if has_p != has_g:
        return math.nan
    return None


def _hd(d_pg: np.ndarray, d_gp: np.ndarray, percentile: float) -> float:
    return float(max(np.percentile(d_pg, percentile), np.percentile(d_gp, percentile)))


def _assd(d_pg: np.ndarray, d_gp: np.ndarray) -> float:
    return float((d_pg.sum() + d_gp.sum()) / (d_pg.size + d_gp.size))


def hausdorff_distance(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | None = None, percentile: float = 100.0
) -> float:
    """Symmetric (percentile) Hausdorff distance between the boundaries of two masks.

    ``max(Pq(d(∂pred → ∂gt)), Pq(d(∂gt → ∂pred)))`` with ``q = percentile``; in mm with ``spacing``, else
    pixels. 0.0 when both masks are empty, NaN when exactly one is.
    """
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    p, g = _pair(pred, gt)
    _check_spacing(spacing, p.ndim)
    special = _empty_case(p, g)
    if special is not None:
        return special
    return _hd(*surface_distances(p, g, spacing), percentile)


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """Robust Hausdorff distance: the larger of the two directed 95th-percentile surface distances."""
    return hausdorff_distance(pred, gt, spacing, percentile=95.0)


def assd(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """Average symmetric surface distance (mean over the union of both directed distance sets)."""
    p, g = _pair(pred, gt)
    _check_spacing(spacing, p.ndim)
    special = _empty_case(p, g)
    if special is not None:
        return special
    return _assd(*surface_distances(p, g, spacing))


def score_masks(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | None = None
) -> SegmentationScores:
    """All segmentation scores of ``pred`` against ``gt`` at once (surface distances computed once).

    Args:
        pred, gt: same-shape masks, ``(H, W)`` or ``(Z, Y, X)``; non-zero is foreground.
        spacing: pixel size per array axis in mm (array order; one value: every axis), or ``None`` to work in
            pixels.

    Raises:
        ValueError: the shapes differ (the message gives both), or the spacing is invalid.
    """
    p, g = _pair(pred, gt)
    sp = _check_spacing(spacing, p.ndim)
    pixel_size = float(np.prod(sp)) if sp is not None else 1.0
    special = _empty_case(p, g)
    if special is None:
        d_pg, d_gp = surface_distances(p, g, sp)
        hd, asd = _hd(d_pg, d_gp, 95.0), _assd(d_pg, d_gp)
    else:
        hd = asd = special
    return SegmentationScores(
        dice=dice(p, g),
        iou=iou(p, g),
        hd95=hd,
        assd=asd,
        unit="mm" if sp is not None else "px",
        pred_area=int(p.sum()) * pixel_size,
        gt_area=int(g.sum()) * pixel_size,
    )

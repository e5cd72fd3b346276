"""Box overlap and recall of ranked box candidates.

Boxes are XYXY: ``(x1, y1, x2, y2)`` with ``x1 <= x2`` and ``y1 <= y2``, in any one consistent unit (pixels
usually), continuous coordinates: a box's area is ``(x2 - x1) * (y2 - y1)`` (no "+1").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["box_iou", "box_iou_matrix", "recall_at_k"]


def _boxes(boxes: np.ndarray | Sequence[Sequence[float]] | Sequence[float] | None, name: str) -> np.ndarray:
    """Validate and return an ``(N, 4)`` float64 array (``None`` or an empty sequence gives ``(0, 4)``)."""
    if boxes is None:
        return np.zeros((0, 4))
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4))
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) (XYXY boxes), got shape {np.shape(boxes)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds non-finite coordinates")
    bad = (arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}] = {arr[i].tolist()} is not XYXY (needs x1 <= x2 and y1 <= y2)")
    return arr


def box_iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two sets of XYXY boxes.

    Args:
        boxes_a: ``(N, 4)``; boxes_b: ``(M, 4)``. A single box ``(4,)`` is taken as ``(1, 4)``.

    Returns:
        ``(N, M)`` float64 matrix of IoUs in [0, 1]; a pair whose union has zero area (two degenerate boxes)
        has IoU 0.

    Raises:
        ValueError: wrong shape, non-finite coordinates, or ``x2 < x1`` / ``y2 < y1``.
    """
    a = _boxes(boxes_a, "boxes_a")
    b = _boxes(boxes_b, "boxes_b")
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = area_a[:, None] + area_b[None, :] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def box_iou(box_a: Sequence[float] | np.ndarray, box_b: Sequence[float] | np.ndarray) -> float:
    """IoU of two single XYXY boxes (each of shape ``(4,)``)."""
    a = np.asarray(box_a, dtype=np.float64)
    b = np.asarray(box_b, dtype=np.float64)
    if a.shape != (4,) or b.shape != (4,):
        raise ValueError(f"box_iou takes two boxes of shape (4,), got {a.shape} and {b.shape}")
    return float(box_iou_matrix(a, b)[0, 0])


def recall_at_k(
    candidates_per_image: Sequence[np.ndarray | Sequence[Sequence[float]] | None],
    gt_boxes_per_image: Sequence[np.ndarray | Sequence[Sequence[float]] | Sequence[float] | None],
    k: int,
    iou_threshold: float = 0.5,
) -> float:
    """Fraction of images whose ground truth is found among their top-``k`` candidate boxes.

    Args:
        candidates_per_image: per image, an ``(N_i, 4)`` array of XYXY candidates **already ranked** best
            first; only the first ``k`` are used. ``None`` or an empty array means no candidates.
        gt_boxes_per_image: per image (same order and length), the ground-truth boxes: ``(G_i, 4)``, or one
            box ``(4,)``, or ``None`` / empty for an image without a lesion.
        k: number of top candidates considered (``k >= 1``).
        iou_threshold: a candidate matches a GT box when their IoU is ``>= iou_threshold``.

    Rules:
        * An image **without GT boxes is excluded** (it counts in neither numerator nor denominator: recall
          is undefined there; score false positives on such images with another metric).
        * An image with GT but **no candidates is a miss**.
        * An image with several GT boxes is a hit only when **every** GT box is matched by at least one of the
          top-``k`` candidates (one candidate may match several GT boxes).

    Returns:
        hits / number of images that have GT, in [0, 1].

    Raises:
        ValueError: the two sequences differ in length, ``k < 1``, the threshold is outside (0, 1], a box is
            malformed, or no image has a GT box (recall would be 0/0).
    """
    if len(candidates_per_image) != len(gt_boxes_per_image):
        raise ValueError(
            f"candidates_per_image has {len(candidates_per_image)} images but gt_boxes_per_image has "
            f"{len(gt_boxes_per_image)}"
        )
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    hits = 0
    counted = 0
    for i, (cands, gts) in enumerate(zip(candidates_per_image, gt_boxes_per_image, strict=True)):
        gt = _boxes(gts, f"gt_boxes_per_image[{i}]")
        if len(gt) == 0:
            continue
        counted += 1
        top = _boxes(cands, f"candidates_per_image[{i}]")[: int(k)]
        if len(top) == 0:
            continue
        ious = box_iou_matrix(top, gt)
        if bool((ious.max(axis=0) >= iou_threshold).all()):
            hits += 1
    if counted == 0:
        raise ValueError("no image has a ground-truth box: recall@k is undefined")
    return hits / counted

"""Relevance map → ``K`` ranked candidate boxes (pure numpy / OpenCV).

Coordinate frames: the map is ``(R, R)`` probabilities over the ``S × S`` model input; cell ``(i, j)`` covers
model pixels ``[j·s, (j+1)·s) × [i·s, (i+1)·s)`` with ``s = S / R``. Boxes are XYXY edges (``x1``/``y1``
exclusive): a component whose cells run from column 3 to column 5 gives ``x0 = 3s, x1 = 6s``. The predictor
maps them to original-image pixels with the segmenter's ``ResizeTransform.unapply_boxes`` (and clips them to
the image), see :func:`to_original`.

Candidates (all from one map):

1. connected components (8-connectivity) of the map thresholded at each of ``rel_thresholds × max`` and at
   each absolute threshold below the maximum;
2. around each of the ``peak_count`` highest local maxima (3×3) the component of ``map ≥ 0.5 × peak`` that
   holds the peak (separates touching blobs of different strength);
3. the union box of everything above the lowest threshold (several polyps / fragments as one box).

Components smaller than ``min_component_fraction`` of the map are dropped.

Score of a candidate region ``C`` (its cells above its threshold)::

    score = itm_prob × mean(prob over C) × (mass(C) / max mass)^score_mass_power

where ``mass(C)`` is the sum of the probabilities over ``C`` and ``max mass`` the largest mass among the
components of this map (1 and 2 above), the mass term capped at 1: the largest confident component scores
``itm_prob × its mean prob``, small fragments rank lower, and the union box (3) scores ``itm_prob × its mean
prob``, below the best component unless the fragments are as confident. Candidates are then sorted by score,
suppressed by NMS (IoU > ``nms_iou`` with a better one) and cut to ``top_k``.

No candidates at all (status ``not_found``) when ``itm_prob < itm_threshold`` or ``max(prob) < min_peak``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from radvlsm.stage1_localize.config import TRAINED_ITM_THRESHOLD, LocalizerConfig
from radvlsm.stage2_segment.transforms import ResizeTransform


@dataclass(frozen=True)
class BoxParams:
    """Box extraction parameters (see the module docstring)."""

    rel_thresholds: tuple[float, ...] = (0.35, 0.5, 0.65)
    abs_thresholds: tuple[float, ...] = (0.5,)
    min_peak: float = 0.3
    min_component_fraction: float = 0.002
    peak_count: int = 3
    nms_iou: float = 0.7
    top_k: int = 5
    itm_threshold: float = TRAINED_ITM_THRESHOLD
    score_mass_power: float = 0.5

    @classmethod
    def from_config(cls, cfg: LocalizerConfig, top_k: int | None = None) -> BoxParams:
        return cls(
            rel_thresholds=tuple(cfg.box_rel_thresholds), abs_thresholds=tuple(cfg.box_abs_thresholds),
            min_peak=cfg.min_peak, min_component_fraction=cfg.min_component_fraction, peak_count=cfg.peak_count,
            nms_iou=cfg.nms_iou, top_k=cfg.top_k if top_k is None else int(top_k), itm_threshold=cfg.itm_threshold,
            score_mass_power=cfg.score_mass_power,
        )


@dataclass(frozen=True, eq=False)
class MapBoxes:
    """Ranked candidates of one map: ``boxes (K, 4)`` float64 XYXY in model-input pixels, ``scores (K,)``
    float64 in [0, 1], best first; ``found`` is ``False`` (and ``K = 0``) when nothing matches."""

    boxes: np.ndarray
    scores: np.ndarray
    found: bool


def _empty() -> MapBoxes:
    return MapBoxes(np.zeros((0, 4)), np.zeros(0), False)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first.

    A box is removed when its IoU with an already kept (better) box is greater than ``iou_threshold``.
    """
    order = np.argsort(-scores, kind="stable")
    b = np.asarray(boxes, dtype=np.float64)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    keep: list[int] = []
    for i in order:
        if keep:
            k = np.asarray(keep)
            iw = np.clip(np.minimum(b[k, 2], b[i, 2]) - np.maximum(b[k, 0], b[i, 0]), 0, None)
            ih = np.clip(np.minimum(b[k, 3], b[i, 3]) - np.maximum(b[k, 1], b[i, 1]), 0, None)
            inter = iw * ih
            union = area[k] + area[i] - inter
            iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
            if (iou > iou_threshold).any():
                continue
        keep.append(int(i))
    return np.asarray(keep, dtype=np.int64)


def _region_box(region: np.ndarray) -> tuple[int, int, int, int]:
    ys = np.flatnonzero(region.any(axis=1))
    xs = np.flatnonzero(region.any(axis=0))
    return int(xs[0]), int(ys[0]), int(xs[-1] + 1), int(ys[-1] + 1)


def _local_maxima(prob: np.ndarray, floor: float, count: int) -> list[tuple[int, int]]:
    dil = cv2.dilate(prob, np.ones((3, 3), np.uint8))
    ys, xs = np.nonzero((prob >= dil) & (prob >= floor))
    order = np.argsort(-prob[ys, xs], kind="stable")
    peaks: list[tuple[int, int]] = []
    for i in order:
        y, x = int(ys[i]), int(xs[i])
        # plateaus give several equal maxima next to each other: keep one per plateau
        if any(abs(y - py) <= 1 and abs(x - px) <= 1 for py, px in peaks):
            continue
        peaks.append((y, x))
        if len(peaks) >= count:
            break
    return peaks


def extract_boxes(
    prob: np.ndarray, itm_prob: float, params: BoxParams = BoxParams(), frame_size: int | None = None
) -> MapBoxes:
    """Ranked candidate boxes from one relevance map.

    Args:
        prob: ``(R, R)`` (or ``(R, C)``) probabilities in [0, 1] over the model input.
        itm_prob: the image–text matching probability of the prompt on this image.
        params: thresholds, NMS and ``top_k``.
        frame_size: side ``S`` of the model input in pixels; boxes come out in that frame (default: map cells).

    Returns:
        :class:`MapBoxes` with boxes XYXY in model-input pixels.
    """
    p = np.asarray(prob, dtype=np.float32)
    if p.ndim != 2:
        raise ValueError(f"a relevance map must be 2-D, got shape {p.shape}")
    p = np.nan_to_num(np.clip(p, 0.0, 1.0))
    peak = float(p.max()) if p.size else 0.0
    if not (float(itm_prob) >= params.itm_threshold) or peak < params.min_peak or peak <= 0.0:
        return _empty()
    h, w = p.shape
    min_area = max(1, round(params.min_component_fraction * h * w))
    thresholds = sorted({round(f * peak, 6) for f in params.rel_thresholds}
                        | {float(t) for t in params.abs_thresholds if t < peak})
    thresholds = [t for t in thresholds if t > 0.0]
    regions: list[np.ndarray] = []
    for t in thresholds:
        binary = (p >= t).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        for lab in range(1, n):
            if stats[lab, cv2.CC_STAT_AREA] >= min_area:
                regions.append(labels == lab)
    for y, x in _local_maxima(p, params.min_peak, params.peak_count):
        binary = (p >= 0.5 * p[y, x]).astype(np.uint8)
        _, labels = cv2.connectedComponents(binary, connectivity=8)
        region = labels == labels[y, x]
        if region.sum() >= min_area:
            regions.append(region)
    if not regions:
        return _empty()
    n_components = len(regions)
    union = p >= thresholds[0] if thresholds else None
    if union is not None and union.sum() >= min_area:
        regions.append(union)
    boxes = np.array([_region_box(r) for r in regions], dtype=np.float64)
    masses = np.array([float(p[r].sum()) for r in regions])
    means = np.array([float(p[r].mean()) for r in regions])
    ratio = np.minimum(1.0, masses / masses[:n_components].max())
    scores = float(itm_prob) * means * ratio**params.score_mass_power
    keep = nms(boxes, scores, params.nms_iou)[: params.top_k]
    boxes, scores = boxes[keep], np.clip(scores[keep], 0.0, 1.0)
    if frame_size is not None:
        boxes = boxes * np.array([frame_size / w, frame_size / h, frame_size / w, frame_size / h])
    return MapBoxes(boxes, scores, True)


def to_original(boxes: np.ndarray, hw: tuple[int, int], transform: ResizeTransform) -> np.ndarray:
    """Model-input boxes ``(K, 4)`` → original-image pixels through the segmenter's
    ``ResizeTransform.unapply_boxes``, clipped to the image ``hw = (H, W)``."""
    if len(boxes) == 0:
        return np.zeros((0, 4))
    out = np.asarray(transform.unapply_boxes(np.asarray(boxes, dtype=np.float64), hw), dtype=np.float64)
    h, w = hw
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, w)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, h)
    return out


def batch_extract(
    probs: Sequence[np.ndarray], itm_probs: Sequence[float], params: BoxParams, frame_size: int | None = None
) -> list[MapBoxes]:
    """:func:`extract_boxes` for several maps."""
    return [extract_boxes(p, float(i), params, frame_size) for p, i in zip(probs, itm_probs, strict=True)]

"""Boxes from masks, and the box perturbations used to train and to test box-prompted segmentation.

Boxes are XYXY in continuous pixel coordinates (edges): the box of a mask whose columns run from 10 to 20
inclusive has ``x0 = 10, x1 = 21``.
"""

from __future__ import annotations

import numpy as np


def mask_to_box(mask: np.ndarray) -> np.ndarray | None:
    """Tight box ``(4,)`` float of the non-zero pixels of a 2-D mask, ``None`` for an empty mask."""
    ys = np.flatnonzero(mask.any(axis=1))
    if ys.size == 0:
        return None
    xs = np.flatnonzero(mask.any(axis=0))
    return np.array([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], dtype=np.float64)


def clip_box(box: np.ndarray, hw: tuple[int, int], min_size: float = 2.0) -> np.ndarray:
    """Clip to the image and keep at least ``min_size`` pixels of width and height."""
    h, w = hw
    x0, y0, x1, y1 = box
    x0, x1 = np.clip([x0, x1], 0, w)
    y0, y1 = np.clip([y0, y1], 0, h)
    if x1 - x0 < min_size:
        c = min(max((x0 + x1) / 2, min_size / 2), w - min_size / 2)
        x0, x1 = c - min_size / 2, c + min_size / 2
    if y1 - y0 < min_size:
        c = min(max((y0 + y1) / 2, min_size / 2), h - min_size / 2)
        y0, y1 = c - min_size / 2, c + min_size / 2
    return np.array([x0, y0, x1, y1], dtype=np.float64)


def jitter_box(box: np.ndarray, fraction: float, rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    """Move each edge independently by up to ``fraction`` of the box's width (x edges) or height (y edges),
    uniformly, then clip to the image."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    d = rng.uniform(-fraction, fraction, size=4) * np.array([bw, bh, bw, bh])
    return clip_box(np.asarray(box, dtype=np.float64) + d, hw)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two XYXY boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def negative_box(
    mask: np.ndarray, rng: np.random.Generator, max_cover: float = 0.05, tries: int = 30
) -> np.ndarray | None:
    """A random box that holds at most ``max_cover`` of the mask's pixels (a prompt with no lesion in it),
    sized like a lesion box (10–50% of the image side); ``None`` if none was found in ``tries`` draws."""
    h, w = mask.shape
    total = max(int(mask.sum()), 1)
    for _ in range(tries):
        bw, bh = rng.uniform(0.1, 0.5) * w, rng.uniform(0.1, 0.5) * h
        x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        box = np.array([x0, y0, x0 + bw, y0 + bh])
        xi0, yi0, xi1, yi1 = int(x0), int(y0), int(np.ceil(x0 + bw)), int(np.ceil(y0 + bh))
        if mask[yi0:yi1, xi0:xi1].sum() <= max_cover * total:
            return box
    return None

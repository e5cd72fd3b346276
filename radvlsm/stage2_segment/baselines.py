"""Box-prompted baselines every segmentation figure is reported beside.

- :func:`ellipse_in_box`: the ellipse inscribed in the box;
- :func:`grabcut_from_box`: OpenCV's GrabCut initialised with the box (5 iterations).
"""

from __future__ import annotations

import cv2
import numpy as np


def ellipse_in_box(box: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` bool: pixels whose centre lies inside the ellipse inscribed in the XYXY box."""
    h, w = hw
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy, ax, ay = (x0 + x1) / 2, (y0 + y1) / 2, max((x1 - x0) / 2, 1e-6), max((y1 - y0) / 2, 1e-6)
    ys = (np.arange(h) + 0.5 - cy) / ay
    xs = (np.arange(w) + 0.5 - cx) / ax
    return (ys[:, None] ** 2 + xs[None, :] ** 2) <= 1.0


def grabcut_from_box(rgb: np.ndarray, box: np.ndarray, iterations: int = 5, seed: int = 0) -> np.ndarray:
    """``(H, W)`` bool foreground of GrabCut started from the box (outside the box is background).

    The box is rounded outward to whole pixels; a box covering (almost) the whole image leaves GrabCut no
    background sample, so it is shrunk by one pixel from each border it touches.
    """
    h, w = rgb.shape[:2]
    x0, y0 = max(int(np.floor(box[0])), 1), max(int(np.floor(box[1])), 1)
    x1, y1 = min(int(np.ceil(box[2])), w - 1), min(int(np.ceil(box[3])), h - 1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.zeros((h, w), dtype=bool)
    cv2.setRNGSeed(seed)
    mask = np.zeros((h, w), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    cv2.grabCut(bgr, mask, (x0, y0, x1 - x0, y1 - y0), bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)

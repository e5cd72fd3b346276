"""Pictures of a result: the mask's contour (and the candidate boxes) drawn on the image."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

CONTOUR_RGB = (0, 255, 0)
BOX_RGB = (255, 210, 0)


def draw_overlay(
    rgb: np.ndarray, mask: np.ndarray, boxes: Sequence[Sequence[float]] = (), weights: Sequence[float] = ()
) -> np.ndarray:
    """``(H, W, 3)`` uint8 copy of ``rgb`` with the contour of ``mask`` in green and the boxes (XYXY,
    original pixels) in yellow, the line width of each box growing with its weight in the fused mask."""
    out = np.ascontiguousarray(rgb.copy())
    h, w = mask.shape
    t = max(1, round(min(h, w) / 250))
    for i, b in enumerate(boxes):
        wt = weights[i] if i < len(weights) else 0.0
        p0 = (round(b[0]), round(b[1]))
        p1 = (max(round(b[2]) - 1, p0[0]), max(round(b[3]) - 1, p0[1]))
        cv2.rectangle(out, p0, p1, BOX_RGB, t + (t if wt >= 0.5 else 0), lineType=cv2.LINE_AA)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, CONTOUR_RGB, 2 * t, lineType=cv2.LINE_AA)
    return out

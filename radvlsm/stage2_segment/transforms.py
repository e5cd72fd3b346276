"""Map images, boxes and masks between the original image and the square model input, as a pair.

Coordinate frame of boxes everywhere in radvlsm: XYXY, continuous pixel coordinates of the original image,
``x0, y0`` the top-left corner and ``x1, y1`` the bottom-right corner of the box's edge, so that the box of
a mask whose columns run from 10 to 20 (inclusive) is ``x0 = 10, x1 = 21``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from radvlsm.stage2_segment.config import ResizeMode


@dataclass(frozen=True)
class ResizeTransform:
    """Resize to a ``size``×``size`` model input.

    ``stretch`` scales x and y independently to fill the square (the image's own aspect is lost, boxes
    scale with it); ``longest_side`` scales both axes by the same factor so the longest side becomes
    ``size`` and pads the bottom and right with zeros (SAM's convention).
    """

    size: int
    mode: ResizeMode = "stretch"

    def scale(self, hw: tuple[int, int]) -> tuple[float, float]:
        """(sy, sx): model pixels per original pixel along y and x."""
        h, w = hw
        if self.mode == "stretch":
            return self.size / h, self.size / w
        s = self.size / max(h, w)
        return s, s

    def resized_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        """Size of the image content inside the model input (before padding)."""
        if self.mode == "stretch":
            return self.size, self.size
        sy, sx = self.scale(hw)
        return round(hw[0] * sy), round(hw[1] * sx)

    def apply_image(self, rgb: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 → ``(size, size, 3)`` uint8."""
        h, w = rgb.shape[:2]
        nh, nw = self.resized_hw((h, w))
        interp = cv2.INTER_AREA if nh * nw < h * w else cv2.INTER_LINEAR
        out = cv2.resize(rgb, (nw, nh), interpolation=interp)
        if (nh, nw) != (self.size, self.size):
            canvas = np.zeros((self.size, self.size, 3), dtype=out.dtype)
            canvas[:nh, :nw] = out
            out = canvas
        return out

    def apply_boxes(self, boxes: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        """``(N, 4)`` XYXY in original pixels → model-input pixels."""
        sy, sx = self.scale(hw)
        return np.asarray(boxes, dtype=np.float64) * np.array([sx, sy, sx, sy])

    def unapply_boxes(self, boxes: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        """Inverse of :meth:`apply_boxes`."""
        sy, sx = self.scale(hw)
        return np.asarray(boxes, dtype=np.float64) / np.array([sx, sy, sx, sy])

    def maps_to_original(self, maps: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """``(N, h, w)`` maps over the model input (any resolution) → ``(N, H, W)`` over the original image.

        Bilinear, with pixel centres aligned (``align_corners=False``); the padding of ``longest_side`` is
        cut off first.
        """
        x = maps.unsqueeze(1)
        if self.mode == "longest_side":
            nh, nw = self.resized_hw(hw)
            x = F.interpolate(x, (self.size, self.size), mode="bilinear", align_corners=False)[..., :nh, :nw]
        return F.interpolate(x, hw, mode="bilinear", align_corners=False)[:, 0]

"""Turn any image record into the RGB uint8 array the segmenter's transform takes."""

from __future__ import annotations

import numpy as np

from radvlsm.errors import InputError
from radvlsm.io.record import ImageRecord


def as_model_rgb(record: ImageRecord) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of a 2-D image record (grayscale is repeated over three channels; 16-bit and
    float images are scaled from their 0.5 and 99.5 percentiles to 0..255)."""
    px = record.pixels
    if record.is_volume:
        raise InputError(record.path, "a volume is not a 2-D image; segment its slices")
    if px.dtype != np.uint8:
        lo, hi = np.percentile(px, [0.5, 99.5])
        px = np.clip((px.astype(np.float32) - lo) / max(float(hi - lo), 1e-6) * 255.0, 0, 255).astype(np.uint8)
    if px.ndim == 2:
        px = np.repeat(px[:, :, None], 3, axis=2)
    return np.ascontiguousarray(px)

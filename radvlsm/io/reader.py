"""Dispatch from a path to the reader of its format."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from radvlsm.errors import ImageReadError
from radvlsm.io.raster import RASTER_SUFFIXES, read_raster
from radvlsm.io.record import ImageRecord


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(path, "no such file or directory")
    if path.is_file():
        if not os.access(path, os.R_OK):
            raise ImageReadError(path, "permission denied: the file is not readable")
        if path.stat().st_size == 0:
            raise ImageReadError(path, "file is empty (0 bytes)")


def read_image(path: str | Path) -> ImageRecord:
    """Read any supported image, volume or DICOM series into an :class:`ImageRecord`.

    Supported: PNG, JPEG, BMP, TIFF.

    Raises:
        ImageReadError: naming ``path`` and the reason, for every input that cannot be read.
    """
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if path.is_file() and suffix in RASTER_SUFFIXES:
        return read_raster(path)
    raise ImageReadError(path, f"unsupported file type {suffix or '(no extension)'}")


def read_mask(path: str | Path, like: ImageRecord | None = None) -> np.ndarray:
    """Read a binary lesion mask as a ``bool`` array (any non-zero pixel is lesion).

    JPEG masks (lossy) are thresholded at 128 instead of at zero. With ``like``, the mask must have the
    same height and width as that image.

    Raises:
        ImageReadError: unreadable mask, or a mask whose size differs from ``like``.
    """
    path = Path(path)
    rec = read_image(path)
    arr = rec.pixels
    if arr.ndim == 3:
        arr = arr.max(axis=-1) if not rec.is_volume else arr
    lossy = path.suffix.lower() in (".jpg", ".jpeg")
    mask = arr >= 128 if lossy else arr > 0
    if like is not None and mask.shape[-2:] != like.size_hw:
        raise ImageReadError(
            path, f"mask is {mask.shape[-1]}x{mask.shape[-2]} pixels but its image is "
            f"{like.size_hw[1]}x{like.size_hw[0]}"
        )
    return mask

"""Reading and writing of medical images, volumes and masks.

The one entry point for input is :func:`read_image`; it returns a frozen :class:`ImageRecord`.
"""

from __future__ import annotations

from radvlsm.io.reader import read_image, read_mask
from radvlsm.io.record import ImageRecord, Modality, VolumeGeometry, case_stem

__all__ = ["ImageRecord", "Modality", "VolumeGeometry", "case_stem", "read_image", "read_mask"]

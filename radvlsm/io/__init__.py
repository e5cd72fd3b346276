"""Reading and writing of medical images, volumes and masks.

The one entry point for input is :func:`read_image`; it returns a frozen :class:`ImageRecord`. Masks are
read with :func:`read_mask` (an RTSTRUCT's ROI too, rasterised onto its DICOM series by :func:`rasterise_roi`)
and written with :func:`write_png_mask` / :func:`write_nifti_mask`; every write is atomic (:func:`atomic_write`,
:func:`atomic_path`). CT windowing and conversion of any image to display/model-input RGB live in
:mod:`radvlsm.io.window`.
"""

from __future__ import annotations

from radvlsm.io.reader import geometry_difference, read_image, read_mask, sniff_format
from radvlsm.io.record import ImageRecord, Modality, VolumeGeometry, case_stem
from radvlsm.io.rtstruct import RoiMask, StructureSet, is_rtstruct, rasterise_roi, read_structure_set
from radvlsm.io.window import PRESETS, Window, apply_window, get_window, robust_rescale, to_display_rgb
from radvlsm.io.writers import atomic_path, atomic_write, write_nifti_mask, write_png_image, write_png_mask

__all__ = [
    "PRESETS",
    "ImageRecord",
    "Modality",
    "RoiMask",
    "StructureSet",
    "VolumeGeometry",
    "Window",
    "apply_window",
    "atomic_path",
    "atomic_write",
    "case_stem",
    "geometry_difference",
    "get_window",
    "is_rtstruct",
    "rasterise_roi",
    "read_image",
    "read_mask",
    "read_structure_set",
    "robust_rescale",
    "sniff_format",
    "to_display_rgb",
    "write_nifti_mask",
    "write_png_image",
    "write_png_mask",
]

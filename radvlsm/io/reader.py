"""Dispatch from a path to the reader of its format, and mask reading.

The format is decided by the file's **content** (magic bytes), not by its extension, so a PNG saved as
``.jpg`` reads correctly and a text file named ``.png`` is reported as text. Folders are DICOM series.

Supported inputs and what :func:`read_image` returns (see :class:`~radvlsm.io.record.ImageRecord`):

=====================  ==========================================================================
input                  pixels
=====================  ==========================================================================
PNG/JPEG/BMP/TIFF      ``(H, W)`` or ``(H, W, 3)`` in the stored dtype (uint8/uint16); multi-page
                       TIFF ``(F, H, W[, 3])``
DICOM file             ``(H, W)`` / ``(H, W, 3)``; multi-frame ``(F, H, W[, 3])``; CT in float32 HU
DICOM series folder    volume ``(Z, Y, X)`` with LPS geometry; CT in float32 HU
NIfTI ``.nii[.gz]``    volume ``(Z, Y, X)`` with LPS geometry (2-D NIfTI: one slice)
=====================  ==========================================================================
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
from pathlib import Path

import numpy as np

from radvlsm.errors import ImageReadError
from radvlsm.io.dicom import DICOM_SUFFIXES, has_dicom_preamble, read_dicom_file, read_dicom_series
from radvlsm.io.nifti import is_nifti_name, read_nifti
from radvlsm.io.raster import RASTER_SUFFIXES, read_raster
from radvlsm.io.record import ImageRecord, Modality, VolumeGeometry
from radvlsm.io.rtstruct import is_rtstruct, rasterise_roi

logger = logging.getLogger(__name__)

_SUFFIX_FORMAT = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
_RASTER_KINDS = frozenset({"png", "jpeg", "bmp", "tiff"})
_SNIFF_BYTES = 1024


def sniff_format(head: bytes) -> str | None:
    """Name the format of a file from its first bytes.

    Returns one of ``"png"``, ``"jpeg"``, ``"bmp"``, ``"tiff"``, ``"dicom"``, ``"nifti"`` (uncompressed),
    ``"gzip"``, ``"text"``, or ``None`` when unknown.
    """
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "tiff"
    if head.startswith(b"BM") and len(head) >= 26:
        return "bmp"
    if has_dicom_preamble(head):
        return "dicom"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if len(head) >= 348 and ((head[344:348] in (b"n+1\x00", b"ni1\x00")) or head[4:8] in (b"n+2\x00", b"ni2\x00")):
        return "nifti"
    if head and b"\x00" not in head:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError as exc:
            text = head[: exc.start].decode("utf-8") if exc.start > len(head) - 4 else ""
        if text and sum(ch.isprintable() or ch.isspace() for ch in text) >= 0.95 * len(text):
            return "text"
    return None


def _describe(kind: str | None) -> str:
    return {
        None: "unrecognised binary data",
        "text": "text, not image data",
        "gzip": "gzip-compressed data",
        "dicom": "DICOM data",
        "nifti": "NIfTI data",
    }.get(kind, f"{kind.upper() if kind else '?'} data")


def _check_path(path: Path) -> os.stat_result:
    """Existence and permission checks shared by files and folders."""
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise ImageReadError(path, "no such file or directory") from exc
    except PermissionError as exc:
        raise ImageReadError(path, "permission denied: a parent folder is not accessible") from exc
    except OSError as exc:
        raise ImageReadError(path, f"cannot access: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        if not os.access(path, os.R_OK | os.X_OK):
            raise ImageReadError(path, "permission denied: the folder is not readable")
    elif stat.S_ISREG(st.st_mode):
        if not os.access(path, os.R_OK):
            raise ImageReadError(path, "permission denied: the file is not readable")
        if st.st_size == 0:
            raise ImageReadError(path, "file is empty (0 bytes)")
    else:
        raise ImageReadError(path, "not a regular file or folder")
    return st


def _read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(_SNIFF_BYTES)
    except PermissionError as exc:
        raise ImageReadError(path, "permission denied: the file is not readable") from exc
    except OSError as exc:
        raise ImageReadError(path, f"cannot read file: {exc.strerror or exc}") from exc


def read_image(path: str | Path, *, modality: Modality | None = None, series_uid: str | None = None) -> ImageRecord:
    """Read any supported image, volume or DICOM series into an :class:`ImageRecord`.

    Supported: PNG, JPEG, BMP, TIFF; single DICOM files (incl. multi-frame); a folder holding one DICOM
    series (read as a volume); NIfTI ``.nii`` / ``.nii.gz``. The format is recognised by content.

    Args:
        path: a file, or a folder holding one DICOM series.
        modality: the modality of inputs that do not record one (raster images, NIfTI, DICOM with modality
            ``OT``). ``Modality.CT`` makes a NIfTI volume come back as ``float32`` HU. Ignored when a DICOM
            file names its modality.
        series_uid: for a folder, the one series of it to read (a folder holding several series is one study per
            series: :func:`radvlsm.pipeline.inputs.discover_inputs`); ignored for a file.

    Raises:
        ImageReadError: naming ``path`` and the reason, for every input that cannot be read (nonexistent,
            unreadable, empty, truncated, not an image, unsupported variant, inconsistent series …).
    """
    path = Path(path)
    st = _check_path(path)
    if stat.S_ISDIR(st.st_mode):
        return read_dicom_series(path, modality_hint=modality, series_uid=series_uid)

    kind = sniff_format(_read_head(path))
    suffix = path.suffix.lower()
    if kind in _RASTER_KINDS:
        if suffix in _SUFFIX_FORMAT and _SUFFIX_FORMAT[suffix].lower() != kind:
            logger.debug("%s: named %s but holds %s data", path, suffix, kind.upper())
        rec = read_raster(path)
        return _with_modality(rec, modality)
    if kind == "dicom":
        return read_dicom_file(path, modality_hint=modality)
    if is_nifti_name(path):
        if kind not in ("gzip", "nifti"):
            raise ImageReadError(path, f"not a NIfTI file: the content is {_describe(kind)}")
        return read_nifti(path, modality_hint=modality)
    if kind == "nifti":
        raise ImageReadError(path, "NIfTI data in a file not named .nii or .nii.gz: rename it")
    if suffix in DICOM_SUFFIXES or (suffix == "" and kind is None):
        # DICOM without the Part 10 preamble (old files written as a bare data set).
        return read_dicom_file(path, force=True, modality_hint=modality)
    if suffix in _SUFFIX_FORMAT:
        raise ImageReadError(path, f"not a {_SUFFIX_FORMAT[suffix]} image: the content is {_describe(kind)}")
    supported = ", ".join(sorted(RASTER_SUFFIXES | DICOM_SUFFIXES | {".nii", ".nii.gz"}))
    raise ImageReadError(
        path,
        f"unsupported file type {suffix or '(no extension)'} holding {_describe(kind)} "
        f"(supported: {supported}, or a DICOM series folder)",
    )


def _with_modality(rec: ImageRecord, modality: Modality | None) -> ImageRecord:
    if modality is None or modality is rec.modality:
        return rec
    return dataclasses.replace(rec, modality=modality)


# --------------------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------------------

_GEOMETRY_ATOL_MM = 1e-3
_DIRECTION_ATOL = 1e-4


def geometry_difference(a: VolumeGeometry, b: VolumeGeometry) -> str | None:
    """A description of how two geometries differ beyond float32 rounding, or None when they match."""
    if not np.allclose(a.spacing, b.spacing, rtol=1e-5, atol=_GEOMETRY_ATOL_MM):
        return f"spacing {a.spacing} vs {b.spacing}"
    if not np.allclose(a.origin, b.origin, rtol=0, atol=_GEOMETRY_ATOL_MM + 1e-6 * max(map(abs, a.origin))):
        return f"origin {a.origin} vs {b.origin}"
    if not np.allclose(a.direction, b.direction, rtol=0, atol=_DIRECTION_ATOL):
        return f"direction {a.direction} vs {b.direction}"
    return None


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in reversed(shape))


def read_mask(path: str | Path, like: ImageRecord | None = None, *, roi: str | None = None) -> np.ndarray:
    """Read a binary lesion mask as a ``bool`` array (``True`` = lesion).

    Any non-zero value is lesion, except for JPEG masks (lossy: compression noise around the edges),
    which are thresholded at 128. Colour masks count a pixel as lesion when any channel does. A DICOM RTSTRUCT
    file is rasterised onto ``like``, the DICOM series it references (:func:`radvlsm.io.rtstruct.rasterise_roi`).

    Args:
        path: the mask file.
        like: the image the mask belongs to. A 2-D mask must have its height and width; a volume mask its
            ``(Z, Y, X)`` shape and geometry (spacing, origin, direction within 1e-3 mm / 1e-4). A one-slice
            volume mask of a 2-D image is accepted and returned as ``(H, W)``. Required for an RTSTRUCT.
        roi: the ROI of an RTSTRUCT (``None``: its only ROI); ignored for other masks.

    Returns:
        ``(H, W)`` for 2-D masks, ``(Z, Y, X)`` for NIfTI / DICOM-series masks. An all-zero mask is valid
        (no lesion) and comes back all ``False``.

    Raises:
        ImageReadError: unreadable mask, multi-frame mask, NaN values, or a mask that does not fit ``like``; for
            an RTSTRUCT, every error of :func:`~radvlsm.io.rtstruct.rasterise_roi`.
    """
    path = Path(path)
    if is_rtstruct(path):
        if like is None:
            raise ImageReadError(path, "an RTSTRUCT mask needs the DICOM series it was drawn on to be rasterised")
        return np.array(rasterise_roi(path, like, roi).mask)
    rec = read_image(path)
    arr = rec.pixels
    if rec.is_multiframe:
        raise ImageReadError(path, f"a mask must be one image, this file has {rec.frames} frames")
    if rec.is_rgb:
        arr = arr.max(axis=-1)
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ImageReadError(path, "mask contains NaN values")
    if rec.source_format == "jpeg":
        peak = int(arr.max()) if arr.size else 0
        if 0 < peak < 128:
            logger.warning(
                "%s: JPEG mask with maximum %d is all background at threshold 128 (a 0/1 mask saved as "
                "JPEG? save masks as PNG)",
                path,
                peak,
            )
        mask = arr >= 128
    else:
        mask = arr != 0
    if like is None:
        return mask

    if like.is_volume:
        if not rec.is_volume:
            raise ImageReadError(path, f"2-D mask ({_size(mask.shape)}) for a volume image {like.path.name}")
        if mask.shape != like.pixels.shape[:3]:
            raise ImageReadError(
                path,
                f"mask is {_size(mask.shape)} voxels but its image is {_size(like.pixels.shape[:3])} (x by y by z)",
            )
        diff = geometry_difference(rec.geometry, like.geometry) if rec.geometry and like.geometry else None
        if diff is not None:
            raise ImageReadError(path, f"mask geometry differs from its image: {diff}")
        return mask
    if rec.is_volume:
        if mask.shape[0] != 1:
            raise ImageReadError(path, f"volume mask ({_size(mask.shape)}) for a 2-D image {like.path.name}")
        mask = mask[0]
    if mask.shape != like.size_hw:
        raise ImageReadError(
            path,
            f"mask is {mask.shape[1]}x{mask.shape[0]} pixels but its image is "
            f"{like.size_hw[1]}x{like.size_hw[0]} (width x height)",
        )
    return mask

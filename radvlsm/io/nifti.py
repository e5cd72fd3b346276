"""NIfTI-1/-2 volumes (``.nii``, ``.nii.gz``).

Geometry is expressed the way SimpleITK (ITK) expresses it: the DICOM/ITK patient frame (LPS), spacing and
origin in mm as (x, y, z), direction cosines as columns, pixels indexed ``[z, y, x]``. NIfTI's own world frame
is RAS; the conversion flips the sign of the first two world axes.

Dimensions:

* 3-D images: geometry from SimpleITK's reading of the header (a trailing time axis of length 1 is dropped).
* 2-D images are returned as **volumes with one slice** ``(1, Y, X)``: the full 3-D geometry is kept (taken
  from the NIfTI affine, converted to LPS), so a mask written for them lands in the same place.
* 4-D (more than one time point or component) and vector/RGB images are rejected.

Voxel values are read with nibabel, because ITK's NIfTI reader silently replaces NaN and inf with 0.
scl_slope / scl_inter are applied; scaled integer data comes back as ``float32``.
"""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk  # noqa: N813 (the library's own convention)
from nibabel.filebasedimages import ImageFileError

from radvlsm.errors import ImageReadError
from radvlsm.io.record import ImageRecord, Modality, VolumeGeometry

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")

_NIB_ERRORS = (
    ImageFileError,
    OSError,
    EOFError,
    ValueError,
    KeyError,
    TypeError,
    IndexError,
    struct.error,
    zlib.error,
    MemoryError,
)
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def is_nifti_name(path: Path) -> bool:
    """True for ``*.nii`` and ``*.nii.gz`` (case-insensitive)."""
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def geometry_from_sitk(image: sitk.Image) -> VolumeGeometry:
    """The :class:`VolumeGeometry` of a 3-D SimpleITK image."""
    return VolumeGeometry(spacing=image.GetSpacing(), origin=image.GetOrigin(), direction=image.GetDirection())


def _geometry_from_affine(affine: np.ndarray) -> VolumeGeometry:
    """LPS geometry of a NIfTI RAS affine (voxel (i, j, k) -> world mm)."""
    lps = _RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)[:3]
    columns = lps[:, :3]
    spacing = np.linalg.norm(columns, axis=0)
    spacing[spacing == 0] = 1.0
    return VolumeGeometry(
        spacing=tuple(spacing),  # type: ignore[arg-type]
        origin=tuple(lps[:, 3]),  # type: ignore[arg-type]
        direction=tuple((columns / spacing).ravel()),  # type: ignore[arg-type]
    )


#: Departure from right angles between voxel axes (degrees) beyond which an affine counts as sheared.
_SHEAR_TOLERANCE_DEG = 0.1


def _shear_degrees(affine: np.ndarray) -> float:
    """The largest departure from 90° between two voxel axes of ``affine`` (0 for an orthogonal grid)."""
    cols = np.asarray(affine, dtype=np.float64)[:3, :3]
    norms = np.linalg.norm(cols, axis=0)
    if np.any(norms == 0):
        return 0.0
    unit = cols / norms
    cosines = np.abs(unit.T @ unit)[np.triu_indices(3, 1)]
    return float(np.degrees(np.arcsin(np.clip(cosines.max(), 0.0, 1.0))))


def read_nifti(path: Path, *, modality_hint: Modality | None = None) -> ImageRecord:
    """Read a 2-D or 3-D NIfTI image as a volume record.

    Returns:
        ``pixels`` ``(Z, Y, X)`` in the stored type after scl_slope/scl_inter (``float32`` HU when
        ``modality_hint`` is CT), ``geometry`` in LPS, ``pixel_spacing_mm`` = (y, x) spacing,
        ``modality`` = ``modality_hint`` or ``OT`` (NIfTI does not record it).

    Raises:
        ImageReadError: not NIfTI, truncated, 4-D, vector or RGB voxels, invalid geometry.
    """
    try:
        header_img = nib.load(str(path))
        shape = tuple(int(v) for v in header_img.shape)
        stored = header_img.header.get_data_dtype()
    except PermissionError as exc:
        raise ImageReadError(path, "permission denied: the file is not readable") from exc
    except _NIB_ERRORS as exc:
        raise ImageReadError(path, f"not a readable NIfTI file: {exc}") from exc
    if stored.names is not None:
        raise ImageReadError(path, f"NIfTI with compound voxels ({stored}) such as RGB is not supported")
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) > 3:
        raise ImageReadError(
            path,
            f"{len(shape)}-D NIfTI ({'x'.join(map(str, shape))} voxels) is not supported: only 2-D and "
            "3-D images are (split the time points / components first)",
        )
    if len(shape) < 2:
        raise ImageReadError(path, f"NIfTI with {len(shape)} dimension(s) is not an image")
    shear = _shear_degrees(header_img.affine)
    if shear > _SHEAR_TOLERANCE_DEG:
        raise ImageReadError(path, f"the NIfTI affine is sheared (voxel axes {shear:.1f}° off a right angle): "
                                   "masks could not keep its geometry; resample it onto orthogonal axes first")
    try:
        if len(shape) == 3:
            info = sitk.ImageFileReader()
            info.SetFileName(str(path))
            info.ReadImageInformation()  # header only: the geometry exactly as ITK derives it
            if info.GetNumberOfComponents() != 1:
                raise ImageReadError(path, "NIfTI with vector voxels is not supported")
            geometry = VolumeGeometry(spacing=info.GetSpacing(), origin=info.GetOrigin(), direction=info.GetDirection())
        else:
            geometry = _geometry_from_affine(header_img.affine)
        # Voxels through nibabel: ITK's NIfTI reader silently turns NaN and inf into 0.
        data = np.asanyarray(header_img.dataobj).reshape(shape)
    except ImageReadError:
        raise
    except RuntimeError as exc:  # SimpleITK reports every failure as RuntimeError
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "rror" in ln), lines[-1] if lines else "")
        raise ImageReadError(path, f"cannot read NIfTI: {detail[:200]}") from exc
    except _NIB_ERRORS as exc:
        raise ImageReadError(path, f"cannot read NIfTI voxels or geometry: {exc}") from exc
    if data.dtype.kind == "f" and data.dtype != stored:
        data = data.astype(np.float32)  # scl_slope / scl_inter applied (nibabel computes in float64)
    # NIfTI voxels are (x, y[, z]); records are [z, y, x].
    pixels = np.ascontiguousarray(data.T if data.ndim == 3 else data.T[np.newaxis])
    modality = modality_hint or Modality.OT
    if modality is Modality.CT and pixels.dtype != np.float32:
        pixels = pixels.astype(np.float32)
    return ImageRecord(
        path=path,
        pixels=pixels,
        modality=modality,
        original_dtype=str(stored),
        pixel_spacing_mm=(geometry.spacing[1], geometry.spacing[0]),
        geometry=geometry,
        frames=1,
        source_format="nifti",
    )

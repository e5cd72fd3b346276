"""The typed record every reader returns."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np


class Modality(str, Enum):
    """Imaging modality, named by its DICOM code (tag (0008,0060)) where one exists."""

    CT = "CT"
    MR = "MR"
    MG = "MG"  # mammography
    CR = "CR"  # computed radiography
    DX = "DX"  # digital radiography
    PT = "PT"  # positron emission tomography
    US = "US"  # ultrasound
    ES = "ES"  # endoscopy (colonoscopy)
    XC = "XC"  # external-camera photography (dermoscopy)
    OT = "OT"  # other / unknown (plain image files carry no modality)

    @classmethod
    def from_dicom(cls, code: str | None) -> Modality:
        try:
            return cls(str(code).strip().upper())
        except ValueError:
            return cls.OT


@dataclass(frozen=True)
class VolumeGeometry:
    """Physical geometry of a volume, in the ITK / DICOM patient (LPS) convention.

    ``spacing``, ``origin`` are (x, y, z) in millimetres; ``direction`` is the 3x3 direction-cosine matrix,
    row-major, whose columns are the directions of the x, y and z voxel axes. The pixel array of a volume
    record is indexed ``[z, y, x]`` (as SimpleITK's ``GetArrayFromImage`` returns it).
    """

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, float, float, float, float, float, float, float, float]

    def __post_init__(self) -> None:
        spacing = tuple(float(v) for v in self.spacing)
        origin = tuple(float(v) for v in self.origin)
        direction = tuple(float(v) for v in self.direction)
        if len(spacing) != 3 or len(origin) != 3 or len(direction) != 9:
            raise ValueError("VolumeGeometry needs 3 spacings, 3 origin coordinates and 9 direction cosines")
        if not all(np.isfinite(v) and v > 0 for v in spacing):
            raise ValueError(f"voxel spacing must be positive and finite, got {spacing}")
        if not all(np.isfinite(v) for v in origin + direction):
            raise ValueError("origin and direction must be finite")
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "direction", direction)

    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    def index_to_physical(self, ijk: np.ndarray) -> np.ndarray:
        """Map voxel indices ``(..., 3)`` in (x, y, z) order to physical points in mm."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return np.asarray(self.origin) + (ijk * np.asarray(self.spacing)) @ self.direction_matrix().T

    def physical_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """Map physical points ``(..., 3)`` in mm to continuous voxel indices in (x, y, z) order."""
        xyz = np.asarray(xyz, dtype=np.float64) - np.asarray(self.origin)
        return (xyz @ np.linalg.inv(self.direction_matrix()).T) / np.asarray(self.spacing)


@dataclass(frozen=True, eq=False)
class ImageRecord:
    """One image or volume as read from disk.

    Attributes:
        path: the file (or, for a DICOM series, the folder) it came from.
        pixels: read-only array. 2-D images: ``(H, W)`` grayscale or ``(H, W, 3)`` RGB, in the stored bit
            depth (``uint8`` or ``uint16``); CT is rescaled to Hounsfield units (``float32``). Volumes:
            ``(Z, Y, X)``.
        modality: DICOM modality code, ``OT`` when the file does not say.
        original_dtype: the dtype the file stored (before any rescale to HU).
        pixel_spacing_mm: ``(row, column)`` spacing of a 2-D image (or of a volume's slices) in mm, ``None``
            when unknown (plain image files).
        geometry: full geometry of a volume; ``None`` for 2-D images (and for multi-frame stacks such as an
            ultrasound cine, whose frames are a time series, not a stack of slices).
        series_uid: DICOM SeriesInstanceUID when the input was DICOM.
        instance_uids: for a DICOM series volume, the SOPInstanceUID of each slice in ``z`` order (what an
            RTSTRUCT's contours refer to); ``None`` otherwise.
        frames: number of frames of a multi-frame 2-D input (DICOM cine, multi-page TIFF). When ``frames > 1``
            and the record is not a volume, ``pixels`` is ``(F, H, W)`` or ``(F, H, W, 3)``.
        source_format: what the content was read as: ``"png"``, ``"jpeg"``, ``"bmp"``, ``"tiff"``,
            ``"dicom"`` (one file), ``"dicom-series"`` (a folder) or ``"nifti"``; empty when built in memory.
    """

    path: Path
    pixels: np.ndarray
    modality: Modality = Modality.OT
    original_dtype: str = "uint8"
    pixel_spacing_mm: tuple[float, float] | None = None
    geometry: VolumeGeometry | None = None
    series_uid: str | None = None
    frames: int = field(default=1)
    source_format: str = ""
    instance_uids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.pixels.flags.writeable:
            arr = self.pixels.view()
            arr.flags.writeable = False
            object.__setattr__(self, "pixels", arr)

    @property
    def is_volume(self) -> bool:
        """True for a 3-D volume (``pixels`` indexed ``[z, y, x]``, ``geometry`` set)."""
        return self.geometry is not None

    @property
    def is_multiframe(self) -> bool:
        """True for a 2-D frame stack (cine, multi-page TIFF): ``pixels`` is ``(F, H, W[, 3])``."""
        return self.geometry is None and self.frames > 1

    def frame(self, index: int) -> ImageRecord:
        """Frame ``index`` (from 0) of a frame stack, as a 2-D image of its own (same file, modality, spacing).

        Raises:
            ValueError: the record is not a frame stack, or has no such frame.
        """
        if not self.is_multiframe:
            raise ValueError(f"{self.path}: not a frame stack")
        if not 0 <= index < self.frames:
            raise ValueError(f"{self.path}: has frames 0..{self.frames - 1}, not {index}")
        return dataclasses.replace(self, pixels=self.pixels[index], frames=1)

    @property
    def is_rgb(self) -> bool:
        """True when the pixels carry three colour channels in the last axis."""
        base = 3 if (self.is_volume or self.is_multiframe) else 2
        return self.pixels.ndim == base + 1 and self.pixels.shape[-1] == 3

    @property
    def stem(self) -> str:
        """Case id: file name without its (possibly double, ``.nii.gz``) extension."""
        return case_stem(self.path)

    @property
    def size_hw(self) -> tuple[int, int]:
        """(height, width) of a 2-D image, of one slice of a volume or of one frame of a frame stack."""
        if self.is_volume or self.is_multiframe:
            return int(self.pixels.shape[1]), int(self.pixels.shape[2])
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


_DOUBLE_SUFFIXES = (".nii.gz",)


def case_stem(path: str | Path) -> str:
    """File name without its extension, treating ``.nii.gz`` as one extension."""
    name = Path(path).name
    low = name.lower()
    for suf in _DOUBLE_SUFFIXES:
        if low.endswith(suf):
            return name[: -len(suf)]
    return Path(name).stem

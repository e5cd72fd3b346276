"""Builders for the reporting tests: synthetic masks, colour images and in-memory image records.

Exposed as fixtures (pytest runs with ``--import-mode=importlib``: test modules cannot import a helper module).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from radvlsm.io import ImageRecord, Modality, VolumeGeometry


def _disc(shape: tuple[int, int] = (200, 200), radius: int = 60, centre: tuple[int, int] | None = None) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    c = centre or (shape[1] // 2, shape[0] // 2)
    cv2.circle(m, c, radius, 1, -1)
    return m.astype(bool)


def _ellipse(shape: tuple[int, int], axes: tuple[int, int], angle: float = 0.0) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.ellipse(m, (shape[1] // 2, shape[0] // 2), axes, angle, 0, 360, 1, -1)
    return m.astype(bool)


def lab_to_rgb(lab: tuple[float, float, float]) -> tuple[int, int, int]:
    """CIELAB (D65) to 8-bit sRGB."""
    px = np.array([[lab]], dtype=np.float32)
    rgb = cv2.cvtColor(px, cv2.COLOR_LAB2RGB)[0, 0]
    return tuple(int(v) for v in np.clip(np.rint(rgb * 255), 0, 255))  # type: ignore[return-value]


def _record(pixels: np.ndarray, *, path: str = "case.png", modality: Modality = Modality.OT,
            spacing: tuple[float, float] | None = None) -> ImageRecord:
    return ImageRecord(path=Path(path), pixels=pixels, modality=modality, pixel_spacing_mm=spacing,
                       original_dtype=str(pixels.dtype), source_format="png")


def _volume(hu: np.ndarray, spacing: tuple[float, float, float] = (0.7, 0.7, 1.25),
            path: str = "nodule.nii.gz") -> ImageRecord:
    geo = VolumeGeometry(spacing, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    return ImageRecord(path=Path(path), pixels=hu.astype(np.float32), modality=Modality.CT, original_dtype="int16",
                       pixel_spacing_mm=(spacing[1], spacing[0]), geometry=geo, source_format="nifti")


@pytest.fixture
def disc() -> Callable[..., np.ndarray]:
    return _disc


@pytest.fixture
def ellipse() -> Callable[..., np.ndarray]:
    return _ellipse


@pytest.fixture
def to_rgb() -> Callable[[tuple[float, float, float]], tuple[int, int, int]]:
    return lab_to_rgb


@pytest.fixture
def record() -> Callable[..., ImageRecord]:
    return _record


@pytest.fixture
def volume() -> Callable[..., ImageRecord]:
    return _volume

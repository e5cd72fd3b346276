"""Shared fixtures. Tests that need the shared datasets skip, with the reason, when they are absent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

from radvlsm.data.paths import ENV_VAR, shared_datasets_root


def _dataset(name: str) -> Path:
    root = shared_datasets_root() / name
    if not root.is_dir():
        pytest.skip(f"shared dataset {name!r} not found at {root} (set {ENV_VAR} to its parent folder)")
    return root


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    root = shared_datasets_root()
    if not root.is_dir():
        pytest.skip(f"shared datasets not found at {root} (set {ENV_VAR})")
    return root


@pytest.fixture(scope="session")
def ph2_root() -> Path:
    return _dataset("ph2")


@pytest.fixture(scope="session")
def kvasir_root() -> Path:
    return _dataset("kvasir-seg")


@pytest.fixture(scope="session")
def busi_root() -> Path:
    return _dataset("busi")


@pytest.fixture(scope="session")
def ibsi_phantom_root() -> Path:
    return _dataset("ct-studies/ibsi-lung-phantom")


@pytest.fixture(scope="session")
def lidc_root() -> Path:
    return _dataset("lidc-nodules")


def write_us_cine(path: Path, frames: np.ndarray, modality: str = "US") -> Path:
    """A multi-frame DICOM (ultrasound cine) of ``frames (F, H, W)`` uint8 MONOCHROME2, Modality ``modality``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.SeriesInstanceUID = generate_uid()
    ds.NumberOfFrames = frames.shape[0]
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(frames, dtype=np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture()
def us_cine() -> Callable[..., Path]:
    """``us_cine(path, frames, modality="US")`` writes a multi-frame DICOM (see :func:`write_us_cine`)."""
    return write_us_cine

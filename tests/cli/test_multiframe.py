"""A multi-frame ultrasound DICOM (a cine) is segmented frame by frame, each frame its own case."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid
from typer.testing import CliRunner

from radvlsm.cli.app import app
from radvlsm.stage2_segment.build import DEFAULT_WEIGHTS_DIR

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"


def write_cine(path: Path, frames: np.ndarray) -> Path:
    """An ultrasound multi-frame DICOM of ``frames (F, H, W)`` uint8 MONOCHROME2."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.SeriesInstanceUID = generate_uid()
    ds.NumberOfFrames = frames.shape[0]
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_cine_frames_become_cases(tmp_path: Path) -> None:
    if not (DEFAULT_WEIGHTS_DIR / "model.safetensors").is_file():
        pytest.skip(f"the embedded default segmenter is not in {DEFAULT_WEIGHTS_DIR}")
    img = cv2.imread(str(SAMPLES / "images" / "bus_0009-l.jpg"), cv2.IMREAD_GRAYSCALE)
    frames = np.stack([img, np.roll(img, 2, axis=1), np.roll(img, 4, axis=1)])
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_cine(inputs / "cine.dcm", frames)
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("image,x0,y0,x1,y1\ncine,16,29,126,107\n")  # one box for the whole cine
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["segment", str(inputs), "-o", str(out), "--boxes", str(boxes), "--threads", "2"])
    assert res.exit_code == 0, res.output
    with (out / "results.csv").open(newline="") as fh:
        rows = {r["image"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"cine_f0000", "cine_f0001", "cine_f0002"}
    for cid in rows:
        mask = cv2.imread(str(out / "masks" / f"{cid}.png"), cv2.IMREAD_GRAYSCALE)
        assert mask.shape == img.shape
    # a rerun knows the cine is done
    res = CliRunner().invoke(app, ["segment", str(inputs), "-o", str(out), "--boxes", str(boxes), "--threads", "2"])
    assert res.exit_code == 0 and "1 already done" in " ".join(res.output.split())

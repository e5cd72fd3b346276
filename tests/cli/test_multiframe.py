"""A multi-frame ultrasound DICOM (a cine) is segmented frame by frame, each frame its own case, with the
ultrasound models its Modality tag asks for."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from radvlsm.cli.app import app
from radvlsm.stage2_segment.build import EMBEDDED_MODELS

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"


def test_cine_frames_become_cases(tmp_path: Path, us_cine: Callable[..., Path]) -> None:
    if not (EMBEDDED_MODELS["ultrasound"] / "model.safetensors").is_file():
        pytest.skip(f"the embedded ultrasound segmenter is not in {EMBEDDED_MODELS['ultrasound']}")
    img = cv2.imread(str(SAMPLES / "images" / "bus_0009-l.jpg"), cv2.IMREAD_GRAYSCALE)
    frames = np.stack([img, np.roll(img, 2, axis=1), np.roll(img, 4, axis=1)])
    inputs = tmp_path / "in"
    inputs.mkdir()
    us_cine(inputs / "cine.dcm", frames)
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
    # the report of the segment folder measures each frame on its own mask
    res = CliRunner().invoke(app, ["report", str(out), "-o", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    for cid in rows:
        report = json.loads((tmp_path / "rep" / "reports" / f"{cid}.json").read_text(encoding="utf-8"))
        mask = cv2.imread(str(out / "masks" / f"{cid}.png"), cv2.IMREAD_GRAYSCALE)
        assert report["findings"]["lesion"]["area"] == (mask > 0).sum(), cid

"""The model set each modality picks, and the command line's --modality."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from radvlsm.cli.app import app
from radvlsm.fusion.predictor import EMBEDDED_HEADS
from radvlsm.pipeline.inputs import InputItem
from radvlsm.pipeline.modality import MODEL_SETS, Modality, group_by_modality, modality_of, model_set
from radvlsm.stage1_localize.build import EMBEDDED_LOCALIZERS
from radvlsm.stage2_segment.build import EMBEDDED_MODELS


def test_every_modality_names_embedded_models() -> None:
    assert set(MODEL_SETS) == set(Modality)
    for mod, models in MODEL_SETS.items():
        assert models.segmenter in EMBEDDED_MODELS
        assert models.head is None or models.head in EMBEDDED_HEADS
        if mod.is_volume:  # CT: nodules from --points, no text-prompted localizer
            assert models.localizer is None
            continue
        assert models.localizer in EMBEDDED_LOCALIZERS
        # the localizer reads the features of the segmenter of the same name
        assert models.segmenter == models.localizer
    assert model_set(None) == MODEL_SETS[Modality.DERMOSCOPY]
    assert model_set(Modality.ULTRASOUND).segmenter == "ultrasound"


def test_unknown_modality_and_missing_head_are_clear_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["segment", str(tmp_path), "-o", str(tmp_path / "out"), "--modality", "xray"])
    assert res.exit_code == 2 and "xray" in res.output and "ultrasound" in res.output
    res = runner.invoke(app, ["diagnose", str(tmp_path), "-o", str(tmp_path / "out"), "--modality", "colonoscopy"])
    assert res.exit_code == 2 and "no diagnosis head for colonoscopy" in " ".join(res.output.split())


def test_dicom_inputs_go_by_their_modality_tag(tmp_path: Path, us_cine: Callable[..., Path]) -> None:
    frames = np.full((2, 32, 32), 100, np.uint8)
    us = us_cine(tmp_path / "cine.dcm", frames)
    scope = us_cine(tmp_path / "scope", frames, modality="ES")  # DICOM files need no ending
    ct = us_cine(tmp_path / "ct.dcm", frames, modality="CT")
    jpeg = tmp_path / "photo.jpg"
    jpeg.write_bytes(b"not an image: its reader will say so later")
    assert modality_of(us) is Modality.ULTRASOUND and modality_of(scope) is Modality.COLONOSCOPY
    assert modality_of(ct) is Modality.CT and modality_of(jpeg) is None
    series = tmp_path / "series"
    series.mkdir()
    assert modality_of(series) is None  # a folder goes by its first DICOM file that names a modality
    us_cine(series / "a.dcm", frames, modality="OT")
    us_cine(series / "b.dcm", frames, modality="CT")
    assert modality_of(series) is Modality.CT
    nifti = tmp_path / "vol.nii.gz"
    nifti.write_bytes(b"")
    assert modality_of(nifti) is Modality.CT  # the only volumes radvlsm has models for
    items = [InputItem(p.name, p) for p in (jpeg, us, ct, scope)]
    groups = group_by_modality(items)
    assert [(m, [i.case_id for i in g]) for m, g in groups] == [
        (None, ["photo.jpg"]), (Modality.ULTRASOUND, ["cine.dcm"]), (Modality.CT, ["ct.dcm"]),
        (Modality.COLONOSCOPY, ["scope"])]
    assert group_by_modality(items, Modality.DERMOSCOPY) == [(Modality.DERMOSCOPY, items)]


def test_plain_images_in_grey_are_taken_as_ultrasound() -> None:
    samples = Path(__file__).resolve().parents[2] / "data" / "samples" / "images"
    found = {p.stem: modality_of(p) for p in samples.iterdir()}
    assert found["bus_0007-l"] is Modality.ULTRASOUND and found["bus_0009-l"] is Modality.ULTRASOUND
    assert found["IMD009"] is None and found["cju0rx1idathl0835detmsp84"] is None  # colour: the defaults

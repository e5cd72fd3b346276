"""The model set each modality picks, and the command line's --modality."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from radvlsm.cli.app import app
from radvlsm.fusion.predictor import EMBEDDED_HEADS
from radvlsm.pipeline.modality import MODEL_SETS, Modality, model_set
from radvlsm.stage1_localize.build import EMBEDDED_LOCALIZERS
from radvlsm.stage2_segment.build import EMBEDDED_MODELS


def test_every_modality_names_embedded_models() -> None:
    assert set(MODEL_SETS) == set(Modality)
    for models in MODEL_SETS.values():
        assert models.segmenter in EMBEDDED_MODELS and models.localizer in EMBEDDED_LOCALIZERS
        assert models.head is None or models.head in EMBEDDED_HEADS
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

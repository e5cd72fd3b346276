"""``radvlsm train diagnoser``: refusals of bad options and inputs (CliRunner; the recipe itself is tested in
tests/fusion/test_train.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from radvlsm.cli.app import app


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["train", "diagnoser", "--threads", "1", *args])
    return result.exit_code, "".join(result.output.split())  # rich wraps long lines


@pytest.fixture(scope="module")
def small_segmenter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small compact segmenter with random weights, saved as a model folder."""
    from radvlsm.stage2_segment.build import build_from_config, save_segmenter
    from radvlsm.stage2_segment.config import SegmenterConfig

    cfg = SegmenterConfig(image_size=64, embed_dim=32, encoder_channels=(8, 16, 16, 32), encoder_blocks=(1, 1, 1),
                          decoder_mlp_dim=64, decoder_heads=4)
    return save_segmenter(build_from_config(cfg), tmp_path_factory.mktemp("segmenter"))


def test_unknown_mask_mode(tmp_path: Path) -> None:
    code, output = _run("--masks", "expert", "--out", str(tmp_path / "run"))
    assert code == 2 and "'expert'isnotoneofgt,predicted" in output
    assert not (tmp_path / "run").exists()


def test_missing_segmenter(tmp_path: Path) -> None:
    code, output = _run("--segmenter", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"))
    assert code == 2 and "nowhere:notamodelspec" in output


def test_missing_dataset(small_segmenter: Path, tmp_path: Path) -> None:
    code, output = _run("--segmenter", str(small_segmenter), "--data", str(tmp_path / "datasets"),
                        "--out", str(tmp_path / "run"))
    assert code == 2 and f"{tmp_path / 'datasets' / 'ph2'}:notadatasetfolder" in output
    assert not (tmp_path / "run").exists()


def test_unknown_task(tmp_path: Path) -> None:
    code, output = _run("--task", "lung", "--out", str(tmp_path / "run"))
    assert code == 2 and "'lung'isnotoneofph2,breast-ultrasound" in output
    assert not (tmp_path / "run").exists()


def test_missing_ultrasound_dataset(small_segmenter: Path, tmp_path: Path) -> None:
    code, output = _run("--task", "breast-ultrasound", "--segmenter", str(small_segmenter), "--data",
                        str(tmp_path / "datasets"), "--out", str(tmp_path / "run"))
    assert code == 2 and f"{tmp_path / 'datasets' / 'busi'}:notadatasetfolder" in output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("recipe", ["segmenter", "localizer", "diagnoser"])
def test_an_output_that_is_a_file_is_refused_before_any_work(recipe: str, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    for out, why in ((tmp_path / "afile", "isafile"), (tmp_path / "afile" / "run", "cannotcreatetheoutputfolder")):
        result = CliRunner().invoke(app, ["train", recipe, "--threads", "1", "--out", str(out)])
        assert result.exit_code == 2 and why in "".join(result.output.split()), result.output

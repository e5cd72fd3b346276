"""``radvlsm evaluate`` end to end on PH2 masks (CliRunner; output holds stdout and stderr)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813
from typer.testing import CliRunner

from radvlsm.cli.app import app

pytestmark = pytest.mark.shared_data

#: Eroded by 3 px: an elliptical 7x7 structuring element, applied once (OpenCV's default border).
ERODE_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
N_SUBSET = 20


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["evaluate", *args])
    return result.exit_code, result.output


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as fh:
        return {r["case_id"]: r for r in csv.DictReader(fh)}


def _summary_line(output: str, metric: str) -> str:
    return next(line for line in output.splitlines() if line.strip("│┃ ").startswith(metric))


@pytest.fixture(scope="module")
def ph2_masks(ph2_root: Path) -> Path:
    return ph2_root / "masks"


@pytest.fixture(scope="module")
def eroded(ph2_masks: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The first 20 PH2 masks (gt/) and the same masks eroded by 3 px (pred/)."""
    root = tmp_path_factory.mktemp("eroded")
    gt, pred = root / "gt", root / "pred"
    gt.mkdir()
    pred.mkdir()
    for p in sorted(ph2_masks.glob("*.png"))[:N_SUBSET]:
        shutil.copy(p, gt / p.name)
        mask = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        assert cv2.imwrite(str(pred / p.name), cv2.erode(mask, ERODE_KERNEL))
    return pred, gt


def test_self_comparison_all_ph2(ph2_masks: Path, tmp_path: Path) -> None:
    out = tmp_path / "metrics.csv"
    code, output = _run(str(ph2_masks), str(ph2_masks), "-o", str(out))
    assert code == 0, output
    rows = _rows(out)
    assert len(rows) == len(list(ph2_masks.glob("*.png"))) == 160
    assert all(r["status"] == "ok" and f"{float(r['dice']):.3f}" == "1.000" for r in rows.values())
    assert all(float(r["hd95"]) == 0.0 for r in rows.values())
    dice_line = _summary_line(output, "Dice")
    assert dice_line.count("1.000") == 2, dice_line  # mean and median
    assert "0.000" in dice_line  # std


def test_eroded_dice_equals_simpleitk(eroded: tuple[Path, Path], tmp_path: Path) -> None:
    pred, gt = eroded
    out = tmp_path / "metrics.csv"
    code, output = _run(str(pred), str(gt), "-o", str(out))
    assert code == 0, output
    rows = _rows(out)
    assert len(rows) == N_SUBSET
    ours, refs = [], []
    for case_id, row in rows.items():
        ov = sitk.LabelOverlapMeasuresImageFilter()
        g = sitk.ReadImage(str(gt / f"{case_id}.png")) > 0
        p = sitk.ReadImage(str(pred / f"{case_id}.png")) > 0
        ov.Execute(g, p)
        assert float(row["dice"]) == pytest.approx(ov.GetDiceCoefficient(), abs=1e-6)
        assert float(row["iou"]) == pytest.approx(ov.GetJaccardCoefficient(), abs=1e-6)
        assert row["unit"] == "px"
        ours.append(float(row["dice"]))
        refs.append(ov.GetDiceCoefficient())
    mean = float(np.mean(ours))
    assert mean == pytest.approx(float(np.mean(refs)), abs=1e-6)
    assert f"{mean:.3f}" in _summary_line(output, "Dice")


def test_spacing_scales_distances(eroded: tuple[Path, Path], tmp_path: Path) -> None:
    pred, gt = eroded
    px, mm = tmp_path / "px.csv", tmp_path / "mm.csv"
    assert _run(str(pred), str(gt), "-o", str(px))[0] == 0
    code, output = _run(str(pred), str(gt), "-o", str(mm), "--spacing", "0.5,0.5")
    assert code == 0, output
    rows_px, rows_mm = _rows(px), _rows(mm)
    for case_id, r in rows_mm.items():
        assert r["unit"] == "mm"
        assert float(r["hd95"]) == pytest.approx(0.5 * float(rows_px[case_id]["hd95"]))
        assert float(r["dice"]) == float(rows_px[case_id]["dice"])
    assert "HD95 [mm]" in output


def test_missing_and_extra_cases_are_listed(ph2_masks: Path, tmp_path: Path) -> None:
    files = sorted(ph2_masks.glob("*.png"))[:5]
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    for p in files:
        shutil.copy(p, gt / p.name)
    for p in files[1:]:
        shutil.copy(p, pred / p.name)
    extra = sorted(ph2_masks.glob("*.png"))[10]
    shutil.copy(extra, pred / extra.name)
    out = tmp_path / "metrics.csv"
    code, output = _run(str(pred), str(gt), "-o", str(out))
    assert code == 0, output
    rows = _rows(out)
    missing, extra_id = files[0].stem, extra.stem
    assert rows[missing]["status"] == "missing_pred"
    assert rows[extra_id]["status"] == "missing_gt"
    assert sum(r["status"] == "ok" for r in rows.values()) == 4
    assert missing in output and extra_id in output
    assert "missing_pred" in output and "missing_gt" in output


def test_nothing_matched_fails(ph2_masks: Path, tmp_path: Path) -> None:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    a, b = sorted(ph2_masks.glob("*.png"))[:2]
    shutil.copy(a, gt / a.name)
    shutil.copy(b, pred / b.name)
    out = tmp_path / "metrics.csv"
    code, output = _run(str(pred), str(gt), "-o", str(out))
    assert code == 1
    assert "nothing evaluated" in output
    assert {r["status"] for r in _rows(out).values()} == {"missing_pred", "missing_gt"}


def test_empty_folders_and_bad_spacing(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    code, output = _run(str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "m.csv"))
    assert code == 1 and "no mask files" in output
    code, output = _run(str(tmp_path / "a"), str(tmp_path / "b"), "--spacing", "0.5,x")
    assert code == 2 and "spacing" in output

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from radvlsm.errors import InputError
from radvlsm.metrics.folder import CSV_COLUMNS, FolderEvaluation, MetricSummary, evaluate_folders
from radvlsm.metrics.segmentation import score_masks


def _disk(shape: tuple[int, int], cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _write(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), mask.astype(np.uint8) * 255)


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path]:
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    shape = (40, 50)
    g = _disk(shape, 20, 25, 12)
    _write(gt / "a.png", g)
    _write(pred / "a.png", g)  # perfect
    _write(gt / "b.png", g)
    _write(pred / "b.bmp", _disk(shape, 20, 28, 12))  # other extension, shifted
    _write(gt / "c.png", g)
    _write(pred / "c.png", np.zeros(shape, bool))  # empty prediction: HD95 NaN
    _write(gt / "d.png", g)  # no prediction
    _write(pred / "e.png", g)  # no ground truth
    _write(gt / "f.png", g)
    (pred / "f.png").write_bytes(b"not a png at all")  # unreadable
    _write(gt / "g.png", g)
    _write(pred / "g.png", np.ones((41, 50), bool))  # size mismatch
    _write(gt / "h.png", g)
    _write(pred / "h.png", g)
    _write(pred / "h.tif", g)  # two predictions for one case
    (gt / "notes.txt").write_text("ignored")
    (gt / ".hidden.png").write_bytes(b"")
    return pred, gt


def test_every_case_is_a_row(folders: tuple[Path, Path]) -> None:
    calls: list[tuple[int, int, str]] = []
    ev = evaluate_folders(*folders, progress=lambda d, t, c: calls.append((d, t, c)))
    assert isinstance(ev, FolderEvaluation)
    rows = {c.case_id: c for c in ev.cases}
    assert list(rows) == ["a", "b", "c", "d", "e", "f", "g", "h"]
    status = {k: v.status for k, v in rows.items()}
    assert status == {
        "a": "ok", "b": "ok", "c": "ok", "d": "missing_pred", "e": "missing_gt", "f": "error", "g": "error",
        "h": "error",
    }
    assert rows["a"].dice == 1.0 and rows["a"].hd95 == 0.0 and rows["a"].unit == "px"
    assert rows["b"].pred_file == "b.bmp" and 0 < rows["b"].dice < 1 and rows["b"].hd95 > 0
    assert rows["c"].dice == 0.0 and math.isnan(rows["c"].hd95)
    assert rows["f"].reason.startswith("pred:")
    assert "size mismatch" in rows["g"].reason and "50x41" in rows["g"].reason and "50x40" in rows["g"].reason
    assert "ambiguous" in rows["h"].reason and "h.png" in rows["h"].reason and "h.tif" in rows["h"].reason
    assert [c.case_id for c in ev.missing_pred] == ["d"]
    assert [c.case_id for c in ev.missing_gt] == ["e"]
    assert [c.case_id for c in ev.errors] == ["f", "g", "h"]
    assert len(calls) == 8 and calls[-1][:2] == (8, 8)
    # Summary over a, b, c; NaN-aware for HD95.
    dices = [rows[k].dice for k in "abc"]
    assert ev.summary["dice"] == MetricSummary(
        float(np.mean(dices)), float(np.median(dices)), float(np.std(dices)), 3
    )
    hds = [rows["a"].hd95, rows["b"].hd95]
    assert ev.summary["hd95"].n == 2 and ev.summary["hd95"].mean == pytest.approx(np.mean(hds))
    assert ev.n_nan_hd95 == 1 and ev.unit == "px"


def test_spacing_and_csv(folders: tuple[Path, Path], tmp_path: Path) -> None:
    ev_px = evaluate_folders(*folders)
    ev = evaluate_folders(*folders, spacing=(0.5, 0.5))
    b_px = next(c for c in ev_px.cases if c.case_id == "b")
    b = next(c for c in ev.cases if c.case_id == "b")
    assert b.unit == "mm" and b.hd95 == pytest.approx(0.5 * b_px.hd95) and b.dice == b_px.dice
    assert b.gt_area == pytest.approx(0.25 * b_px.gt_area)
    out = tmp_path / "out" / "metrics.csv"
    out.parent.mkdir()
    out.write_text("old content")
    assert ev.write_csv(out) == out
    assert sorted(p.name for p in out.parent.iterdir()) == ["metrics.csv"]  # no temp file left behind
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS
    by_id = {r["case_id"]: r for r in rows}
    assert float(by_id["b"]["hd95"]) == b.hd95  # full precision
    assert by_id["c"]["hd95"] == "nan"
    assert by_id["d"]["status"] == "missing_pred" and by_id["d"]["dice"] == ""
    assert by_id["f"]["status"] == "error" and by_id["f"]["reason"]


def test_spacing_of_wrong_length_is_an_error_row(folders: tuple[Path, Path]) -> None:
    ev = evaluate_folders(*folders, spacing=(1.0, 1.0, 1.0))
    assert not ev.evaluated
    assert all("spacing" in c.reason for c in ev.cases if c.case_id in "abc")
    with pytest.raises(ValueError, match="positive"):
        evaluate_folders(*folders, spacing=(1.0, -1.0))
    # one value serves every axis
    one, two = evaluate_folders(*folders, spacing=(0.5,)), evaluate_folders(*folders, spacing=(0.5, 0.5))
    assert [c.hd95 for c in one.cases] == [c.hd95 for c in two.cases] and one.evaluated


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such folder"):
        evaluate_folders(tmp_path / "nope", tmp_path)


def _write_volume(path: Path, arr: np.ndarray, spacing_xyz: tuple[float, float, float],
                  origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
                  direction: tuple[float, ...] = (1, 0, 0, 0, 1, 0, 0, 0, 1)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing_xyz)
    img.SetOrigin(origin)
    img.SetDirection(tuple(float(v) for v in direction))
    sitk.WriteImage(img, str(path))


def test_nifti_cases_are_scored_in_mm(tmp_path: Path) -> None:
    """.nii.gz files pair by case id and are scored with the header's spacing, in array (z, y, x) order."""
    vol = np.zeros((6, 20, 22), np.uint8)
    vol[2:5, 5:15, 6:16] = 1
    shifted = np.roll(vol, 1, axis=0)
    spacing_xyz = (0.8, 0.7, 3.0)
    _write_volume(tmp_path / "gt" / "case1.nii.gz", vol, spacing_xyz)
    _write_volume(tmp_path / "pred" / "case1.nii.gz", shifted, spacing_xyz)
    ev = evaluate_folders(tmp_path / "pred", tmp_path / "gt")
    [row] = ev.cases
    assert (row.case_id, row.status, row.unit) == ("case1", "ok", "mm")
    assert row.dice == pytest.approx(score_masks(shifted, vol).dice)
    assert row.hd95 == pytest.approx(score_masks(shifted, vol, spacing=(3.0, 0.7, 0.8)).hd95)


def test_volumes_on_different_grids_are_errors_not_perfect_scores(tmp_path: Path) -> None:
    vol = np.zeros((6, 20, 22), np.uint8)
    vol[2:5, 5:15, 6:16] = 1
    _write_volume(tmp_path / "gt" / "moved.nii.gz", vol, (0.8, 0.7, 3.0))
    _write_volume(tmp_path / "pred" / "moved.nii.gz", vol, (0.8, 0.7, 3.0), origin=(50.0, 0.0, 0.0))
    _write_volume(tmp_path / "gt" / "flipped.nii.gz", vol, (0.8, 0.7, 3.0))
    _write_volume(tmp_path / "pred" / "flipped.nii.gz", vol, (0.8, 0.7, 3.0), direction=(1, 0, 0, 0, -1, 0, 0, 0, 1))
    _write_volume(tmp_path / "gt" / "thick.nii.gz", vol, (0.8, 0.7, 3.0))
    _write_volume(tmp_path / "pred" / "thick.nii.gz", vol, (0.8, 0.7, 5.0))
    rows = {c.case_id: c for c in evaluate_folders(tmp_path / "pred", tmp_path / "gt").cases}
    assert {c: r.status for c, r in rows.items()} == {"moved": "error", "flipped": "error", "thick": "error"}
    assert "geometry mismatch" in rows["moved"].reason and "origin" in rows["moved"].reason
    assert "direction" in rows["flipped"].reason and "spacing" in rows["thick"].reason
    # an explicit spacing says the user scores the arrays as they are
    rows = {c.case_id: c for c in evaluate_folders(tmp_path / "pred", tmp_path / "gt", spacing=(3, 0.7, 0.8)).cases}
    assert rows["moved"].status == "ok" and rows["moved"].dice == 1.0


def test_failed_write_leaves_no_temp_file(folders: tuple[Path, Path], tmp_path: Path) -> None:
    target = tmp_path / "out" / "metrics.csv"
    target.mkdir(parents=True)  # a folder where the file should go: the final replace fails
    with pytest.raises(OSError):
        evaluate_folders(*folders).write_csv(target)
    assert list(target.parent.iterdir()) == [target]

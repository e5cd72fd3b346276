"""``radvlsm radiomics`` end to end on PH2 cases (CliRunner; output holds stdout and stderr)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from radvlsm.cli.app import app

pytestmark = pytest.mark.shared_data

CASES = ("IMD002", "IMD003")


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["radiomics", *args])
    return result.exit_code, result.output


def _squeeze(text: str) -> str:
    """The output without any whitespace: rich wraps long log lines anywhere, even inside a word."""
    return "".join(text.split())


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return {r["case_id"]: r for r in csv.DictReader(fh)}


@pytest.fixture
def folders(ph2_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Two PH2 cases with their masks, and one image (IMD004) whose mask is missing."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for c in CASES:
        shutil.copy(ph2_root / "images" / f"{c}.jpg", images)
        shutil.copy(ph2_root / "masks" / f"{c}.png", masks)
    shutil.copy(ph2_root / "images" / "IMD004.jpg", images)
    return images, masks


def test_extracts_resumes_and_lists_errors(folders: tuple[Path, Path], tmp_path: Path) -> None:
    images, masks = folders
    out = tmp_path / "out" / "features.csv"
    code, output = _run(str(images), str(masks), "-o", str(out), "--workers", "1")
    assert code == 0, output
    rows = _rows(out)
    assert list(rows) == list(CASES)
    first = next(iter(rows.values()))
    assert list(first)[:4] == ["case_id", "mask", "image", "original_shape2D_Elongation"]
    assert "original_glcm_Contrast" in first
    errors = _rows(tmp_path / "out" / "features_errors.csv")
    assert list(errors) == ["IMD004"]
    assert "no mask" in errors["IMD004"]["reason"]
    assert "2case(s)extracted" in _squeeze(output)
    assert "features_errors.csv" in _squeeze(output)

    before = out.read_bytes()
    code, output = _run(str(images), str(masks), "-o", str(out))
    assert code == 0, output
    assert "0case(s)extracted,2alreadyintheCSV" in _squeeze(output)
    assert out.read_bytes() == before


def test_bad_params_file_names_file_and_key(folders: tuple[Path, Path], tmp_path: Path) -> None:
    images, masks = folders
    params = tmp_path / "typo.yaml"
    params.write_text("setting:\n  binWidht: 5\n")
    out = tmp_path / "features.csv"
    code, output = _run(str(images), str(masks), "-o", str(out), "--params", str(params))
    assert code == 2, output
    assert "typo.yaml" in _squeeze(output)
    assert _squeeze("unknown key 'binWidht' in setting (did you mean 'binWidth'?)") in _squeeze(output)
    assert "Traceback" not in output
    assert not out.exists()


def test_exit_1_when_no_case_has_features(ph2_root: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(ph2_root / "images" / "IMD002.jpg", images)
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "other.png").write_bytes((ph2_root / "masks" / "IMD003.png").read_bytes())
    code, output = _run(str(images), str(tmp_path / "masks"), "-o", str(tmp_path / "f.csv"))
    assert code == 1, output
    assert _rows(tmp_path / "f_errors.csv").keys() == {"IMD002", "other"}


def test_bad_dimension_option(folders: tuple[Path, Path], tmp_path: Path) -> None:
    images, masks = folders
    code, output = _run(str(images), str(masks), "-o", str(tmp_path / "f.csv"), "--dimension", "4d")
    assert code == 2
    assert "2d,3dorauto" in _squeeze(output)


def test_dicom_series_with_rtstruct(ibsi_phantom_root: Path, tmp_path: Path) -> None:
    series = ibsi_phantom_root / "dicom" / "image"
    rs = next((ibsi_phantom_root / "dicom" / "rtstruct").glob("*.dcm"))
    params = tmp_path / "light.yaml"
    params.write_text("featureClass:\n  shape:\n  firstorder:\nsetting:\n  binWidth: 25\n")
    out = tmp_path / "f.csv"
    code, output = _run(str(series), "--rtstruct", str(rs), "--roi", "GTV-1", "-o", str(out), "--params",
                        str(params), "--workers", "1")
    assert code == 0, output
    assert "1case(s)extracted" in _squeeze(output) and "3D" in output
    row = _rows(out)["image"]
    assert float(row["original_shape_VoxelVolume"]) == pytest.approx(125256 * 0.977 * 0.977 * 3.0, rel=1e-6)

    code, output = _run(str(series), "--rtstruct", str(rs), "--roi", "Liver", "-o", str(tmp_path / "g.csv"),
                        "--params", str(params), "--workers", "1")
    assert code == 1, output
    reason = _rows(tmp_path / "g_errors.csv")["image"]["reason"]
    assert reason == "mask: no ROI named 'Liver' in the RTSTRUCT; it has: 'GTV-1'"


def test_rtstruct_with_masks_is_a_usage_error(ibsi_phantom_root: Path, tmp_path: Path) -> None:
    series = ibsi_phantom_root / "dicom" / "image"
    rs = next((ibsi_phantom_root / "dicom" / "rtstruct").glob("*.dcm"))
    code, output = _run(str(series), str(ibsi_phantom_root / "nifti"), "--rtstruct", str(rs), "-o",
                        str(tmp_path / "f.csv"))
    assert code == 2, output
    assert "giveeitherMASKSoranRTSTRUCT,notboth" in _squeeze(output)


def test_ibsi_processing_options(ibsi_phantom_root: Path, tmp_path: Path) -> None:
    series = ibsi_phantom_root / "dicom" / "image"
    rs = next((ibsi_phantom_root / "dicom" / "rtstruct").glob("*.dcm"))
    params = tmp_path / "light.yaml"  # 2 mm isotropic, trilinear, like IBSI configuration C
    params.write_text(
        "featureClass:\n  shape:\n  firstorder:\nsetting:\n  binWidth: 25\n  resampledPixelSpacing: [2, 2, 2]\n"
        "  interpolator: sitkLinear\n"
    )
    common = (str(series), "--rtstruct", str(rs), "--roi", "GTV-1", "--params", str(params), "--workers", "1")
    out = tmp_path / "f.csv"
    code, output = _run(*common, "-o", str(out), "--ibsi", "--ibsi-range-first=-1000,400")
    assert code == 0, output
    row = _rows(out)["image"]
    # Shape on the interpolated mask before the range: IBSI's 45985 voxels of 8 mm3, within 0.1%.
    assert float(row["original_shape_VoxelVolume"]) == pytest.approx(45985 * 8.0, rel=1e-3)
    assert float(row["original_firstorder_Minimum"]) >= -1000  # the first range applied to the intensities
    # Completing the CSV without the same processing is refused, naming what differs.
    code, output = _run(*common, "-o", str(out))
    assert code == 2
    assert "ibsi_processing" in _squeeze(output) and "--overwrite" in _squeeze(output)
    # The range needs --ibsi, and must be LOW,HIGH.
    code, output = _run(*common, "-o", str(tmp_path / "g.csv"), "--ibsi-range-first=-1000,400")
    assert code == 2 and "needs--ibsi" in _squeeze(output)
    code, output = _run(*common, "-o", str(tmp_path / "g.csv"), "--ibsi", "--ibsi-range-first=400,-1000")
    assert code == 2 and "isnotLOW,HIGH" in _squeeze(output)  # (typer's box may split the rest)
    # A range that leaves nothing of the lesion is that case's error, with the reason.
    code, output = _run(*common, "-o", str(tmp_path / "k.csv"), "--ibsi", "--ibsi-range-first=2000,3000")
    assert code == 1
    reason = _rows(tmp_path / "k_errors.csv")["image"]["reason"]
    assert reason == "no voxel of the lesion is within the first re-segmentation range [2000, 3000]"
    # An interpolator IBSI has no counterpart for is a usage error naming the file.
    params.write_text(params.read_text().replace("sitkLinear", "sitkNearestNeighbor"))
    code, output = _run(*common, "-o", str(tmp_path / "h.csv"), "--ibsi")
    assert code == 2 and "interpolator'sitkNearestNeighbor'cannotbedoneIBSI'sway" in _squeeze(output)

"""radvlsm.fusion.radiomics_folder: the CSV against pyradiomics itself, resumability, bad cases, RTSTRUCT."""

from __future__ import annotations

import csv
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813
from PIL import Image
from radiomics.featureextractor import RadiomicsFeatureExtractor

from radvlsm.errors import ConfigError, InputError
from radvlsm.fusion.radiomics import ID_COLUMNS, RadiomicsExtractor, to_grayscale
from radvlsm.fusion.radiomics_folder import errors_csv_path, extract_folder, params_record_path
from radvlsm.fusion.radiomics_params import DEFAULT_PARAMS
from radvlsm.io import read_image, read_mask

PH2_CASES = ("IMD002", "IMD003", "IMD004", "IMD006", "IMD008")
#: A small LIDC nodule with anisotropic voxels (0.527 x 0.527 x 2 mm).
LIDC_CASE = "LIDC-IDRI-0678_R_1"


def _read_csv(path: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), {r["case_id"]: r for r in rows}


def _ph2_subset(ph2_root: Path, dest: Path, cases: tuple[str, ...]) -> tuple[Path, Path]:
    images, masks = dest / "images", dest / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for c in cases:
        shutil.copy(ph2_root / "images" / f"{c}.jpg", images / f"{c}.jpg")
        shutil.copy(ph2_root / "masks" / f"{c}.png", masks / f"{c}.png")
    return images, masks


def _direct(image: sitk.Image, mask: sitk.Image, params: Path) -> dict[str, float]:
    """pyradiomics alone, on the given SimpleITK images and parameter file."""
    with warnings.catch_warnings():  # pykwalify loads pyradiomics' schema functions with load_module()
        warnings.simplefilter("ignore", DeprecationWarning)
        extractor = RadiomicsFeatureExtractor(str(params))
    out = extractor.execute(image, mask)
    return {k: float(v) for k, v in out.items() if not k.startswith("diagnostics_")}


def test_csv_equals_pyradiomics_on_ph2(ph2_root: Path, tmp_path: Path) -> None:
    cases = PH2_CASES[:2]
    images, masks = _ph2_subset(ph2_root, tmp_path, cases)
    out = tmp_path / "out" / "features.csv"
    summary = extract_folder(images, masks, out, workers=1)
    assert summary.dimension == "2d"
    assert (summary.written, summary.rows, summary.failed) == (2, 2, ())
    header, rows = _read_csv(out)
    assert tuple(header[:3]) == ID_COLUMNS
    for name in ("original_firstorder_Mean", "original_glcm_Contrast", "original_shape2D_PixelSurface",
                 "original_glszm_ZoneEntropy", "original_ngtdm_Coarseness"):
        assert name in header
    assert not any(h.startswith("diagnostics_") for h in header)
    assert summary.n_features == len(header) - 3
    for c in cases:
        row = rows[c]
        assert row["image"] == str(images / f"{c}.jpg")
        assert row["mask"] == str(masks / f"{c}.png")
        rec = read_image(images / f"{c}.jpg")
        mask = read_mask(masks / f"{c}.png", like=rec)
        gray = to_grayscale(rec.pixels)
        img = sitk.GetImageFromArray(gray[np.newaxis])
        msk = sitk.GetImageFromArray(mask.astype(np.uint8)[np.newaxis])
        ref = _direct(img, msk, DEFAULT_PARAMS["2d"])
        assert list(ref) == header[3:]
        got = np.array([float(row[k]) for k in ref])
        np.testing.assert_allclose(got, np.array(list(ref.values())), rtol=1e-6, equal_nan=True)
        assert float(row["original_shape2D_PixelSurface"]) == mask.sum()  # 1 x 1 spacing: pixels
    record = params_record_path(out)
    assert record.is_file()
    assert errors_csv_path(out).read_text().strip() == "case_id,image,mask,reason"


def test_resume_appends_only_new_cases_and_repairs_a_partial_line(ph2_root: Path, tmp_path: Path) -> None:
    images, masks = _ph2_subset(ph2_root, tmp_path, PH2_CASES[:3])
    out = tmp_path / "features.csv"
    first = extract_folder(images, masks, out, workers=1)
    assert (first.written, first.rows) == (3, 3)
    _, rows3 = _read_csv(out)

    _ph2_subset(ph2_root, tmp_path, PH2_CASES)  # 2 more cases
    progress: list[tuple[int, int, str]] = []
    second = extract_folder(images, masks, out, workers=2, on_progress=lambda *a: progress.append(a))
    assert (second.written, second.already_done, second.rows, second.workers) == (2, 3, 5, 2)
    assert sorted(p[2] for p in progress) == list(PH2_CASES[3:])
    assert [p[:2] for p in progress] == [(1, 2), (2, 2)]
    lines = out.read_text().splitlines()
    ids = [ln.split(",", 1)[0] for ln in lines[1:]]
    assert ids == sorted(PH2_CASES)  # no duplicates, sorted
    _, rows5 = _read_csv(out)
    for c in PH2_CASES[:3]:
        assert rows5[c] == rows3[c]  # old rows untouched

    # A run killed in the middle of a write: the last line is cut short.
    data = out.read_bytes()
    out.write_bytes(data[: len(data) - 200])
    third = extract_folder(images, masks, out, workers=1)
    assert (third.repaired, third.written, third.already_done, third.rows) == (1, 1, 4, 5)
    assert out.read_bytes() == data

    # Nothing left to do: nothing changes.
    fourth = extract_folder(images, masks, out, workers=2)
    assert (fourth.written, fourth.already_done, fourth.workers) == (0, 5, 1)
    assert out.read_bytes() == data


def test_resume_refuses_other_parameters(ph2_root: Path, tmp_path: Path) -> None:
    images, masks = _ph2_subset(ph2_root, tmp_path, PH2_CASES[:1])
    out = tmp_path / "features.csv"
    extract_folder(images, masks, out, workers=1)
    other = tmp_path / "bw10.yaml"
    other.write_text(DEFAULT_PARAMS["2d"].read_text().replace("binWidth: 5", "binWidth: 10"))
    _ph2_subset(ph2_root, tmp_path, PH2_CASES[:2])
    with pytest.raises(ConfigError, match=r"other pyradiomics parameters \(params\.setting\.binWidth: 5 before"):
        extract_folder(images, masks, out, params=other, workers=1)
    again = extract_folder(images, masks, out, params=other, workers=1, overwrite=True)
    assert (again.written, again.rows) == (2, 2)


def test_output_that_is_not_a_features_csv_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "features.csv"
    out.write_text("a,b\n1,2\n")
    (tmp_path / "img").mkdir()
    with pytest.raises(InputError, match="not a features CSV"):
        extract_folder(tmp_path / "img", tmp_path / "img", out, workers=1)
    assert out.read_text() == "a,b\n1,2\n"


def test_bad_cases_go_to_the_errors_csv(ph2_root: Path, tmp_path: Path) -> None:
    images, masks = _ph2_subset(ph2_root, tmp_path, PH2_CASES[:1])
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    square = np.zeros((40, 50), np.uint8)
    square[10:30, 15:35] = 255
    Image.fromarray(small).save(images / "empty.png")
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(masks / "empty.png")
    Image.fromarray(small).save(images / "size.png")
    Image.fromarray(square[:30, :40]).save(masks / "size.png")
    Image.fromarray(small).save(images / "nomask.png")
    (images / "broken.jpg").write_text("not an image at all\n")
    Image.fromarray(square).save(masks / "broken.png")
    Image.fromarray(square).save(masks / "orphan.png")
    one = np.zeros((40, 50), np.uint8)
    one[5, 5] = 255
    Image.fromarray(small).save(images / "onepixel.png")
    Image.fromarray(one).save(masks / "onepixel.png")

    out = tmp_path / "res" / "features.csv"
    summary = extract_folder(images, masks, out, workers=1)
    assert summary.rows == 1
    _, rows = _read_csv(out)
    assert list(rows) == [PH2_CASES[0]]
    _, errors = _read_csv(errors_csv_path(out))
    assert errors_csv_path(out) == tmp_path / "res" / "features_errors.csv"
    assert set(errors) == {"empty", "size", "nomask", "broken", "orphan", "onepixel"}
    assert "empty" in errors["empty"]["reason"]
    assert errors["size"]["reason"].startswith("mask is 40x30 pixels but its image is 50x40")
    assert errors["nomask"]["reason"].startswith("no mask named nomask")
    assert errors["nomask"]["mask"] == ""
    assert errors["broken"]["reason"].startswith("image: not a JPEG image")
    assert errors["orphan"]["reason"].startswith("no image named orphan")
    assert "pyradiomics" in errors["onepixel"]["reason"]
    assert [e.case_id for e in summary.failed] == sorted(errors)


def test_bad_params_stop_the_folder_run_before_any_output(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("setting:\n  binWidth: -1\n")
    (tmp_path / "img").mkdir()
    with pytest.raises(ConfigError, match=r"p\.yaml: invalid pyradiomics parameters: setting\.binWidth"):
        extract_folder(tmp_path / "img", tmp_path / "img", tmp_path / "f.csv", params=path)
    assert not (tmp_path / "f.csv").exists()
    assert not (tmp_path / "f_errors.csv").exists()
    with pytest.raises(ConfigError, match="not found"):
        RadiomicsExtractor(tmp_path / "missing.yaml")


def test_lidc_nodule_3d_with_spacing(lidc_root: Path, tmp_path: Path) -> None:
    with (lidc_root / "labels.csv").open(newline="") as fh:
        label = next(r for r in csv.DictReader(fh) if r["case_id"] == LIDC_CASE)
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    shutil.copy(lidc_root / label["image"], images / f"{LIDC_CASE}.nii.gz")
    shutil.copy(lidc_root / label["mask"], masks / f"{LIDC_CASE}.nii.gz")
    out = tmp_path / "features.csv"
    summary = extract_folder(images, masks, out, workers=1)
    assert summary.dimension == "3d"
    assert summary.rows == 1, summary.failed
    header, rows = _read_csv(out)
    row = rows[LIDC_CASE]
    volume_mm3 = float(label["mask_volume_mm3"])
    assert float(row["original_shape_VoxelVolume"]) == pytest.approx(volume_mm3, abs=0.06)
    assert float(row["original_shape_MeshVolume"]) == pytest.approx(volume_mm3, rel=0.04)
    assert not any("shape2D" in h for h in header)
    # pyradiomics alone on the NIfTI files as SimpleITK reads them (what its own command line does).
    ref = _direct(
        sitk.ReadImage(str(images / f"{LIDC_CASE}.nii.gz")), sitk.ReadImage(str(masks / f"{LIDC_CASE}.nii.gz")),
        DEFAULT_PARAMS["3d"],
    )
    assert list(ref) == header[3:]
    got = np.array([float(row[k]) for k in ref])
    np.testing.assert_allclose(got, np.array(list(ref.values())), rtol=1e-6, equal_nan=True)


#: A light 3-D parameter set for plumbing tests: shape and intensity statistics only.
_LIGHT_3D = "featureClass:\n  shape:\n  firstorder:\nsetting:\n  binWidth: 25\n  label: 1\n"


def test_dicom_series_with_rtstruct_is_one_3d_case_with_real_spacing(ibsi_phantom_root: Path, tmp_path: Path) -> None:
    series = ibsi_phantom_root / "dicom" / "image"
    rs = next((ibsi_phantom_root / "dicom" / "rtstruct").glob("*.dcm"))
    params = tmp_path / "light.yaml"
    params.write_text(_LIGHT_3D)
    out = tmp_path / "by_option.csv"
    summary = extract_folder(series, None, out, rtstruct=rs, roi="GTV-1", params=params, workers=1)
    assert summary.dimension == "3d" and summary.written == 1 and not summary.failed
    _, rows = _read_csv(out)
    row = rows["image"]  # the case id is the series folder's name
    assert row["image"] == str(series) and row["mask"] == str(rs)
    voxel_mm3 = 0.977 * 0.977 * 3.0
    assert float(row["original_shape_VoxelVolume"]) == pytest.approx(125256 * voxel_mm3, rel=1e-6)
    # The same case with the RTSTRUCT as MASKS, and a case id of one's own.
    again = tmp_path / "as_masks.csv"
    extract_folder(series, rs, again, params=params, workers=1, case_id="PAT1")
    _, rows2 = _read_csv(again)
    assert {k: v for k, v in rows2["PAT1"].items() if k != "case_id"} == {
        k: v for k, v in row.items() if k != "case_id"
    }
    # A wrong ROI name is a row of the errors CSV that lists the names the RTSTRUCT has.
    wrong = tmp_path / "wrong.csv"
    failed = extract_folder(series, None, wrong, rtstruct=rs, roi="GTV", params=params, workers=1)
    assert failed.rows == 0
    _, errors = _read_csv(errors_csv_path(wrong))
    assert errors["image"]["reason"] == "mask: no ROI named 'GTV' in the RTSTRUCT; it has: 'GTV-1'"


def test_rtstruct_needs_one_series_folder_and_no_masks(tmp_path: Path) -> None:
    rs = tmp_path / "rs.dcm"
    rs.write_bytes(b"\0")
    (tmp_path / "series").mkdir()
    with pytest.raises(InputError, match="give either MASKS or an RTSTRUCT, not both"):
        extract_folder(tmp_path / "series", tmp_path / "masks", tmp_path / "f.csv", rtstruct=rs)
    with pytest.raises(InputError, match="the image must be the folder of the DICOM series"):
        extract_folder(rs, None, tmp_path / "f.csv", rtstruct=rs)
    with pytest.raises(InputError, match="no masks"):
        extract_folder(tmp_path / "series", None, tmp_path / "f.csv")


def _synthetic_cases(folder: Path, n: int) -> tuple[Path, Path]:
    """``n`` small random RGB images (40 x 50) with a square lesion: quick to extract."""
    images, masks = folder / "images", folder / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    rng = np.random.default_rng(1)
    square = np.zeros((40, 50), np.uint8)
    square[8:30, 10:40] = 255
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(images / f"c{i}.png")
        Image.fromarray(square).save(masks / f"c{i}.png")
    return images, masks


def test_invalid_rows_are_dropped_and_recomputed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    images, masks = _synthetic_cases(tmp_path, 3)
    out = tmp_path / "f.csv"
    extract_folder(images, masks, out, workers=1)
    good = out.read_bytes()
    lines = good.decode().splitlines(keepends=True)
    corrupt = lines[2].replace(",", ",abc", 4)  # a complete line with a non-numeric feature cell
    out.write_text(lines[0] + lines[1] + corrupt + lines[3] + lines[1])  # ... and a duplicate row
    params_record_path(out).unlink()
    summary = extract_folder(images, masks, out, workers=1)
    assert (summary.repaired, summary.written, summary.rows) == (2, 1, 3)
    assert out.read_bytes() == good
    assert "f_params.yaml is missing" in caplog.text

    # A header of other columns and no parameter record: refused rather than mixed.
    out.write_text("case_id,mask,image,original_firstorder_Mean\n")
    with pytest.raises(ConfigError, match="its columns differ from what these parameters give"):
        extract_folder(images, masks, out, workers=1)

"""radvlsm.fusion.radiomics: values against pyradiomics itself, resumability, bad inputs, bad parameter files."""

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
from radvlsm.fusion.radiomics import (
    DEFAULT_PARAMS,
    ID_COLUMNS,
    RadiomicsExtractor,
    errors_csv_path,
    extract_folder,
    load_params,
    params_record_path,
    to_grayscale,
    to_sitk,
)
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


# --------------------------------------------------------------------------------------------------------
# Conversions
# --------------------------------------------------------------------------------------------------------


def test_grayscale_is_bt601_luma() -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]], dtype=np.uint8)
    gray = to_grayscale(rgb)
    assert gray.dtype == np.float64
    assert gray.shape == (2, 2)
    expected = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(gray, expected, rtol=1e-12)
    assert to_grayscale(np.full((3, 4), 7, np.uint16)).tolist() == [[7.0] * 4] * 3
    with pytest.raises(ValueError, match="shape"):
        to_grayscale(np.zeros((2, 2, 5)))


def test_to_sitk_2d_is_one_slice_volume_with_spacing() -> None:
    img, msk = to_sitk(np.zeros((4, 6, 3), np.uint8), np.ones((4, 6), bool), (0.5, 0.25), volume=False)
    assert img.GetSize() == (6, 4, 1)
    assert msk.GetSize() == (6, 4, 1)
    assert img.GetSpacing() == (0.25, 0.5, 1.0)  # (column, row, slice)
    assert msk.GetPixelID() == sitk.sitkUInt8
    with pytest.raises(ValueError, match="mask shape"):
        to_sitk(np.zeros((4, 6)), np.ones((4, 5)), volume=False)


# --------------------------------------------------------------------------------------------------------
# Values: the CSV equals pyradiomics on the same images (PH2)
# --------------------------------------------------------------------------------------------------------


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


def test_in_memory_api_matches_files_and_uses_spacing(ph2_root: Path) -> None:
    rec = read_image(ph2_root / "images" / "IMD003.jpg")
    mask = read_mask(ph2_root / "masks" / "IMD003.png", like=rec)
    rows, cols = np.nonzero(mask)
    crop = np.s_[rows.min() - 5 : rows.max() + 6, cols.min() - 5 : cols.max() + 6]
    pixels, m = np.asarray(rec.pixels[crop]), mask[crop]
    ex = RadiomicsExtractor()
    f1 = ex.extract_arrays(pixels, m)
    f2 = ex.extract_arrays(pixels, m, spacing=(0.5, 0.5))
    assert f1["original_shape2D_PixelSurface"] == m.sum()
    assert f2["original_shape2D_PixelSurface"] == pytest.approx(0.25 * m.sum())
    assert f2["original_firstorder_Mean"] == f1["original_firstorder_Mean"]
    gray = to_grayscale(pixels)
    assert f1["original_firstorder_Mean"] == pytest.approx(gray[m].mean(), rel=1e-9)
    with pytest.raises(InputError, match="empty"):
        ex.extract_arrays(pixels, np.zeros_like(m))


# --------------------------------------------------------------------------------------------------------
# Resumability
# --------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------
# Bad inputs: rows of the errors CSV, the rest goes on
# --------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------
# Bad parameter files: one clear ConfigError naming the file and the key
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("setting:\n  binWidht: 25\n", "unknown key 'binWidht' in setting (did you mean 'binWidth'?)"),
        ("setting:\n  binWidth: wide\n", "setting.binWidth: Value 'wide' is not of type 'float'"),
        ("setting:\n  force2D: 3\n", "setting.force2D: Value '3' is not of type 'bool'"),
        ("imageType:\n  LoG:\n    sigmaa: [1.0]\n", "unknown key 'sigmaa' in imageType.LoG (did you mean 'sigma'?)"),
        ("imageType:\n  Fancy: {}\n", "Image Type Fancy is not recognized"),
        ("featureClass:\n  glcm: [Contrastt]\n", "unrecognized features: {'Contrastt'}"),
        ("settings:\n  binWidth: 25\n", "unknown key 'settings' in the top level (did you mean 'setting'?)"),
        ("setting: [\n", "cannot parse the parameter file"),
        ("# nothing\n", "the parameter file is empty"),
    ],
)
def test_bad_params_file(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "my_params.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_params(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    with pytest.raises(ConfigError, match=r"my_params\.yaml"):
        RadiomicsExtractor(path)


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


def test_default_params_are_valid_and_documented() -> None:
    p2, p3 = load_params(DEFAULT_PARAMS["2d"]), load_params(DEFAULT_PARAMS["3d"])
    assert p2["setting"]["force2D"] is True
    assert p2["setting"]["binWidth"] == 5
    assert "shape2D" in p2["featureClass"]
    assert p3["setting"]["binWidth"] == 25
    assert "resampledPixelSpacing" not in p3["setting"]
    assert "shape" in p3["featureClass"]


def test_2d_runs_force_2d_and_label_1(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("setting:\n  binWidth: 5\n  force2D: false\n  label: 2\n")
    ex = RadiomicsExtractor(path, "2d")
    assert dict(ex.param_set("2d").overrides) == {"label": 1, "force2D": True}
    assert "force2D: False ignored" in caplog.text
    img = np.arange(30 * 30, dtype=np.uint8).reshape(30, 30)
    m = np.zeros((30, 30), bool)
    m[5:20, 8:25] = True
    feats = ex.extract_arrays(img, m)
    assert feats["original_shape2D_PixelSurface"] == m.sum()


# --------------------------------------------------------------------------------------------------------
# 3-D: a LIDC nodule with its real spacing
# --------------------------------------------------------------------------------------------------------


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


def test_volume_in_a_2d_extractor_is_an_input_error(lidc_root: Path) -> None:
    rec = read_image(lidc_root / "images" / f"{LIDC_CASE}.nii.gz")
    mask = read_mask(lidc_root / "masks" / f"{LIDC_CASE}.nii.gz", like=rec)
    with pytest.raises(InputError, match="3-D volume, but this extraction is 2D only"):
        RadiomicsExtractor(dimension="2d").extract(rec, mask)


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

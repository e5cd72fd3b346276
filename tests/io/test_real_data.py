"""Real data (skipped when the shared datasets are absent): the IBSI lung phantom as a DICOM series against
its NIfTI copy, LIDC nodule volumes, PH2 dermoscopy."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from radvlsm.errors import ImageReadError
from radvlsm.io import Modality, read_image, read_mask, to_display_rgb, write_nifti_mask

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def ibsi_series(ibsi_phantom_root: Path):
    return read_image(ibsi_phantom_root / "dicom" / "image")


def test_ibsi_series_matches_its_nifti_copy(ibsi_series, ibsi_phantom_root: Path) -> None:
    series = ibsi_series
    nifti = read_image(ibsi_phantom_root / "nifti" / "image.nii.gz")
    assert series.pixels.shape == (60, 201, 204) == nifti.pixels.shape
    assert series.modality is Modality.CT and series.pixels.dtype == np.float32
    assert series.source_format == "dicom-series" and series.series_uid
    gs, gn = series.geometry, nifti.geometry
    assert gs is not None and gn is not None
    np.testing.assert_allclose(gs.spacing, gn.spacing, rtol=1e-6)
    np.testing.assert_allclose(gs.spacing, (0.977, 0.977, 3.0), atol=1e-6)
    np.testing.assert_allclose(gs.origin, gn.origin, atol=1e-4)  # NIfTI stores float32
    np.testing.assert_array_equal(gs.direction, gn.direction)
    np.testing.assert_array_equal(series.pixels, nifti.pixels)  # HU, voxel for voxel
    assert float(series.pixels.min()) == -1000.0 and float(series.pixels.max()) == 3065.0


def test_ibsi_mask_fits_the_series(ibsi_series, ibsi_phantom_root: Path) -> None:
    mask = read_mask(ibsi_phantom_root / "nifti" / "mask.nii.gz", like=ibsi_series)
    assert mask.shape == (60, 201, 204) and int(mask.sum()) == 125256  # MANIFEST: 125256 voxels
    tumour_hu = ibsi_series.pixels[mask]
    assert -200 < float(np.median(tumour_hu)) < 200  # soft tissue, not air


def test_ibsi_rtstruct_is_not_an_image(ibsi_phantom_root: Path) -> None:
    rs = ibsi_phantom_root / "dicom" / "rtstruct"
    with pytest.raises(ImageReadError, match="only non-image objects"):
        read_image(rs)
    with pytest.raises(ImageReadError, match="no pixel data: it is a RT Structure Set Storage"):
        read_image(next(rs.glob("*.dcm")))
    with pytest.raises(ImageReadError, match="subfolders: image, rtstruct"):
        read_image(ibsi_phantom_root / "dicom")


def test_ibsi_series_with_its_rtstruct_in_one_folder(ibsi_series, ibsi_phantom_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    shutil.copytree(ibsi_phantom_root / "dicom" / "image", folder)
    shutil.copy(next((ibsi_phantom_root / "dicom" / "rtstruct").glob("*.dcm")), folder)
    rec = read_image(folder)
    np.testing.assert_array_equal(rec.pixels, ibsi_series.pixels)


def test_ibsi_series_with_a_missing_slice(ibsi_phantom_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "gap"
    shutil.copytree(ibsi_phantom_root / "dicom" / "image", folder)
    # Remove the slice in the middle of the stack (file names do not follow position order).
    import pydicom

    files = sorted(
        folder.glob("*.dcm"), key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True)[0x00200032].value[2])
    )
    files[30].unlink()
    with pytest.raises(ImageReadError, match=r"missing slice\(s\): gap of 6.000 mm"):
        read_image(folder)


def test_ibsi_mask_round_trip(ibsi_series, ibsi_phantom_root: Path, tmp_path: Path) -> None:
    nifti = read_image(ibsi_phantom_root / "nifti" / "image.nii.gz")
    mask = read_mask(ibsi_phantom_root / "nifti" / "mask.nii.gz", like=nifti)
    assert nifti.geometry is not None and ibsi_series.geometry is not None
    back = read_image(write_nifti_mask(tmp_path / "gtv.nii.gz", mask, nifti.geometry))
    assert back.geometry == nifti.geometry  # identical, bit for bit
    np.testing.assert_array_equal(back.pixels.astype(bool), mask)
    from_series = read_image(write_nifti_mask(tmp_path / "gtv2.nii.gz", mask, ibsi_series.geometry))
    assert from_series.geometry is not None
    np.testing.assert_allclose(from_series.geometry.origin, ibsi_series.geometry.origin, atol=1e-4)
    np.testing.assert_allclose(from_series.geometry.spacing, ibsi_series.geometry.spacing, rtol=1e-6)


def test_ibsi_slice_display(ibsi_series) -> None:
    out = to_display_rgb(ibsi_series, "lung", index=30)
    assert out.shape == (201, 204, 3) and out.dtype == np.uint8
    air = ibsi_series.pixels[30] <= -990
    assert air.any() and out[air].max() <= 62  # -1000 HU is dark grey in the lung window (W1500/L-600)
    assert out.max() == 255


def _lidc_rows(lidc_root: Path, n: int = 3) -> list[dict[str, str]]:
    with (lidc_root / "labels.csv").open(encoding="utf-8", newline="") as fh:
        return [row for _, row in zip(range(n), csv.DictReader(fh), strict=False)]


def test_lidc_volumes_have_the_listed_spacing_and_size(lidc_root: Path, tmp_path: Path) -> None:
    for row in _lidc_rows(lidc_root):
        image = read_image(lidc_root / row["image"], modality=Modality.CT)
        assert image.geometry is not None and image.pixels.dtype == np.float32
        assert image.original_dtype == "int16"
        size_xyz = tuple(int(v) for v in row["size_xyz"].split("x"))
        assert image.pixels.shape == size_xyz[::-1]
        spacing = tuple(float(v) for v in row["spacing_xyz_mm"].split("x"))
        np.testing.assert_allclose(image.geometry.spacing, spacing, atol=1e-4)
        assert image.pixel_spacing_mm == pytest.approx((spacing[1], spacing[0]), abs=1e-4)
        mask = read_mask(lidc_root / row["mask"], like=image)
        assert int(mask.sum()) == int(row["mask_voxels"])
        back = read_image(write_nifti_mask(tmp_path / f"{image.stem}.nii.gz", mask, image.geometry))
        assert back.geometry == image.geometry
        np.testing.assert_array_equal(back.pixels.astype(bool), mask)


def test_ph2_image_and_mask(ph2_root: Path) -> None:
    image_path = sorted((ph2_root / "images").glob("*.jpg"))[0]
    image = read_image(image_path)
    assert image.pixels.ndim == 3 and image.pixels.shape[2] == 3 and image.pixels.dtype == np.uint8
    assert image.source_format == "jpeg" and image.pixel_spacing_mm is None
    mask = read_mask(ph2_root / "masks" / f"{image.stem}.png", like=image)
    assert mask.shape == image.size_hw and mask.any() and not mask.all()

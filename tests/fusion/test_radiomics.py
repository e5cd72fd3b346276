"""radvlsm.fusion.radiomics: one case in memory, conversions to SimpleITK, dimension checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from radvlsm.errors import InputError
from radvlsm.fusion.radiomics import RadiomicsExtractor, to_grayscale, to_sitk
from radvlsm.io import read_image, read_mask

#: A small LIDC nodule with anisotropic voxels (0.527 x 0.527 x 2 mm).
LIDC_CASE = "LIDC-IDRI-0678_R_1"


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


def test_volume_in_a_2d_extractor_is_an_input_error(lidc_root: Path) -> None:
    rec = read_image(lidc_root / "images" / f"{LIDC_CASE}.nii.gz")
    mask = read_mask(lidc_root / "masks" / f"{LIDC_CASE}.nii.gz", like=rec)
    with pytest.raises(InputError, match="3-D volume, but this extraction is 2D only"):
        RadiomicsExtractor(dimension="2d").extract(rec, mask)

"""Mask reading: binarisation rules, JPEG thresholding and the size / geometry check against the image."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from radvlsm.errors import ImageReadError
from radvlsm.io import read_image, read_mask, write_png_mask


def test_png_mask_any_nonzero_is_lesion(tmp_path: Path, make) -> None:
    arr = np.array([[0, 1, 2], [0, 255, 0]], np.uint8)  # 0/1 label masks work as well as 0/255
    mask = read_mask(make.png(tmp_path / "m.png", arr))
    assert mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, arr != 0)


def test_rgb_mask_counts_any_channel(tmp_path: Path, make) -> None:
    arr = np.zeros((2, 2, 3), np.uint8)
    arr[0, 0] = (255, 255, 255)
    arr[1, 1] = (0, 0, 9)
    np.testing.assert_array_equal(read_mask(make.png(tmp_path / "m.png", arr)), [[True, False], [False, True]])


def test_16bit_mask(tmp_path: Path, make) -> None:
    arr = np.array([[0, 65535], [1, 0]], np.uint16)
    np.testing.assert_array_equal(read_mask(make.png(tmp_path / "m16.png", arr)), arr != 0)


def test_jpeg_mask_is_thresholded_at_128(tmp_path: Path, make) -> None:
    # Flat 16x16 blocks survive JPEG compression to within a grey level or two.
    levels = np.array([[0, 60, 118], [138, 200, 255]], np.uint8)
    arr = np.kron(levels, np.ones((16, 16), np.uint8))
    path = make.jpeg(tmp_path / "m.jpg", arr, quality=100)
    decoded = read_image(path).pixels
    assert np.abs(decoded.astype(int) - arr).max() <= 3
    mask = read_mask(path)
    np.testing.assert_array_equal(mask[::16, ::16], levels >= 128)


def test_jpeg_mask_with_small_values_warns(tmp_path: Path, make, caplog) -> None:
    arr = np.kron(np.array([[0, 1], [1, 0]], np.uint8), np.ones((16, 16), np.uint8))
    with caplog.at_level(logging.WARNING):
        mask = read_mask(make.jpeg(tmp_path / "m01.jpg", arr, quality=100))
    assert not mask.any()
    assert "save masks as PNG" in caplog.text


def test_mask_matches_its_image(tmp_path: Path, make) -> None:
    image = read_image(make.jpeg(tmp_path / "img.jpg", make.rgb(16, 24)))
    mask = read_mask(write_png_mask(tmp_path / "img_mask.png", np.eye(16, 24)), like=image)
    assert mask.shape == (16, 24) and mask.sum() == 16


def test_mask_of_transposed_size_is_refused(tmp_path: Path, make) -> None:
    image = read_image(make.png(tmp_path / "img.png", make.rgb(16, 24)))
    path = make.png(tmp_path / "img_mask.png", np.zeros((24, 16), np.uint8))
    with pytest.raises(ImageReadError, match=r"mask is 16x24 pixels but its image is 24x16 \(width x height\)"):
        read_mask(path, like=image)


def test_volume_mask_against_volume(tmp_path: Path, make) -> None:
    image = read_image(make.nifti(tmp_path / "ct.nii.gz", np.zeros((5, 6, 7), np.int16)))
    data = np.zeros((5, 6, 7), np.uint8)
    data[1, 2, 3] = 1
    mask = read_mask(make.nifti(tmp_path / "ct_mask.nii.gz", data), like=image)
    assert mask.shape == (7, 6, 5) and mask[3, 2, 1] and mask.sum() == 1
    wrong = make.nifti(tmp_path / "small_mask.nii.gz", np.zeros((5, 6, 6), np.uint8))
    with pytest.raises(ImageReadError, match="mask is 5x6x6 voxels but its image is 5x6x7"):
        read_mask(wrong, like=image)
    flat = make.png(tmp_path / "flat.png", np.zeros((6, 5), np.uint8))
    with pytest.raises(ImageReadError, match="2-D mask"):
        read_mask(flat, like=image)


def test_dicom_series_image_with_nifti_mask(tmp_path: Path, make) -> None:
    """A mask made for a DICOM series lines up when written with the series geometry."""
    from radvlsm.io import write_nifti_mask

    series = read_image(make.ct_series(tmp_path / "series", 5))
    assert series.geometry is not None
    mask = np.zeros(series.pixels.shape, bool)
    mask[2, 1:3, 1:4] = True
    out = write_nifti_mask(tmp_path / "series_mask.nii.gz", mask, series.geometry)
    np.testing.assert_array_equal(read_mask(out, like=series), mask)


def test_nan_mask_is_refused(tmp_path: Path) -> None:
    import SimpleITK as sitk  # noqa: N813  (nibabel would write NaN as 0)

    data = np.zeros((2, 2, 2), np.float32)
    data[0, 0, 0] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(data), str(tmp_path / "nan.nii.gz"))
    with pytest.raises(ImageReadError, match="NaN"):
        read_mask(tmp_path / "nan.nii.gz")

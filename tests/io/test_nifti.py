"""NIfTI reading: array order, LPS geometry (as SimpleITK gives it), dimensions, and mask round trips."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from radvlsm.io import Modality, VolumeGeometry, read_image, read_mask, write_nifti_mask


def _oblique_affine() -> np.ndarray:
    a = np.deg2rad(15)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.7, 0.8, 3.0])
    affine[:3, 3] = [-12.5, 40.25, -101.0]
    return affine


def test_array_order_and_geometry_match_simpleitk(tmp_path: Path, make) -> None:
    data = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)  # (x, y, z)
    path = make.nifti(tmp_path / "vol.nii.gz", data, _oblique_affine())
    rec = read_image(path)
    assert rec.is_volume and rec.source_format == "nifti" and rec.modality is Modality.OT
    assert rec.pixels.shape == (5, 4, 3) and rec.pixels.dtype == np.int16 and rec.original_dtype == "int16"
    np.testing.assert_array_equal(rec.pixels, data.transpose(2, 1, 0))  # [z, y, x]
    ref = sitk.ReadImage(str(path))
    g = rec.geometry
    assert g is not None
    assert g.spacing == ref.GetSpacing() and g.origin == ref.GetOrigin() and g.direction == ref.GetDirection()
    # LPS: the RAS origin (-12.5, 40.25, -101) has its first two coordinates negated.
    assert g.origin == pytest.approx((12.5, -40.25, -101.0), abs=1e-4)
    assert rec.pixel_spacing_mm == pytest.approx((0.8, 0.7))


def test_voxel_to_world_agrees_with_nibabel(tmp_path: Path, make) -> None:
    affine = _oblique_affine()
    rec = read_image(make.nifti(tmp_path / "v.nii", np.zeros((3, 4, 5), np.float32), affine))
    assert rec.geometry is not None
    ijk = np.array([2.0, 3.0, 4.0])
    ras = affine[:3, :3] @ ijk + affine[:3, 3]
    lps = ras * np.array([-1, -1, 1])
    np.testing.assert_allclose(rec.geometry.index_to_physical(ijk), lps, atol=1e-4)


def test_ct_modality_gives_float_hu(tmp_path: Path, make) -> None:
    rec = read_image(make.nifti(tmp_path / "ct.nii.gz", np.full((2, 3, 4), -1000, np.int16)), modality=Modality.CT)
    assert rec.modality is Modality.CT and rec.pixels.dtype == np.float32 and rec.original_dtype == "int16"
    assert float(rec.pixels.min()) == -1000.0


def test_scaling_is_applied(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.array([[[0, 1], [2, 3]]], np.int16), np.eye(4))
    img.header.set_slope_inter(2.0, -1024.0)
    path = tmp_path / "scaled.nii.gz"
    nib.save(img, str(path))
    rec = read_image(path)
    np.testing.assert_allclose(rec.pixels.ravel(), np.array([0, 2, 1, 3]) * 2.0 - 1024.0)


def test_2d_nifti_is_a_one_slice_volume(tmp_path: Path, make) -> None:
    data = np.arange(20, dtype=np.uint8).reshape(4, 5)  # (x, y)
    path = make.nifti(tmp_path / "slice.nii.gz", data)
    rec = read_image(path)
    assert rec.pixels.shape == (1, 5, 4)
    np.testing.assert_array_equal(rec.pixels[0], data.T)
    ref = sitk.ReadImage(str(path))  # ITK reads it as 2-D: compare the in-plane part
    assert rec.geometry is not None
    assert rec.geometry.spacing[:2] == pytest.approx(ref.GetSpacing())
    assert rec.geometry.origin[:2] == pytest.approx(ref.GetOrigin())
    assert rec.geometry.origin[2] == pytest.approx(30.0)  # the z offset ITK drops is kept
    out = write_nifti_mask(tmp_path / "slice_mask.nii.gz", rec.pixels > 10, rec.geometry)
    np.testing.assert_array_equal(read_mask(out, like=rec), rec.pixels > 10)


def test_nan_and_inf_are_preserved(tmp_path: Path) -> None:
    """SimpleITK's NIfTI reader would turn them into 0; voxels are read with nibabel."""
    data = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    data[1, 1, 1], data[0, 0, 0] = np.nan, np.inf
    sitk.WriteImage(sitk.GetImageFromArray(data), str(tmp_path / "map.nii.gz"))
    rec = read_image(tmp_path / "map.nii.gz")
    assert rec.pixels.dtype == np.float32
    np.testing.assert_array_equal(rec.pixels, data)


def test_trailing_singleton_time_axis_is_3d(tmp_path: Path, make) -> None:
    rec = read_image(make.nifti(tmp_path / "t1.nii.gz", np.ones((4, 5, 6, 1), np.int16)))
    assert rec.pixels.shape == (6, 5, 4)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_mask_round_trip_keeps_geometry_exactly(tmp_path: Path, make, suffix: str) -> None:
    image = read_image(make.nifti(tmp_path / f"img{suffix}", np.zeros((6, 7, 8), np.int16), _oblique_affine()))
    assert image.geometry is not None
    mask = np.zeros(image.pixels.shape, bool)
    mask[2:5, 1:4, 3] = True
    out = write_nifti_mask(tmp_path / f"img_mask{suffix}", mask, image.geometry)
    back = read_image(out)
    assert back.geometry is not None
    assert back.pixels.dtype == np.uint8 and back.pixels.shape == mask.shape
    np.testing.assert_array_equal(back.pixels.astype(bool), mask)
    np.testing.assert_allclose(back.geometry.spacing, image.geometry.spacing, rtol=0, atol=1e-6)
    np.testing.assert_allclose(back.geometry.origin, image.geometry.origin, rtol=0, atol=1e-5)
    np.testing.assert_allclose(back.geometry.direction, image.geometry.direction, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(read_mask(out, like=image), mask)


def test_axis_aligned_round_trip_is_bit_identical(tmp_path: Path, make) -> None:
    image = read_image(make.nifti(tmp_path / "img.nii.gz", np.zeros((3, 4, 5), np.int16)))
    assert image.geometry is not None
    back = read_image(write_nifti_mask(tmp_path / "m.nii.gz", np.ones((5, 4, 3)), image.geometry))
    assert back.geometry == image.geometry


def test_writer_rejects_bad_arguments(tmp_path: Path) -> None:
    g = VolumeGeometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    with pytest.raises(ValueError, match="must be written as"):
        write_nifti_mask(tmp_path / "m.png", np.zeros((2, 2, 2)), g)
    with pytest.raises(ValueError, match=r"\(Z, Y, X\)"):
        write_nifti_mask(tmp_path / "m.nii.gz", np.zeros((2, 2, 2, 2)), g)
    with pytest.raises(ValueError, match="spacing"):
        VolumeGeometry((1.0, 0.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert not list(tmp_path.iterdir())

"""radvlsm.fusion.resampling: IBSI's grid, rounding, mask interpolation and first re-segmentation range, on
synthetic volumes whose answers are known (the IBSI phantom's compliance is in test_ibsi.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from radvlsm.errors import ConfigError
from radvlsm.fusion.resampling import IbsiProcessing, Interpolation, grid_axis, process


def test_ibsi_grid_is_centred_and_pyradiomics_grid_starts_at_the_corner() -> None:
    # 5 voxels of 1 mm at 2 mm: ceil(2.5) = 3 samples, centred on voxel 2 (the axis' centre).
    np.testing.assert_allclose(grid_axis(5, 1.0, 2.0), [0.0, 2.0, 4.0])
    # pyradiomics: the first sample's corner on the first voxel's corner (-0.5).
    np.testing.assert_allclose(grid_axis(5, 1.0, 2.0, centred=False), [0.5, 2.5, 4.5])
    # 4 voxels of 1 mm at 2 mm: 2 samples about the centre 1.5.
    np.testing.assert_allclose(grid_axis(4, 1.0, 2.0), [0.5, 2.5])
    # Down to a finer grid: 3 voxels of 3 mm at 2 mm: ceil(4.5) = 5 samples, centre 1 kept at the centre.
    axis = grid_axis(3, 3.0, 2.0)
    assert axis.size == 5 and axis.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(np.diff(axis), 2.0 / 3.0)
    # An axis kept as it is: spacing 0 (pyradiomics' convention) or the same spacing.
    np.testing.assert_array_equal(grid_axis(7, 3.0, 0.0), np.arange(7))
    np.testing.assert_array_equal(grid_axis(7, 3.0, 3.0), np.arange(7))


def test_interpolation_from_pyradiomics_settings() -> None:
    assert Interpolation.from_settings({"binWidth": 25}) is None
    linear = Interpolation.from_settings({"resampledPixelSpacing": [1, 2, 3], "interpolator": "sitkLinear"})
    assert linear == Interpolation(spacing_zyx=(3.0, 2.0, 1.0), order=1)
    # pyradiomics' default interpolator is the B-spline, also given as SimpleITK's number (23).
    default = Interpolation.from_settings({"resampledPixelSpacing": [2, 2, 0]})
    by_number = Interpolation.from_settings({"resampledPixelSpacing": [2, 2, 2], "interpolator": 23})
    assert default is not None and by_number is not None and default.order == by_number.order == 3
    nearest = {"resampledPixelSpacing": [2, 2, 2], "interpolator": "sitkNearestNeighbor"}
    with pytest.raises(ConfigError, match=r"p\.yaml: interpolator 'sitkNearestNeighbor' cannot be done IBSI's way"):
        Interpolation.from_settings(nearest, "p.yaml")
    with pytest.raises(ConfigError, match=r"resampledPixelSpacing must be 3 spacings"):
        Interpolation.from_settings({"resampledPixelSpacing": [2, 2], "interpolator": "sitkLinear"})


def _ramp(shape: tuple[int, int, int]) -> np.ndarray:
    z, y, x = np.indices(shape)
    return (100 * z + 10 * y + x).astype(np.int16)


def test_linear_interpolation_of_a_ramp_is_exact_and_whole_numbers_are_rounded() -> None:
    img = _ramp((6, 8, 10))
    mask = np.zeros(img.shape, bool)
    mask[1:5, 2:6, 3:8] = True
    out = process(img, mask, (1.0, 1.0, 1.0), Interpolation((1.0, 0.5, 0.5), order=1), pad=0)
    # Samples every half voxel in y and x: the ramp at those positions, rounded to whole numbers (int input).
    assert out.spacing_zyx == (1.0, 0.5, 0.5)
    assert np.all(out.pixels == np.round(out.pixels))
    ys = grid_axis(8, 1.0, 0.5)
    xs = grid_axis(10, 1.0, 0.5)
    # Without padding the crop keeps the samples that the mask can reach; the first kept sample of each axis is the
    # first past the mask's box less one voxel (z is kept as it is: voxel 1).
    y0 = ys[ys > 2 - 1][0]
    x0 = xs[xs > 3 - 1][0]
    assert out.pixels[0, 0, 0] == np.round(100 * 1 + 10 * y0 + x0)
    # pyradiomics' padDistance of 5 new voxels (for filters) around them, within the image: the same mask.
    padded = process(img, mask, (1.0, 1.0, 1.0), Interpolation((1.0, 0.5, 0.5), order=1))
    assert padded.pixels.shape == (6, min(ys.size, out.pixels.shape[1] + 10), min(xs.size, out.pixels.shape[2] + 10))
    assert padded.mask.sum() == out.mask.sum()
    # A float image is not rounded.
    fine = process(img.astype(np.float64) + 0.25, mask, (1.0, 1.0, 1.0), Interpolation((1.0, 0.5, 0.5), order=1))
    assert not np.all(fine.pixels == np.round(fine.pixels))
    forced = IbsiProcessing(round_intensities=False)
    assert not np.all(process(img, mask, (1, 1, 1), Interpolation((1.0, 0.5, 0.5), 1), forced).pixels % 1 == 0)


@pytest.mark.parametrize("order", [1, 3])
def test_the_crop_around_the_mask_changes_nothing(order: int) -> None:
    rng = np.random.default_rng(0)
    img = ndimage.gaussian_filter(rng.normal(0, 100, (20, 40, 40)), 1.5)
    mask = np.zeros(img.shape, bool)
    mask[8:12, 15:24, 18:27] = True
    spacing, new = (3.0, 0.8, 0.8), (2.0, 2.0, 2.0)
    out = process(img, mask, spacing, Interpolation(new, order), IbsiProcessing(round_intensities=False))
    # The same samples from the whole volume, without any crop.
    axes = [grid_axis(n, o, s) for n, o, s in zip(img.shape, spacing, new, strict=True)]
    full_img = ndimage.map_coordinates(img, np.meshgrid(*axes, indexing="ij"), order=order, mode="nearest")
    full_mask = ndimage.map_coordinates(mask.astype(float), np.meshgrid(*axes, indexing="ij"), order=1) >= 0.5
    assert out.mask.sum() == full_mask.sum()
    box = ndimage.find_objects(full_mask.astype(np.uint8))[0]
    sub = ndimage.find_objects(out.mask.astype(np.uint8))[0]
    np.testing.assert_array_equal(out.mask[sub], full_mask[box])
    tol = 1e-9 if order == 1 else 1e-3  # the cubic spline's prefilter reaches beyond the crop margin, faintly
    np.testing.assert_allclose(out.pixels[sub][out.mask[sub]], full_img[box][full_mask[box]], atol=tol)


def test_mask_partial_volume_threshold_and_first_range() -> None:
    img = np.full((3, 4, 9), 50, np.int16)
    img[:, :, 6:] = 2000  # bright voxels inside the lesion, outside a [-1000, 400] range
    mask = np.zeros(img.shape, bool)
    mask[:, :, 2:8] = True
    # Keep every axis: nothing is interpolated, only the first range applies; morphology keeps the whole mask.
    out = process(img, mask, (1, 1, 1), None, IbsiProcessing(range_first=(-1000, 400)))
    assert out.mask.sum() == mask.sum() and out.intensity_mask.sum() == 3 * 4 * 4
    # Half-voxel samples of 9 voxels: 18 samples centred on the axis, at -0.25, 0.25, … 8.25. At each end of the
    # mask one sample is a quarter of a voxel outside it (mask value 0.75, kept at IBSI's 0.5, dropped at 0.8),
    # the next three quarters outside (0.25, never kept).
    lin = Interpolation((1.0, 1.0, 0.5), order=1)
    kept = process(img, mask, (1, 1, 1), lin).mask[0, 0]
    strict = process(img, mask, (1, 1, 1), lin, IbsiProcessing(mask_threshold=0.8)).mask[0, 0]
    assert kept.sum() == 12 and strict.sum() == 10
    with pytest.raises(ValueError, match="low < high"):
        IbsiProcessing(range_first=(400, -1000))
    with pytest.raises(ValueError, match="empty"):
        process(img, np.zeros_like(mask), (1, 1, 1), None)

"""IBSI's image processing, done by radvlsm before pyradiomics sees the image (``radvlsm radiomics --ibsi``).

pyradiomics resamples with settings of its own that differ from the IBSI reference manual (arXiv:1612.07003,
chapter 2) in ways no parameter of it changes, and on the IBSI lung CT phantom those differences put most 3-D
features outside IBSI's tolerances (``benchmarks/ibsi_compliance.py``). :func:`process` does these steps the IBSI
way, from the parameter file's own ``resampledPixelSpacing`` and ``interpolator``, and pyradiomics is then told not
to resample:

* **grid**: the new grid has ``ceil(n * old / new)`` voxels per axis and its centre on the image's centre (IBSI);
  pyradiomics puts the corner of its first voxel on the image's first voxel corner;
* **intensities**: interpolated by a spline of the file's order (``sitkLinear``: 1, ``sitkBSpline``: 3, as
  :func:`scipy.ndimage.map_coordinates` computes them, the image's border value repeated outside it), then rounded
  to whole numbers when the input holds whole numbers only (CT in HU; IBSI rounds interpolated CT values);
* **mask**: interpolated linearly and kept where it is at least 0.5 (IBSI's partial-volume threshold);
  pyradiomics takes the nearest voxel;
* **first re-segmentation range** (optional, IBSI configuration E): voxels outside the range leave the intensity
  mask before pyradiomics applies the file's own re-segmentation (e.g. mean ± 3 SD) to what is left; IBSI computes
  morphology on the mask before any re-segmentation, and so does radvlsm (the extractor measures shape on the
  interpolated mask).

Only the neighbourhood of the mask is interpolated (its bounding box and ``pad`` new voxels around it, as
pyradiomics' own resampling pads by its ``padDistance`` for filters such as LoG and wavelets), so a whole CT volume
costs what its lesion costs; the grid is still the whole image's.

One IBSI step stays pyradiomics': fixed-width bins are numbered from the ROI's lowest bin, not from the
re-segmentation range's lower bound. Features that use the bin numbers themselves (joint average, grey-level
weighted run and zone emphases …) then differ from IBSI's by the shift whenever the ROI has no voxel in the range's
lowest bin (IBSI configuration C); fixed bin counts (configurations B, D, E) are unaffected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from radvlsm.errors import ConfigError

__all__ = ["CROP_MARGIN", "INTERPOLATOR_ORDERS", "IbsiProcessing", "Interpolation", "Processed", "grid_axis", "process"]

#: pyradiomics ``interpolator`` values (names, and SimpleITK's numbers for them) → the spline order used here.
INTERPOLATOR_ORDERS: Mapping[str | int, int] = {
    "sitkLinear": 1, 2: 1,  # (bi/tri)linear
    "sitkBSpline": 3, 23: 3,  # cubic B-spline (IBSI's "tricubic spline")
}
#: Input voxels kept around the mask's bounding box for interpolation: the cubic spline's prefilter reaches
#: further than its four taps, and its weight falls by 0.27 per voxel (0.27 ** 8 < 3e-5).
CROP_MARGIN = 8
#: Spacings are rounded to this many decimals of a mm before the grid is computed: DICOM slice positions give
#: 2.99999999999985 mm for 3 mm, and IBSI's mask interpolation puts some samples exactly half-way between two
#: slices, where the 0.5 threshold decides (45952 against 43834 mask voxels on the IBSI phantom).
SPACING_DECIMALS = 6


@dataclass(frozen=True)
class Interpolation:
    """Where and how to interpolate: the parameter file's ``resampledPixelSpacing`` and ``interpolator``.

    Attributes:
        spacing_zyx: new spacing in mm per array axis ``(z, y, x)``; 0 keeps the axis as it is (pyradiomics'
            convention; its file gives ``(x, y, z)``).
        order: spline order of the intensity interpolation, 1 or 3.
    """

    spacing_zyx: tuple[float, float, float]
    order: int

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], where: str = "") -> Interpolation | None:
        """From a pyradiomics ``setting`` mapping; ``None`` when it does not resample.

        Raises:
            ConfigError: an interpolator IBSI has no counterpart for (nearest neighbour, Gaussian, sinc …), or not
                three spacings.
        """
        spacing = settings.get("resampledPixelSpacing")
        if spacing is None:
            return None
        name = settings.get("interpolator", "sitkBSpline")  # pyradiomics' default
        if name not in INTERPOLATOR_ORDERS:
            raise ConfigError(
                f"{where or 'parameters'}: interpolator {name!r} cannot be done IBSI's way: use sitkLinear "
                "(IBSI's trilinear) or sitkBSpline (IBSI's tricubic spline)"
            )
        values = [float(v) for v in spacing]
        if len(values) != 3 or any(not math.isfinite(v) or v < 0 for v in values):
            raise ConfigError(
                f"{where or 'parameters'}: resampledPixelSpacing must be 3 spacings (x, y, z) in mm, each >= 0 "
                f"(0 keeps the axis), not {list(spacing)}"
            )
        x, y, z = values
        return cls(spacing_zyx=(z, y, x), order=INTERPOLATOR_ORDERS[name])


@dataclass(frozen=True)
class IbsiProcessing:
    """Which IBSI steps radvlsm does before pyradiomics; the defaults are IBSI's.

    Attributes:
        range_first: a re-segmentation range applied before the parameter file's own (IBSI configuration E:
            ``(-1000, 400)`` HU, then the file's mean ± 3 SD); ``None``: none.
        round_intensities: round interpolated intensities to whole numbers; ``None``: when the input holds whole
            numbers only.
        centred_grid: IBSI's grid (centred on the image); ``False``: pyradiomics' (corner on the first voxel).
        linear_mask: the mask interpolated linearly and thresholded; ``False``: nearest neighbour.
        mask_threshold: the partial-volume threshold of the linearly interpolated mask.
    """

    range_first: tuple[float, float] | None = None
    round_intensities: bool | None = None
    centred_grid: bool = True
    linear_mask: bool = True
    mask_threshold: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_threshold <= 1.0:
            raise ValueError(f"mask_threshold must be in (0, 1], got {self.mask_threshold}")
        if self.range_first is not None:
            lo, hi = self.range_first
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"range_first must be (low, high) with low < high, got {self.range_first}")


@dataclass(frozen=True)
class Processed:
    """An image and its masks after :func:`process`, cropped around the lesion.

    Attributes:
        pixels: ``(Z, Y, X)`` float64 intensities.
        mask: ``(Z, Y, X)`` bool, the interpolated mask (morphology is measured on it).
        intensity_mask: ``mask`` less the voxels outside ``range_first`` (the mask of every other feature).
        spacing_zyx: mm per array axis.
    """

    pixels: np.ndarray
    mask: np.ndarray
    intensity_mask: np.ndarray
    spacing_zyx: tuple[float, float, float]


def grid_axis(n: int, old: float, new: float, centred: bool = True) -> np.ndarray:
    """Positions, in input voxel indices, of the samples of one resampled axis.

    Args:
        n: input voxels on the axis; old, new: their spacing and the new one (mm; ``new`` 0 or equal to ``old``:
            the axis is kept).
        centred: IBSI's grid, ``ceil(n * old / new)`` samples centred on the axis' centre; else pyradiomics',
            whose first sample's corner is the first input voxel's corner.

    Returns:
        ``(n_new,)`` float64 positions (0 is the first input voxel's centre).
    """
    if new == 0 or new == old:
        return np.arange(n, dtype=np.float64)
    n_new = math.ceil(n * old / new)
    if centred:  # computed in mm, so that an exact tie stays exact
        start_mm = (old * (n - 1) - new * (n_new - 1)) / 2
        return (start_mm + np.arange(n_new) * new) / old
    return 0.5 * (new - old) / old + np.arange(n_new) * (new / old)


def _whole_numbers(values: np.ndarray) -> bool:
    return bool(np.issubdtype(values.dtype, np.integer) or np.all(values == np.round(values)))


def process(
    pixels: np.ndarray,
    mask: np.ndarray,
    spacing_zyx: Sequence[float],
    interpolation: Interpolation | None,
    steps: IbsiProcessing = IbsiProcessing(),
    pad: int = 5,
) -> Processed:
    """The image and mask processed IBSI's way, ready for pyradiomics without its own resampling.

    Args:
        pixels: ``(Z, Y, X)`` intensities (a 2-D image as one slice).
        mask: ``(Z, Y, X)``, non-zero = lesion; not empty.
        spacing_zyx: mm per array axis.
        interpolation: the new grid, or ``None`` to keep the input's (then only ``range_first`` applies).
        steps: which steps are done IBSI's way.
        pad: new voxels kept on each side of the samples the mask can reach (pyradiomics' ``padDistance``).

    Returns:
        A :class:`Processed`, cropped to the samples whose mask value can be non-zero and ``pad`` more.

    Raises:
        ValueError: shapes that differ, an empty mask, or nothing left of the mask after interpolation.
    """
    img = np.asarray(pixels)
    msk = np.asarray(mask) != 0
    if img.shape != msk.shape or img.ndim != 3:
        raise ValueError(f"image {img.shape} and mask {msk.shape} must be (Z, Y, X) of one shape")
    if not msk.any():
        raise ValueError("the mask is empty")
    old = tuple(round(float(s), SPACING_DECIMALS) for s in spacing_zyx)
    if interpolation is None:
        out_img, out_msk, new = img.astype(np.float64), msk, old
    else:
        new = tuple(o if s == 0 else float(s) for o, s in zip(old, interpolation.spacing_zyx, strict=True))
        out_img, out_msk = _interpolate(img, msk, old, new, interpolation.order, steps, max(0, int(pad)))
        if not out_msk.any():
            raise ValueError(f"no voxel of the mask is left at {new[2]:g} x {new[1]:g} x {new[0]:g} mm")
    kept = out_msk
    if steps.range_first is not None:
        lo, hi = steps.range_first
        kept = out_msk & (out_img >= lo) & (out_img <= hi)
    return Processed(out_img, out_msk, kept, (float(new[0]), float(new[1]), float(new[2])))


def _interpolate(
    img: np.ndarray,
    msk: np.ndarray,
    old: tuple[float, ...],
    new: tuple[float, ...],
    order: int,
    steps: IbsiProcessing,
    pad: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Image and mask sampled on the new grid, around the mask only."""
    boxes = ndimage.find_objects(msk.astype(np.uint8))[0]
    axes, crop = [], []
    for n, o, s, box in zip(img.shape, old, new, boxes, strict=True):
        pos = grid_axis(n, o, s, steps.centred_grid)
        reach = np.flatnonzero((pos > box.start - 1) & (pos < box.stop))  # where a mask sample can be non-zero
        keep = pos[max(0, reach[0] - pad) : reach[-1] + pad + 1] if reach.size else reach
        lo = max(0, math.floor(keep[0]) - CROP_MARGIN) if keep.size else 0
        hi = min(n, math.ceil(keep[-1]) + CROP_MARGIN + 1) if keep.size else 0
        axes.append(keep - lo)
        crop.append(slice(lo, hi))
    if any(a.size == 0 for a in axes):
        return np.zeros((0, 0, 0)), np.zeros((0, 0, 0), dtype=bool)
    grid = np.meshgrid(*axes, indexing="ij")
    region = img[tuple(crop)].astype(np.float64)
    out_img = ndimage.map_coordinates(region, grid, order=order, mode="nearest")
    rounding = steps.round_intensities if steps.round_intensities is not None else _whole_numbers(region)
    if rounding:
        out_img = np.round(out_img)
    region_mask = msk[tuple(crop)].astype(np.float64)
    if steps.linear_mask:
        out_msk = ndimage.map_coordinates(region_mask, grid, order=1, mode="constant") >= steps.mask_threshold
    else:
        out_msk = ndimage.map_coordinates(region_mask, grid, order=0, mode="constant") > 0.5
    return out_img, out_msk

"""Dermoscopic asymmetry about the two principal axes, on PH2's 0 / 1 / 2 scale.

As in the ABCD rule, a lesion is judged about two perpendicular axes through its centre, here its principal
axes (second moments of area, through the centroid). About each axis the lesion counts as asymmetric when

* its **shape** is: the shape index (the share of the lesion area that does not overlap the lesion mirrored
  about the axis) exceeds :attr:`AsymmetryModel.shape_threshold`, or
* its **colour** is: the mean CIELAB colours of the two halves on either side of the axis differ by more than
  :attr:`AsymmetryModel.colour_threshold` (ΔE*76), hair and glare left out.

The score is the number of asymmetric axes: 0 symmetric, 1 asymmetric about one axis, 2 about both. The two
thresholds of :data:`DEFAULT_ASYMMETRY_MODEL` were tuned on PH2 folds 1-4 only, maximising the quadratic
weighted kappa with the experts' scores (``benchmarks/findings_ph2.py --tune``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radvlsm.reporting import shape
from radvlsm.reporting.colour import LesionPixels
from radvlsm.reporting.records import AsymmetryFindings


@dataclass(frozen=True)
class AsymmetryModel:
    """``shape_threshold``: shape index above which an axis is asymmetric; ``colour_threshold``: ΔE*76
    between the halves' mean colours above which it is (``None``: shape only)."""

    shape_threshold: float = 0.11
    colour_threshold: float | None = 6.0


#: Tuned on PH2 folds 1-4 (see the module docstring).
DEFAULT_ASYMMETRY_MODEL = AsymmetryModel()


def colour_halves_difference(
    pixels: LesionPixels, full_shape: tuple[int, int], axes: shape.PrincipalAxes, k: int,
    spacing: tuple[float, float] | None = None, within: np.ndarray | None = None,
) -> float:
    """ΔE*76 between the mean colours of the analysed lesion pixels on either side of principal axis ``k``.

    ``pixels`` come from :func:`radvlsm.reporting.colour.lesion_pixels` (working size); ``full_shape`` is the
    ``(H, W)`` of the mask the axes were computed on; ``within`` (that size) keeps only pixels inside it
    (the largest component).
    """
    H, W = full_shape
    h, w = pixels.mask.shape
    sy, sx = spacing if spacing is not None else (1.0, 1.0)
    x = (pixels.cols + 0.5) * W / w - 0.5
    y = (pixels.rows + 0.5) * H / h - 0.5
    lab = pixels.lab
    if within is not None:
        xi = np.clip(np.rint(x).astype(np.int64), 0, W - 1)
        yi = np.clip(np.rint(y).astype(np.int64), 0, H - 1)
        keep = within[yi, xi]
        x, y, lab = x[keep], y[keep], lab[keep]
    cx, cy = axes.centroid
    o = np.asarray(axes.directions[1 - k])
    side = (x - cx) * sx * o[0] + (y - cy) * sy * o[1]
    a, b = lab[side > 0], lab[side < 0]
    if len(a) == 0 or len(b) == 0:
        return 0.0
    return float(np.linalg.norm(a.mean(axis=0) - b.mean(axis=0)))


def asymmetry(
    mask: np.ndarray,
    spacing: tuple[float, float] | None = None,
    pixels: LesionPixels | None = None,
    model: AsymmetryModel = DEFAULT_ASYMMETRY_MODEL,
) -> AsymmetryFindings:
    """Asymmetry of the lesion ``mask`` (2-D, one component: pass the largest) about its principal axes.

    ``pixels``: the colour analysis of the same image (any component set); without it only the shape counts.
    """
    m = np.asarray(mask, dtype=bool)
    axes = shape.principal_axes(m, spacing)
    shape_idx = tuple(round(shape.reflection_overlap(m, axes, k, spacing), 4) for k in (0, 1))
    colour_idx: tuple[float, float] | None = None
    if pixels is not None and model.colour_threshold is not None:
        colour_idx = tuple(  # type: ignore[assignment]
            round(colour_halves_difference(pixels, m.shape, axes, k, spacing, within=m), 2) for k in (0, 1)
        )
    flags = []
    for k in (0, 1):
        asym = shape_idx[k] > model.shape_threshold
        if colour_idx is not None and model.colour_threshold is not None:
            asym = asym or colour_idx[k] > model.colour_threshold
        flags.append(bool(asym))
    return AsymmetryFindings(
        score=int(sum(flags)),
        axis_angles_deg=(round(axes.angle_deg(0), 1), round(axes.angle_deg(1), 1)),
        shape_index=(shape_idx[0], shape_idx[1]),
        colour_index=colour_idx,
        asymmetric_axes=(flags[0], flags[1]),
    )

"""Dermoscopic asymmetry about the two principal axes, on PH2's 0 / 1 / 2 scale.

As in the ABCD rule, a lesion is judged about two perpendicular axes through its centre, here its principal
axes (second moments of area, through the centroid). About each axis ``k`` two indices are measured:

* the **shape index** ``s_k``: the share of the lesion area that does not overlap the lesion mirrored about
  the axis;
* the **mirror colour index** ``c_k``: the mean CIELAB difference (ΔE*76) between each analysed lesion pixel
  and its mirror image across the axis, over the pixels whose mirror image is also an analysed lesion pixel,
  the colours first smoothed over :attr:`AsymmetryModel.colour_sigma` of the lesion's equivalent radius (hair
  and glare left out). It is large when colours and structures are laid out unevenly about the axis.

With colour, each axis gets the index ``a_k = s_k + colour_weight * c_k`` and the lesion the asymmetry index
``a_0 + a_1``; the score is 0 up to ``cuts[0]``, 1 up to ``cuts[1]`` and 2 above (PH2's experts score shape,
colour and structure together, and their score follows the overall asymmetry better than a per-axis vote). The
axes reported as asymmetric are the ``score`` axes with the largest ``a_k``. Without colour (or with
``colour_weight=None``) an axis is asymmetric when its shape index exceeds ``shape_threshold`` and the score
counts the asymmetric axes.

``colour_weight``, ``cuts`` and ``shape_threshold`` of :data:`DEFAULT_ASYMMETRY_MODEL` were fitted on PH2 folds
1-4 only by :func:`radvlsm.reporting.fitting.fit_asymmetry_model` (``python benchmarks/findings_ph2.py --fit``
writes them to ``radvlsm/reporting/params/ph2_findings.json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from radvlsm.metrics.symmetry import PrincipalAxes, mirror_difference, principal_axes, reflection_overlap
from radvlsm.reporting.colour import LesionPixels, load_params, smooth_within
from radvlsm.reporting.records import AsymmetryFindings


@dataclass(frozen=True)
class AsymmetryModel:
    """Parameters of the asymmetry score (see the module docstring).

    Attributes:
        shape_threshold: shape-only rule: an axis is asymmetric when its shape index exceeds this.
        colour_weight: weight of the mirror colour index (per ΔE unit) in the axis index; ``None``: shape only.
        cuts: asymmetry-index cut-points between scores 0 / 1 and 1 / 2.
        colour_sigma: smoothing of the colours before the mirror comparison, as a fraction of the lesion's
            equivalent radius.
    """

    shape_threshold: float = 0.11
    colour_weight: float | None = None
    cuts: tuple[float, float] = (0.5, 0.7)
    colour_sigma: float = 0.1

    def __post_init__(self) -> None:
        if self.cuts[0] > self.cuts[1]:
            raise ValueError(f"cuts must be ascending, got {self.cuts}")

    def to_dict(self) -> dict[str, Any]:
        return {"shape_threshold": self.shape_threshold, "colour_weight": self.colour_weight,
                "cuts": list(self.cuts), "colour_sigma": self.colour_sigma}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AsymmetryModel:
        cw = d.get("colour_weight")
        return cls(float(d["shape_threshold"]), None if cw is None else float(cw),
                   (float(d["cuts"][0]), float(d["cuts"][1])), float(d.get("colour_sigma", 0.1)))


#: Fitted on PH2 folds 1-4 (see the module docstring).
DEFAULT_ASYMMETRY_MODEL = AsymmetryModel.from_dict(load_params()["asymmetry_model"])


def _working_coords(pixels: LesionPixels, full_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the analysed pixels in the coordinates of the full-size mask."""
    H, W = full_shape
    h, w = pixels.mask.shape
    return (pixels.cols + 0.5) * W / w - 0.5, (pixels.rows + 0.5) * H / h - 0.5


def _inside(pixels: LesionPixels, within: np.ndarray) -> np.ndarray:
    """Per analysed pixel: whether its nearest full-size pixel lies in ``within`` (a full-size mask)."""
    H, W = within.shape
    x, y = _working_coords(pixels, (H, W))
    return within[np.clip(np.rint(y).astype(np.int64), 0, H - 1), np.clip(np.rint(x).astype(np.int64), 0, W - 1)]


def colour_halves_difference(
    pixels: LesionPixels, full_shape: tuple[int, int], axes: PrincipalAxes, k: int,
    spacing: tuple[float, float] | None = None, within: np.ndarray | None = None,
) -> float:
    """ΔE*76 between the mean colours of the analysed lesion pixels on either side of principal axis ``k``.

    ``pixels`` come from :func:`radvlsm.reporting.colour.lesion_pixels` (working size); ``full_shape`` is the
    ``(H, W)`` of the mask the axes were computed on; ``within`` (that size) keeps only pixels inside it
    (the largest component).
    """
    sy, sx = spacing if spacing is not None else (1.0, 1.0)
    x, y = _working_coords(pixels, full_shape)
    lab = pixels.lab
    if within is not None:
        keep = _inside(pixels, within)
        x, y, lab = x[keep], y[keep], lab[keep]
    cx, cy = axes.centroid
    o = np.asarray(axes.directions[1 - k])
    side = (x - cx) * sx * o[0] + (y - cy) * sy * o[1]
    a, b = lab[side > 0], lab[side < 0]
    if len(a) == 0 or len(b) == 0:
        return 0.0
    return float(np.linalg.norm(a.mean(axis=0) - b.mean(axis=0)))


def mirror_colour_differences(
    pixels: LesionPixels, full_shape: tuple[int, int], axes: PrincipalAxes,
    spacing: tuple[float, float] | None = None, within: np.ndarray | None = None, sigma: float = 0.1,
) -> tuple[float, float]:
    """Per principal axis, the mirror colour index: mean ΔE*76 between each analysed lesion pixel and its mirror
    image across the axis (through the centroid, in physical space), over the pixels whose mirror image is an
    analysed pixel too; the colours are first smoothed over ``sigma`` times the lesion's equivalent radius.

    Arguments as for :func:`colour_halves_difference`; ``within`` (full size) keeps only pixels inside it. The
    comparison is made at the working size (:func:`radvlsm.metrics.symmetry.mirror_difference`), with the axes
    carried over from the full size.
    """
    H, W = full_shape
    h, w = pixels.mask.shape
    if len(pixels.lab) == 0:
        return 0.0, 0.0
    ok = _inside(pixels, within) if within is not None else np.ones(len(pixels.rows), dtype=bool)
    if not ok.any():
        return 0.0, 0.0
    analysed = np.zeros((h, w), dtype=bool)
    analysed[pixels.rows[ok], pixels.cols[ok]] = True
    lab = np.zeros((h, w, 3))
    radius_px = float(np.sqrt(ok.sum() / np.pi))
    lab[pixels.rows, pixels.cols] = smooth_within(pixels, pixels.lab, max(0.5, sigma * radius_px))
    # the full-size axes in working pixels: the same physical axes, working pixels being W/w x H/h full ones
    sy, sx = spacing if spacing is not None else (1.0, 1.0)
    cx, cy = axes.centroid
    working = PrincipalAxes(((cx + 0.5) * w / W - 0.5, (cy + 0.5) * h / H - 0.5), axes.directions, axes.spreads)
    return mirror_difference(lab, analysed, working, (sy * H / h, sx * W / w))


def score_from_indices(
    shape_index: tuple[float, float], mirror_colour_index: tuple[float, float] | None, model: AsymmetryModel
) -> tuple[int, tuple[bool, bool], float | None]:
    """The score, the asymmetric axes and the asymmetry index (``None`` for the shape-only rule) from the
    per-axis indices (see the module docstring)."""
    if mirror_colour_index is None or model.colour_weight is None:
        flags = (shape_index[0] > model.shape_threshold, shape_index[1] > model.shape_threshold)
        return int(sum(flags)), (bool(flags[0]), bool(flags[1])), None
    a = [shape_index[k] + model.colour_weight * mirror_colour_index[k] for k in (0, 1)]
    total = a[0] + a[1]
    score = int(total > model.cuts[0]) + int(total > model.cuts[1])
    order = (0, 1) if a[0] >= a[1] else (1, 0)
    flagged = set(order[:score])
    return score, (0 in flagged, 1 in flagged), total


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
    axes = principal_axes(m, spacing)
    shape_idx = tuple(round(reflection_overlap(m, axes, k, spacing), 4) for k in (0, 1))
    colour_idx: tuple[float, float] | None = None
    mirror_idx: tuple[float, float] | None = None
    if pixels is not None and model.colour_weight is not None:
        colour_idx = tuple(  # type: ignore[assignment]
            round(colour_halves_difference(pixels, m.shape, axes, k, spacing, within=m), 2) for k in (0, 1)
        )
        mc = mirror_colour_differences(pixels, m.shape, axes, spacing, within=m, sigma=model.colour_sigma)
        mirror_idx = (round(mc[0], 2), round(mc[1], 2))
    score, flags, index = score_from_indices(shape_idx, mirror_idx, model)  # type: ignore[arg-type]
    return AsymmetryFindings(
        score=score,
        axis_angles_deg=(round(axes.angle_deg(0), 1), round(axes.angle_deg(1), 1)),
        shape_index=(shape_idx[0], shape_idx[1]),
        colour_index=colour_idx,
        asymmetric_axes=flags,
        mirror_colour_index=mirror_idx,
        index=None if index is None else round(index, 4),
    )

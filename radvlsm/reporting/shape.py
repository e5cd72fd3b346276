"""Shape measurements of a lesion mask: count, area, diameters, border irregularity, halves about an axis.

Every measurement works in physical units when the pixel spacing is known (points are scaled by the
``(row, column)`` spacing before any distance is taken, so anisotropic pixels are handled) and in pixels
otherwise.

Definitions (the report repeats them):

* **lesion count**: 8-connected components of the mask whose area is at least ``min_component_px`` pixels
  (default: 0.05 % of the image, at least 10 px). Smaller specks are ignored everywhere.
* **area**: the summed area of the counted components.
* **longest diameter**: the maximum Feret diameter of the largest component, i.e. the largest distance between
  two points of the lesion, each pixel counted as its full square (the convex hull of the pixel corners).
* **perpendicular diameter**: the lesion's extent (caliper width) in the direction perpendicular to the
  longest diameter.
* **border irregularity**: ``1 - P_hull / P`` where ``P`` is the length of the largest component's contour
  (smoothed along its length with a Gaussian of sigma 1 px to remove the pixel staircase) and ``P_hull`` the
  perimeter of that contour's convex hull. 0 for a smooth convex outline; it grows with concavities, notches
  and ragged edges towards 1 (a star with deep spikes reaches about 0.5). Unitless, independent of size.
* **asymmetry index** about an axis: the fraction of the lesion's area that does not overlap the lesion
  mirrored about that axis (0 = perfectly symmetric, 1 = no overlap). The axes are the two principal axes
  (of the second moments of area) through the centroid. Both are measured by :mod:`radvlsm.metrics.symmetry`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from radvlsm.metrics.symmetry import PrincipalAxes, xy_scale

#: Gaussian smoothing of the contour (pixels) before its length is measured.
CONTOUR_SIGMA_PX = 1.0
#: Smallest component counted as a lesion, as a fraction of the image area (and in pixels).
MIN_COMPONENT_FRACTION = 0.0005
MIN_COMPONENT_PX = 10

_EIGHT = np.ones((3, 3), dtype=bool)


def default_min_component_px(shape: tuple[int, ...]) -> int:
    """0.05 % of the image (or of one slice of a volume), at least :data:`MIN_COMPONENT_PX`."""
    n = int(np.prod(shape[-2:]))
    return max(MIN_COMPONENT_PX, round(MIN_COMPONENT_FRACTION * n))


@dataclass(frozen=True, eq=False)
class Components:
    """The counted components of a mask: ``labels`` (same shape as the mask; 0 background and specks),
    ``areas`` in pixels (largest first, matching labels ``1..n``)."""

    labels: np.ndarray
    areas: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.areas)

    def largest(self) -> np.ndarray:
        """Boolean mask of the largest component (all False when there is none)."""
        return self.labels == 1 if self.areas else np.zeros(self.labels.shape, dtype=bool)

    def kept(self) -> np.ndarray:
        return self.labels > 0


def components(mask: np.ndarray, min_px: int | None = None) -> Components:
    """Connected components (8-connected in 2-D, 26-connected in 3-D) of at least ``min_px`` pixels/voxels,
    relabelled ``1..n`` from the largest down."""
    m = np.asarray(mask, dtype=bool)
    if min_px is None:
        min_px = default_min_component_px(m.shape)
    structure = _EIGHT if m.ndim == 2 else np.ones((3,) * m.ndim, dtype=bool)
    labels, n = ndimage.label(m, structure=structure)
    if n == 0:
        return Components(np.zeros(m.shape, dtype=np.int32), ())
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    order = [i + 1 for i in np.argsort(-sizes, kind="stable") if sizes[i] >= min_px]
    lut = np.zeros(n + 1, dtype=np.int32)
    for new, old in enumerate(order, start=1):
        lut[old] = new
    return Components(lut[labels], tuple(int(sizes[o - 1]) for o in order))


def _outer_contour(mask: np.ndarray) -> np.ndarray:
    """The longest outer contour of a 2-D mask as ``(N, 2)`` float (x, y) pixel centres."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return np.zeros((0, 2))
    c = max(contours, key=len)
    return c.reshape(-1, 2).astype(np.float64)


def _corner_points(mask: np.ndarray) -> np.ndarray:
    """Corners of the boundary pixels of a 2-D mask, ``(N, 2)`` (x, y): the lesion as the union of pixel squares."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return np.zeros((0, 2))
    pts = np.concatenate([c.reshape(-1, 2) for c in contours]).astype(np.float64)
    offsets = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    return (pts[:, None, :] + offsets[None]).reshape(-1, 2)


def _hull(points: np.ndarray) -> np.ndarray:
    if len(points) < 3:
        return points
    return cv2.convexHull(points.astype(np.float32)).reshape(-1, 2).astype(np.float64)


@dataclass(frozen=True)
class Diameters:
    """``longest`` (max Feret) and ``perpendicular`` (caliper width across it), in the units of the spacing;
    ``endpoints`` of the longest diameter and ``perpendicular_endpoints`` (a segment of that width crossing
    the middle of the longest one), both as ((x0, y0), (x1, y1)) in pixel coordinates, for drawing."""

    longest: float
    perpendicular: float
    endpoints: tuple[tuple[float, float], tuple[float, float]]
    perpendicular_endpoints: tuple[tuple[float, float], tuple[float, float]]


def diameters(mask: np.ndarray, spacing: tuple[float, float] | None = None) -> Diameters:
    """Max Feret diameter of a 2-D mask and its perpendicular caliper width (see the module docstring)."""
    sx, sy = xy_scale(spacing)
    corners = _corner_points(mask)
    if len(corners) == 0:
        return Diameters(0.0, 0.0, ((0.0, 0.0), (0.0, 0.0)), ((0.0, 0.0), (0.0, 0.0)))
    phys = _hull(corners * np.array([sx, sy]))
    d = np.linalg.norm(phys[:, None, :] - phys[None, :, :], axis=-1)
    i, j = np.unravel_index(int(np.argmax(d)), d.shape)
    longest = float(d[i, j])
    u = (phys[j] - phys[i]) / longest
    n = np.array([-u[1], u[0]])
    proj = phys @ n
    width = float(proj.max() - proj.min())
    mid = (phys[i] + phys[j]) / 2
    mid_n = float(mid @ n)
    q0 = mid + (proj.min() - mid_n) * n
    q1 = mid + (proj.max() - mid_n) * n
    to_px = np.array([sx, sy])

    def px(p: np.ndarray) -> tuple[float, float]:
        v = p / to_px
        return float(v[0]), float(v[1])

    return Diameters(longest, width, (px(phys[i]), px(phys[j])), (px(q0), px(q1)))


def _smooth_closed(points: np.ndarray, sigma: float) -> np.ndarray:
    if len(points) < 5 or sigma <= 0:
        return points
    return ndimage.gaussian_filter1d(points, sigma=sigma, axis=0, mode="wrap")


def _perimeter(points: np.ndarray) -> float:
    if len(points) < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(np.vstack([points, points[:1]]), axis=0), axis=1).sum())


def border_irregularity(mask: np.ndarray, spacing: tuple[float, float] | None = None) -> float:
    """``1 - P_hull / P`` of the mask's outer contour (see the module docstring), in [0, 1)."""
    sx, sy = xy_scale(spacing)
    contour = _outer_contour(mask)
    if len(contour) < 3:
        return 0.0
    smooth = _smooth_closed(contour, CONTOUR_SIGMA_PX) * np.array([sx, sy])
    p = _perimeter(smooth)
    if p <= 0:
        return 0.0
    p_hull = _perimeter(_hull(smooth))
    return float(min(max(1.0 - p_hull / p, 0.0), 1.0))


def solidity(mask: np.ndarray) -> float:
    """Area over the area of the convex hull of the pixel squares (1 for a convex shape)."""
    corners = _corner_points(mask)
    if len(corners) < 3:
        return 1.0
    hull_area = float(cv2.contourArea(_hull(corners).astype(np.float32)))
    return float(min(1.0, mask.sum() / hull_area)) if hull_area > 0 else 1.0


def halves(mask: np.ndarray, axes: PrincipalAxes, k: int, spacing: tuple[float, float] | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """The two halves of the mask on either side of principal axis ``k`` (boolean masks)."""
    sx, sy = xy_scale(spacing)
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = axes.centroid
    other = np.asarray(axes.directions[1 - k])
    side = (xx - cx) * sx * other[0] + (yy - cy) * sy * other[1]
    m = mask.astype(bool)
    return m & (side > 0), m & (side < 0)

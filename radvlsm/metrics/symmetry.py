"""Symmetry of a 2-D lesion mask, and of the image values inside it, about the mask's principal axes.

Knows no model: the report's asymmetry finding (:mod:`radvlsm.reporting.asymmetry`) and the diagnosis head's
colour features (:mod:`radvlsm.fusion.features`) both measure with these.

Coordinates: pixel ``(x, y)`` = (column, row), the centre of pixel ``(r, c)`` at ``(c, r)``. With a pixel
``spacing`` ``(row, column)`` the axes and mirror images are taken in physical space (anisotropic pixels are
handled); without it, in pixels.

* **Principal axes**: the eigenvectors of the second moments of area of the mask, through its centroid, the
  major axis first.
* **Reflection overlap** about an axis: ``1 - |M ∩ R(M)| / |M|``, where ``R`` mirrors about the axis.
* **Mirror difference** about an axis: the mean Euclidean distance between the values of an image at each
  mask pixel and at its mirror image, over the mask pixels whose mirror image lies in the mask too.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def xy_scale(spacing: tuple[float, float] | None) -> tuple[float, float]:
    """(x, y) = (column, row) scale factors from a ``(row, column)`` spacing (1, 1 without one)."""
    if spacing is None:
        return 1.0, 1.0
    return float(spacing[1]), float(spacing[0])


@dataclass(frozen=True)
class PrincipalAxes:
    """Centroid ``(x, y)`` in pixels, the two principal directions (unit vectors in physical (x, y) space,
    major first) and the standard deviations along them (physical units)."""

    centroid: tuple[float, float]
    directions: tuple[tuple[float, float], tuple[float, float]]
    spreads: tuple[float, float]

    def angle_deg(self, k: int) -> float:
        """Angle of axis ``k`` from the image x axis, in degrees in [0, 180), counter-clockwise as seen on the
        screen (y grows downwards in the image)."""
        dx, dy = self.directions[k]
        return float(np.degrees(np.arctan2(-dy, dx)) % 180.0)

    def mirror_matrix(self, k: int, spacing: tuple[float, float] | None = None) -> np.ndarray:
        """``(2, 3)`` affine map of pixel ``(x, y)`` to its mirror image about axis ``k`` (the reflection is
        taken in physical space)."""
        s = np.diag(xy_scale(spacing))
        u = np.asarray(self.directions[k], dtype=np.float64)
        m = np.linalg.inv(s) @ (2.0 * np.outer(u, u) - np.eye(2)) @ s
        c = np.asarray(self.centroid, dtype=np.float64)
        return np.hstack([m, (c - m @ c)[:, None]])


def principal_axes(mask: np.ndarray, spacing: tuple[float, float] | None = None) -> PrincipalAxes:
    """The principal axes of a 2-D mask (see the module docstring); an empty mask gives the image axes."""
    sx, sy = xy_scale(spacing)
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return PrincipalAxes((0.0, 0.0), ((1.0, 0.0), (0.0, 1.0)), (0.0, 0.0))
    cx, cy = float(xs.mean()), float(ys.mean())
    pts = np.stack([(xs - cx) * sx, (ys - cy) * sy], axis=1)
    cov = pts.T @ pts / len(pts) + np.eye(2) * 1e-12
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1]
    dirs = []
    for k in order:
        v = evecs[:, k]
        # A deterministic sign: first non-zero component positive.
        if v[0] < -1e-12 or (abs(v[0]) <= 1e-12 and v[1] < 0):
            v = -v
        dirs.append((float(v[0]), float(v[1])))
    spreads = tuple(float(np.sqrt(max(evals[k], 0.0))) for k in order)
    return PrincipalAxes((cx, cy), (dirs[0], dirs[1]), (spreads[0], spreads[1]))


def _mirror_partners(mask: np.ndarray, axes: PrincipalAxes, k: int, spacing: tuple[float, float] | None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The mask pixels ``(ys, xs)``, whether their mirror image about axis ``k`` (nearest pixel) lies in the
    mask, and the flat index of that mirror pixel (valid where it does)."""
    ys, xs = np.nonzero(mask)
    a = axes.mirror_matrix(k, spacing)
    rx = np.rint(a[0, 0] * xs + a[0, 1] * ys + a[0, 2]).astype(np.int64)
    ry = np.rint(a[1, 0] * xs + a[1, 1] * ys + a[1, 2]).astype(np.int64)
    h, w = mask.shape
    inside = (rx >= 0) & (rx < w) & (ry >= 0) & (ry < h)
    flat = np.where(inside, ry * w + rx, 0)
    hit = inside & mask.reshape(-1)[flat]
    return ys, xs, hit, flat


def reflection_overlap(
    mask: np.ndarray, axes: PrincipalAxes, k: int, spacing: tuple[float, float] | None = None
) -> float:
    """Asymmetry index of the mask about principal axis ``k``: ``1 - |M ∩ R_k(M)| / |M|`` where ``R_k`` is
    the mirror image about that axis (through the centroid), computed in physical space."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return 0.0
    _, _, hit, _ = _mirror_partners(m, axes, k, spacing)
    return float(1.0 - hit.mean())


def mirror_difference(
    values: np.ndarray, mask: np.ndarray, axes: PrincipalAxes | None = None,
    spacing: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """Per principal axis (major, minor), the mean Euclidean distance between ``values`` at each mask pixel and
    at its mirror image about the axis, over the mask pixels whose mirror image is in the mask too (0 when
    none is).

    Args:
        values: ``(H, W)`` or ``(H, W, C)`` image values (e.g. CIELAB: the distance is then ΔE*76).
        mask: ``(H, W)`` lesion mask.
        axes: the mask's principal axes (computed when not given).
        spacing: ``(row, column)`` pixel spacing, or ``None`` for pixels.
    """
    m = np.asarray(mask, dtype=bool)
    if m.shape != values.shape[:2]:
        raise ValueError(f"values {values.shape} and mask {m.shape} differ in size")
    if not m.any():
        return 0.0, 0.0
    axes = axes if axes is not None else principal_axes(m, spacing)
    v = np.asarray(values, dtype=np.float64).reshape(m.size, -1)
    out = []
    for k in (0, 1):
        ys, xs, hit, flat = _mirror_partners(m, axes, k, spacing)
        if not hit.any():
            out.append(0.0)
            continue
        own = v[ys[hit] * m.shape[1] + xs[hit]]
        out.append(float(np.linalg.norm(own - v[flat[hit]], axis=1).mean()))
    return out[0], out[1]


def smooth_inside(values: np.ndarray, mask: np.ndarray, sigma_px: float) -> np.ndarray:
    """``values`` ``(H, W[, C])`` Gaussian-smoothed over the mask only (normalised convolution: nothing from
    outside the mask bleeds in); outside the mask the result is 0."""
    m = np.asarray(mask, dtype=np.float32)
    v = np.asarray(values, dtype=np.float32)
    if sigma_px <= 0:
        return v * (m if v.ndim == 2 else m[..., None])
    num = cv2.GaussianBlur(v * (m if v.ndim == 2 else m[..., None]), (0, 0), sigma_px)
    den = cv2.GaussianBlur(m, (0, 0), sigma_px)
    den = np.where(m > 0, np.maximum(den, 1e-6), np.inf)
    return num / (den if v.ndim == 2 else den[..., None])

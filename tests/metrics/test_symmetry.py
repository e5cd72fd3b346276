"""Principal axes, reflection overlap and mirror differences of a mask (radvlsm.metrics.symmetry)."""

from __future__ import annotations

import numpy as np
import pytest

from radvlsm.metrics.symmetry import mirror_difference, principal_axes, reflection_overlap, smooth_inside


def _ellipse(h: int, w: int, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1.0


def test_principal_axes_of_a_wide_ellipse() -> None:
    axes = principal_axes(_ellipse(100, 160, 80, 50, 60, 25))
    assert axes.centroid == pytest.approx((80.0, 50.0), abs=1e-6)
    assert abs(axes.directions[0][0]) == pytest.approx(1.0, abs=1e-6)  # major along x
    assert axes.angle_deg(0) == pytest.approx(0.0, abs=1e-3) and axes.angle_deg(1) == pytest.approx(90.0, abs=1e-3)
    assert axes.spreads[0] > 2 * axes.spreads[1]


def test_reflection_overlap_is_zero_for_an_ellipse_and_grows_with_a_bump() -> None:
    m = _ellipse(100, 160, 80, 50, 60, 25)
    axes = principal_axes(m)
    assert reflection_overlap(m, axes, 0) < 0.01 and reflection_overlap(m, axes, 1) < 0.01
    bumped = m.copy()
    bumped[20:35, 100:130] = True  # a bump on the upper right
    axes = principal_axes(bumped)
    assert reflection_overlap(bumped, axes, 0) > 0.05 and reflection_overlap(bumped, axes, 1) > 0.05
    assert reflection_overlap(np.zeros((5, 5), bool), axes, 0) == 0.0


def test_mirror_matrix_reflects_in_physical_space() -> None:
    # A circle of radius 20 mm on 0.5 mm rows x 1 mm columns is an ellipse of 80 x 40 px: its mirror image about
    # either axis (taken in mm) is itself, and the matrix is an involution.
    m = _ellipse(100, 80, 40, 50, 20, 40)
    spacing = (0.5, 1.0)
    axes = principal_axes(m, spacing)
    for k in (0, 1):
        assert reflection_overlap(m, axes, k, spacing) < 0.01
        a = np.vstack([axes.mirror_matrix(k, spacing), [0, 0, 1]])
        assert np.allclose(a @ a, np.eye(3), atol=1e-9)


def test_mirror_difference_sees_which_axis_the_values_differ_across() -> None:
    m = _ellipse(100, 160, 80, 50, 60, 25)
    xx = np.mgrid[0:100, 0:160][1]
    values = np.where(xx < 80, 10.0, 30.0)  # left half 10, right half 30
    major, minor = mirror_difference(values, m)
    assert major < 0.5  # top <-> bottom: the same values
    assert minor > 19.0  # left <-> right: 20 apart
    with pytest.raises(ValueError, match="differ in size"):
        mirror_difference(values[:, :10], m)
    assert mirror_difference(values, np.zeros_like(m)) == (0.0, 0.0)


def test_smooth_inside_keeps_the_outside_out() -> None:
    m = np.zeros((40, 40), bool)
    m[10:30, 10:30] = True
    values = np.where(m, 5.0, 1000.0)  # a bright outside must not bleed in
    out = smooth_inside(values, m, 3.0)
    assert np.allclose(out[m], 5.0, atol=1e-3)
    assert np.all(out[~m] == 0.0)
    rgb = np.stack([values] * 3, axis=-1)
    assert np.allclose(smooth_inside(rgb, m, 3.0)[m], 5.0, atol=1e-3)

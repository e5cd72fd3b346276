"""Shape findings on synthetic masks with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from radvlsm.reporting import shape
from radvlsm.reporting.asymmetry import AsymmetryModel, asymmetry


def test_disc_is_symmetric_with_equal_diameters(disc) -> None:
    m = disc((200, 200), 60)
    d = shape.diameters(m)
    assert d.longest == pytest.approx(d.perpendicular, rel=0.02)
    assert d.longest == pytest.approx(121, abs=2)  # pixel squares of a radius-60 disc
    a = asymmetry(m, model=AsymmetryModel(colour_weight=None))
    assert a.score == 0
    assert max(a.shape_index) < 0.01
    assert a.colour_index is None
    assert shape.border_irregularity(m) < 0.01
    assert shape.solidity(m) > 0.97


def test_rectangle_diameters_are_diagonal_and_caliper_width() -> None:
    m = np.zeros((100, 200), bool)
    m[20:50, 40:130] = True  # 90 x 30 pixels
    d = shape.diameters(m)
    diag = math.hypot(90, 30)
    assert d.longest == pytest.approx(diag, abs=1e-6)
    assert d.perpendicular == pytest.approx(2 * 90 * 30 / diag, abs=1e-6)  # rectangle's width across the diagonal


def test_area_and_diameters_in_mm_with_anisotropic_spacing() -> None:
    m = np.zeros((100, 100), bool)
    m[10:30, 10:60] = True  # 20 rows x 50 columns
    d = shape.diameters(m, spacing=(0.5, 0.2))  # (row, column) mm
    assert d.longest == pytest.approx(math.hypot(50 * 0.2, 20 * 0.5), abs=1e-6)
    a = asymmetry(m, spacing=(0.5, 0.2), model=AsymmetryModel(colour_weight=None))
    assert a.score == 0  # a rectangle is symmetric about its axes in physical space too


def test_l_shape_is_asymmetric_about_both_axes() -> None:
    m = np.zeros((220, 220), bool)
    m[20:200, 20:60] = True  # long vertical arm
    m[160:200, 20:120] = True  # shorter foot
    a = asymmetry(m, model=AsymmetryModel(colour_weight=None))
    assert a.score == 2
    assert min(a.shape_index) > 0.2
    assert shape.solidity(m) < 0.8
    assert shape.border_irregularity(m) > 0.03


def test_equal_armed_l_is_symmetric_about_its_diagonal_only() -> None:
    m = np.zeros((200, 200), bool)
    m[40:160, 40:80] = True
    m[120:160, 40:160] = True
    a = asymmetry(m, model=AsymmetryModel(colour_weight=None))
    assert a.score == 1
    assert sorted(a.shape_index)[0] < 0.01


def test_star_border_is_irregular() -> None:
    import cv2

    m = np.zeros((300, 300), np.uint8)
    pts = [(150 + (120 if i % 2 == 0 else 50) * math.cos(math.pi * i / 10),
            150 + (120 if i % 2 == 0 else 50) * math.sin(math.pi * i / 10)) for i in range(20)]
    cv2.fillPoly(m, [np.array(pts, np.int32)], 1)
    assert shape.border_irregularity(m.astype(bool)) > 0.3


def test_components_count_ignores_specks(disc) -> None:
    m = disc((300, 300), 40, (80, 80)) | disc((300, 300), 25, (220, 220))
    m[5, 290] = True  # a one-pixel speck
    c = shape.components(m, min_px=20)
    assert c.count == 2
    assert c.areas[0] > c.areas[1]
    assert c.largest().sum() == c.areas[0]
    assert shape.components(np.zeros((10, 10), bool)).count == 0

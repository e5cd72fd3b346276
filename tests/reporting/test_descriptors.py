"""Ultrasound BI-RADS descriptors and CT findings on synthetic shapes and volumes."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from radvlsm.reporting.descriptors import (
    ct_findings,
    fleischner_size_category,
    fleischner_volume_category,
    ultrasound_descriptors,
)


def test_wide_rectangle_3_to_1_is_parallel_oval_circumscribed() -> None:
    m = np.zeros((200, 300), bool)
    m[80:120, 60:180] = True
    us = ultrasound_descriptors(m)
    assert (us.shape, us.orientation, us.margin) == ("oval", "parallel", "circumscribed")
    assert us.height_width_ratio == pytest.approx(1 / 3, abs=0.01)


def test_tall_ellipse_is_not_parallel(ellipse) -> None:
    us = ultrasound_descriptors(ellipse((300, 200), (30, 90)))
    assert us.orientation == "not parallel"
    assert us.shape == "oval"


def test_circle_is_round(disc) -> None:
    assert ultrasound_descriptors(disc((200, 200), 60)).shape == "round"


def test_spacing_changes_orientation() -> None:
    m = np.zeros((100, 100), bool)
    m[20:60, 20:70] = True  # 40 rows x 50 columns: wider in pixels
    assert ultrasound_descriptors(m).orientation == "parallel"
    assert ultrasound_descriptors(m, spacing=(0.5, 0.2)).orientation == "not parallel"  # 20 mm tall, 10 mm wide


def test_microlobulated_outline_is_irregular_not_circumscribed() -> None:
    m = np.zeros((300, 400), np.uint8)
    t = np.linspace(0, 2 * math.pi, 400)
    r = 1 + 0.05 * np.sin(25 * t)
    cv2.fillPoly(m, [np.stack([200 + 150 * r * np.cos(t), 150 + 60 * r * np.sin(t)], 1).astype(np.int32)], 1)
    us = ultrasound_descriptors(m.astype(bool))
    assert us.margin == "not circumscribed"
    assert us.shape == "irregular"


def test_gently_undulating_ellipse_stays_oval_and_circumscribed() -> None:
    m = np.zeros((300, 400), np.uint8)
    t = np.linspace(0, 2 * math.pi, 400)
    r = 1 + 0.04 * np.sin(3 * t)
    cv2.fillPoly(m, [np.stack([200 + 150 * r * np.cos(t), 150 + 60 * r * np.sin(t)], 1).astype(np.int32)], 1)
    us = ultrasound_descriptors(m.astype(bool))
    assert (us.shape, us.margin) == ("oval", "circumscribed")


@pytest.mark.parametrize(("d", "cat"), [(3.0, "<6 mm"), (5.4, "<6 mm"), (5.6, "6-8 mm"), (8.4, "6-8 mm"),
                                        (8.6, ">8 mm"), (30.0, ">8 mm")])
def test_fleischner_size_categories(d: float, cat: str) -> None:
    assert fleischner_size_category(d) == cat


def test_fleischner_volume_categories() -> None:
    assert fleischner_volume_category(99) == "<100 mm³"
    assert fleischner_volume_category(180) == "100-250 mm³"
    assert fleischner_volume_category(251) == ">250 mm³"


def test_ct_mean_hu_inside_the_mask() -> None:
    hu = np.full((5, 20, 20), -800.0)
    hu[1:4, 5:15, 5:15] = 40.0
    mask = hu > -100
    ct = ct_findings(hu, mask, volume_mm3=123.4, mean_diameter_mm=7.0)
    assert ct.mean_hu == 40.0
    assert ct.hu_std == 0.0
    assert (ct.size_category, ct.volume_category) == ("6-8 mm", "100-250 mm³")

"""Asymmetry from shape and colour: the mirror colour index, the score rule, the fitted default model."""

from __future__ import annotations

import numpy as np
import pytest

from radvlsm.reporting.asymmetry import (
    DEFAULT_ASYMMETRY_MODEL,
    AsymmetryModel,
    asymmetry,
    score_from_indices,
)
from radvlsm.reporting.colour import DEFAULT_COLOUR_MODEL, lesion_pixels
from radvlsm.reporting.records import AsymmetryFindings, ColourFindings, from_dict

PROTO = dict(DEFAULT_COLOUR_MODEL.prototypes)
SKIN = (72.0, 14.0, 20.0)


def _image(to_rgb, mask: np.ndarray, left: str, right: str) -> np.ndarray:
    h, w = mask.shape
    img = np.empty((h, w, 3), np.uint8)
    img[:] = to_rgb(SKIN)
    xx = np.mgrid[:h, :w][1]
    img[mask & (xx < w // 2)] = to_rgb(PROTO[left])
    img[mask & (xx >= w // 2)] = to_rgb(PROTO[right])
    return img


def test_uniform_symmetric_lesion_scores_zero(ellipse, to_rgb) -> None:
    m = ellipse((240, 320), (110, 70))
    img = _image(to_rgb, m, "light-brown", "light-brown")
    a = asymmetry(m, None, lesion_pixels(img, m))
    assert a.score == 0 and a.asymmetric_axes == (False, False)
    assert a.mirror_colour_index is not None and max(a.mirror_colour_index) < 0.5
    assert a.index is not None and a.index < DEFAULT_ASYMMETRY_MODEL.cuts[0]


def test_colours_split_across_the_minor_axis_make_that_axis_asymmetric(ellipse, to_rgb) -> None:
    m = ellipse((240, 320), (110, 70))  # major axis horizontal: axis 0 at 0°, axis 1 at 90°
    img = _image(to_rgb, m, "dark-brown", "light-brown")
    a = asymmetry(m, None, lesion_pixels(img, m))
    assert a.axis_angles_deg == (0.0, 90.0)
    assert max(a.shape_index) < 0.01  # the outline is symmetric
    mc = a.mirror_colour_index
    assert mc is not None
    assert mc[0] < 1.0  # mirroring top to bottom keeps the colours
    assert mc[1] > 15.0  # mirroring left to right swaps dark- and light-brown
    assert a.score == 1 and a.asymmetric_axes == (False, True)
    # Without colour the same lesion is symmetric.
    assert asymmetry(m).score == 0


def test_score_rule_and_flagged_axes() -> None:
    model = AsymmetryModel(shape_threshold=0.1, colour_weight=0.02, cuts=(0.4, 0.7))
    # index = 0.05 + 0.02*5 + 0.30 + 0.02*5 = 0.55: score 1, the second axis is the more asymmetric
    score, flags, index = score_from_indices((0.05, 0.30), (5.0, 5.0), model)
    assert (score, flags) == (1, (False, True)) and index == pytest.approx(0.55)
    assert score_from_indices((0.3, 0.3), (5.0, 5.0), model)[:2] == (2, (True, True))
    assert score_from_indices((0.01, 0.02), (1.0, 1.0), model)[:2] == (0, (False, False))
    # Shape-only rule: per axis against the shape threshold; no index.
    assert score_from_indices((0.05, 0.30), None, model) == (1, (False, True), None)
    shape_only = AsymmetryModel(shape_threshold=0.1, colour_weight=None)
    assert score_from_indices((0.2, 0.3), (50.0, 50.0), shape_only) == (2, (True, True), None)


def test_model_validation_and_round_trip() -> None:
    with pytest.raises(ValueError, match="ascending"):
        AsymmetryModel(cuts=(0.8, 0.5))
    m = AsymmetryModel(0.12, 0.03, (0.4, 0.6), 0.1)
    assert AsymmetryModel.from_dict(m.to_dict()) == m
    assert AsymmetryModel.from_dict(AsymmetryModel(colour_weight=None).to_dict()).colour_weight is None


def test_default_model_uses_colour_with_a_positive_weight() -> None:
    d = DEFAULT_ASYMMETRY_MODEL
    assert d.colour_weight is not None and d.colour_weight > 0
    assert 0 < d.cuts[0] <= d.cuts[1]
    assert 0 < d.shape_threshold < 1


def test_schema_1_0_records_without_the_new_fields_still_read() -> None:
    a = from_dict(AsymmetryFindings, {"score": 1, "axis_angles_deg": [0.0, 90.0], "shape_index": [0.1, 0.2],
                                      "colour_index": None, "asymmetric_axes": [False, True]})
    assert a.mirror_colour_index is None and a.index is None
    c = from_dict(ColourFindings, {"present": ["black"], "fractions": [["black", 0.5]], "skin_lab": [70, 10, 20],
                                   "excluded_fraction": 0.0})
    assert c.probabilities is None

"""Dermoscopic colour detection on synthetic colour patches."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from radvlsm.reporting.colour import (
    COLOUR_FEATURES,
    DEFAULT_COLOUR_MODEL,
    DOMINANT_SHARE,
    ColourModel,
    PresenceModel,
    colour_features,
    dermoscopic_colours,
    lesion_pixels,
    rgb_to_lab,
)
from radvlsm.reporting.records import DERMOSCOPIC_COLOURS

PROTO = dict(DEFAULT_COLOUR_MODEL.prototypes)
SKIN_LAB = (72.0, 14.0, 20.0)


def _lesion(to_rgb, colours: list[str], shape: tuple[int, int] = (240, 320)) -> tuple[np.ndarray, np.ndarray]:
    """Skin-coloured image with a disc split into equal sectors of the given prototype colours."""
    h, w = shape
    img = np.empty((h, w, 3), np.uint8)
    img[:] = to_rgb(SKIN_LAB)
    m = np.zeros(shape, np.uint8)
    cv2.circle(m, (w // 2, h // 2), min(h, w) * 3 // 8, 1, -1)
    mask = m.astype(bool)
    yy, xx = np.mgrid[:h, :w]
    ang = (np.degrees(np.arctan2(yy - h / 2, xx - w / 2)) + 360) % 360
    step = 360 / len(colours)
    for i, c in enumerate(colours):
        img[mask & (ang >= i * step) & (ang < (i + 1) * step)] = to_rgb(PROTO[c])
    return img, mask


def test_lab_conversion_matches_reference_values() -> None:
    lab = rgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]], np.uint8))
    np.testing.assert_allclose(lab[0], [100, 0, 0], atol=0.05)
    np.testing.assert_allclose(lab[1], [0, 0, 0], atol=0.05)
    np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.05)


@pytest.mark.parametrize("colours", [
    ["dark-brown", "blue-gray", "black"],
    ["light-brown"],
    ["light-brown", "dark-brown"],
    ["red", "dark-brown"],
])
def test_patches_of_known_colours_are_found(to_rgb, colours: list[str]) -> None:
    img, mask = _lesion(to_rgb, colours)
    found = dermoscopic_colours(img, mask)
    assert set(found.present) == set(colours)
    fr = dict(found.fractions)
    for c in colours:
        assert fr[c] == pytest.approx(1 / len(colours), abs=0.03)
    assert [c for c, _ in found.fractions] == list(DERMOSCOPIC_COLOURS)
    np.testing.assert_allclose(found.skin_lab, SKIN_LAB, atol=1.0)


def test_hair_over_the_lesion_is_not_black(to_rgb) -> None:
    img, mask = _lesion(to_rgb, ["light-brown"])
    for x in range(60, 260, 25):
        cv2.line(img, (x, 20), (x + 40, 220), (40, 30, 25), 2)
    found = dermoscopic_colours(img, mask)
    assert found.present == ("light-brown",)
    assert found.excluded_fraction > 0.05


def test_large_images_are_analysed_at_working_size(to_rgb) -> None:
    img, mask = _lesion(to_rgb, ["dark-brown", "black"], shape=(960, 1280))
    assert set(dermoscopic_colours(img, mask).present) == {"dark-brown", "black"}


def test_model_validation() -> None:
    with pytest.raises(ValueError, match="six colours and skin"):
        ColourModel(prototypes=(("white", (1.0, 1.0, 1.0)),), thresholds=DEFAULT_COLOUR_MODEL.thresholds)
    with pytest.raises(ValueError, match="normalisation"):
        ColourModel(DEFAULT_COLOUR_MODEL.prototypes, DEFAULT_COLOUR_MODEL.thresholds, normalisation="magic")
    with pytest.raises(ValueError, match="RGB"):
        dermoscopic_colours(np.zeros((10, 10), np.uint8), np.ones((10, 10), bool))


def test_a_light_centre_in_a_brown_lesion_is_white(to_rgb) -> None:
    img, mask = _lesion(to_rgb, ["light-brown"])
    h, w = mask.shape
    centre = np.zeros((h, w), np.uint8)
    cv2.circle(centre, (w // 2, h // 2), 35, 1, -1)
    img[centre > 0] = to_rgb(PROTO["white"])
    found = dermoscopic_colours(img, mask)
    assert set(found.present) == {"white", "light-brown"}
    assert found.probabilities is not None and dict(found.probabilities)["white"] > 0.5


def test_presence_model_guards(to_rgb) -> None:
    """A presence model cannot name a colour no pixel shows, nor miss one that covers half the lesion."""
    img, mask = _lesion(to_rgb, ["dark-brown"])
    always = PresenceModel("blue-gray", ("blue5",), (0.0,), (1.0,), (0.0,), 10.0, 0.5)  # p = 1 everywhere
    never = PresenceModel("dark-brown", ("dark35",), (0.0,), (1.0,), (0.0,), -10.0, 0.5)  # p = 0 everywhere
    model = dataclasses.replace(DEFAULT_COLOUR_MODEL, presence=(always, never))
    found = dermoscopic_colours(img, mask, model)
    assert found.present == ("dark-brown",)  # share 1.0 >= DOMINANT_SHARE; blue-gray: no pixel nearest it
    assert dict(found.probabilities or ())["blue-gray"] == pytest.approx(1.0, abs=1e-4)
    assert DOMINANT_SHARE <= 1.0


def test_share_rule_without_presence_models(to_rgb) -> None:
    img, mask = _lesion(to_rgb, ["red", "dark-brown"])
    model = dataclasses.replace(DEFAULT_COLOUR_MODEL, presence=())
    found = dermoscopic_colours(img, mask, model)
    assert set(found.present) == {"red", "dark-brown"} and found.probabilities is None


def test_features_are_named_and_finite(to_rgb) -> None:
    img, mask = _lesion(to_rgb, ["dark-brown", "blue-gray", "black"])
    f = colour_features(lesion_pixels(img, mask))
    assert tuple(f) == COLOUR_FEATURES
    assert all(np.isfinite(v) for v in f.values())
    assert f["fraction:black"] == pytest.approx(np.sqrt(1 / 3), abs=0.03)
    assert f["blue5"] > 0.3 and f["dark20"] > 0.3

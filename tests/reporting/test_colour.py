"""Dermoscopic colour detection on synthetic colour patches."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from radvlsm.reporting.colour import DEFAULT_COLOUR_MODEL, ColourModel, dermoscopic_colours, rgb_to_lab
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

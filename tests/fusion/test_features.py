"""The diagnosis head's lesion features: colour measurements, feature groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radvlsm.data.cases import read_dataset
from radvlsm.fusion.features import COLOUR_NAMES, colour_features, select_groups
from radvlsm.io import read_image, read_mask, to_display_rgb


def test_colour_features_see_a_blue_lesion_on_pink_skin() -> None:
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[:] = (230, 180, 170)  # skin
    mask = np.zeros((64, 64), bool)
    mask[20:44, 20:44] = True
    rgb[mask] = (70, 90, 140)  # blue-gray
    f = dict(zip(COLOUR_NAMES, colour_features(rgb, mask), strict=True))
    assert f["colour_lesion_b_mean"] < 0 < f["colour_contrast_L"] * -1  # bluish (b* < 0), darker than skin
    assert f["colour_lesion_L_std"] < 1e-6  # uniform colour
    assert f["colour_mirror_major"] < 1e-3 and f["colour_mirror_minor"] < 1e-3  # one colour: symmetric


def test_colour_mirror_features_find_the_axis_the_colours_differ_across() -> None:
    # A wide ellipse (major axis along x), brown on the left half, blue-gray on the right: mirrored about the
    # major axis (top <-> bottom) the colours match, about the minor axis (left <-> right) they do not.
    yy, xx = np.mgrid[0:120, 0:200]
    mask = ((xx - 100) / 80.0) ** 2 + ((yy - 60) / 40.0) ** 2 <= 1.0
    rgb = np.full((120, 200, 3), (230, 180, 170), np.uint8)
    rgb[mask & (xx < 100)] = (120, 70, 40)
    rgb[mask & (xx >= 100)] = (70, 90, 140)
    f = dict(zip(COLOUR_NAMES, colour_features(rgb, mask), strict=True))
    assert f["colour_mirror_major"] < 2.0
    assert f["colour_mirror_minor"] > 20.0


def test_colour_asymmetry_is_higher_in_lesions_the_experts_call_asymmetric(ph2_root: Path) -> None:
    # PH2's experts score asymmetry 0 (symmetric) to 2 (asymmetric about both axes): the colour mirror
    # features of eight lesions of each extreme, under the experts' masks, tell them apart on average.
    ds = read_dataset(ph2_root)
    by_score: dict[str, list[float]] = {"0": [], "2": []}
    for case in ds.cases:
        score = case.labels["asymmetry"]
        if score not in by_score or len(by_score[score]) == 8:
            continue
        rec = read_image(case.image_path)
        mask = read_mask(case.mask_path, like=rec) > 0  # type: ignore[arg-type]
        f = dict(zip(COLOUR_NAMES, colour_features(to_display_rgb(rec), mask), strict=True))
        by_score[score].append(f["colour_mirror_major"] + f["colour_mirror_minor"])
        if all(len(v) == 8 for v in by_score.values()):
            break
    assert np.mean(by_score["2"]) > 1.5 * np.mean(by_score["0"])


def test_select_groups() -> None:
    names = ["original_a", "visual_000", "colour_lesion_L_mean", "original_b"]
    assert select_groups(names, ["radiomics"]) == [0, 3]
    assert select_groups(names, ["visual", "colour"]) == [1, 2]
    with pytest.raises(ValueError, match="unknown feature group"):
        select_groups(names, ["shape"])

"""Relevance map → ranked boxes, on synthetic maps."""

from __future__ import annotations

import numpy as np
import pytest

from radvlsm.stage1_localize.boxes import BoxParams, extract_boxes, nms, to_original
from radvlsm.stage1_localize.config import LocalizerConfig
from radvlsm.stage2_segment.transforms import ResizeTransform


def _blob(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int, value: float) -> np.ndarray:
    m = np.zeros(shape, np.float32)
    m[y0:y1, x0:x1] = value
    return m


def test_two_blobs_give_two_boxes_ranked_by_score() -> None:
    p = _blob((64, 64), 10, 30, 5, 25, 0.95) + _blob((64, 64), 40, 50, 40, 60, 0.7)
    out = extract_boxes(p, itm_prob=0.9, params=BoxParams(top_k=5), frame_size=256)
    assert out.found
    # cells [5, 25) x [10, 30) at 4 px per cell, edges exclusive
    np.testing.assert_allclose(out.boxes[0], [20, 40, 100, 120])
    assert any(np.allclose(b, [160, 160, 240, 200]) for b in out.boxes[1:])
    assert np.all(np.diff(out.scores) <= 0)
    assert out.scores[0] <= 0.9 and out.scores[0] == pytest.approx(0.9 * 0.95)
    assert len(out.boxes) <= 5


def test_union_box_covers_several_blobs() -> None:
    p = _blob((32, 32), 4, 10, 4, 10, 0.9) + _blob((32, 32), 20, 28, 20, 28, 0.9)
    out = extract_boxes(p, 1.0, BoxParams(top_k=5))
    assert any(np.allclose(b, [4, 4, 28, 28]) for b in out.boxes)


def test_empty_map_gives_nothing() -> None:
    out = extract_boxes(np.zeros((64, 64)), itm_prob=0.99)
    assert not out.found and out.boxes.shape == (0, 4) and out.scores.shape == (0,)
    weak = extract_boxes(np.full((64, 64), 0.1), itm_prob=0.99)
    assert not weak.found


def test_itm_below_threshold_is_not_found() -> None:
    p = _blob((64, 64), 10, 30, 5, 25, 0.95)
    assert not extract_boxes(p, itm_prob=0.2, params=BoxParams(itm_threshold=0.5)).found
    assert extract_boxes(p, itm_prob=0.6, params=BoxParams(itm_threshold=0.5)).found


def test_nms_removes_duplicates() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [20, 20, 30, 30], [1, 1, 10, 10]], float)
    keep = nms(boxes, np.array([0.9, 0.8, 0.7, 0.95]), 0.7)
    assert keep.tolist() == [3, 2]
    # a graded blob: every threshold finds nearly the same component, NMS leaves one box for it
    yy, xx = np.mgrid[:64, :64]
    p = np.exp(-(((yy - 32) / 12.0) ** 2 + ((xx - 32) / 12.0) ** 2) * 0.5).astype(np.float32)
    p[np.abs(yy - 32) > 20] = 0
    p[np.abs(xx - 32) > 20] = 0
    out = extract_boxes(p, 1.0, BoxParams(rel_thresholds=(0.5, 0.52, 0.54), abs_thresholds=(), peak_count=0))
    assert len(out.boxes) == 1


def test_boxes_in_original_pixels_for_a_non_square_image() -> None:
    """A 768x560 (W x H) image stretched to 256²: map cells → model px → original px."""
    p = _blob((64, 64), 16, 48, 8, 32, 0.9)  # rows 16..47, cols 8..31
    out = extract_boxes(p, 0.9, BoxParams(), frame_size=256)
    np.testing.assert_allclose(out.boxes[0], [32, 64, 128, 192])
    hw = (560, 768)
    orig = to_original(out.boxes, hw, ResizeTransform(256, "stretch"))
    np.testing.assert_allclose(orig[0], [32 * 3, 64 * 560 / 256, 128 * 3, 192 * 560 / 256])
    # longest_side: same scale on both axes, boxes reaching into the padding are clipped to the image
    pad = to_original(np.array([[0.0, 200.0, 256.0, 256.0]]), hw, ResizeTransform(256, "longest_side"))
    np.testing.assert_allclose(pad[0], [0, 560, 768, 560])  # y 600..768 lies below the 560-px image


def test_params_follow_config() -> None:
    cfg = LocalizerConfig(top_k=3, itm_threshold=0.7)
    params = BoxParams.from_config(cfg)
    assert params.top_k == 3 and params.itm_threshold == 0.7
    assert BoxParams.from_config(cfg, top_k=1).top_k == 1
    with pytest.raises(ValueError, match="2-D"):
        extract_boxes(np.zeros((2, 3, 4)), 1.0)

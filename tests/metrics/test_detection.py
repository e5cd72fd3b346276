from __future__ import annotations

import numpy as np
import pytest

from radvlsm.metrics.detection import box_iou, box_iou_matrix, recall_at_k


def test_box_iou_known_values() -> None:
    assert box_iou([0, 0, 2, 2], [0, 0, 2, 2]) == 1.0
    assert box_iou([0, 0, 2, 2], [2, 0, 4, 2]) == 0.0  # touching edges: no overlap
    assert box_iou([0, 0, 2, 2], [5, 5, 6, 6]) == 0.0
    assert box_iou([0, 0, 2, 2], [1, 0, 3, 2]) == pytest.approx(2 / 6)
    assert box_iou([0, 0, 4, 4], [1, 1, 3, 3]) == pytest.approx(4 / 16)
    assert box_iou([1, 1, 1, 1], [1, 1, 1, 1]) == 0.0  # degenerate: union 0 → 0


def test_box_iou_matrix_shape_and_consistency() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, size=(7, 2))
    a = np.hstack([xy, xy + rng.uniform(1, 30, size=(7, 2))])
    xy = rng.uniform(0, 50, size=(4, 2))
    b = np.hstack([xy, xy + rng.uniform(1, 30, size=(4, 2))])
    m = box_iou_matrix(a, b)
    assert m.shape == (7, 4)
    for i in range(7):
        for j in range(4):
            assert m[i, j] == pytest.approx(box_iou(a[i], b[j]))
    np.testing.assert_allclose(box_iou_matrix(b, a), m.T)
    assert ((m >= 0) & (m <= 1)).all()
    assert box_iou_matrix(np.zeros((0, 4)), b).shape == (0, 4)


@pytest.mark.parametrize("bad", [[[2, 0, 1, 1]], [[0, 0, 1]], [[0, 0, np.nan, 1]]])
def test_invalid_boxes(bad: list[list[float]]) -> None:
    with pytest.raises(ValueError):
        box_iou_matrix(np.asarray(bad, dtype=float), [[0, 0, 1, 1]])


def test_recall_at_k() -> None:
    gt = [
        [[10, 10, 20, 20]],  # image 0: hit at rank 1
        [[50, 50, 70, 70]],  # image 1: hit only at rank 3
        [[0, 0, 5, 5]],  # image 2: no candidates → miss
        None,  # image 3: no GT → excluded
        np.zeros((0, 4)),  # image 4: no GT → excluded
    ]
    cands = [
        [[10, 10, 20, 21], [0, 0, 1, 1]],
        [[0, 0, 1, 1], [100, 100, 110, 110], [51, 50, 70, 70]],
        np.zeros((0, 4)),
        [[0, 0, 9, 9]],
        None,
    ]
    assert recall_at_k(cands, gt, k=1) == pytest.approx(1 / 3)
    assert recall_at_k(cands, gt, k=2) == pytest.approx(1 / 3)
    assert recall_at_k(cands, gt, k=3) == pytest.approx(2 / 3)
    assert recall_at_k(cands, gt, k=100) == pytest.approx(2 / 3)
    assert recall_at_k(cands, gt, k=3, iou_threshold=0.99) == pytest.approx(0.0)


def test_recall_threshold_is_inclusive_and_single_box_gt() -> None:
    # IoU exactly 0.5: [0,0,2,2] vs [0,0,2,1] → 2/4.
    assert recall_at_k([[[0, 0, 2, 1]]], [[0, 0, 2, 2]], k=1, iou_threshold=0.5) == 1.0


def test_recall_multi_gt_needs_every_box() -> None:
    gt = [[[0, 0, 10, 10], [50, 50, 60, 60]]]
    assert recall_at_k([[[0, 0, 10, 10], [50, 50, 60, 60]]], gt, k=2) == 1.0
    assert recall_at_k([[[0, 0, 10, 10], [50, 50, 60, 60]]], gt, k=1) == 0.0


def test_recall_errors() -> None:
    with pytest.raises(ValueError, match="images"):
        recall_at_k([[[0, 0, 1, 1]]], [], k=1)
    with pytest.raises(ValueError, match="k must"):
        recall_at_k([[[0, 0, 1, 1]]], [[0, 0, 1, 1]], k=0)
    with pytest.raises(ValueError, match="no image has a ground-truth box"):
        recall_at_k([[[0, 0, 1, 1]]], [None], k=1)

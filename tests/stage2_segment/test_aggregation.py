from __future__ import annotations

import torch

from radvlsm.stage2_segment.aggregation import AggregationConfig, aggregate, box_window, soft_iou_matrix


def _disc(cx: float, cy: float, r: float, n: int = 64) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(n) + 0.5, torch.arange(n) + 0.5, indexing="ij")
    return (((xx - cx) ** 2 + (yy - cy) ** 2) <= r * r).float()


def test_soft_iou_matrix_is_symmetric_with_unit_diagonal() -> None:
    p = torch.stack([_disc(20, 20, 10), _disc(22, 20, 10), _disc(50, 50, 5)])
    m = soft_iou_matrix(p)
    torch.testing.assert_close(m, m.T)
    torch.testing.assert_close(torch.diagonal(m), torch.ones(3))
    assert 0.7 < m[0, 1] < 0.85 and m[0, 2] == 0  # discs of radius 10, 2 px apart: IoU ~0.78


def test_wrong_candidate_is_outweighed() -> None:
    """Three agreeing candidates and one wrong one that claims a high IoU: the fused mask follows the three."""
    good = [_disc(30, 30, 12), _disc(31, 30, 12), _disc(30, 31, 11)]
    wrong = _disc(8, 8, 6)
    probs = torch.stack([*good, wrong])
    iou = torch.tensor([0.8, 0.75, 0.8, 0.9])
    agg = aggregate(probs, iou, None, torch.ones(4), AggregationConfig())
    assert agg.weights[3] < 0.05
    assert (agg.probability >= 0.5)[8, 8].item() is False
    assert (agg.probability >= 0.5)[30, 30].item() is True
    best = aggregate(probs, iou, None, torch.ones(4), AggregationConfig(method="best_iou"))
    assert best.weights.argmax().item() == 3  # the baseline trusts the over-confident wrong box
    mean = aggregate(probs, iou, None, torch.ones(4), AggregationConfig(method="mean"))
    torch.testing.assert_close(mean.weights, torch.full((4,), 0.25))


def test_presence_rejects_candidates_and_reports_no_lesion() -> None:
    probs = torch.stack([_disc(30, 30, 12), _disc(10, 10, 5)])
    iou = torch.tensor([0.9, 0.9])
    agg = aggregate(probs, iou, torch.tensor([0.9, 0.1]), torch.ones(2))
    assert agg.lesion_present and agg.weights[1] == 0
    none = aggregate(probs, iou, torch.tensor([0.2, 0.1]), torch.ones(2))
    assert not none.lesion_present


def test_weights_sum_to_one_and_reliability_in_unit_interval() -> None:
    probs = torch.rand(5, 16, 16)
    agg = aggregate(probs, torch.rand(5), torch.rand(5), torch.rand(5))
    assert abs(float(agg.weights.sum()) - 1) < 1e-6
    assert 0 <= agg.image_reliability <= 1


def test_box_window_grows_the_box_by_the_margin() -> None:
    # a 256-px frame on a 128 grid: the box 64..128 (x) and 32..96 (y) covers cells 32..63 and 16..47
    w = box_window(torch.tensor([[64.0, 32.0, 128.0, 96.0]]), (128, 128), 256.0, 0.0)[0]
    assert w.shape == (128, 128) and w.sum() == 32 * 32
    assert w[16, 32] == 1 and w[47, 63] == 1 and w[15, 32] == 0 and w[16, 64] == 0
    grown = box_window(torch.tensor([[64.0, 32.0, 128.0, 96.0]]), (128, 128), 256.0, 0.25)[0]
    assert grown.sum() == 48 * 48  # 16 px (8 cells) more on every side
    clipped = box_window(torch.tensor([[0.0, 0.0, 256.0, 256.0]]), (64, 64), 256.0, 0.5)[0]
    assert clipped.sum() == 64 * 64  # never beyond the frame

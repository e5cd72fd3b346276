from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from radvlsm.metrics.classification import (
    AucInterval,
    _auc_rows,
    accuracy,
    balanced_accuracy,
    confusion_matrix,
    roc_auc_ci,
)


def _data(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    score = np.round(y * 0.8 + rng.normal(0, 0.7, n), 1)  # rounded: ties between classes
    return y, score


def test_auc_point_matches_sklearn_and_interval_contains_it() -> None:
    y, s = _data()
    r = roc_auc_ci(y, s, seed=1)
    assert isinstance(r, AucInterval)
    assert r.auc == roc_auc_score(y, s)
    assert r.n_boot == 2000 and r.level == 0.95
    assert 0.0 <= r.low <= r.auc <= r.high <= 1.0
    assert r.low < r.high
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.auc = 0.0  # type: ignore[misc]


def test_auc_bootstrap_is_reproducible() -> None:
    y, s = _data()
    assert roc_auc_ci(y, s, seed=7) == roc_auc_ci(y, s, seed=7)
    assert roc_auc_ci(y, s, seed=7) != roc_auc_ci(y, s, seed=8)
    assert roc_auc_ci(y, s, n_boot=500, seed=3).n_boot == 500


def test_rank_auc_equals_sklearn_on_resamples_with_ties() -> None:
    y, s = _data(60, seed=2)
    pos, neg = s[y == 1], s[y == 0]
    rng = np.random.default_rng(0)
    pb = pos[rng.integers(0, pos.size, (25, pos.size))]
    nb = neg[rng.integers(0, neg.size, (25, neg.size))]
    fast = _auc_rows(pb, nb)
    for i in range(25):
        yy = np.r_[np.ones(pos.size), np.zeros(neg.size)]
        assert fast[i] == pytest.approx(roc_auc_score(yy, np.r_[pb[i], nb[i]]), abs=1e-12)


def test_auc_string_labels_and_pos_label() -> None:
    y, s = _data()
    labels = np.where(y == 1, "melanoma", "nevus")
    assert roc_auc_ci(labels, s, pos_label="melanoma", n_boot=50).auc == roc_auc_score(y, s)


def test_auc_errors() -> None:
    with pytest.raises(ValueError, match="single class"):
        roc_auc_ci([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="binary"):
        roc_auc_ci([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="values"):
        roc_auc_ci([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="pos_label"):
        roc_auc_ci(["a", "b"], [0.1, 0.2])
    with pytest.raises(ValueError, match="n_boot"):
        roc_auc_ci([0, 1], [0.1, 0.2], n_boot=0)


def test_accuracy_and_balanced_accuracy() -> None:
    y = [0, 0, 0, 0, 1, 1]
    p = [0, 0, 0, 1, 1, 0]
    assert accuracy(y, p) == pytest.approx(4 / 6)
    assert balanced_accuracy(y, p) == pytest.approx((3 / 4 + 1 / 2) / 2)
    with pytest.raises(ValueError):
        accuracy([0, 1], [0])


def test_confusion_matrix_label_order() -> None:
    y = ["nevus", "nevus", "melanoma", "atypical", "melanoma"]
    p = ["nevus", "melanoma", "melanoma", "nevus", "atypical"]
    m = confusion_matrix(y, p, labels=["nevus", "atypical", "melanoma"])
    np.testing.assert_array_equal(m, [[1, 0, 1], [1, 0, 0], [0, 1, 1]])
    m2 = confusion_matrix(y, p, labels=["melanoma", "atypical", "nevus"])
    np.testing.assert_array_equal(m2, m[::-1, ::-1])
    assert m.dtype == np.int64 and m.sum() == len(y)
    with pytest.raises(ValueError, match="not in labels"):
        confusion_matrix(y, p, labels=["nevus", "melanoma"])
    with pytest.raises(ValueError, match="duplicates"):
        confusion_matrix(y, p, labels=["nevus", "nevus", "melanoma", "atypical"])

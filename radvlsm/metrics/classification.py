"""Classification metrics: ROC AUC with a bootstrap interval, accuracy, balanced accuracy, confusion matrix.

Inputs are 1-D sequences of equal length ``n`` (one entry per case).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn import metrics as skm

__all__ = ["AucInterval", "accuracy", "balanced_accuracy", "confusion_matrix", "roc_auc_ci"]


@dataclass(frozen=True)
class AucInterval:
    """ROC AUC with its bootstrap confidence interval.

    Attributes:
        auc: the point estimate on the full sample (``sklearn.metrics.roc_auc_score``).
        low, high: percentile bootstrap interval bounds (2.5th and 97.5th percentiles for ``level=0.95``).
        n_boot: number of bootstrap replicates.
        level: confidence level of the interval.
    """

    auc: float
    low: float
    high: float
    n_boot: int
    level: float = 0.95


def _1d(values: Sequence[Any] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per case), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    return arr


def _same_length(a: np.ndarray, b: np.ndarray, na: str, nb: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{na} has {a.size} values but {nb} has {b.size}")


def _binary_labels(y_true: Sequence[Any] | np.ndarray, pos_label: Any) -> np.ndarray:
    y = _1d(y_true, "y_true")
    classes = np.unique(y)
    if classes.size < 2:
        raise ValueError(
            f"y_true holds a single class ({classes.tolist()}): ROC AUC needs both positive and "
            "negative cases"
        )
    if classes.size > 2:
        raise ValueError(f"y_true must be binary, got {classes.size} classes: {classes.tolist()}")
    if pos_label not in classes.tolist():
        raise ValueError(f"pos_label {pos_label!r} is not one of the classes in y_true {classes.tolist()}")
    return y == pos_label


def _auc_rows(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUC of each row (Mann-Whitney U with mid-ranks for ties, equal to the trapezoidal ROC AUC).

    ``pos``: ``(B, P)`` scores of positives, ``neg``: ``(B, N)`` scores of negatives; returns ``(B,)``.
    """
    n_pos, n_neg = pos.shape[1], neg.shape[1]
    ranks = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    u = ranks[:, :n_pos].sum(axis=1) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def roc_auc_ci(
    y_true: Sequence[Any] | np.ndarray,
    y_score: Sequence[float] | np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    pos_label: Any = 1,
) -> AucInterval:
    """ROC AUC and its stratified percentile-bootstrap confidence interval.

    Each replicate draws, with replacement, as many positives from the positives and as many negatives from
    the negatives as the sample holds (stratified resampling: every replicate has both classes and the
    original prevalence). The interval is the ``(1-level)/2`` and ``1-(1-level)/2`` percentiles of the
    replicate AUCs. Replicate AUCs are computed by the rank (Mann-Whitney) formula, which equals sklearn's
    ``roc_auc_score``; the point estimate is sklearn's.

    Args:
        y_true: ``(n,)`` binary labels (two distinct values; ``pos_label`` marks the positive class).
        y_score: ``(n,)`` scores, higher meaning more likely positive.
        n_boot: number of bootstrap replicates (>= 1).
        seed: seed of the random generator: the same seed gives the same interval.
        level: confidence level in (0, 1).

    Raises:
        ValueError: a single class in ``y_true`` (AUC is undefined), more than two classes, lengths differ,
            non-finite scores, or invalid ``n_boot`` / ``level``.
    """
    pos_mask = _binary_labels(y_true, pos_label)
    score = _1d(y_score, "y_score").astype(np.float64)
    _same_length(pos_mask, score, "y_true", "y_score")
    if not np.isfinite(score).all():
        raise ValueError("y_score holds non-finite values")
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    auc = float(skm.roc_auc_score(pos_mask.astype(int), score))
    pos, neg = score[pos_mask], score[~pos_mask]
    rng = np.random.default_rng(seed)
    n = pos.size + neg.size
    chunk = max(1, min(int(n_boot), 4_000_000 // n))
    reps: list[np.ndarray] = []
    done = 0
    while done < n_boot:
        b = min(chunk, int(n_boot) - done)
        pos_b = pos[rng.integers(0, pos.size, size=(b, pos.size))]
        neg_b = neg[rng.integers(0, neg.size, size=(b, neg.size))]
        reps.append(_auc_rows(pos_b, neg_b))
        done += b
    boot = np.concatenate(reps)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return AucInterval(auc=auc, low=float(low), high=float(high), n_boot=int(n_boot), level=float(level))


def accuracy(y_true: Sequence[Any] | np.ndarray, y_pred: Sequence[Any] | np.ndarray) -> float:
    """Fraction of cases whose predicted label equals the true label; ``y_true``, ``y_pred``: ``(n,)``."""
    t, p = _1d(y_true, "y_true"), _1d(y_pred, "y_pred")
    _same_length(t, p, "y_true", "y_pred")
    return float(skm.accuracy_score(t, p))


def balanced_accuracy(y_true: Sequence[Any] | np.ndarray, y_pred: Sequence[Any] | np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y_true`` (``balanced_accuracy_score``)."""
    t, p = _1d(y_true, "y_true"), _1d(y_pred, "y_pred")
    _same_length(t, p, "y_true", "y_pred")
    return float(skm.balanced_accuracy_score(t, p))


def confusion_matrix(
    y_true: Sequence[Any] | np.ndarray, y_pred: Sequence[Any] | np.ndarray, labels: Sequence[Any]
) -> np.ndarray:
    """Confusion matrix in an explicit label order.

    Args:
        y_true, y_pred: ``(n,)`` labels.
        labels: the ``L`` class labels, in the order of the rows and columns.

    Returns:
        ``(L, L)`` int64 matrix: entry ``[i, j]`` counts cases of true class ``labels[i]`` predicted as
        ``labels[j]`` (rows = truth, columns = prediction).

    Raises:
        ValueError: lengths differ, ``labels`` is empty or has duplicates, or a value in ``y_true`` /
            ``y_pred`` is not in ``labels`` (it would otherwise be dropped silently).
    """
    t, p = _1d(y_true, "y_true"), _1d(y_pred, "y_pred")
    _same_length(t, p, "y_true", "y_pred")
    lab = list(labels)
    if not lab:
        raise ValueError("labels is empty")
    if len(set(lab)) != len(lab):
        raise ValueError(f"labels has duplicates: {lab}")
    known = set(lab)
    for name, arr in (("y_true", t), ("y_pred", p)):
        unknown = sorted({v for v in arr.tolist() if v not in known}, key=str)
        if unknown:
            raise ValueError(f"{name} holds labels not in labels={lab}: {unknown}")
    return np.asarray(skm.confusion_matrix(t, p, labels=lab), dtype=np.int64)

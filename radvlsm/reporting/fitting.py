"""Fitting the parameters of the dermoscopy findings (asymmetry score, colour presence) from annotated cases.

No command line here: ``benchmarks/findings_ph2.py --fit`` measures PH2 folds 1-4 and calls
:func:`fit_asymmetry_model` and :func:`fit_colour_model`, then :func:`write_params` writes
``radvlsm/reporting/params/ph2_findings.json``, which :mod:`radvlsm.reporting.colour` and
:mod:`radvlsm.reporting.asymmetry` read at import. The same functions fit each cross-validation fold in
``benchmarks/findings_ph2.py --cv``. Everything is deterministic; only numpy, scipy and scikit-learn's kappa.

* **Asymmetry**: a ridge regression of the expert score (0/1/2) on the two summed indices (shape index and
  mirror colour index over both axes) gives the colour weight (relative to the shape index); the two
  cut-points on the summed asymmetry index are then chosen on the training cases to maximise the quadratic
  weighted kappa. The shape-only threshold is chosen the same way for the per-axis shape rule.
* **Colours**: per colour, a logistic regression on that colour's evidence features
  (:data:`PRESENCE_FEATURES`) with class-balanced weights, L2 penalty and **non-negative weights** (more
  evidence never lowers the probability). Its penalty (from :data:`PENALTY_GRID`) and its probability threshold
  are chosen by leave-one-group-out cross-validation within the training cases (the groups being the PH2
  folds), maximising F1; the final model is then fitted on all training cases. The share thresholds (used for
  colours without a presence model) are chosen per colour on the training cases, maximising F1 under the same
  limit (the largest share of :data:`SHARE_THRESHOLD_GRID` when no threshold finds any annotated case). A presence
  model whose weights all come out zero (none of its evidence features relates to the annotations), or whose
  best threshold calls the colour nowhere, is dropped and the share rule decides that colour.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

from radvlsm.reporting.asymmetry import AsymmetryModel
from radvlsm.reporting.colour import PARAMS_FILE, ColourModel, PresenceModel
from radvlsm.reporting.records import DERMOSCOPIC_COLOURS

#: The evidence features of each colour's presence model (names from :func:`colour.colour_features`).
PRESENCE_FEATURES: dict[str, tuple[str, ...]] = {
    "white": ("fraction:white", "white_int", "light_any"),
    "red": ("fraction:red", "red_ab", "red_hue", "red_rel"),
    "light-brown": ("fraction:light-brown", "L50", "C5"),
    "dark-brown": ("fraction:dark-brown", "dark35", "Lcontrast"),
    "blue-gray": ("fraction:blue-gray", "blue5", "blue10", "bluerel"),
    "black": ("fraction:black", "dark20", "dark25", "dark30", "neg_b5"),
}
#: Inverse L2 penalties tried for each presence model.
PENALTY_GRID = (0.03, 0.1, 0.3, 1.0)
#: Share thresholds tried for the share rule.
SHARE_THRESHOLD_GRID = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.16, 0.2, 0.3)
#: A threshold may call a colour present in at most this many times as many training cases as the experts
#: did: for a colour the evidence hardly predicts, maximising F1 alone would call it in (nearly) every lesion.
MAX_OVERCALL = 2.0
_NEVER = 2.0  # a probability threshold no probability reaches
#: Quantiles of the training indices tried as cut-points.
_CUT_QUANTILES = np.linspace(0.0, 1.0, 101)


# ------------------------------------------------------------------------------------------------ metrics

def quadratic_kappa(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray, n_classes: int = 3) -> float:
    """Cohen's kappa with quadratic weights (as ``sklearn.metrics.cohen_kappa_score(weights="quadratic")``)."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    o = np.zeros((n_classes, n_classes))
    np.add.at(o, (a, b), 1.0)
    e = np.outer(o.sum(1), o.sum(0)) / max(o.sum(), 1.0)
    i, j = np.indices((n_classes, n_classes))
    w = (i - j) ** 2 / (n_classes - 1) ** 2
    den = (w * e).sum()
    return float(1.0 - (w * o).sum() / den) if den > 0 else 0.0


def f1_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """F1 of boolean predictions (0 when there is nothing to find and nothing is found)."""
    tp = float(np.sum(pred & truth))
    d = float(np.sum(pred) + np.sum(truth))
    return 2.0 * tp / d if d else 0.0


# ------------------------------------------------------------------------------------------------ asymmetry

def _best_cuts(index: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    cand = np.unique(np.quantile(index, _CUT_QUANTILES))
    # Cut-points half-way between neighbouring observed values generalise better than the values themselves.
    mids = np.concatenate([[cand[0] - 1e-6], (cand[1:] + cand[:-1]) / 2, [cand[-1] + 1e-6]])
    best, cuts = -np.inf, (float(mids[0]), float(mids[-1]))
    for i, t1 in enumerate(mids):
        s1 = (index > t1).astype(np.int64)
        for t2 in mids[i:]:
            k = quadratic_kappa(y, s1 + (index > t2))
            if k > best + 1e-12:
                best, cuts = k, (float(t1), float(t2))
    return cuts


def fit_asymmetry_model(
    shape_index: np.ndarray, mirror_colour_index: np.ndarray, scores: np.ndarray, *, ridge: float = 1.0,
    colour_sigma: float = 0.1,
) -> AsymmetryModel:
    """Fit :class:`AsymmetryModel` to expert scores.

    Args:
        shape_index: ``(N, 2)`` per-axis shape indices.
        mirror_colour_index: ``(N, 2)`` per-axis mirror colour indices (measured with ``colour_sigma``).
        scores: ``(N,)`` expert asymmetry 0/1/2.
        ridge: L2 penalty of the ridge regression on the standardised summed indices.
    """
    s = np.asarray(shape_index, dtype=np.float64)
    c = np.asarray(mirror_colour_index, dtype=np.float64)
    y = np.asarray(scores, dtype=np.int64)
    feats = np.stack([s.sum(1), c.sum(1)], axis=1)
    mu, sd = feats.mean(0), feats.std(0) + 1e-12
    z = (feats - mu) / sd
    coef = np.linalg.solve(z.T @ z + ridge * np.eye(2), z.T @ (y - y.mean()))
    w = coef / sd
    if w[0] <= 0 or w[1] <= 0:  # degenerate data: fall back to equal standardised weights
        w = 1.0 / sd
    colour_weight = float(w[1] / w[0])
    index = s.sum(1) + colour_weight * c.sum(1)
    cuts = _best_cuts(index, y)
    # Shape-only rule: one threshold on the per-axis shape index.
    cand = np.unique(np.quantile(s, _CUT_QUANTILES))
    best, thr = -np.inf, float(cand[0])
    for t in (cand[1:] + cand[:-1]) / 2:
        k = quadratic_kappa(y, (s > t).sum(1))
        if k > best + 1e-12:
            best, thr = k, float(t)
    return AsymmetryModel(shape_threshold=round(thr, 4), colour_weight=round(colour_weight, 6),
                          cuts=(round(cuts[0], 4), round(cuts[1], 4)), colour_sigma=colour_sigma)


# ------------------------------------------------------------------------------------------------ colours

def _fit_monotone_logistic(x: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Class-balanced L2 logistic regression with non-negative weights on standardised ``x``: returns
    ``(mean, scale, weights, intercept)``."""
    mu = x.mean(0)
    sd = x.std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    a = (x - mu) / sd
    yy = y.astype(np.float64)
    n, d = a.shape
    npos, nneg = max(yy.sum(), 1.0), max(n - yy.sum(), 1.0)
    sw = np.where(yy > 0, n / (2 * npos), n / (2 * nneg))

    def loss_grad(p: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = p[:d], p[d]
        z = a @ w + b
        pr = 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
        loss = float((sw * (np.logaddexp(0.0, z) - yy * z)).sum() + 0.5 / c * (w @ w))
        g = sw * (pr - yy)
        return loss, np.concatenate([a.T @ g + w / c, [g.sum()]])

    res = minimize(loss_grad, np.zeros(d + 1), jac=True, method="L-BFGS-B",
                   bounds=[(0.0, None)] * d + [(None, None)])
    return mu, sd, res.x[:d], float(res.x[d])


def _predict(x: np.ndarray, mu: np.ndarray, sd: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(((x - mu) / sd) @ w + b, -50, 50)))


def _best_probability_threshold(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The threshold (half-way between neighbouring probabilities) maximising F1 among those that call the
    colour in at most :data:`MAX_OVERCALL` times as many cases as annotated (:data:`_NEVER` when none gives a
    positive F1), and that F1."""
    v = np.unique(p)
    cands = np.concatenate([(v[1:] + v[:-1]) / 2, [v[-1] + 1e-9]]) if len(v) > 1 else np.array([v[0]])
    best, thr = 0.0, _NEVER  # "never present" unless a threshold does better
    limit = MAX_OVERCALL * max(int(y.sum()), 1)
    for t in cands:
        pred = p >= t
        if pred.sum() > limit:
            continue
        f = f1_score(pred, y)
        if f > best + 1e-12:
            best, thr = f, float(t)
    return thr, best


def fit_presence_model(
    colour: str, features: np.ndarray, present: np.ndarray, groups: Sequence[str] | np.ndarray,
    feature_names: Sequence[str], penalties: Sequence[float] = PENALTY_GRID,
) -> PresenceModel:
    """One colour's :class:`PresenceModel` (see the module docstring).

    Args:
        features: ``(N, F)`` the colour's features, in ``feature_names`` order.
        present: ``(N,)`` bool, the expert's annotation.
        groups: ``(N,)`` group of each case (the inner cross-validation leaves one group out at a time).
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(present, dtype=bool)
    g = np.asarray(groups)
    parts = sorted(set(g.tolist()))
    best: tuple[float, float, float] | None = None  # (f1, penalty, threshold)
    for c in penalties:
        oof = np.zeros(len(y))
        for part in parts:
            tr, te = g != part, g == part
            if y[tr].all() or not y[tr].any():
                oof[te] = float(y[tr].mean())
                continue
            mu, sd, w, b = _fit_monotone_logistic(x[tr], y[tr], c)
            oof[te] = _predict(x[te], mu, sd, w, b)
        thr, f = _best_probability_threshold(oof, y)
        if best is None or f > best[0] + 1e-12:
            best = (f, c, thr)
    assert best is not None
    _, c, thr = best
    mu, sd, w, b = _fit_monotone_logistic(x, y, c)
    return PresenceModel(colour, tuple(feature_names), tuple(round(float(v), 6) for v in mu),
                         tuple(round(float(v), 6) for v in sd), tuple(round(float(v), 6) for v in w),
                         round(b, 6), round(thr, 6))


def fit_colour_model(
    base: ColourModel, features: Sequence[Mapping[str, float]], present: np.ndarray,
    groups: Sequence[str] | np.ndarray,
) -> ColourModel:
    """``base`` with share thresholds and presence models fitted to the expert annotations.

    Args:
        base: prototypes and the rest of the analysis (the features must have been measured with them).
        features: per case, :func:`colour.colour_features`.
        present: ``(N, 6)`` bool, the expert's colours in :data:`DERMOSCOPIC_COLOURS` order.
        groups: ``(N,)`` group of each case for the inner cross-validation.
    """
    y = np.asarray(present, dtype=bool)
    shares = np.array([[f[f"fraction:{c}"] ** 2 for c in DERMOSCOPIC_COLOURS] for f in features])
    thresholds = []
    presence = []
    for k, colour in enumerate(DERMOSCOPIC_COLOURS):
        best, thr = 0.0, SHARE_THRESHOLD_GRID[-1]  # nothing better on the training cases: the most conservative
        for t in SHARE_THRESHOLD_GRID:
            pred = shares[:, k] >= t
            if pred.sum() > MAX_OVERCALL * max(int(y[:, k].sum()), 1):
                continue
            f = f1_score(pred, y[:, k])
            if f > best + 1e-12:
                best, thr = f, t
        thresholds.append((colour, float(thr)))
        names = PRESENCE_FEATURES[colour]
        x = np.array([[f[n] for n in names] for f in features])
        pm = fit_presence_model(colour, x, y[:, k], groups, names)
        if any(w > 0 for w in pm.weights) and pm.threshold <= 1.0:  # else the share rule decides
            presence.append(pm)
    return ColourModel(
        prototypes=base.prototypes, thresholds=tuple(thresholds), skin_weight=base.skin_weight,
        normalisation=base.normalisation, reference_skin_lab=base.reference_skin_lab,
        working_long_side=base.working_long_side, presence=tuple(presence),
    )


# ------------------------------------------------------------------------------------------------ file

def write_params(colour_model: ColourModel, asymmetry_model: AsymmetryModel, about: Mapping[str, Any],
                 path: Path = PARAMS_FILE) -> Path:
    """Write the parameters file that :data:`colour.DEFAULT_COLOUR_MODEL` and
    :data:`asymmetry.DEFAULT_ASYMMETRY_MODEL` are read from (plain JSON, no pickle)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"about": dict(about), "colour_model": colour_model.to_dict(), "asymmetry_model": asymmetry_model.to_dict()}
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


__all__ = [
    "MAX_OVERCALL",
    "PENALTY_GRID",
    "PRESENCE_FEATURES",
    "f1_score",
    "fit_asymmetry_model",
    "fit_colour_model",
    "fit_presence_model",
    "quadratic_kappa",
    "write_params",
]

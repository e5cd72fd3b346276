"""Fitting the findings' parameters: kappa, the asymmetry model, the colour presence models, the params file."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from radvlsm.reporting import fitting
from radvlsm.reporting.asymmetry import DEFAULT_ASYMMETRY_MODEL, AsymmetryModel
from radvlsm.reporting.colour import (
    COLOUR_FEATURES,
    DEFAULT_COLOUR_MODEL,
    PARAMS_FILE,
    REFERENCE_PROTOTYPES,
    ColourModel,
    PresenceModel,
    load_params,
)
from radvlsm.reporting.records import DERMOSCOPIC_COLOURS


def test_quadratic_kappa_matches_sklearn() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        a = rng.integers(0, 3, 50)
        b = np.clip(a + rng.integers(-1, 2, 50), 0, 2)
        assert fitting.quadratic_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b, weights="quadratic"))


def test_asymmetry_fit_recovers_a_monotone_rule() -> None:
    rng = np.random.default_rng(0)
    n = 150
    shape_idx = rng.uniform(0, 0.3, (n, 2))
    colour_idx = rng.uniform(0, 10, (n, 2))
    latent = shape_idx.sum(1) + 0.03 * colour_idx.sum(1)
    y = (latent > np.quantile(latent, 0.55)).astype(int) + (latent > np.quantile(latent, 0.8))
    m = fitting.fit_asymmetry_model(shape_idx, colour_idx, y)
    assert m.colour_weight is not None and m.colour_weight > 0
    assert m.cuts[0] <= m.cuts[1]
    pred = [int(v > m.cuts[0]) + int(v > m.cuts[1]) for v in shape_idx.sum(1) + m.colour_weight * colour_idx.sum(1)]
    assert fitting.quadratic_kappa(y, pred) > 0.8


def test_presence_model_weights_are_non_negative_and_it_separates() -> None:
    rng = np.random.default_rng(0)
    n = 120
    y = rng.random(n) < 0.3
    good = y * 1.0 + rng.normal(0, 0.4, n)  # evidence
    bad = -1.0 * y + rng.normal(0, 0.4, n)  # anti-evidence: must get weight 0
    groups = np.array([str(i % 4) for i in range(n)])
    pm = fitting.fit_presence_model("black", np.stack([good, bad], 1), y, groups, ("dark20", "dark25"))
    assert pm.weights[0] > 0 and pm.weights[1] == 0
    assert 0 < pm.threshold < 1
    probs = [pm.probability({"dark20": g, "dark25": b}) for g, b in zip(good, bad, strict=True)]
    pred = np.array(probs) >= pm.threshold
    assert fitting.f1_score(pred, y) > 0.8


def _features(rng: np.random.Generator, n: int) -> list[dict[str, float]]:
    return [{k: float(rng.random()) for k in COLOUR_FEATURES} for _ in range(n)]


def test_colour_fit_drops_uninformative_models_and_limits_overcalling() -> None:
    rng = np.random.default_rng(3)
    n = 100
    feats = _features(rng, n)
    present = np.zeros((n, 6), bool)
    present[:, 3] = rng.random(n) < 0.8  # dark-brown: common, random features: no evidence
    k_black = DERMOSCOPIC_COLOURS.index("black")
    present[:, k_black] = rng.random(n) < 0.25
    for f, p in zip(feats, present[:, k_black], strict=True):  # black: its share and darkness tell
        f["fraction:black"] = 0.6 + 0.3 * rng.random() if p else 0.3 * rng.random()
        f["dark20"] = f["fraction:black"]
    groups = [str(i % 4) for i in range(n)]
    m = fitting.fit_colour_model(DEFAULT_COLOUR_MODEL, feats, present, groups)
    pm = m.presence_model("black")
    assert pm is not None and pm.weights[pm.features.index("fraction:black")] > 0
    for k, c in enumerate(DERMOSCOPIC_COLOURS):
        pmk = m.presence_model(c)
        if pmk is not None:
            pred = np.array([pmk.probability(f) >= pmk.threshold for f in feats])
            assert pred.sum() <= fitting.MAX_OVERCALL * max(present[:, k].sum(), 1)
    # colours nobody annotated get no presence model and the most conservative share threshold
    assert m.presence_model("white") is None
    assert dict(m.thresholds)["white"] == fitting.SHARE_THRESHOLD_GRID[-1]


def test_models_round_trip_through_the_params_file(tmp_path) -> None:
    cm = DEFAULT_COLOUR_MODEL
    assert ColourModel.from_dict(json.loads(json.dumps(cm.to_dict()))) == cm
    am = AsymmetryModel(0.1, 0.025, (0.45, 0.65))
    path = fitting.write_params(cm, am, {"fitted_by": "test"}, tmp_path / "p.json")
    raw = load_params(path)
    assert raw["about"] == {"fitted_by": "test"}
    assert ColourModel.from_dict(raw["colour_model"]) == cm
    assert AsymmetryModel.from_dict(raw["asymmetry_model"]) == am


def test_committed_params_were_fitted_on_folds_1_to_4_only() -> None:
    raw = load_params(PARAMS_FILE)
    about = raw["about"]
    assert about["folds"] == [1, 2, 3, 4] and about["held_out_fold"] == 0
    assert "findings_ph2.py --fit" in about["fitted_by"]
    assert ColourModel.from_dict(raw["colour_model"]) == DEFAULT_COLOUR_MODEL
    assert AsymmetryModel.from_dict(raw["asymmetry_model"]) == DEFAULT_ASYMMETRY_MODEL
    assert DEFAULT_COLOUR_MODEL.prototypes == REFERENCE_PROTOTYPES  # hand-set, not tuned
    for pm in DEFAULT_COLOUR_MODEL.presence:
        assert all(w >= 0 for w in pm.weights)


def test_presence_model_validation() -> None:
    ok = {"colour": "black", "features": ["dark20"], "mean": [0.1], "scale": [1.0], "weights": [1.0],
          "intercept": 0.0, "threshold": 0.5}
    assert PresenceModel.from_dict(ok).to_dict() == ok
    with pytest.raises(ValueError, match="unknown colour feature"):
        PresenceModel.from_dict({**ok, "features": ["nope"]})
    with pytest.raises(ValueError, match="same length"):
        PresenceModel.from_dict({**ok, "weights": [1.0, 2.0]})
    with pytest.raises(ValueError, match="unknown colour"):
        PresenceModel.from_dict({**ok, "colour": "green"})
    pm = PresenceModel.from_dict(ok)
    with pytest.raises(ValueError, match="one presence model per colour"):
        dataclasses.replace(DEFAULT_COLOUR_MODEL, presence=(pm, pm))

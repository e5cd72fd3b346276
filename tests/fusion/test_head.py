"""The diagnosis head: JSON-only persistence, fold-internal fitting, calibration, features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from radvlsm.errors import ConfigError
from radvlsm.fusion.head import DiagnosisHead, HeadConfig, cross_validate, fit_head

CLASSES = ("a", "b", "c")
FAST = HeadConfig(k_best=5, n_estimators=30, calibration_folds=3, threads=1)


def _data(n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.normal(size=(n, 12))
    X[:, 0] += 2.0 * y  # informative
    X[:, 1] -= 1.5 * (y == 2)  # informative for class c
    X[3, 5] = np.nan  # a missing value
    names = [f"original_f{i}" for i in range(6)] + [f"visual_{i:03d}" for i in range(6)]
    return X, y, names


def test_head_saves_as_json_and_predicts_the_same(tmp_path: Path) -> None:
    X, y, names = _data()
    head = fit_head(X, y, names, CLASSES, FAST, malignant_classes=("c",))
    folder = head.save(tmp_path / "head")
    assert sorted(p.name for p in folder.iterdir()) == ["booster.json", "head.json"]
    for p in folder.iterdir():  # both are JSON text: nothing pickled
        json.loads(p.read_text())
    loaded = DiagnosisHead.load(folder)
    np.testing.assert_allclose(loaded.predict_proba(X), head.predict_proba(X), rtol=1e-6, atol=1e-7)
    assert loaded.classes == CLASSES and loaded.malignant_classes == ("c",)
    p = loaded.predict_proba(X)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(loaded.malignant_probability(p), p[:, 2])
    assert (p.argmax(1) == y).mean() > 0.8  # learns the informative features
    assert loaded.importance(3)[0][0] in ("original_f0", "original_f1")


def test_missing_or_broken_head_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"head\.json: missing"):
        DiagnosisHead.load(tmp_path)
    X, y, names = _data()
    folder = fit_head(X, y, names, CLASSES, FAST).save(tmp_path / "h")
    (folder / "booster.json").write_text("{broken")
    with pytest.raises(ConfigError, match="unreadable diagnosis head"):
        DiagnosisHead.load(folder)


def test_wrong_feature_count_is_refused() -> None:
    X, y, names = _data()
    head = fit_head(X, y, names, CLASSES, FAST)
    with pytest.raises(ValueError, match="expected 12 features per case"):
        head.predict_proba(X[:, :5])


def test_cross_validation_never_fits_on_the_held_out_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every head fitted during CV (including the inner calibration fits) sees no case of the fold it predicts."""
    import radvlsm.fusion.head as head_mod

    X, y, names = _data()
    X = np.column_stack([X, np.arange(len(y))])  # last column: the case index, to see who was used
    folds = np.arange(len(y)) % 3
    seen: list[set[int]] = []
    original = head_mod._fit_uncalibrated

    def spy(Xs, ys, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(set(Xs[:, -1].astype(int).tolist()))
        return original(Xs, ys, *args, **kwargs)

    monkeypatch.setattr(head_mod, "_fit_uncalibrated", spy)
    probs = cross_validate(X, y, folds, [*names, "original_index"], CLASSES, FAST)
    assert probs.shape == (len(y), 3)
    per_fold = len(seen) // 3  # inner calibration fits + the final fit, for each outer fold
    for f in range(3):
        held_out = set(np.flatnonzero(folds == f).tolist())
        for used in seen[f * per_fold : (f + 1) * per_fold]:
            assert not used & held_out


def test_temperature_calibrates_overconfident_margins() -> None:
    from radvlsm.fusion.head import _fit_temperature, _softmax

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    true_logits = rng.normal(size=(400, 3))
    true_logits[np.arange(400), y] += 1.0
    # labels drawn from softmax(true_logits); the model reports 5x too confident margins
    p = _softmax(true_logits)
    y = np.array([rng.choice(3, p=row) for row in p])
    t = _fit_temperature(5 * true_logits, y)
    assert 3.5 < t < 7.0

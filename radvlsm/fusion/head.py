"""The diagnosis head: imputation, scaling and feature selection fitted on its training data only, an xgboost
classifier, and temperature-scaled (calibrated) class probabilities.

Saved as two JSON files and nothing else (no pickle): ``head.json`` (feature names, classes, the fitted
imputation/scaling/selection, the temperature, the config) and ``booster.json`` (xgboost's own JSON model).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import xgboost as xgb
from scipy.optimize import minimize_scalar
from sklearn.feature_selection import f_classif
from sklearn.model_selection import StratifiedKFold

from radvlsm.errors import ConfigError
from radvlsm.io.writers import atomic_write

HEAD_FILE = "head.json"
BOOSTER_FILE = "booster.json"
HEAD_SCHEMA = 1


@dataclass(frozen=True)
class HeadConfig:
    """Hyper-parameters of the head (saved with it)."""

    k_best: int = 40
    n_estimators: int = 300
    max_depth: int = 3
    learning_rate: float = 0.05
    subsample: float = 0.8
    colsample_bytree: float = 0.6
    min_child_weight: float = 1.0
    reg_lambda: float = 1.0
    calibration_folds: int = 4
    seed: int = 2026
    threads: int = 2


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _fit_temperature(margins: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of ``softmax(margins / T)`` (T in [0.05, 20])."""

    def nll(log_t: float) -> float:
        p = _softmax(margins / np.exp(log_t))
        return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1)).mean())

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


@dataclass(frozen=True, eq=False)
class DiagnosisHead:
    """A fitted head. ``predict_proba(X)`` takes the full feature matrix in ``feature_names`` order."""

    feature_names: tuple[str, ...]
    classes: tuple[str, ...]
    medians: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    selected: np.ndarray
    temperature: float
    booster: xgb.Booster
    config: HeadConfig = field(default_factory=HeadConfig)
    malignant_classes: tuple[str, ...] = ()
    #: :func:`radvlsm.fusion.train.segmenter_fingerprint` of the segmenter whose masks and visual features the
    #: head was trained on; empty when not recorded
    segmenter_fingerprint: str = ""

    def malignant_probability(self, probs: np.ndarray) -> np.ndarray:
        """``(n,)`` summed probability of the malignant classes (NaN when the head names none)."""
        idx = [self.classes.index(c) for c in self.malignant_classes]
        return probs[:, idx].sum(1) if idx else np.full(len(probs), np.nan)

    def _prepare(self, X: np.ndarray) -> xgb.DMatrix:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"expected {len(self.feature_names)} features per case, got shape {X.shape}")
        X = np.where(np.isfinite(X), X, self.medians)
        Z = ((X - self.mean) / self.scale)[:, self.selected]
        return xgb.DMatrix(Z, feature_names=[self.feature_names[i] for i in self.selected])

    def margins(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(self._prepare(X), output_margin=True)).reshape(len(X), -1)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``(n, n_classes)`` calibrated probabilities."""
        return _softmax(self.margins(X) / self.temperature)

    def importance(self, top: int = 15) -> list[tuple[str, float]]:
        """Features by xgboost's total gain, largest first."""
        gain = self.booster.get_score(importance_type="total_gain")
        return sorted(gain.items(), key=lambda kv: -kv[1])[:top]

    def save(self, folder: str | Path) -> Path:
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "schema": HEAD_SCHEMA,
            "feature_names": list(self.feature_names),
            "classes": list(self.classes),
            "medians": self.medians.tolist(),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "selected": self.selected.tolist(),
            "temperature": self.temperature,
            "config": asdict(self.config),
            "malignant_classes": list(self.malignant_classes),
            "segmenter_fingerprint": self.segmenter_fingerprint,
            "xgboost": xgb.__version__,
        }
        with atomic_write(out / HEAD_FILE) as fh:
            json.dump(meta, fh, indent=1)
        with atomic_write(out / BOOSTER_FILE) as fh:
            fh.write(self.booster.save_raw(raw_format="json").decode("utf-8"))
        return out

    @classmethod
    def load(cls, folder: str | Path) -> DiagnosisHead:
        folder = Path(folder)
        head, boost = folder / HEAD_FILE, folder / BOOSTER_FILE
        for p in (head, boost):
            if not p.is_file():
                raise ConfigError(f"{p}: missing (a diagnosis head is {HEAD_FILE} + {BOOSTER_FILE})")
        try:
            meta = json.loads(head.read_text(encoding="utf-8"))
            booster = xgb.Booster()
            booster.load_model(str(boost))
        except (ValueError, xgb.core.XGBoostError) as exc:
            raise ConfigError(f"{folder}: unreadable diagnosis head ({exc})") from exc
        if meta.get("schema", 0) > HEAD_SCHEMA:
            raise ConfigError(f"{head}: schema {meta['schema']} is newer than this radvlsm supports")
        return cls(
            feature_names=tuple(meta["feature_names"]), classes=tuple(meta["classes"]),
            medians=np.asarray(meta["medians"]), mean=np.asarray(meta["mean"]), scale=np.asarray(meta["scale"]),
            selected=np.asarray(meta["selected"], dtype=int), temperature=float(meta["temperature"]),
            booster=booster, config=HeadConfig(**meta["config"]),
            malignant_classes=tuple(meta.get("malignant_classes", ())),
            segmenter_fingerprint=str(meta.get("segmenter_fingerprint", "")),
        )


def _train_booster(Z: np.ndarray, y: np.ndarray, names: Sequence[str], n_classes: int, cfg: HeadConfig) -> xgb.Booster:
    params = {
        "objective": "multi:softprob", "num_class": n_classes, "max_depth": cfg.max_depth, "eta": cfg.learning_rate,
        "subsample": cfg.subsample, "colsample_bytree": cfg.colsample_bytree, "min_child_weight": cfg.min_child_weight,
        "lambda": cfg.reg_lambda, "seed": cfg.seed, "nthread": cfg.threads, "eval_metric": "mlogloss",
    }
    # Balanced class weights: melanoma is the rare class in PH2.
    counts = np.bincount(y, minlength=n_classes).astype(float)
    weights = (len(y) / (n_classes * np.maximum(counts, 1)))[y]
    dtrain = xgb.DMatrix(Z, label=y, weight=weights, feature_names=list(names))
    return xgb.train(params, dtrain, num_boost_round=cfg.n_estimators)


def _fit_uncalibrated(X: np.ndarray, y: np.ndarray, names: Sequence[str], n_classes: int, cfg: HeadConfig
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, xgb.Booster]:
    medians = np.nanmedian(np.where(np.isfinite(X), X, np.nan), axis=0)
    medians = np.where(np.isfinite(medians), medians, 0.0)
    Xf = np.where(np.isfinite(X), X, medians)
    mean, scale = Xf.mean(0), Xf.std(0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    Z = (Xf - mean) / scale
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        # constant columns (e.g. CIELAB a*, b* of a grayscale ultrasound image) get F = 0: never selected first
        warnings.filterwarnings("ignore", message="Features .* are constant", category=UserWarning)
        f, _ = f_classif(Z, y)
    f = np.nan_to_num(f, nan=0.0)
    selected = np.sort(np.argsort(-f, kind="stable")[: min(cfg.k_best, Z.shape[1])])
    booster = _train_booster(Z[:, selected], y, [names[i] for i in selected], n_classes, cfg)
    return medians, mean, scale, selected, booster


def fit_head(X: np.ndarray, y: np.ndarray, names: Sequence[str], classes: Sequence[str],
             cfg: HeadConfig = HeadConfig(), malignant_classes: Sequence[str] = ()) -> DiagnosisHead:
    """Fit a head on ``X (n, F)`` and labels ``y (n,)`` (indices into ``classes``).

    The temperature is fitted on out-of-fold margins of an inner stratified cross-validation of the same
    training data, so calibration never sees a prediction on a case the model trained on.
    """
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=int)
    n_classes = len(classes)
    oof = np.zeros((len(y), n_classes))
    min_count = int(np.bincount(y, minlength=n_classes).min())
    k = min(cfg.calibration_folds, min_count)
    if k >= 2:
        skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=cfg.seed)
        for tr, te in skf.split(X, y):
            part = _fit_uncalibrated(X[tr], y[tr], names, n_classes, cfg)
            tmp = DiagnosisHead(tuple(names), tuple(classes), *part[:4], 1.0, part[4], cfg)
            oof[te] = tmp.margins(X[te])
        temperature = _fit_temperature(oof, y)
    else:
        temperature = 1.0
    medians, mean, scale, selected, booster = _fit_uncalibrated(X, y, names, n_classes, cfg)
    return DiagnosisHead(tuple(names), tuple(classes), medians, mean, scale, selected, temperature, booster, cfg,
                         tuple(malignant_classes))


def cross_validate(X: np.ndarray, y: np.ndarray, folds: np.ndarray, names: Sequence[str], classes: Sequence[str],
                   cfg: HeadConfig = HeadConfig()) -> np.ndarray:
    """Out-of-fold calibrated probabilities ``(n, n_classes)``: for each fold, a head fitted on the other folds
    (imputation, scaling, selection and calibration included) predicts it."""
    probs = np.zeros((len(y), len(classes)))
    for f in np.unique(folds):
        te = folds == f
        head = fit_head(X[~te], y[~te], names, classes, cfg)
        probs[te] = head.predict_proba(X[te])
    return probs

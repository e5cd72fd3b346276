"""Training recipe of the diagnosis head (``radvlsm train diagnoser``) for one :class:`DiagnosisTask`: PH2
dermoscopy (``ph2``: 3 classes, melanoma-vs-rest AUC), breast ultrasound (``breast-ultrasound``: BUSI lesions +
BUS-BRA, benign vs malignant) or LIDC lung nodules in CT (``lidc``: benign vs malignant, 3-D); see
:mod:`radvlsm.fusion.tasks`.

1. Features for every case of the task (:func:`compute_features` with the task's :data:`CaseFeaturizer`: 2-D
   images, :func:`image_featurizer`; CT volumes, :class:`radvlsm.fusion.volume.NoduleFeaturizer`), from the
   ground-truth mask or from the mask the pipeline predicts (2-D: from the ground-truth box; CT: from the
   nodule's point); cached as CSV in the run folder (a rerun with the same segmenter, mask mode and radiomics
   parameters reuses them; a long run saves it as it goes).
2. Cross-validation on the task's folds (:func:`cross_validate_groups`): selection, scaling and calibration are
   fitted inside each fold's training part; a fold's test part is never used for fitting. Reported: the
   positive class's one-vs-rest ROC AUC (melanoma; malignant) with a stratified bootstrap 95% interval, accuracy
   and balanced accuracy over the task's classes; for radiomics only, visual only, colour only, radiomics +
   colour, and all fused; and for the selection of the feature set itself, scored by nested cross-validation
   (each outer fold's choice is made by cross-validation on the other folds only).
3. The shipped head: fitted on all cases with the feature set of the best cross-validated positive-class AUC
   (the choice the nested figures score) (:func:`fit_head`), saved as JSON with a model card. A task with a
   :attr:`~DiagnosisTask.test_fold` (``lidc``) keeps that fold out of steps 2 and 3: the head is fitted on the
   other folds, and scores the test fold once (with a head per ablation, fitted the same way, beside it).

:func:`train_diagnoser` runs the three steps and writes::

    OUT/features.csv, OUT/features.json   the feature cache and what it was computed with
    OUT/cv_report.json, OUT/cv_report.md  the cross-validated figures
    OUT/cv_predictions.csv                out-of-fold probabilities of the shipped feature set, one row per case
    OUT/final/head.json, booster.json     the shipped head (JSON only, no pickle)
    OUT/final/MODEL_CARD.md               data, folds, recipe, CV figures, top features
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sklearn.metrics import roc_auc_score

from radvlsm.data.boxes import mask_to_box
from radvlsm.data.cases import LesionCase
from radvlsm.errors import ConfigError, InputError
from radvlsm.fusion.features import FEATURE_GROUPS, LesionFeatures, lesion_features, select_groups, stack
from radvlsm.fusion.head import DiagnosisHead, HeadConfig, cross_validate, fit_head
from radvlsm.fusion.radiomics import RadiomicsExtractor
from radvlsm.fusion.tasks import PH2_CLASSES, PH2_TASK, DiagnosisTask
from radvlsm.io import atomic_write, read_image, read_mask, to_display_rgb
from radvlsm.metrics.classification import accuracy, balanced_accuracy, confusion_matrix, roc_auc_ci
from radvlsm.metrics.segmentation import dice
from radvlsm.stage2_segment.modeling import LesionSegmenter
from radvlsm.stage2_segment.predictor import SegmenterPredictor

log = logging.getLogger(__name__)

ABLATIONS: dict[str, tuple[str, ...]] = {
    "radiomics": ("radiomics",),
    "visual": ("visual",),
    "colour": ("colour",),
    "radiomics+colour": ("radiomics", "colour"),
    "fused": ("radiomics", "visual", "colour"),
}

FEATURES_FILE = "features.csv"
FEATURES_META_FILE = "features.json"
CV_REPORT_JSON = "cv_report.json"
CV_REPORT_MD = "cv_report.md"
CV_PREDICTIONS_FILE = "cv_predictions.csv"
FINAL_DIR = "final"
MODEL_CARD_FILE = "MODEL_CARD.md"
FEATURE_CACHE_SCHEMA = 2  # 2: the colour group gained colour_mirror_major / _minor

#: Gives the lesion mask and embedding of one image: ``(rgb, case) -> (mask, embedding)`` or ``None`` when no
#: lesion was found.
MaskSource = Callable[[np.ndarray, LesionCase], "tuple[np.ndarray, np.ndarray] | None"]
#: Gives the features of one case: ``case -> (features, Dice of the predicted mask against the experts')``;
#: features ``None`` when no lesion was found, Dice ``None`` when not measured.
CaseFeaturizer = Callable[[LesionCase], "tuple[LesionFeatures | None, float | None]"]


class MaskMode(str, Enum):
    """Which lesion mask the features are computed under."""

    GT = "gt"  #: the expert's mask
    PREDICTED = "predicted"  #: the segmenter's mask from the ground-truth box (the pipeline with box prompts)


def _gt_mask(case: LesionCase) -> np.ndarray:
    if case.mask_path is None:
        raise InputError(case.image_path, "has no ground-truth mask; the diagnoser recipe needs one per case")
    return read_mask(case.mask_path)


def gt_box_source(predictor: SegmenterPredictor, use_gt_mask: bool) -> MaskSource:
    """Masks from the ground truth (``use_gt_mask``) or predicted from the ground-truth box; the embedding
    always comes from the segmenter prompted with the ground-truth box (one box, score 1: what ``radvlsm
    diagnose --boxes`` does with that box). A case with an empty ground-truth mask gives ``None``; so does, with
    predicted masks only, a case where the segmenter finds no lesion in the box (with the experts' mask the
    case keeps its features: the embedding of the box's one candidate does not depend on that verdict)."""

    def source(rgb: np.ndarray, case: LesionCase) -> tuple[np.ndarray, np.ndarray] | None:
        gt = _gt_mask(case)
        box = mask_to_box(gt)
        if box is None:
            return None
        predictor.set_images([rgb])
        res = predictor.predict([box[None]])[0]
        if use_gt_mask:
            return gt, res.embedding
        if res.status != "ok":
            return None
        return res.mask, res.embedding

    return source


def image_featurizer(source: MaskSource, extractor: RadiomicsExtractor, record_dice: bool = False
                     ) -> CaseFeaturizer:
    """The features of a 2-D image case (:func:`~radvlsm.fusion.features.lesion_features`) under the mask
    ``source`` gives; with ``record_dice`` the Dice of that mask against the experts'."""

    def featurize(case: LesionCase) -> tuple[LesionFeatures | None, float | None]:
        rgb = to_display_rgb(read_image(case.image_path))
        got = source(rgb, case)
        d = dice(got[0], _gt_mask(case)) if record_dice and got is not None else None
        if got is None or not got[0].any():
            return None, d
        return lesion_features(case.case_id, rgb, got[0], got[1], extractor), d

    return featurize


def compute_features(cases: Sequence[LesionCase], featurizer: CaseFeaturizer,
                     on_case: Callable[[], None] | None = None
                     ) -> tuple[list[LesionFeatures], list[str], dict[str, float]]:
    """Features of each case; cases whose lesion is not found, or whose features pyradiomics refuses (logged
    with the reason), are listed in the second value; the third holds the measured mask Dice by case."""
    out, missing, dices = [], [], {}
    for case in cases:
        try:
            feats, d = featurizer(case)
        except InputError as exc:
            log.warning("case %s: no features (%s); left out", case.case_id, exc)
            feats, d = None, None
        if d is not None:
            dices[case.case_id] = d
        if feats is None:
            missing.append(case.case_id)
        else:
            out.append(feats)
        if on_case:
            on_case()
    return out, missing, dices


def write_features_csv(path: Path, feats: Sequence[LesionFeatures]) -> None:
    X, names = stack(feats)
    with atomic_write(path, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case_id", *names])
        for f, row in zip(feats, X, strict=True):
            w.writerow([f.case_id, *(repr(float(v)) for v in row)])


def read_features_csv(path: Path) -> list[LesionFeatures]:
    with path.open(newline="", encoding="utf-8") as fh:
        r = csv.reader(fh)
        header = next(r)
        names = tuple(header[1:])
        return [LesionFeatures(row[0], names, np.asarray(row[1:], dtype=np.float64)) for row in r]


@dataclass(frozen=True)
class CVScores:
    """Cross-validated figures of one feature set: the positive class's one-vs-rest ROC AUC (melanoma for PH2,
    malignant for breast ultrasound) with its bootstrap 95% interval, accuracy and balanced accuracy over the
    task's classes (the most probable class)."""

    features: str
    n_features: int
    positive_auc: float
    positive_auc_low: float
    positive_auc_high: float
    accuracy: float
    balanced_accuracy: float


def score_probabilities(name: str, n_features: int, y: np.ndarray, probs: np.ndarray, n_boot: int = 2000,
                        seed: int = 0, positive: int = PH2_TASK.positive_index) -> CVScores:
    """Figures of ``probs (n, n_classes)`` against ``y (n,)`` (class indices); ``positive``: the index of the
    class whose one-vs-rest AUC is scored."""
    pos = (y == positive).astype(int)
    auc = roc_auc_ci(pos, probs[:, positive], n_boot=n_boot, seed=seed)
    pred = probs.argmax(1)
    return CVScores(name, n_features, auc.auc, auc.low, auc.high, accuracy(y, pred), balanced_accuracy(y, pred))


def _positive_auc(y: np.ndarray, probs: np.ndarray, positive: int) -> float:
    pos = (y == positive).astype(int)
    if pos.min() == pos.max():
        return float("nan")
    return float(roc_auc_score(pos, probs[:, positive]))


def choose_feature_set(aucs: dict[str, float], sizes: dict[str, int]) -> str:
    """The feature set with the best cross-validated positive-class AUC (rounded to 3 decimals; ties: fewer
    features)."""
    return max(aucs, key=lambda n: (round(aucs[n], 3) if np.isfinite(aucs[n]) else -1.0, -sizes[n]))


def nested_selection(
    X: np.ndarray, y: np.ndarray, fold: np.ndarray, names: Sequence[str], ablations: dict[str, tuple[str, ...]],
    cfg: HeadConfig, task: DiagnosisTask = PH2_TASK,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Out-of-fold probabilities of the selection procedure itself: for each outer fold, the feature set is
    chosen by cross-validation on the other folds only (:func:`choose_feature_set`), a head on that set is fitted
    on them and predicts the outer fold. Returns the probabilities and the set chosen for each outer fold."""
    probs = np.zeros((len(y), len(task.classes)))
    chosen = []
    cols = {n: select_groups(names, g) for n, g in ablations.items()}
    for f in np.unique(fold):
        te = fold == f
        aucs = {}
        for n, c in cols.items():
            inner = cross_validate(X[~te][:, c], y[~te], fold[~te], [names[i] for i in c], task.classes, cfg)
            aucs[n] = _positive_auc(y[~te], inner, task.positive_index)
        best = choose_feature_set(aucs, {n: len(c) for n, c in cols.items()})
        c = cols[best]
        head = fit_head(X[~te][:, c], y[~te], [names[i] for i in c], task.classes, cfg)
        probs[te] = head.predict_proba(X[te][:, c])
        chosen.append(best)
        log.info("outer fold %s: feature set %s chosen on the other folds", f, best)
    return probs, tuple(chosen)


@dataclass(frozen=True)
class GroupCV:
    """What :func:`cross_validate_groups` found: scores per feature set (and of the nested selection), the set
    the shipped head uses, its out-of-fold probabilities, and the sets the nested selection chose per fold."""

    scores: tuple[CVScores, ...]
    shipped: str
    shipped_probs: np.ndarray
    nested_probs: np.ndarray
    nested_choices: tuple[str, ...]


NESTED = "selected (nested CV)"


def _log_scores(s: CVScores, extra: str = "") -> None:
    log.info("%-18s AUC %.3f [%.3f, %.3f]  acc %.3f  bal.acc %.3f%s", s.features, s.positive_auc, s.positive_auc_low,
             s.positive_auc_high, s.accuracy, s.balanced_accuracy, extra)


def cross_validate_groups(
    feats: Sequence[LesionFeatures], labels: dict[str, str], folds: dict[str, str],
    ablations: dict[str, tuple[str, ...]] = ABLATIONS, cfg: HeadConfig = HeadConfig(), n_boot: int = 2000,
    on_ablation: Callable[[], None] | None = None, task: DiagnosisTask = PH2_TASK,
) -> GroupCV:
    """Cross-validated scores per feature set, and of choosing the set by cross-validation (nested: each outer
    fold's choice never sees that fold). The shipped head's set is the one this choice gives on all folds."""
    X, names = stack(feats)
    y = np.array([task.classes.index(labels[f.case_id]) for f in feats])
    fold = np.array([folds[f.case_id] for f in feats])
    pos = task.positive_index
    scores, probs_by, aucs, sizes = [], {}, {}, {}
    for name, groups in ablations.items():
        cols = select_groups(names, groups)
        probs = cross_validate(X[:, cols], y, fold, [names[i] for i in cols], task.classes, cfg)
        scores.append(score_probabilities(name, len(cols), y, probs, n_boot, cfg.seed, pos))
        _log_scores(scores[-1])
        probs_by[name], aucs[name], sizes[name] = probs, _positive_auc(y, probs, pos), len(cols)
        if on_ablation:
            on_ablation()
    shipped = choose_feature_set(aucs, sizes)
    if len(ablations) == 1 or len(np.unique(fold)) < 3:  # nothing to choose, or no inner folds to choose on
        return GroupCV(tuple(scores), shipped, probs_by[shipped], probs_by[shipped], ())
    nested_probs, choices = nested_selection(X, y, fold, names, ablations, cfg, task)
    scores.append(score_probabilities(NESTED, 0, y, nested_probs, n_boot, cfg.seed, pos))
    _log_scores(scores[-1], f"  (chosen per fold: {', '.join(choices)})")
    return GroupCV(tuple(scores), shipped, probs_by[shipped], nested_probs, choices)


# ------------------------------------------------------------------------------------------------ recipe


@dataclass(frozen=True)
class DiagnoserConfig:
    """What :func:`train_diagnoser` does.

    Attributes:
        masks: the mask the features are computed under (:class:`MaskMode`).
        head: the head's hyper-parameters (the defaults of :class:`HeadConfig`: not tuned on the data).
        ablations: ``(name, feature groups)`` pairs cross-validated; the shipped head uses the one with the best
            cross-validated positive-class AUC (the choice itself is scored by nested cross-validation).
        n_boot: bootstrap replicates of the AUC interval.
        cases: case ids of the task to use (``None``: all); for quick runs and tests.
        top_features: how many features of the shipped head the model card lists by importance.
        task: what the head tells apart, on which cases and folds (:mod:`radvlsm.fusion.tasks`).
    """

    masks: MaskMode = MaskMode.GT
    head: HeadConfig = HeadConfig()
    ablations: tuple[tuple[str, tuple[str, ...]], ...] = tuple(ABLATIONS.items())
    n_boot: int = 2000
    cases: tuple[str, ...] | None = None
    top_features: int = 15
    task: DiagnosisTask = PH2_TASK

    def validate(self) -> None:
        if not isinstance(self.masks, MaskMode):
            raise ConfigError(f"masks must be one of {[m.value for m in MaskMode]}, not {self.masks!r}")
        if not isinstance(self.task, DiagnosisTask):
            raise ConfigError(f"task must be a DiagnosisTask (radvlsm.fusion.tasks.get_task), not {self.task!r}")
        names = [n for n, _ in self.ablations]
        if not names:
            raise ConfigError("give at least one feature set (ablation)")
        if len(set(names)) != len(names):
            raise ConfigError(f"ablation names repeat: {names}")
        for name, groups in self.ablations:
            unknown = sorted(set(groups) - set(FEATURE_GROUPS))
            if not groups or unknown:
                raise ConfigError(f"ablation {name!r}: unknown or no feature groups {unknown}; "
                                  f"known: {list(FEATURE_GROUPS)}")
        if self.n_boot < 1:
            raise ConfigError(f"n_boot must be at least 1, not {self.n_boot}")
        if self.head.k_best < 1 or self.head.n_estimators < 1:
            raise ConfigError("the head needs k_best >= 1 and n_estimators >= 1")


@dataclass(frozen=True)
class FeatureCacheKey:
    """What the cached features depend on; a cache made with another key is recomputed."""

    masks: str
    segmenter_fingerprint: str
    radiomics_params: str
    schema: int = FEATURE_CACHE_SCHEMA


@dataclass(frozen=True)
class MaskQuality:
    """Dice of the predicted masks (``--masks predicted``) against the experts', over the cases used."""

    n_cases: int
    mean_dice: float
    holdout_fold: str
    holdout_n_cases: int
    holdout_mean_dice: float
    other_folds_mean_dice: float


@dataclass(frozen=True)
class FeatureImportance:
    name: str
    total_gain: float


@dataclass(frozen=True)
class DiagnoserReport:
    """Everything :func:`train_diagnoser` measured and wrote (``OUT/cv_report.json`` holds it).

    ``holdout_fold_scores``: the out-of-fold figures on the task's hold-out fold alone, of the shipped feature
    set and of the nested selection (empty when that fold lacks a class)."""

    out_dir: Path
    final_dir: Path
    masks: MaskMode
    segmenter: str
    segmenter_fingerprint: str
    recipe: str
    n_cases: int
    class_counts: tuple[tuple[str, int], ...]
    folds: tuple[str, ...]
    missing: tuple[str, ...]
    head_config: HeadConfig
    n_boot: int
    scores: tuple[CVScores, ...]
    shipped_features: str
    nested_choices: tuple[str, ...]
    fused_confusion: tuple[tuple[int, ...], ...]
    holdout_fold_scores: tuple[CVScores, ...]
    mask_quality: MaskQuality | None
    importance: tuple[FeatureImportance, ...]
    n_features_computed: int
    seconds: float
    classes: tuple[str, ...] = PH2_CLASSES
    task: str = PH2_TASK.name
    positive_class: str = PH2_TASK.positive
    holdout_fold: str = PH2_TASK.holdout_fold
    test_fold: str | None = None
    n_cv_cases: int | None = None
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))

    def score(self, features: str) -> CVScores:
        for s in self.scores:
            if s.features == features:
                return s
        raise KeyError(features)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def segmenter_fingerprint(model: torch.nn.Module) -> str:
    """A short SHA-256 of the model's state (names, dtypes and bytes of every tensor)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _params_digest(extractor: RadiomicsExtractor, dimension: str = "2d", extra: str = "") -> str:
    """Digest of the radiomics parameters (and, for volumes, of the segmentation settings in ``extra``)."""
    ps = extractor.param_set("3d" if dimension == "3d" else "2d")
    text = ps.path.read_text(encoding="utf-8") + json.dumps(dict(ps.overrides), sort_keys=True, default=str)
    return hashlib.sha256((text + extra).encode()).hexdigest()[:16]


def task_ablations(ablations: dict[str, tuple[str, ...]], groups: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The ablations restricted to the feature groups a task's cases have: groups it lacks are dropped from each
    ablation, and an ablation left empty or equal to an earlier one is dropped (CT has no colour: ``colour`` and
    ``radiomics+colour`` go, ``fused`` becomes radiomics + visual)."""
    out: dict[str, tuple[str, ...]] = {}
    for name, g in ablations.items():
        kept = tuple(x for x in g if x in groups)
        if kept and kept not in out.values():
            out[name] = kept
    return out


@dataclass(frozen=True)
class _Cache:
    features: tuple[LesionFeatures, ...] = ()
    missing: tuple[str, ...] = ()
    dice: tuple[tuple[str, float], ...] = ()


def _read_cache(out_dir: Path, key: FeatureCacheKey) -> _Cache:
    csv_path, meta_path = out_dir / FEATURES_FILE, out_dir / FEATURES_META_FILE
    if not csv_path.is_file() or not meta_path.is_file():
        return _Cache()
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("key") != asdict(key):
            log.info("%s: computed with another segmenter, mask mode or radiomics parameters; recomputing",
                     csv_path)
            return _Cache()
        feats = read_features_csv(csv_path)
        return _Cache(tuple(feats), tuple(meta.get("missing", ())),
                      tuple((str(k), float(v)) for k, v in meta.get("dice", {}).items()))
    except (ValueError, KeyError, TypeError, StopIteration) as exc:
        log.warning("%s: unreadable feature cache, recomputing (%s)", csv_path, exc)
        return _Cache()


def _write_cache(out_dir: Path, key: FeatureCacheKey, cache: _Cache) -> None:
    if cache.features:
        write_features_csv(out_dir / FEATURES_FILE, cache.features)
    meta = {"key": asdict(key), "n_cases": len(cache.features), "missing": sorted(cache.missing),
            "dice": dict(cache.dice)}
    with atomic_write(out_dir / FEATURES_META_FILE) as fh:
        json.dump(meta, fh, indent=1)


def _select_cases(task: DiagnosisTask, datasets_root: Path, wanted: tuple[str, ...] | None
                  ) -> tuple[list[LesionCase], dict[str, str]]:
    """The task's cases to use (in case-id order) and their fold."""
    all_cases, folds = task.cases(Path(datasets_root))
    by_id = {c.case_id: c for c in all_cases}
    if wanted is not None:
        unknown = sorted(set(wanted) - set(by_id))
        if unknown:
            raise ConfigError(f"{datasets_root}: {task.title} has no case(s) {unknown[:5]}"
                              f"{' …' if len(unknown) > 5 else ''}")
        cases = [by_id[c] for c in sorted(set(wanted))]
    else:
        cases = [by_id[c] for c in sorted(by_id)]
    if not cases:
        raise InputError(Path(datasets_root), f"no {task.title} case with an image and a mask")
    for c in cases:
        if c.diagnosis not in task.classes:
            raise InputError(c.image_path.parent.parent / "labels.csv",
                             f"case {c.case_id}: diagnosis {c.diagnosis!r} is not one of {list(task.classes)}")
    return cases, {c.case_id: folds[c.case_id] for c in cases}


def _check_cv_possible(y: np.ndarray, fold: np.ndarray, task: DiagnosisTask) -> None:
    pos = task.positive_index
    if len(np.unique(fold)) < 2:
        raise ConfigError(f"cross-validation needs cases from at least 2 {task.title} folds")
    if not (y == pos).any() or (y == pos).all():
        raise ConfigError(f"the {task.positive}-vs-rest AUC needs both {task.positive} and other cases")
    for f in np.unique(fold):
        if len(np.unique(y[fold != f])) < 2:
            raise ConfigError(f"the training part of fold {f} holds a single class")


def _mask_quality(dice_by_case: dict[str, float], folds: dict[str, str], hold: str) -> MaskQuality | None:
    if not dice_by_case:
        return None
    d_hold = [v for k, v in dice_by_case.items() if folds[k] == hold]
    d_other = [v for k, v in dice_by_case.items() if folds[k] != hold]
    return MaskQuality(len(dice_by_case), _mean(list(dice_by_case.values())), hold, len(d_hold), _mean(d_hold),
                       _mean(d_other))


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def recipe_command(datasets_root: Path, out_dir: Path, segmenter_name: str, cfg: DiagnoserConfig) -> str:
    task = "" if cfg.task.name == PH2_TASK.name else f"--task {cfg.task.name} "
    cmd = (f"radvlsm train diagnoser {task}--data {datasets_root} --segmenter {segmenter_name} "
           f"--masks {cfg.masks.value} --out {out_dir} --threads {cfg.head.threads}")
    return cmd + (f" [subset of {cfg.task.title} cases]" if cfg.cases is not None else "")


#: A long feature computation saves the cache after every this many cases (a killed run resumes from there).
CACHE_EVERY = 100


def train_diagnoser(
    datasets_root: Path,
    out_dir: Path,
    segmenter: LesionSegmenter,
    cfg: DiagnoserConfig = DiagnoserConfig(),
    *,
    segmenter_name: str = "default",
    device: str = "cpu",
    console: Console | None = None,
) -> DiagnoserReport:
    """Features, cross-validation and the shipped head for ``cfg.task`` (see the module docstring); writes
    ``out_dir``.

    ``datasets_root`` holds the task's datasets (``ph2/``; ``busi/`` and ``bus-bra/``); ``segmenter`` gives the
    visual embedding (and, with ``masks=predicted``, the masks); ``segmenter_name`` is how the recipe and the
    model card name it.

    Raises:
        InputError: a dataset is missing or a case has no mask, fold or known diagnosis.
        ConfigError: an invalid ``cfg``, or too few cases / classes to cross-validate.
    """
    t0 = time.perf_counter()
    cfg.validate()
    task = cfg.task
    out_dir = Path(out_dir)
    cases, folds = _select_cases(task, Path(datasets_root), cfg.cases)
    labels = {c.case_id: str(c.diagnosis) for c in cases}
    _check_cv_possible(np.array([task.classes.index(labels[c.case_id]) for c in cases]),
                       np.array([folds[c.case_id] for c in cases]), task)
    out_dir.mkdir(parents=True, exist_ok=True)

    extractor, featurizer_of = _task_features(task, segmenter, device, cfg.masks)
    fingerprint = segmenter_fingerprint(segmenter)
    key = FeatureCacheKey(cfg.masks.value, fingerprint, _params_digest(
        extractor, "3d" if task.volumetric else "2d", _volume_settings() if task.volumetric else ""))
    cache = _read_cache(out_dir, key)
    have = {f.case_id for f in cache.features} | set(cache.missing)
    todo = [c for c in cases if c.case_id not in have]
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console)
    with progress:
        if todo:
            log.info("computing features of %d %s case(s) (%d cached in %s), masks: %s", len(todo), task.title,
                     len(cases) - len(todo), out_dir / FEATURES_FILE, cfg.masks.value)
            featurizer = featurizer_of()
            bar = progress.add_task("features", total=len(todo))
            for i in range(0, len(todo), CACHE_EVERY):
                cache = _extend_cache(out_dir, key, cache, todo[i:i + CACHE_EVERY], featurizer,
                                      lambda: progress.advance(bar))
        else:
            log.info("all %d case features reused from %s", len(cases), out_dir / FEATURES_FILE)

        wanted = {c.case_id for c in cases}
        by_id = {f.case_id: f for f in cache.features}
        feats = [by_id[c.case_id] for c in cases if c.case_id in by_id]
        missing = tuple(c.case_id for c in cases if c.case_id not in by_id)
        if missing:
            log.warning("%d case(s) without features (no lesion found, or refused: see the log), left out: %s",
                        len(missing), ", ".join(missing))
        if not feats:
            raise ConfigError("no case has features; nothing to train on")
        X, names = stack(feats)
        y = np.array([task.classes.index(labels[f.case_id]) for f in feats])
        fold = np.array([folds[f.case_id] for f in feats])
        # the folds of the cross-validation and of the shipped head: all but the task's test fold
        dev = fold != task.test_fold if task.test_fold is not None else np.ones(len(fold), bool)
        _check_cv_possible(y[dev], fold[dev], task)

        ablations = task_ablations(dict(cfg.ablations), task.feature_groups)
        if not ablations:
            raise ConfigError(f"no ablation uses the feature groups of {task.title} ({', '.join(task.feature_groups)})")
        bar = progress.add_task("cross-validation", total=len(ablations))
        dev_feats = [f for f, d in zip(feats, dev, strict=True) if d]
        gcv = cross_validate_groups(dev_feats, labels, folds, ablations, cfg.head, cfg.n_boot,
                                    lambda: progress.advance(bar), task)
        scores = list(gcv.scores)
        bar = progress.add_task("final head", total=1)
        cols = select_groups(names, ablations[gcv.shipped])
        head = fit_head(X[dev][:, cols], y[dev], [names[i] for i in cols], task.classes, cfg.head,
                        malignant_classes=task.malignant)
        head = replace(head, segmenter_fingerprint=fingerprint)
        final_dir = head.save(out_dir / FINAL_DIR)
        progress.advance(bar)
        # out-of-fold probabilities of the CV folds; the shipped head's on the test fold
        fused_probs = np.zeros((len(y), len(task.classes)))
        fused_probs[dev] = gcv.shipped_probs
        if not dev.all():
            fused_probs[~dev] = head.predict_proba(X[~dev][:, cols])

    hold = fold == task.holdout_fold
    hold_scores: list[CVScores] = []
    if task.test_fold is not None:
        hold_scores = _test_fold_scores(X, y, dev, names, ablations, gcv.shipped, fused_probs, cfg, task)
    elif hold.any() and len(np.unique(y[hold] == task.positive_index)) == 2:
        rows = [(gcv.shipped, len(cols), fused_probs)]
        if gcv.nested_choices:
            rows.append((NESTED, 0, gcv.nested_probs))
        hold_scores = [score_probabilities(f"{n} (fold {task.holdout_fold} only)", k, y[hold], p[hold], cfg.n_boot,
                                           cfg.head.seed, task.positive_index) for n, k, p in rows]
    conf = confusion_matrix(y[dev], fused_probs[dev].argmax(1), labels=list(range(len(task.classes))))
    dice_used = {k: v for k, v in cache.dice if k in wanted and k in by_id}
    report = DiagnoserReport(
        out_dir=out_dir, final_dir=final_dir, masks=cfg.masks, segmenter=segmenter_name,
        segmenter_fingerprint=fingerprint, recipe=recipe_command(Path(datasets_root), out_dir, segmenter_name, cfg),
        n_cases=len(feats),
        class_counts=tuple((c, int((y == i).sum())) for i, c in enumerate(task.classes)),
        folds=tuple(sorted(set(fold.tolist()))), missing=missing, head_config=cfg.head, n_boot=cfg.n_boot,
        scores=tuple(scores), shipped_features=gcv.shipped, nested_choices=gcv.nested_choices,
        fused_confusion=tuple(tuple(int(v) for v in row) for row in conf), holdout_fold_scores=tuple(hold_scores),
        mask_quality=(_mask_quality(dice_used, folds, task.holdout_fold) if cfg.masks is MaskMode.PREDICTED
                      else None),
        importance=tuple(FeatureImportance(n, float(g)) for n, g in head.importance(cfg.top_features)),
        n_features_computed=len(todo), seconds=time.perf_counter() - t0, classes=task.classes, task=task.name,
        positive_class=task.positive, holdout_fold=task.holdout_fold, test_fold=task.test_fold,
        n_cv_cases=int(dev.sum()),
    )
    _write_predictions(out_dir / CV_PREDICTIONS_FILE, feats, labels, folds, fused_probs, task.classes)
    with atomic_write(out_dir / CV_REPORT_JSON) as fh:
        fh.write(report.to_json() + "\n")
    with atomic_write(out_dir / CV_REPORT_MD) as fh:
        fh.write(cv_report_markdown(report, task))
    with atomic_write(final_dir / MODEL_CARD_FILE) as fh:
        fh.write(model_card(report, head, task))
    log.info("cross-validated report → %s; shipped head → %s", out_dir / CV_REPORT_MD, final_dir)
    return report


def _task_features(task: DiagnosisTask, segmenter: LesionSegmenter, device: str, masks: MaskMode
                   ) -> tuple[RadiomicsExtractor, Callable[[], CaseFeaturizer]]:
    """The task's radiomics extractor, and a maker of its featurizer (called only when features are missing:
    it loads the segmenter onto ``device``)."""
    use_gt = masks is MaskMode.GT
    if task.volumetric:
        from radvlsm.fusion.volume import NoduleFeaturizer, ct_extractor
        from radvlsm.stage2_segment.volume import VolumeSegmenter

        extractor = ct_extractor(task.radiomics_params)

        def volume_featurizer() -> CaseFeaturizer:
            return NoduleFeaturizer(VolumeSegmenter(SegmenterPredictor(segmenter, device=device)), extractor,
                                    use_gt_mask=use_gt)

        return extractor, volume_featurizer
    extractor = RadiomicsExtractor(task.radiomics_params, dimension="2d")

    def featurizer() -> CaseFeaturizer:
        source = gt_box_source(SegmenterPredictor(segmenter, device=device), use_gt_mask=use_gt)
        return image_featurizer(source, extractor, record_dice=not use_gt)

    return extractor, featurizer


def _volume_settings() -> str:
    from radvlsm.stage2_segment.volume import VolumeConfig

    return json.dumps(asdict(VolumeConfig()), sort_keys=True, default=str)


def _test_fold_scores(X: np.ndarray, y: np.ndarray, dev: np.ndarray, names: Sequence[str],
                      ablations: dict[str, tuple[str, ...]], shipped: str, shipped_probs: np.ndarray,
                      cfg: DiagnoserConfig, task: DiagnosisTask) -> list[CVScores]:
    """Figures on the task's test fold: the shipped head's, then a head per other ablation fitted the same way
    on the other folds (none of them saw the test fold; the shipped set was chosen without it)."""
    test = ~dev
    if not test.any() or len(np.unique(y[test] == task.positive_index)) < 2:
        return []
    label = f"(held-out {task.test_fold})"
    out = [score_probabilities(f"{shipped} {label}", len(select_groups(names, ablations[shipped])), y[test],
                               shipped_probs[test], cfg.n_boot, cfg.head.seed, task.positive_index)]
    for name, groups in ablations.items():
        if name == shipped:
            continue
        c = select_groups(names, groups)
        head = fit_head(X[dev][:, c], y[dev], [names[i] for i in c], task.classes, cfg.head)
        out.append(score_probabilities(f"{name} {label}", len(c), y[test], head.predict_proba(X[test][:, c]),
                                       cfg.n_boot, cfg.head.seed, task.positive_index))
    for s in out:
        _log_scores(s)
    return out


def _extend_cache(out_dir: Path, key: FeatureCacheKey, cache: _Cache, todo: Sequence[LesionCase],
                  featurizer: CaseFeaturizer, on_case: Callable[[], None]) -> _Cache:
    """Compute the features of ``todo``, merge them into ``cache`` and save it."""
    feats, missing, new_dice = compute_features(todo, featurizer, on_case)
    old = [f for f in cache.features if f.case_id not in {g.case_id for g in feats}]
    if old and feats and old[0].names != feats[0].names:
        raise ConfigError(f"{out_dir / FEATURES_FILE}: the cached features have other names than this "
                          "version of radvlsm computes; delete the file to recompute them")
    cache = _Cache(tuple(old + feats), tuple(sorted(set(cache.missing) | set(missing))),
                   tuple(sorted({**dict(cache.dice), **new_dice}.items())))
    _write_cache(out_dir, key, cache)
    return cache


def _write_predictions(path: Path, feats: Sequence[LesionFeatures], labels: dict[str, str], folds: dict[str, str],
                       probs: np.ndarray, classes: Sequence[str] = PH2_CLASSES) -> None:
    with atomic_write(path, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case_id", "fold", "diagnosis", *(f"p_{c}" for c in classes), "predicted"])
        for f, p in zip(feats, probs, strict=True):
            w.writerow([f.case_id, folds[f.case_id], labels[f.case_id], *(f"{v:.5f}" for v in p),
                        classes[int(np.argmax(p))]])


# ------------------------------------------------------------------------------------------- reports


def _scores_table(scores: Sequence[CVScores], r: DiagnoserReport) -> str:
    lines = [f"| features | n features | {r.positive_class}-vs-rest AUC [95% CI] | {len(r.classes)}-class accuracy "
             "| balanced accuracy |",
             "| --- | ---: | --- | ---: | ---: |"]
    for s in scores:
        n = s.n_features if s.n_features else "per fold"
        lines.append(f"| {s.features} | {n} | {s.positive_auc:.3f} [{s.positive_auc_low:.3f}, "
                     f"{s.positive_auc_high:.3f}] | {s.accuracy:.3f} | {s.balanced_accuracy:.3f} |")
    return "\n".join(lines)


def _confusion_table(r: DiagnoserReport) -> str:
    lines = ["| true \\ predicted | " + " | ".join(r.classes) + " |", "| --- |" + " ---: |" * len(r.classes)]
    for c, row in zip(r.classes, r.fused_confusion, strict=True):
        lines.append(f"| {c} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def _masks_sentence(r: DiagnoserReport, task: DiagnosisTask = PH2_TASK) -> str:
    if task.volumetric:
        prompt = (f"the segmenter `{r.segmenter}` prompted by the nodule's point (its labelled centre "
                  "`coordX/Y/Z` in scanner mm and `diameter_mm`: what `--points` gives; "
                  "`radvlsm.stage2_segment.volume.VolumeSegmenter.segment_point`)")
        if r.masks is MaskMode.GT:
            text = ("Radiomics are computed under the experts' nodule masks (`--masks gt`); the visual embedding "
                    f"comes from {prompt}, averaged over the slices of its mask.")
        else:
            text = (f"Features are computed under the masks predicted by {prompt} (`--masks predicted`), the "
                    "visual embedding averaged over the slices of that mask: the pipeline of `radvlsm diagnose "
                    "--points`.")
    elif r.masks is MaskMode.GT:
        return ("Features are computed under the experts' lesion masks (`--masks gt`); the visual embedding comes "
                f"from the segmenter `{r.segmenter}` prompted with the ground-truth box.")
    else:
        text = (f"Features are computed under the masks the segmenter `{r.segmenter}` predicts from the "
                "ground-truth box (`--masks predicted`): the pipeline of `radvlsm diagnose --boxes`.")
    q = r.mask_quality
    if q is not None:
        text += (f" Dice of those masks against the experts': {q.mean_dice:.3f} over {q.n_cases} cases; "
                 f"{q.holdout_mean_dice:.3f} on fold {q.holdout_fold} ({q.holdout_n_cases} cases, held out from "
                 f"the segmenter's training), {q.other_folds_mean_dice:.3f} on the other folds.")
    return text


def _head_origin(cfg: HeadConfig) -> str:
    if cfg == replace(HeadConfig(), threads=cfg.threads):
        return "the defaults of `HeadConfig` as committed with the head; this recipe tunes nothing"
    return "set by the caller, not the defaults of `HeadConfig`; not tuned by this recipe"


def _caveats(r: DiagnoserReport, task: DiagnosisTask) -> str:
    n_pos = dict(r.class_counts).get(task.positive, 0)
    return (
        f"- {task.segmenter_text.format(nested=NESTED)}\n"
        "- This recipe tunes no hyper-parameter of the head. The shipped feature set is chosen by the "
        f"cross-validated {task.positive} AUC of the ablations; that choice is optimistic on its own, so the row "
        f"'{NESTED}' scores the whole procedure with the choice made inside each outer fold "
        f"(chosen per fold: {', '.join(r.nested_choices) or 'not run: fewer than 3 folds'}).\n"
        f"- {task.scope_text.format(n_cases=r.n_cases, n_positive=n_pos)}\n"
    )


def _holdout_paragraph(r: DiagnoserReport, task: DiagnosisTask) -> str:
    if not r.holdout_fold_scores:
        return ""
    if r.test_fold is not None:
        n_test = r.n_cases - (r.n_cv_cases or 0)
        return (f"**Held-out test** ({n_test} cases): {task.holdout_text}. The first row is the shipped head "
                f"itself.\n\n{_scores_table(r.holdout_fold_scores, r)}\n\n")
    what = "The shipped feature set" + (" and the nested selection" if len(r.holdout_fold_scores) > 1 else "")
    return f"{what} on {task.holdout_text}:\n\n{_scores_table(r.holdout_fold_scores, r)}\n\n"


def _cv_folds(r: DiagnoserReport) -> tuple[str, ...]:
    return tuple(f for f in r.folds if f != r.test_fold)


def _cv_cases_sentence(r: DiagnoserReport) -> str:
    if r.test_fold is None:
        return ""
    return (f" The cross-validation holds the {r.n_cv_cases} cases of folds {', '.join(_cv_folds(r))}; fold "
            f"`{r.test_fold}` ({r.n_cases - (r.n_cv_cases or 0)} cases) is kept out of it and of the shipped head.")


def _class_counts(r: DiagnoserReport) -> str:
    return ", ".join(f"{c} {n}" for c, n in r.class_counts)


def cv_report_markdown(r: DiagnoserReport, task: DiagnosisTask = PH2_TASK) -> str:
    hold = _holdout_paragraph(r, task)
    missing = "none" if not r.missing else ", ".join(r.missing)
    n_cls = len(r.classes)
    return (
        f"# Diagnosis head: cross-validated figures on {task.title} ({r.masks.value} masks)\n\n"
        f"{_masks_sentence(r, task)}\n\n"
        f"Cross-validated on the committed {task.title} folds ({', '.join(_cv_folds(r))}): for each fold, a head "
        "fitted on the other folds (imputation, scaling, feature selection and temperature calibration included) "
        f"predicts it; a fold's test part is never used for fitting. AUC: {task.positive} vs the rest, from the "
        f"calibrated {task.positive} probability, with a stratified percentile bootstrap 95% interval ({r.n_boot} "
        f"replicates). Accuracy and balanced accuracy: {n_cls} classes, the most probable class.\n\n"
        f"Cases: {r.n_cases} ({_class_counts(r)}); left out (no lesion found, or refused): {missing}."
        f"{_cv_cases_sentence(r)}\n\n{_scores_table(r.scores, r)}\n\n{hold}"
        f"Confusion matrix of the shipped feature set (out of fold):\n\n{_confusion_table(r)}\n\n"
        f"Recipe: `{r.recipe}` (segmenter fingerprint {r.segmenter_fingerprint}; {r.seconds:.0f} s).\n"
    )


def model_card(r: DiagnoserReport, head: DiagnosisHead, task: DiagnosisTask = PH2_TASK) -> str:
    cfg = ", ".join(f"{k}={v}" for k, v in asdict(r.head_config).items())
    imp = "\n".join(f"| {i} | `{f.name}` | {f.total_gain:.4g} |" for i, f in enumerate(r.importance, 1))
    fused = r.score(r.shipped_features)
    n_cls = len(r.classes)
    return (
        f"# Model card: radvlsm diagnosis head ({task.modality}, {n_cls} classes)\n\n"
        "## What it is\n\n"
        f"An xgboost classifier over a lesion's features (feature set **{r.shipped_features}**): "
        f"{_groups_text(head, task)}; imputation, scaling and "
        f"selection of the {r.head_config.k_best} best features (ANOVA F) fitted on the training data, "
        f"temperature-calibrated probabilities (temperature {head.temperature:.3f}, fitted on inner out-of-fold "
        f"margins). Classes: {', '.join(head.classes)}; malignant: {', '.join(head.malignant_classes)}. "
        "Files: `head.json` + `booster.json` (xgboost's JSON), no pickle.\n\n"
        f"It must be used with the segmenter it was trained with: `{r.segmenter}` (fingerprint "
        f"{r.segmenter_fingerprint}); another segmenter gives other masks and visual features. `head.json` "
        "records the fingerprint, and `radvlsm diagnose` refuses the head with another segmenter.\n\n"
        "## Data\n\n"
        f"{task.dataset}, {r.n_cases} cases used ({_class_counts(r)}); left out: {', '.join(r.missing) or 'none'}."
        f"\n\n{_masks_sentence(r, task)}\n\n"
        "## Folds\n\n"
        f"{task.folds_text}; folds used: {', '.join(r.folds)}.{_cv_cases_sentence(r)}\n\n"
        "## Recipe\n\n"
        f"```bash\n{r.recipe}\n```\n\n"
        f"Head configuration ({_head_origin(r.head_config)}): {cfg}.\n\n"
        "## Cross-validated figures\n\n"
        "These figures are cross-validated: each fold is predicted by a head fitted on the other folds only "
        "(imputation, scaling, feature selection and calibration included); each fold's test part was never used "
        f"for fitting. {_shipped_sentence(r)} AUC: {task.positive} vs the rest; accuracy and "
        f"balanced accuracy: {n_cls} classes.\n\n"
        f"{_scores_table(r.scores, r)}\n\n"
        f"Shipped: **{r.shipped_features}** (AUC {fused.positive_auc:.3f} [{fused.positive_auc_low:.3f}, "
        f"{fused.positive_auc_high:.3f}], accuracy {fused.accuracy:.3f}, balanced accuracy "
        f"{fused.balanced_accuracy:.3f}).\n\n"
        f"{_holdout_paragraph(r, task)}"
        f"Confusion matrix of the shipped feature set (out of fold):\n\n{_confusion_table(r)}\n\n"
        f"## Top {len(r.importance)} features of the shipped head\n\n"
        "By xgboost's total gain.\n\n| rank | feature | total gain |\n| ---: | --- | ---: |\n"
        f"{imp}\n\n"
        "## Limits\n\n"
        f"{_caveats(r, task)}"
        "- Research use only: not a medical device, not a diagnosis.\n"
    )


def _groups_text(head: DiagnosisHead, task: DiagnosisTask) -> str:
    """What the head reads, group by group (groups it does not read are not named)."""
    parts = []
    if _n(head, "original_"):
        parts.append(f"radiomics ({_n(head, 'original_')} pyradiomics features{', 3-D' if task.volumetric else ''})")
    if _n(head, "visual_"):
        parts.append(f"the segmenter's lesion-aware visual embedding ({_n(head, 'visual_')} values: image embedding "
                     "averaged under the mask, and the mask token"
                     f"{'; averaged over the nodule slices' if task.volumetric else ''})")
    if _n(head, "colour_"):
        parts.append(f"CIELAB colour ({_n(head, 'colour_')} values)")
    return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]


def _shipped_sentence(r: DiagnoserReport) -> str:
    if r.test_fold is None:
        return ("The shipped head is then fitted on all the cases above, so it has no held-out figure of its own: "
                "the cross-validated figures estimate it.")
    return (f"The shipped head is then fitted on the {r.n_cv_cases} cases of folds {', '.join(_cv_folds(r))} "
            f"(never on fold `{r.test_fold}`), and scored on fold `{r.test_fold}` below.")


def _n(head: DiagnosisHead, prefix: str) -> int:
    return sum(n.startswith(prefix) for n in head.feature_names)

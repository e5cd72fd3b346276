"""Training recipe of the diagnosis head (``radvlsm train diagnoser``) on PH2.

1. Features for every PH2 case (:func:`compute_features`), from the ground-truth mask or from the mask the
   pipeline predicts; cached as CSV in the run folder (a rerun reuses them).
2. 5-fold cross-validation on the committed PH2 folds (:func:`cross_validate_groups`): selection, scaling and
   calibration are fitted inside each fold's training part. Reported: melanoma-vs-rest ROC AUC with a
   stratified bootstrap 95% interval, 3-class accuracy and balanced accuracy; for radiomics only, visual
   only, colour only, and all fused.
3. The shipped head: fitted on all PH2 cases with all features (:func:`fit_head`).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radvlsm.data.boxes import mask_to_box
from radvlsm.data.cases import LesionCase
from radvlsm.fusion.features import LesionFeatures, lesion_features, select_groups, stack
from radvlsm.fusion.head import HeadConfig, cross_validate
from radvlsm.fusion.radiomics import RadiomicsExtractor
from radvlsm.io import atomic_write, read_image, read_mask, to_display_rgb
from radvlsm.metrics.classification import accuracy, balanced_accuracy, roc_auc_ci
from radvlsm.stage2_segment.predictor import SegmenterPredictor

log = logging.getLogger(__name__)

PH2_CLASSES = ("common_nevus", "atypical_nevus", "melanoma")
PH2_MALIGNANT = ("melanoma",)
ABLATIONS: dict[str, tuple[str, ...]] = {
    "radiomics": ("radiomics",),
    "visual": ("visual",),
    "colour": ("colour",),
    "radiomics+colour": ("radiomics", "colour"),
    "fused": ("radiomics", "visual", "colour"),
}

#: Gives the lesion mask and embedding of one image: ``(rgb, case) -> (mask, embedding)`` or ``None`` when no
#: lesion was found.
MaskSource = Callable[[np.ndarray, LesionCase], "tuple[np.ndarray, np.ndarray] | None"]


def gt_box_source(predictor: SegmenterPredictor, use_gt_mask: bool) -> MaskSource:
    """Masks from the ground truth (``use_gt_mask``) or predicted from the ground-truth box; the embedding
    always comes from the segmenter prompted with the ground-truth box."""

    def source(rgb: np.ndarray, case: LesionCase) -> tuple[np.ndarray, np.ndarray] | None:
        gt = read_mask(case.mask_path)
        predictor.set_images([rgb])
        res = predictor.predict([mask_to_box(gt)[None]])[0]
        if res.status != "ok":
            return None
        return (gt if use_gt_mask else res.mask), res.embedding

    return source


def compute_features(cases: Sequence[LesionCase], source: MaskSource, extractor: RadiomicsExtractor,
                     on_case: Callable[[], None] | None = None) -> tuple[list[LesionFeatures], list[str]]:
    """Features of each case; cases whose lesion is not found are listed in the second value."""
    out, missing = [], []
    for case in cases:
        rgb = to_display_rgb(read_image(case.image_path))
        got = source(rgb, case)
        if got is None or not got[0].any():
            missing.append(case.case_id)
        else:
            out.append(lesion_features(case.case_id, rgb, got[0], got[1], extractor))
        if on_case:
            on_case()
    return out, missing


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
    """Cross-validated figures of one feature set."""

    features: str
    n_features: int
    melanoma_auc: float
    melanoma_auc_low: float
    melanoma_auc_high: float
    accuracy: float
    balanced_accuracy: float


def cross_validate_groups(
    feats: Sequence[LesionFeatures], labels: dict[str, str], folds: dict[str, str],
    ablations: dict[str, tuple[str, ...]] = ABLATIONS, cfg: HeadConfig = HeadConfig(),
) -> tuple[list[CVScores], np.ndarray]:
    """Cross-validated scores per feature set; also returns the fused set's out-of-fold probabilities."""
    X, names = stack(feats)
    y = np.array([PH2_CLASSES.index(labels[f.case_id]) for f in feats])
    fold = np.array([folds[f.case_id] for f in feats])
    mel = (y == PH2_CLASSES.index("melanoma")).astype(int)
    scores, fused_probs = [], np.zeros((len(y), len(PH2_CLASSES)))
    for name, groups in ablations.items():
        cols = select_groups(names, groups)
        probs = cross_validate(X[:, cols], y, fold, [names[i] for i in cols], PH2_CLASSES, cfg)
        auc = roc_auc_ci(mel, probs[:, PH2_CLASSES.index("melanoma")], seed=cfg.seed)
        pred = probs.argmax(1)
        scores.append(CVScores(name, len(cols), auc.auc, auc.low, auc.high, accuracy(y, pred),
                               balanced_accuracy(y, pred)))
        log.info("%-18s AUC %.3f [%.3f, %.3f]  acc %.3f  bal.acc %.3f", name, auc.auc, auc.low, auc.high,
                 scores[-1].accuracy, scores[-1].balanced_accuracy)
        if name == "fused":
            fused_probs = probs
    return scores, fused_probs

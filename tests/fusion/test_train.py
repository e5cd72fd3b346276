"""The diagnoser recipe on a small PH2 subset (2 folds x 4 cases per class) with a small head: files written,
finite figures, the feature cache reused, the shipped head loadable, invalid configurations refused; the
breast-ultrasound task's folds, and a small run of it (2 folds x 2 classes x 2 sources x 2 cases)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from radvlsm.data.cases import read_dataset
from radvlsm.data.splits import BUSBRA_HOLDOUT_FOLD, busbra_folds, busi_split, ph2_folds, read_labels_pairs
from radvlsm.errors import ConfigError
from radvlsm.fusion.head import DiagnosisHead, HeadConfig
from radvlsm.fusion.tasks import PH2_TASK, ULTRASOUND_TASK, get_task
from radvlsm.fusion.train import (
    ABLATIONS,
    PH2_CLASSES,
    DiagnoserConfig,
    DiagnoserReport,
    MaskMode,
    read_features_csv,
    train_diagnoser,
)
from radvlsm.stage2_segment.modeling import LesionSegmenter

pytestmark = pytest.mark.shared_data

#: A segmenter spec for these tests other than the embedded default (e.g. a training run's folder).
SEGMENTER_ENV = "RADVLSM_TEST_SEGMENTER"
SMALL_HEAD = HeadConfig(k_best=10, n_estimators=20, calibration_folds=2, threads=1)


@pytest.fixture(scope="module")
def segmenter() -> tuple[str, LesionSegmenter]:
    """The trained segmenter the visual features come from: the embedded default, or ``$RADVLSM_TEST_SEGMENTER``."""
    import torch

    from radvlsm.stage2_segment.build import load_segmenter

    torch.set_num_threads(1)
    spec = os.environ.get(SEGMENTER_ENV, "default")
    try:
        return spec, load_segmenter(spec)
    except ConfigError as exc:
        pytest.skip(f"no trained segmenter ({exc}); set {SEGMENTER_ENV} to a model folder")


def _subset(ph2_root: Path, per_class: int = 4, folds: tuple[str, ...] = ("0", "1")) -> tuple[str, ...]:
    assignment = ph2_folds().assignment
    cases = read_dataset(ph2_root, "ph2").cases
    ids: list[str] = []
    for fold in folds:
        for cls in PH2_CLASSES:
            ids += [c.case_id for c in cases if assignment[c.case_id] == fold and c.diagnosis == cls][:per_class]
    return tuple(ids)


@pytest.fixture(scope="module")
def small_run(ph2_root: Path, segmenter: tuple[str, LesionSegmenter], tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[DiagnoserReport, DiagnoserConfig]:
    spec, model = segmenter
    cfg = DiagnoserConfig(head=SMALL_HEAD, n_boot=200, cases=_subset(ph2_root))
    out = tmp_path_factory.mktemp("diagnoser")
    return train_diagnoser(ph2_root.parent, out, model, cfg, segmenter_name=spec), cfg


def _finite_scores(report: DiagnoserReport) -> None:
    assert [s.features for s in report.scores] == list(ABLATIONS)
    for s in report.scores:
        for v in (s.positive_auc, s.positive_auc_low, s.positive_auc_high, s.accuracy, s.balanced_accuracy):
            assert np.isfinite(v) and 0.0 <= v <= 1.0, s
        assert s.positive_auc_low <= s.positive_auc <= s.positive_auc_high, s


def test_small_run_writes_report_head_and_card(small_run: tuple[DiagnoserReport, DiagnoserConfig]) -> None:
    report, cfg = small_run
    out = report.out_dir
    for name in ("features.csv", "features.json", "cv_report.json", "cv_report.md", "cv_predictions.csv",
                 "final/head.json", "final/booster.json", "final/MODEL_CARD.md"):
        assert (out / name).is_file(), name
    assert not list(out.rglob("*.pkl")) and not list(out.rglob("*.pickle"))
    assert report.n_cases == 24 and report.folds == ("0", "1") and not report.missing
    assert dict(report.class_counts) == {c: 8 for c in PH2_CLASSES}
    assert report.n_features_computed == 24 and report.mask_quality is None
    _finite_scores(report)
    assert sum(map(sum, report.fused_confusion)) == 24

    saved = json.loads((out / "cv_report.json").read_text())
    assert saved["masks"] == "gt" and saved["n_cases"] == 24
    assert [s["features"] for s in saved["scores"]] == list(ABLATIONS)
    assert saved["scores"][-1]["positive_auc"] == pytest.approx(report.score("fused").positive_auc)

    with (out / "cv_predictions.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["case_id"] for r in rows) == sorted(cfg.cases or ())
    for r in rows:
        assert sum(float(r[f"p_{c}"]) for c in PH2_CLASSES) == pytest.approx(1.0, abs=1e-3)

    # the shipped head loads from JSON and predicts every cached case
    head = DiagnosisHead.load(report.final_dir)
    feats = read_features_csv(out / "features.csv")
    # the shipped feature set is the one with the best cross-validated melanoma (positive-class) AUC
    best = max(report.scores, key=lambda s: s.positive_auc if s.features in dict(cfg.ablations) else -1)
    assert report.shipped_features == best.features or round(best.positive_auc, 3) == round(
        report.score(report.shipped_features).positive_auc, 3)
    groups = dict(cfg.ablations)[report.shipped_features]
    assert set(head.feature_names) == {n for n in feats[0].names if n.split("_")[0] in
                                       {"original" if g == "radiomics" else g for g in groups}}
    assert head.classes == PH2_CLASSES and head.malignant_classes == ("melanoma",)
    cols = [feats[0].names.index(n) for n in head.feature_names]
    probs = head.predict_proba(np.stack([f.values[cols] for f in feats]))
    assert probs.shape == (24, 3) and np.allclose(probs.sum(1), 1.0)

    card = (report.final_dir / "MODEL_CARD.md").read_text()
    assert "cross-validated" in card and "never used for fitting" in card
    assert report.recipe in card and "ph2_folds.csv" in card and "--task" not in report.recipe
    assert "(PH2 dermoscopy, 3 classes)" in card and "melanoma-vs-rest AUC" in card and "3-class accuracy" in card
    assert report.task == "ph2" and report.positive_class == "melanoma" and report.holdout_fold == "0"
    assert [s.features for s in report.holdout_fold_scores] == [f"{report.shipped_features} (fold 0 only)"]
    assert 0 < len(report.importance) <= 15
    for f in report.importance:
        assert f.name in head.feature_names and f"`{f.name}`" in card
    fused = report.score(report.shipped_features)
    assert f"{fused.positive_auc:.3f} [{fused.positive_auc_low:.3f}, {fused.positive_auc_high:.3f}]" in card


def test_rerun_reuses_the_features_and_predicted_masks_recompute(
    small_run: tuple[DiagnoserReport, DiagnoserConfig], ph2_root: Path, segmenter: tuple[str, LesionSegmenter],
) -> None:
    first, cfg = small_run
    spec, model = segmenter
    again = train_diagnoser(ph2_root.parent, first.out_dir, model, cfg, segmenter_name=spec)
    assert again.n_features_computed == 0
    assert again.scores == first.scores  # same cached features, same seeds: same figures

    # another mask mode: the cache does not apply, every case is segmented again
    predicted = DiagnoserConfig(masks=MaskMode.PREDICTED, head=cfg.head, n_boot=cfg.n_boot, cases=cfg.cases)
    report = train_diagnoser(ph2_root.parent, first.out_dir, model, predicted, segmenter_name=spec)
    assert report.n_features_computed == 24 and report.masks is MaskMode.PREDICTED
    _finite_scores(report)
    q = report.mask_quality
    assert q is not None and q.n_cases == report.n_cases and q.holdout_fold == "0"
    assert 0.5 < q.mean_dice <= 1.0  # a trained segmenter from the ground-truth box
    assert "predicted" in (report.final_dir / "MODEL_CARD.md").read_text()


def test_invalid_configurations_are_refused(ph2_root: Path, segmenter: tuple[str, LesionSegmenter],
                                            tmp_path: Path) -> None:
    _, model = segmenter
    bad = [
        (DiagnoserConfig(cases=("IMD002", "NOPE")), "NOPE"),
        (DiagnoserConfig(ablations=()), "at least one"),
        (DiagnoserConfig(ablations=(("fused", ("radiomics", "pixels")),)), "pixels"),
        (DiagnoserConfig(n_boot=0), "n_boot"),
        (DiagnoserConfig(cases=_subset(ph2_root, per_class=2, folds=("0",))), "2 PH2 folds"),
    ]
    for cfg, words in bad:
        with pytest.raises(ConfigError, match=words):
            train_diagnoser(ph2_root.parent, tmp_path / "run", model, cfg)


# ------------------------------------------------------------------------------------ breast ultrasound


@pytest.fixture(scope="module")
def us_root(datasets_root: Path) -> Path:
    for name in ("busi", "bus-bra"):
        if not (datasets_root / name).is_dir():
            pytest.skip(f"shared dataset {name!r} not found under {datasets_root}")
    return datasets_root


def test_ultrasound_folds_are_complete_deterministic_and_hold_out_fold_1(us_root: Path) -> None:
    cases, folds = ULTRASOUND_TASK.cases(us_root)
    busi = read_dataset(us_root / "busi", "busi").cases
    bra = read_dataset(us_root / "bus-bra", "bus-bra").cases
    lesions = {c.case_id for c in busi if c.diagnosis != "normal"}
    assert {c.case_id for c in cases} == lesions | {c.case_id for c in bra} == set(folds)
    assert len(cases) == len(lesions) + len(bra) and all(c.diagnosis in ULTRASOUND_TASK.classes for c in cases)
    assert not {c.case_id for c in busi if c.diagnosis == "normal"} & set(folds)
    assert set(folds.values()) == {"1", "2", "3", "4", "5"} and ULTRASOUND_TASK.holdout_fold == "1"

    # fold 1 = BUSI test lesions + BUS-BRA fold 1: what the ultrasound segmenter and localizer never train on
    split, bra_folds = busi_split(), busbra_folds({c.case_id: c.labels for c in bra})
    expected = (split.ids("test") & lesions) | bra_folds.ids(str(BUSBRA_HOLDOUT_FOLD))
    assert {cid for cid, f in folds.items() if f == "1"} == expected
    assert all(folds[c.case_id] == bra_folds.assignment[c.case_id] for c in bra)  # BUS-BRA: its official fold5

    # BUSI train+val: folds 2-5, stratified by diagnosis, near-duplicate pairs together
    dev = [c for c in busi if c.case_id in lesions and split.assignment[c.case_id] != "test"]
    for cls in ULTRASOUND_TASK.classes:
        counts = [sum(folds[c.case_id] == f and c.diagnosis == cls for c in dev) for f in "2345"]
        assert max(counts) - min(counts) <= 5, (cls, counts)  # near-duplicate groups are dealt as one
    for a, b in read_labels_pairs(us_root / "busi" / "near_duplicates.csv"):
        if a in folds and b in folds:
            assert folds[a] == folds[b], (a, b)

    assert ULTRASOUND_TASK.cases(us_root) == (cases, folds)  # deterministic


def _us_subset(us_root: Path, per_class: int = 2, folds: tuple[str, ...] = ("1", "2")) -> tuple[str, ...]:
    """``per_class`` cases of each class from each source (BUSI, BUS-BRA) in each of ``folds``."""
    cases, assignment = ULTRASOUND_TASK.cases(us_root)
    ids: list[str] = []
    for fold in folds:
        for cls in ULTRASOUND_TASK.classes:
            for bra in (False, True):
                ids += [c.case_id for c in cases if assignment[c.case_id] == fold and c.diagnosis == cls
                        and c.case_id.startswith("bus_") == bra][:per_class]
    return tuple(ids)


def test_small_ultrasound_run_reports_the_malignant_auc(
    us_root: Path, segmenter: tuple[str, LesionSegmenter], tmp_path: Path,
) -> None:
    spec, model = segmenter
    cfg = DiagnoserConfig(head=SMALL_HEAD, n_boot=100, cases=_us_subset(us_root), task=ULTRASOUND_TASK,
                          ablations=(("radiomics", ("radiomics",)), ("fused", ("radiomics", "visual", "colour"))))
    report = train_diagnoser(us_root, tmp_path / "run", model, cfg, segmenter_name=spec)
    assert report.task == "breast-ultrasound" and report.classes == ("benign", "malignant")
    assert report.positive_class == "malignant" and report.n_cases == 16 and not report.missing
    assert dict(report.class_counts) == {"benign": 8, "malignant": 8} and report.folds == ("1", "2")
    for s in (*report.scores, *report.holdout_fold_scores):
        assert 0.0 <= s.positive_auc_low <= s.positive_auc <= s.positive_auc_high <= 1.0, s
    assert [s.features for s in report.holdout_fold_scores] == [f"{report.shipped_features} (fold 1 only)"]

    md = (report.out_dir / "cv_report.md").read_text()
    assert "BUSI + BUS-BRA" in md and "malignant-vs-rest AUC" in md and "2-class accuracy" in md
    assert "melanoma" not in md and "PH2" not in md
    card = (report.final_dir / "MODEL_CARD.md").read_text()
    assert "(breast ultrasound, 2 classes)" in card and "BUS-BRA" in card and "fold5" in card
    assert "--task breast-ultrasound" in report.recipe and report.recipe in card
    assert "melanoma" not in card and "PH2" not in card
    head = DiagnosisHead.load(report.final_dir)
    assert head.classes == ("benign", "malignant") and head.malignant_classes == ("malignant",)
    with (report.out_dir / "cv_predictions.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 16 and all(float(r["p_benign"]) + float(r["p_malignant"]) == pytest.approx(1, abs=1e-3)
                                   for r in rows)


def test_unknown_task_is_refused() -> None:
    with pytest.raises(ConfigError, match="known: ph2, breast-ultrasound"):
        get_task("lung")
    assert get_task("breast-ultrasound") is ULTRASOUND_TASK and get_task("ph2") is PH2_TASK

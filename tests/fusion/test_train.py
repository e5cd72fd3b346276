"""The diagnoser recipe on a small PH2 subset (2 folds x 4 cases per class) with a small head: files written,
finite figures, the feature cache reused, the shipped head loadable, invalid configurations refused."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from radvlsm.data.cases import read_dataset
from radvlsm.data.splits import ph2_folds
from radvlsm.errors import ConfigError
from radvlsm.fusion.head import DiagnosisHead, HeadConfig
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
        for v in (s.melanoma_auc, s.melanoma_auc_low, s.melanoma_auc_high, s.accuracy, s.balanced_accuracy):
            assert np.isfinite(v) and 0.0 <= v <= 1.0, s
        assert s.melanoma_auc_low <= s.melanoma_auc <= s.melanoma_auc_high, s


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
    assert saved["scores"][-1]["melanoma_auc"] == pytest.approx(report.score("fused").melanoma_auc)

    with (out / "cv_predictions.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["case_id"] for r in rows) == sorted(cfg.cases or ())
    for r in rows:
        assert sum(float(r[f"p_{c}"]) for c in PH2_CLASSES) == pytest.approx(1.0, abs=1e-3)

    # the shipped head loads from JSON and predicts every cached case
    head = DiagnosisHead.load(report.final_dir)
    feats = read_features_csv(out / "features.csv")
    # the shipped feature set is the one with the best cross-validated melanoma AUC
    best = max(report.scores, key=lambda s: s.melanoma_auc if s.features in dict(cfg.ablations) else -1)
    assert report.shipped_features == best.features or round(best.melanoma_auc, 3) == round(
        report.score(report.shipped_features).melanoma_auc, 3)
    groups = dict(cfg.ablations)[report.shipped_features]
    assert set(head.feature_names) == {n for n in feats[0].names if n.split("_")[0] in
                                       {"original" if g == "radiomics" else g for g in groups}}
    assert head.classes == PH2_CLASSES and head.malignant_classes == ("melanoma",)
    cols = [feats[0].names.index(n) for n in head.feature_names]
    probs = head.predict_proba(np.stack([f.values[cols] for f in feats]))
    assert probs.shape == (24, 3) and np.allclose(probs.sum(1), 1.0)

    card = (report.final_dir / "MODEL_CARD.md").read_text()
    assert "cross-validated" in card and "never used for fitting" in card
    assert report.recipe in card and "ph2_folds.csv" in card
    assert 0 < len(report.importance) <= 15
    for f in report.importance:
        assert f.name in head.feature_names and f"`{f.name}`" in card
    fused = report.score(report.shipped_features)
    assert f"{fused.melanoma_auc:.3f} [{fused.melanoma_auc_low:.3f}, {fused.melanoma_auc_high:.3f}]" in card


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

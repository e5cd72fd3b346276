"""CT nodule diagnosis on real LIDC nodules: the ``lidc`` task's folds (by patient, test kept out), 3-D radiomics
at the volume's spacing, and :class:`VolumeDiagnoser` with the embedded ``ct`` head and segmenter."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from radvlsm.data.cases import LesionCase
from radvlsm.data.splits import lidc_split
from radvlsm.errors import ConfigError, InputError
from radvlsm.fusion.predictor import EMBEDDED_HEADS, load_head
from radvlsm.fusion.tasks import LIDC_TASK, get_task, lidc_cv_folds
from radvlsm.fusion.train import ABLATIONS, task_ablations
from radvlsm.fusion.volume import CT_PARAMS, VolumeDiagnoser, ct_extractor, nodule_point
from radvlsm.io import ImageRecord, Modality, read_image, read_mask
from radvlsm.stage2_segment.volume import VolumeSegmentation, VolumeSegmenter

pytestmark = pytest.mark.shared_data

#: A small nodule of a `test` patient (3 slices): fast to segment and to extract.
CASE = "LIDC-IDRI-0011_R_6"


@pytest.fixture(scope="module")
def lidc_cases(lidc_root: Path) -> tuple[tuple[LesionCase, ...], dict[str, str]]:
    return LIDC_TASK.cases(lidc_root.parent)


@pytest.fixture(scope="module")
def segmenter() -> VolumeSegmenter:
    from radvlsm.stage2_segment.build import load_segmenter
    from radvlsm.stage2_segment.predictor import SegmenterPredictor

    torch.set_num_threads(1)
    try:
        return VolumeSegmenter(SegmenterPredictor(load_segmenter("ct")))
    except ConfigError as exc:
        pytest.skip(f"no embedded ct segmenter ({exc})")


@pytest.fixture(scope="module")
def nodule(lidc_cases: tuple[tuple[LesionCase, ...], dict[str, str]], segmenter: VolumeSegmenter
           ) -> tuple[ImageRecord, VolumeSegmentation]:
    """A real nodule of a `test` patient, segmented from its point prompt by the ct segmenter."""
    case = {c.case_id: c for c in lidc_cases[0]}[CASE]
    vol = read_image(case.image_path, modality=Modality.CT)
    return vol, segmenter.segment_point(vol, nodule_point(case))


def test_lidc_task_folds_by_patient_test_kept_out(lidc_cases: tuple[tuple[LesionCase, ...], dict[str, str]]) -> None:
    cases, folds = lidc_cases
    assert get_task("lidc") is LIDC_TASK and LIDC_TASK.test_fold == LIDC_TASK.holdout_fold == "test"
    assert {c.diagnosis for c in cases} == {"benign", "malignant"}
    patient_folds: dict[str, set[str]] = {}
    for c in cases:
        patient_folds.setdefault(c.labels["patient_id"], set()).add(folds[c.case_id])
    assert all(len(f) == 1 for f in patient_folds.values()), "a patient in two folds"
    split = lidc_split().assignment
    test_ids = {cid for cid, part in split.items() if part == "test"}
    assert {c.case_id for c in cases if folds[c.case_id] == "test"} == test_ids
    assert {folds[c.case_id] for c in cases if c.case_id not in test_ids} == {"1", "2", "3", "4", "5"}
    test_patients = {c.labels["patient_id"] for c in cases if c.case_id in test_ids}
    train_patients = {c.labels["patient_id"] for c in cases if c.case_id not in test_ids}
    assert not test_patients & train_patients
    # stratified: every CV fold holds both classes, in similar proportions
    for f in "12345":
        mal = [c.diagnosis == "malignant" for c in cases if folds[c.case_id] == f]
        assert 0.2 < np.mean(mal) < 0.5
    # deterministic
    dev = [c for c in cases if c.case_id not in test_ids]
    again = lidc_cv_folds({c.case_id: c.labels["patient_id"] for c in dev}, {c.case_id: str(c.diagnosis) for c in dev})
    assert again == {c.case_id: folds[c.case_id] for c in dev}


def test_ct_ablations_have_no_colour() -> None:
    ab = task_ablations(ABLATIONS, LIDC_TASK.feature_groups)
    assert ab == {"radiomics": ("radiomics",), "visual": ("visual",), "fused": ("radiomics", "visual")}


def test_3d_radiomics_uses_the_spacing(lidc_cases: tuple[tuple[LesionCase, ...], dict[str, str]]) -> None:
    case = {c.case_id: c for c in lidc_cases[0]}[CASE]
    vol = read_image(case.image_path, modality=Modality.CT)
    mask = read_mask(case.mask_path, like=vol)
    ex = ct_extractor()
    assert ex.param_set("3d").path == CT_PARAMS
    a = ex.extract(vol, mask)
    sx, sy, sz = vol.geometry.spacing
    expected = mask.sum() * sx * sy * sz
    assert a["original_shape_VoxelVolume"] == pytest.approx(expected, rel=0.25)
    doubled = dataclasses.replace(vol, geometry=dataclasses.replace(vol.geometry, spacing=(2 * sx, 2 * sy, 2 * sz)))
    b = ex.extract(doubled, mask)
    assert b["original_shape_VoxelVolume"] == pytest.approx(8 * a["original_shape_VoxelVolume"], rel=0.25)
    assert b["original_shape_Maximum3DDiameter"] == pytest.approx(2 * a["original_shape_Maximum3DDiameter"], rel=0.2)
    assert b["original_glcm_Contrast"] != a["original_glcm_Contrast"]  # texture on the resampled grid too


def test_volume_diagnoser_with_the_shipped_head(nodule: tuple[ImageRecord, VolumeSegmentation],
                                                segmenter: VolumeSegmenter) -> None:
    if not (EMBEDDED_HEADS["ct"] / "head.json").is_file():
        pytest.skip("the embedded ct diagnosis head is not trained yet")
    vol, seg = nodule
    assert seg.status == "ok"
    head = load_head("ct")
    diag = VolumeDiagnoser(head, segmenter).diagnose(vol, seg)
    feats = VolumeDiagnoser(head, segmenter).features(vol, seg)
    assert set(head.feature_names) <= set(feats.names)  # the features the head was trained on, by name
    probs = dict(diag.probabilities)
    assert set(probs) == {"benign", "malignant"} and sum(probs.values()) == pytest.approx(1.0, abs=1e-6)
    assert diag.label in probs and diag.malignant_probability == pytest.approx(probs["malignant"])
    assert all(0.0 <= p <= 1.0 for p in probs.values())


def test_volume_diagnoser_refuses_an_empty_mask(nodule: tuple[ImageRecord, VolumeSegmentation],
                                                segmenter: VolumeSegmenter) -> None:
    vol, seg = nodule
    head = load_head("ct") if (EMBEDDED_HEADS["ct"] / "head.json").is_file() else None
    if head is None:
        pytest.skip("the embedded ct diagnosis head is not trained yet")
    empty = VolumeSegmentation(np.zeros_like(seg.mask), seg.geometry, seg.prompt, seg.slices, "not_found")
    with pytest.raises(InputError, match="empty"):
        VolumeDiagnoser(head, segmenter).diagnose(vol, empty)
    other = VolumeSegmentation(np.ones((2, 3, 4), bool), seg.geometry, seg.prompt, seg.slices)
    with pytest.raises(InputError, match="shape"):
        VolumeDiagnoser(head, segmenter).diagnose(vol, other)


def test_lidc_recipe_keeps_the_test_fold_out(lidc_cases: tuple[tuple[LesionCase, ...], dict[str, str]],
                                             lidc_root: Path, tmp_path: Path) -> None:
    """A small run of the recipe (3 CV folds x 2 classes x 2 nodules, 4 test nodules): the CV holds folds 1-3
    only, the test rows come from heads fitted without the test fold, and the features cache is reused."""
    from radvlsm.fusion.head import DiagnosisHead, HeadConfig
    from radvlsm.fusion.train import DiagnoserConfig, MaskMode, train_diagnoser
    from radvlsm.stage2_segment.build import load_segmenter

    cases, folds = lidc_cases
    ids: list[str] = []
    for f in ("1", "2", "3", "test"):
        for cls in ("benign", "malignant"):
            ids += [c.case_id for c in cases if folds[c.case_id] == f and c.diagnosis == cls
                    and c.case_id != "LIDC-IDRI-0332_R_1"][:2]
    cfg = DiagnoserConfig(masks=MaskMode.PREDICTED, task=LIDC_TASK, cases=tuple(ids), n_boot=20,
                          head=HeadConfig(k_best=10, n_estimators=20, calibration_folds=2, threads=1))
    report = train_diagnoser(lidc_root.parent, tmp_path, load_segmenter("ct"), cfg, segmenter_name="ct")
    assert report.n_cases == 16 and report.n_cv_cases == 12 and report.test_fold == "test"
    assert [s.features for s in report.scores][:3] == ["radiomics", "visual", "fused"]
    assert report.holdout_fold_scores[0].features == f"{report.shipped_features} (held-out test)"
    assert all(s.features.endswith("(held-out test)") for s in report.holdout_fold_scores)
    assert report.mask_quality is not None and report.mask_quality.holdout_n_cases == 4
    head = DiagnosisHead.load(report.final_dir)
    assert head.classes == ("benign", "malignant") and head.malignant_classes == ("malignant",)
    card = (report.final_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "never on fold `test`" in card and "not pathology" in card and "colour" not in card.split("## Data")[0]
    again = train_diagnoser(lidc_root.parent, tmp_path, load_segmenter("ct"), cfg, segmenter_name="ct")
    assert again.n_features_computed == 0 and again.holdout_fold_scores == report.holdout_fold_scores

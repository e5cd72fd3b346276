"""What the diagnosis head is trained to tell apart, on which cases and folds (``radvlsm train diagnoser --task``).

Three tasks:

- ``ph2``: PH2 dermoscopy, three classes (common nevus, atypical nevus, melanoma); headline melanoma-vs-rest
  AUC; the committed PH2 folds ``0``..``4``, fold :data:`~radvlsm.data.splits.PH2_HOLDOUT_FOLD` held out from the
  default segmenter's and localizer's training.
- ``breast-ultrasound``: BUSI lesion images (its ``normal`` images have no lesion and are left out) and all
  BUS-BRA images, benign vs malignant; headline malignant-vs-rest AUC. Folds ``1``..``5``: BUS-BRA's official
  ``fold5`` (by patient); BUSI ``test`` goes to fold ``1`` (= :data:`~radvlsm.data.splits.BUSBRA_HOLDOUT_FOLD`),
  BUSI ``train``+``val`` lesions are dealt over folds ``2``..``5`` stratified by diagnosis, near-duplicate
  groups kept in one fold (:func:`busi_cv_folds`). Fold 1 thus holds exactly the images the ultrasound segmenter
  and localizer (``--domain ultrasound``) never trained on.
- ``lidc``: LIDC-IDRI lung nodules (CT volumes), benign vs malignant (the source's label: the radiologists'
  opinion, not pathology); headline malignant-vs-rest AUC. The committed split by patient
  (:func:`~radvlsm.data.splits.lidc_split`): ``train``+``val`` patients dealt over folds ``1``..``5``
  (:func:`lidc_cv_folds`, by patient, stratified, seed :data:`~radvlsm.data.splits.SEED`) for
  cross-validation; ``test`` (the patients the CT segmenter never trained on) is fold ``test``, kept out of the
  cross-validation and of the shipped head, and scored once by the shipped head (:attr:`DiagnosisTask.test_fold`).
  Features come from the volume and the mask only (3-D radiomics at the volume's spacing and the CT segmenter's
  slice embeddings, :mod:`radvlsm.fusion.volume`); the semantic ratings, the malignancy score and the labelled
  diameter are never features (they are the radiologists' reading; the diameter only sizes the point prompt).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from radvlsm.data.cases import LesionCase, read_dataset
from radvlsm.data.splits import (
    BUSBRA_HOLDOUT_FOLD,
    PH2_FOLDS_FILE,
    PH2_HOLDOUT_FOLD,
    SEED,
    busbra_folds,
    busi_split,
    lidc_split,
    near_duplicate_groups,
    ph2_folds,
    read_labels_pairs,
    stratified_folds,
)
from radvlsm.errors import ConfigError, InputError
from radvlsm.fusion.features import FEATURE_GROUPS

PH2_CLASSES = ("common_nevus", "atypical_nevus", "melanoma")
PH2_MALIGNANT = ("melanoma",)
US_CLASSES = ("benign", "malignant")
US_MALIGNANT = ("malignant",)

#: ``datasets_root -> (cases in case-id order, {case_id: fold})``.
CaseSource = Callable[[Path], "tuple[tuple[LesionCase, ...], dict[str, str]]"]


@dataclass(frozen=True)
class DiagnosisTask:
    """One diagnosis task of the head's recipe.

    Attributes:
        name: the ``--task`` value.
        title: short name of the data, in headings and messages ("PH2", "BUSI + BUS-BRA").
        modality: the kind of image, for the model card's title ("dermoscopy", "breast ultrasound").
        dataset: the model card's description of the data (sources, images, citation).
        folds_text: how the folds were made (model card and report).
        classes: the head's classes, in the order of its probabilities.
        positive: the class whose one-vs-rest ROC AUC is the headline figure.
        malignant: the classes whose summed probability is the head's malignant probability.
        holdout_fold: the fold held out from the segmenter's and localizer's training.
        holdout_text: what the hold-out fold holds and why its figures matter (report and card).
        segmenter_text: the caveat on the segmenter that gives the visual features.
        scope_text: the caveat on the data's size and scope.
        cases: ``datasets_root -> (cases, folds)``.
        volumetric: the cases are CT volumes with nodule points (:mod:`radvlsm.fusion.volume`), not 2-D images.
        feature_groups: the feature groups the task's cases have (:data:`~radvlsm.fusion.features.FEATURE_GROUPS`
            for 2-D images; no colour for CT).
        radiomics_params: the pyradiomics parameter file (``None``: radvlsm's default of the dimension).
        test_fold: a fold kept out of the cross-validation and of the shipped head: the shipped head (fitted on
            the other folds) scores it once. ``None``: every fold is cross-validated and the shipped head is
            fitted on all of them.
    """

    name: str
    title: str
    modality: str
    dataset: str
    folds_text: str
    classes: tuple[str, ...]
    positive: str
    malignant: tuple[str, ...]
    holdout_fold: str
    holdout_text: str
    segmenter_text: str
    scope_text: str
    cases: CaseSource
    volumetric: bool = False
    feature_groups: tuple[str, ...] = FEATURE_GROUPS
    radiomics_params: str | None = None
    test_fold: str | None = None

    def __post_init__(self) -> None:
        if self.positive not in self.classes or not set(self.malignant) <= set(self.classes):
            raise ConfigError(f"task {self.name}: positive and malignant classes must be among {self.classes}")
        if not self.feature_groups or not set(self.feature_groups) <= set(FEATURE_GROUPS):
            raise ConfigError(f"task {self.name}: feature groups must be among {FEATURE_GROUPS}")

    @property
    def positive_index(self) -> int:
        return self.classes.index(self.positive)


def _ph2_cases(datasets_root: Path) -> tuple[tuple[LesionCase, ...], dict[str, str]]:
    root = Path(datasets_root) / "ph2"
    ds = read_dataset(root, "ph2")
    folds = dict(ph2_folds().assignment)
    cases = tuple(sorted(ds.cases, key=lambda c: c.case_id))
    for c in cases:
        if c.case_id not in folds:
            raise InputError(PH2_FOLDS_FILE, f"case {c.case_id} of {root} has no fold")
    return cases, {c.case_id: folds[c.case_id] for c in cases}


US_N_FOLDS = 5


def busi_cv_folds(diagnosis: Mapping[str, str], pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Folds ``"2"``..``"5"`` of BUSI train+val lesion cases (``{case_id: diagnosis}``): near-duplicate groups
    (:func:`~radvlsm.data.splits.near_duplicate_groups`) are dealt as one, stratified by the diagnosis of their
    first case, by :func:`~radvlsm.data.splits.stratified_folds` with :data:`~radvlsm.data.splits.SEED`."""
    groups = near_duplicate_groups(diagnosis, pairs)
    heads = sorted(set(groups.values()))
    dealt = stratified_folds(heads, {g: diagnosis[g] for g in heads}, US_N_FOLDS - 1, SEED)
    others = [str(f) for f in range(1, US_N_FOLDS + 1) if f != BUSBRA_HOLDOUT_FOLD]
    return {cid: others[dealt[g]] for cid, g in groups.items()}


def _ultrasound_cases(datasets_root: Path) -> tuple[tuple[LesionCase, ...], dict[str, str]]:
    root = Path(datasets_root)
    busi = read_dataset(root / "busi", "busi")
    bra = read_dataset(root / "bus-bra", "bus-bra")
    split = dict(busi_split().assignment)
    lesions = [c for c in busi.cases if (c.diagnosis or "").lower() != "normal"]
    for c in lesions:
        if c.diagnosis not in US_CLASSES:
            raise InputError(root / "busi" / "labels.csv", f"case {c.case_id}: diagnosis {c.diagnosis!r} is not "
                             f"one of {['normal', *US_CLASSES]}")
        if c.case_id not in split:
            raise InputError(root / "busi", f"case {c.case_id} is not in the committed BUSI split")
    folds = {c.case_id: str(BUSBRA_HOLDOUT_FOLD) for c in lesions if split[c.case_id] == "test"}
    dev = {c.case_id: str(c.diagnosis) for c in lesions if split[c.case_id] != "test"}
    dev_pairs = [(a, b) for a, b in read_labels_pairs(root / "busi" / "near_duplicates.csv") if a in dev and b in dev]
    folds.update(busi_cv_folds(dev, dev_pairs))
    try:
        bra_folds = busbra_folds({c.case_id: c.labels for c in bra.cases}).assignment
    except KeyError as exc:
        raise InputError(root / "bus-bra" / "labels.csv", str(exc)) from None
    for c in bra.cases:
        if c.diagnosis not in US_CLASSES:
            raise InputError(root / "bus-bra" / "labels.csv",
                             f"case {c.case_id}: diagnosis {c.diagnosis!r} is not one of {list(US_CLASSES)}")
        if c.case_id in folds:
            raise InputError(root / "bus-bra", f"case id {c.case_id} is also a BUSI case id")
        folds[c.case_id] = bra_folds[c.case_id]
    cases = tuple(sorted([*lesions, *bra.cases], key=lambda c: c.case_id))
    return cases, {c.case_id: folds[c.case_id] for c in cases}


LIDC_CLASSES = ("benign", "malignant")
LIDC_MALIGNANT = ("malignant",)
#: LIDC's ``diagnosis`` values → the task's classes.
LIDC_DIAGNOSES = {"Benign": "benign", "Malign": "malignant"}
LIDC_N_FOLDS = 5
LIDC_TEST_FOLD = "test"


def lidc_cv_folds(patients: Mapping[str, str], diagnosis: Mapping[str, str], n_folds: int = LIDC_N_FOLDS,
                  seed: int = SEED) -> dict[str, str]:
    """Folds ``"1"``..``"n_folds"`` of nodules ``{case_id: patient_id}`` with ``{case_id: class}``: patients are
    dealt whole (every nodule of a patient in one fold) by :func:`~radvlsm.data.splits.stratified_folds`,
    stratified by whether the patient has a malignant nodule."""
    by_patient: dict[str, list[str]] = {}
    for cid, pid in patients.items():
        by_patient.setdefault(pid, []).append(cid)
    strata = {pid: ("malignant" if any(diagnosis[c] in LIDC_MALIGNANT for c in cids) else "benign")
              for pid, cids in by_patient.items()}
    dealt = stratified_folds(by_patient, strata, n_folds, seed)
    return {cid: str(dealt[pid] + 1) for pid, cids in by_patient.items() for cid in cids}


def _lidc_cases(datasets_root: Path) -> tuple[tuple[LesionCase, ...], dict[str, str]]:
    root = Path(datasets_root) / "lidc-nodules"
    ds = read_dataset(root, "lidc-nodules")
    split = dict(lidc_split().assignment)
    cases = []
    for c in ds.cases:
        if c.diagnosis not in LIDC_DIAGNOSES:
            raise InputError(root / "labels.csv", f"case {c.case_id}: diagnosis {c.diagnosis!r} is not one of "
                                                  f"{list(LIDC_DIAGNOSES)}")
        if c.case_id not in split:
            raise InputError(root, f"case {c.case_id} is not in the committed LIDC split")
        if not c.labels.get("patient_id"):
            raise InputError(root / "labels.csv", f"case {c.case_id} has no patient_id")
        cases.append(replace(c, diagnosis=LIDC_DIAGNOSES[c.diagnosis]))
    cases.sort(key=lambda c: c.case_id)
    dev = [c for c in cases if split[c.case_id] != LIDC_TEST_FOLD]
    folds = lidc_cv_folds({c.case_id: c.labels["patient_id"] for c in dev}, {c.case_id: str(c.diagnosis) for c in dev})
    folds.update({c.case_id: LIDC_TEST_FOLD for c in cases if split[c.case_id] == LIDC_TEST_FOLD})
    return tuple(cases), folds


PH2_TASK = DiagnosisTask(
    name="ph2",
    title="PH2",
    modality="PH2 dermoscopy",
    dataset="PH2 (Mendonça et al., EMBC 2013): dermoscopy, 768x560 RGB",
    folds_text=("The committed 5 PH2 folds (`radvlsm/data/split_files/ph2_folds.csv`: stratified by diagnosis, "
                "seed 2026, see `radvlsm.data.splits`)"),
    classes=PH2_CLASSES,
    positive="melanoma",
    malignant=PH2_MALIGNANT,
    holdout_fold=str(PH2_HOLDOUT_FOLD),
    holdout_text=f"PH2 fold {PH2_HOLDOUT_FOLD} only (the segmenter's held-out fold; the same out-of-fold predictions)",
    segmenter_text=(
        "The segmenter that gives the visual features was trained (for segmentation, on masks, without "
        f"diagnoses) on PH2 folds other than {PH2_HOLDOUT_FOLD}; its features on those images come from images it "
        f"has seen. The shipped head's figures on fold {PH2_HOLDOUT_FOLD} alone are given for comparison."),
    scope_text=(
        "PH2 is small ({n_cases} cases, {n_positive} melanomas) and from one centre and one dermoscope: the "
        "intervals are wide and the figures need not carry over to other images. The head knows only PH2's three "
        "classes; it gives one of them for any image, skin or not."),
    cases=_ph2_cases,
)

ULTRASOUND_TASK = DiagnosisTask(
    name="breast-ultrasound",
    title="BUSI + BUS-BRA",
    modality="breast ultrasound",
    dataset=(
        "BUSI (Al-Dhabyani et al., Data in Brief 2020; grayscale, long side at most 400 px; its lesion images "
        "only: the `normal` images have no lesion) and BUS-BRA (Gómez-Flores et al., Medical Physics 2024; "
        "biopsy-proven, grayscale, long side at most 256 px)"),
    folds_text=(
        "Five folds `1`..`5`: BUS-BRA's official `fold5` partition (by patient); BUSI `test` "
        "(`radvlsm/data/split_files/busi_split.csv`) in fold 1; BUSI `train`+`val` lesion images dealt over folds "
        "2-5 stratified by diagnosis, near-duplicate pairs in one fold (seed 2026, "
        "`radvlsm.fusion.tasks.busi_cv_folds`)"),
    classes=US_CLASSES,
    positive="malignant",
    malignant=US_MALIGNANT,
    holdout_fold=str(BUSBRA_HOLDOUT_FOLD),
    holdout_text=(
        f"fold {BUSBRA_HOLDOUT_FOLD} only (BUSI test + BUS-BRA fold {BUSBRA_HOLDOUT_FOLD}: the images the "
        "ultrasound segmenter and localizer never trained on; the same out-of-fold predictions, from heads "
        f"fitted on folds other than {BUSBRA_HOLDOUT_FOLD})"),
    segmenter_text=(
        "The ultrasound segmenter (`radvlsm train segmenter --domain ultrasound`) trains on BUSI train and "
        f"BUS-BRA folds other than {BUSBRA_HOLDOUT_FOLD}; with it, the visual features (and predicted masks) of "
        "those images come from images it has seen, and only the figures on fold "
        f"{BUSBRA_HOLDOUT_FOLD} alone are fully held out (with the row '{{nested}}' there, the feature set too is "
        f"chosen without fold {BUSBRA_HOLDOUT_FOLD}). A segmenter trained on other domains saw none of these "
        "images."),
    scope_text=(
        "{n_cases} images ({n_positive} malignant) from two sources (BUSI: one hospital in Egypt; BUS-BRA: one "
        "centre in Brazil, several devices); BUSI images are resized screenshots with varied annotation quality, "
        "and a patient may give several images (BUS-BRA's folds keep a patient in one fold; BUSI has no patient "
        "ids). The figures pool both sources, which need not score alike (`cv_predictions.csv` has every case: "
        "`bus_*` ids are BUS-BRA's). Breast ultrasound images are grayscale: the CIELAB colour features carry "
        "lightness only. The head knows only benign and malignant; it gives one of them for any image, a breast "
        "mass or not."),
    cases=_ultrasound_cases,
)

LIDC_TASK = DiagnosisTask(
    name="lidc",
    title="LIDC-IDRI",
    modality="lung nodules, chest CT",
    dataset=(
        "LIDC-IDRI nodule VOIs (Armato et al., Medical Physics 2011; TCIA, CC BY 3.0; `lidc-nodules`: 3-D VOIs "
        "around each nodule, int16 HU at the scan's native spacing, a nodule mask each). The label is LIDC's "
        "`diagnosis` (Benign / Malign): the radiologists' opinion of malignancy, not pathology. Features come "
        "from the volume and the mask only: the semantic ratings, the malignancy score and the labelled diameter "
        "are never features (the diameter only sizes the point prompt of the predicted masks, as a user's "
        "`--points` would)"),
    folds_text=(
        "The committed LIDC split by patient (`radvlsm/data/split_files/lidc_split.csv`, 70/10/20): its `train`"
        "+`val` patients dealt over folds 1-5 by patient (all of a patient's nodules in one fold), stratified by "
        "whether the patient has a malignant nodule (seed 2026, `radvlsm.fusion.tasks.lidc_cv_folds`); its `test` "
        "patients are fold `test`, kept out of the cross-validation, of the feature-set choice and of the shipped "
        "head"),
    classes=LIDC_CLASSES,
    positive="malignant",
    malignant=LIDC_MALIGNANT,
    holdout_fold=LIDC_TEST_FOLD,
    holdout_text=(
        "LIDC `test` (patients in no training fold, never seen by the CT segmenter either), predicted by the "
        "shipped head, fitted on folds 1-5 (`train`+`val`) with the feature set chosen by their cross-validation; "
        "each ablation row: a head of that feature set fitted on folds 1-5"),
    segmenter_text=(
        "The CT segmenter (`radvlsm train segmenter --domain ct`) trained on LIDC `train` (folds 1-5 hold "
        "`train` and `val`): with it, the visual features and the predicted masks of the cross-validated cases "
        "come from nodules it has seen (mostly) and are better than on new scans; the `test` figures are free "
        "of that ('{nested}' scores the feature-set choice by nested cross-validation on folds 1-5)."),
    scope_text=(
        "{n_cases} nodules ({n_positive} malignant) of 441 patients, from the LIDC-IDRI scans (several sites "
        "and scanners, slice thickness 0.6-3 mm). The label is the radiologists' opinion of malignancy (LIDC's "
        "`diagnosis`), not pathology: the head learns what radiologists call malignant, size first. The head "
        "knows only benign and malignant; it gives one of them for any mask, a nodule or not. Nodules that gave "
        "no features (no predicted mask, or a labelled point outside its VOI) are left out of the figures (listed "
        "above)."),
    cases=_lidc_cases,
    volumetric=True,
    feature_groups=("radiomics", "visual"),
    radiomics_params=None,
    test_fold=LIDC_TEST_FOLD,
)

TASKS: dict[str, DiagnosisTask] = {t.name: t for t in (PH2_TASK, ULTRASOUND_TASK, LIDC_TASK)}


def get_task(name: str) -> DiagnosisTask:
    """The task called ``name``.

    Raises:
        ConfigError: no such task.
    """
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown diagnosis task {name!r}; known: {', '.join(TASKS)}") from None

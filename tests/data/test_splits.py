"""The committed splits: complete, disjoint, stratified, and reproducible from the shared datasets."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from radvlsm.data.cases import read_dataset, read_labels
from radvlsm.data.splits import (
    BUSBRA_HOLDOUT_FOLD,
    PH2_HOLDOUT_FOLD,
    busbra_folds,
    busi_split,
    grouped_split,
    kvasir_split,
    lidc_split,
    near_duplicate_groups,
    ph2_folds,
    read_labels_pairs,
    write_split_files,
)


def test_ph2_folds_are_stratified_and_complete(ph2_root: Path) -> None:
    folds = ph2_folds()
    cases = read_dataset(ph2_root, "ph2").cases
    assert set(folds.assignment) == {c.case_id for c in cases}
    assert folds.parts == ("0", "1", "2", "3", "4") and str(PH2_HOLDOUT_FOLD) in folds.parts
    sizes = [len(folds.ids(p)) for p in folds.parts]
    assert max(sizes) - min(sizes) <= 1
    diagnosis = {c.case_id: c.diagnosis for c in cases}
    per_class = Counter(diagnosis.values())
    for label, n in per_class.items():
        counts = [sum(diagnosis[c] == label for c in folds.ids(p)) for p in folds.parts]
        assert max(counts) - min(counts) <= 1, (label, counts)
        assert sum(counts) == n
    assert folds.ids_except("0") | folds.ids("0") == frozenset(diagnosis)
    assert not folds.ids_except("0") & folds.ids("0")


def test_kvasir_split_is_80_10_10(kvasir_root: Path) -> None:
    split = kvasir_split()
    ids = {c.case_id for c in read_dataset(kvasir_root, "kvasir-seg").cases}
    assert set(split.assignment) == ids
    n = len(ids)
    sizes = {p: len(split.ids(p)) for p in ("train", "val", "test")}
    assert sum(sizes.values()) == n
    assert abs(sizes["val"] - 0.1 * n) <= 2 and abs(sizes["test"] - 0.1 * n) <= 2
    assert not split.ids("train") & split.ids("test") and not split.ids("val") & split.ids("test")


def test_split_files_regenerate_identically(datasets_root: Path, tmp_path: Path) -> None:
    write_split_files(datasets_root, tmp_path)
    committed = Path(ph2_folds.__code__.co_filename).parent / "split_files"
    for name in ("ph2_folds.csv", "kvasir_seg_split.csv", "busi_split.csv", "lidc_split.csv"):
        assert (tmp_path / name).read_text() == (committed / name).read_text(), name


def test_busi_split_keeps_near_duplicates_together(busi_root: Path) -> None:
    split = busi_split()
    cases = read_dataset(busi_root, "busi").cases
    assert set(split.assignment) == {c.case_id for c in cases}
    pairs = read_labels_pairs(busi_root / "near_duplicates.csv")
    assert pairs
    for a, b in pairs:
        assert split.assignment[a] == split.assignment[b], (a, b)
    diagnosis = {c.case_id: c.diagnosis for c in cases}
    for label, n in Counter(diagnosis.values()).items():
        share = sum(diagnosis[c] == label for c in split.ids("test")) / n
        assert 0.17 <= share <= 0.23, (label, share)


def test_lidc_split_is_by_patient(lidc_root: Path) -> None:
    split = lidc_split()
    labels = read_labels(lidc_root / "labels.csv")
    assert set(split.assignment) == set(labels)
    part_of_patient: dict[str, set[str]] = {}
    for cid, row in labels.items():
        part_of_patient.setdefault(row["patient_id"], set()).add(split.assignment[cid])
    assert all(len(parts) == 1 for parts in part_of_patient.values())
    assert 0.15 <= len(split.ids("test")) / len(labels) <= 0.25


def test_busbra_folds_are_the_official_ones(datasets_root: Path) -> None:
    labels = read_labels(datasets_root / "bus-bra" / "labels.csv")
    folds = busbra_folds(labels)
    assert folds.parts == ("1", "2", "3", "4", "5") and str(BUSBRA_HOLDOUT_FOLD) in folds.parts
    patients: dict[str, set[str]] = {}
    for cid, row in labels.items():
        patients.setdefault(row["patient_id"], set()).add(folds.assignment[cid])
    assert all(len(p) == 1 for p in patients.values())


def test_grouped_split_never_splits_a_group() -> None:
    groups = {f"c{i}": f"g{i // 3}" for i in range(60)}
    strata = {c: ("a" if int(c[1:]) < 30 else "b") for c in groups}
    parts = grouped_split(groups, strata, {"train": 0.5, "test": 0.5}, 7)
    for g in set(groups.values()):
        assert len({parts[c] for c in groups if groups[c] == g}) == 1
    assert near_duplicate_groups(["a", "b", "c", "d"], [("b", "c"), ("c", "d")]) == {
        "a": "a", "b": "b", "c": "b", "d": "b"}

"""The committed splits: complete, disjoint, stratified, and reproducible from the shared datasets."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from radvlsm.data.cases import read_dataset
from radvlsm.data.splits import PH2_HOLDOUT_FOLD, kvasir_split, ph2_folds, write_split_files


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
    for name in ("ph2_folds.csv", "kvasir_seg_split.csv"):
        assert (tmp_path / name).read_text() == (committed / name).read_text(), name

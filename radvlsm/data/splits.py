"""The splits of record, committed as CSV files in ``radvlsm/data/split_files/``.

- PH2: 5-fold cross-validation stratified by diagnosis (``ph2_folds.csv``: case_id, diagnosis, fold 0-4).
  Models that need one held-out PH2 part (the segmenter, the localizer) hold out fold
  :data:`PH2_HOLDOUT_FOLD` and train on the other four.
- Kvasir-SEG: train/val/test 80/10/10 (``kvasir_seg_split.csv``: case_id, split).

The files are generated once by :func:`write_split_files` with :data:`SEED`; a test checks that regenerating
them gives the same files, so anyone can see how they were made.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from radvlsm.errors import InputError

SEED = 2026
SPLIT_DIR = Path(__file__).parent / "split_files"
PH2_FOLDS_FILE = SPLIT_DIR / "ph2_folds.csv"
KVASIR_SPLIT_FILE = SPLIT_DIR / "kvasir_seg_split.csv"
PH2_N_FOLDS = 5
PH2_HOLDOUT_FOLD = 0


@dataclass(frozen=True)
class Split:
    """Assignment of case ids to named parts (``train``/``val``/``test``, or fold numbers ``0``..``4``)."""

    name: str
    assignment: Mapping[str, str]

    def ids(self, *parts: str) -> frozenset[str]:
        wanted = set(parts)
        unknown = wanted - set(self.assignment.values())
        if unknown:
            raise KeyError(f"split {self.name!r} has no part(s) {sorted(unknown)}")
        return frozenset(cid for cid, part in self.assignment.items() if part in wanted)

    def ids_except(self, *parts: str) -> frozenset[str]:
        return frozenset(cid for cid, part in self.assignment.items() if part not in set(parts))

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.assignment.values())))


def stratified_folds(case_ids: Iterable[str], strata: Mapping[str, str], n_folds: int, seed: int) -> dict[str, int]:
    """Assign each case to one of ``n_folds`` folds so that every stratum spreads evenly.

    Within each stratum (sorted by name) the case ids (sorted) are shuffled with ``seed`` and dealt to the
    folds in turn, the dealing continuing from one stratum to the next so that fold sizes differ by at most one.
    """
    rng = np.random.default_rng(seed)
    ids = sorted(case_ids)
    by_stratum: dict[str, list[str]] = {}
    for cid in ids:
        by_stratum.setdefault(strata[cid], []).append(cid)
    folds: dict[str, int] = {}
    turn = 0
    for stratum in sorted(by_stratum):
        members = by_stratum[stratum]
        for idx in rng.permutation(len(members)):
            folds[members[int(idx)]] = turn % n_folds
            turn += 1
    return folds


def random_split(case_ids: Iterable[str], fractions: Mapping[str, float], seed: int) -> dict[str, str]:
    """Shuffle the (sorted) case ids with ``seed`` and cut them into parts of the given fractions, in the
    order given; the last part takes the remainder."""
    ids = sorted(case_ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    names = list(fractions)
    out: dict[str, str] = {}
    start = 0
    for i, part in enumerate(names):
        stop = len(ids) if i == len(names) - 1 else start + round(fractions[part] * len(ids))
        for idx in order[start:stop]:
            out[ids[int(idx)]] = part
        start = stop
    return out


def _read_split(path: Path, name: str, column: str) -> Split:
    if not path.is_file():
        raise InputError(path, "split file missing from the installation")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return Split(name=name, assignment=MappingProxyType({r["case_id"]: r[column] for r in rows}))


def ph2_folds() -> Split:
    """PH2's committed 5 folds; parts are ``"0"`` .. ``"4"``."""
    return _read_split(PH2_FOLDS_FILE, "ph2", "fold")


def kvasir_split() -> Split:
    """Kvasir-SEG's committed train/val/test split."""
    return _read_split(KVASIR_SPLIT_FILE, "kvasir-seg", "split")


def write_split_files(datasets_root: Path, out_dir: Path = SPLIT_DIR) -> None:
    """(Re)generate the committed split files from the shared datasets."""
    from radvlsm.data.cases import read_dataset
    from radvlsm.io.writers import atomic_write

    ph2 = read_dataset(datasets_root / "ph2", "ph2")
    diag = {c.case_id: c.diagnosis or "" for c in ph2.cases}
    folds = stratified_folds(diag, diag, PH2_N_FOLDS, SEED)
    with atomic_write(out_dir / PH2_FOLDS_FILE.name, "w") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["case_id", "diagnosis", "fold"])
        for cid in sorted(folds):
            w.writerow([cid, diag[cid], folds[cid]])
    kv = read_dataset(datasets_root / "kvasir-seg", "kvasir-seg")
    parts = random_split([c.case_id for c in kv.cases], {"train": 0.8, "val": 0.1, "test": 0.1}, SEED)
    with atomic_write(out_dir / KVASIR_SPLIT_FILE.name, "w") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["case_id", "split"])
        for cid in sorted(parts):
            w.writerow([cid, parts[cid]])

"""The splits of record, committed as CSV files in ``radvlsm/data/split_files/``.

- PH2: 5-fold cross-validation stratified by diagnosis (``ph2_folds.csv``: case_id, diagnosis, fold 0-4).
  Models that need one held-out PH2 part (the segmenter, the localizer) hold out fold
  :data:`PH2_HOLDOUT_FOLD` and train on the other four.
- Kvasir-SEG: train/val/test 80/10/10 (``kvasir_seg_split.csv``: case_id, split).
- BUSI: train/val/test 70/10/20 stratified by diagnosis (benign/malignant/normal), the pairs of
  ``near_duplicates.csv`` kept on one side (``busi_split.csv``).
- BUS-BRA: its official ``fold5`` partition (by patient), read from its ``labels.csv``; models hold out fold
  :data:`BUSBRA_HOLDOUT_FOLD`.
- LIDC nodules: train/val/test 70/10/20 by ``patient_id`` (``lidc_split.csv``: case_id, patient_id, split).

The files are generated once by :func:`write_split_files` with :data:`SEED`; a test checks that regenerating
them gives the same files, so anyone can see how they were made.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from radvlsm.errors import InputError

SEED = 2026
SPLIT_DIR = Path(__file__).parent / "split_files"
PH2_FOLDS_FILE = SPLIT_DIR / "ph2_folds.csv"
KVASIR_SPLIT_FILE = SPLIT_DIR / "kvasir_seg_split.csv"
BUSI_SPLIT_FILE = SPLIT_DIR / "busi_split.csv"
LIDC_SPLIT_FILE = SPLIT_DIR / "lidc_split.csv"
BUSBRA_HOLDOUT_FOLD = 1
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


def grouped_split(
    groups: Mapping[str, str], strata: Mapping[str, str], fractions: Mapping[str, float], seed: int
) -> dict[str, str]:
    """Cut whole groups of cases into parts of the given fractions, stratum by stratum.

    ``groups`` maps each case id to its group (a patient, a set of near-duplicate images); a group's stratum
    is that of its first case id (sorted). Within each stratum (sorted) the groups (sorted) are shuffled with
    ``seed`` and cut by :func:`random_split`'s rule, counting groups, so no group spans two parts.
    """
    members: dict[str, list[str]] = {}
    for cid in sorted(groups):
        members.setdefault(groups[cid], []).append(cid)
    by_stratum: dict[str, list[str]] = {}
    for g, cids in members.items():
        by_stratum.setdefault(strata[cids[0]], []).append(g)
    out: dict[str, str] = {}
    for k, stratum in enumerate(sorted(by_stratum)):
        parts = random_split(by_stratum[stratum], fractions, seed + k)
        for g, part in parts.items():
            for cid in members[g]:
                out[cid] = part
    return out


def near_duplicate_groups(case_ids: Iterable[str], pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Group id per case: the smallest case id connected to it through the pairs (union-find)."""
    parent = {cid: cid for cid in case_ids}

    def find(c: str) -> str:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for a, b in pairs:
        if a in parent and b in parent:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    return {cid: find(cid) for cid in parent}


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


def busi_split() -> Split:
    """BUSI's committed train/val/test split (near-duplicate pairs on one side)."""
    return _read_split(BUSI_SPLIT_FILE, "busi", "split")


def lidc_split() -> Split:
    """LIDC nodules' committed train/val/test split, by patient."""
    return _read_split(LIDC_SPLIT_FILE, "lidc-nodules", "split")


def busbra_folds(labels: Mapping[str, Mapping[str, str]]) -> Split:
    """BUS-BRA's official 5-fold partition from the ``fold5`` column of its labels (``{case_id: row}``)."""
    missing = [cid for cid, row in labels.items() if not row.get("fold5")]
    if missing:
        raise KeyError(f"BUS-BRA labels without a fold5 value, e.g. {missing[0]!r}")
    return Split(name="bus-bra", assignment=MappingProxyType({cid: row["fold5"] for cid, row in labels.items()}))


def _write_rows(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    from radvlsm.io.writers import atomic_write

    with atomic_write(path, "w") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def write_split_files(datasets_root: Path, out_dir: Path = SPLIT_DIR) -> None:
    """(Re)generate the committed split files from the shared datasets."""
    from radvlsm.data.cases import read_dataset, read_labels

    ph2 = read_dataset(datasets_root / "ph2", "ph2")
    diag = {c.case_id: c.diagnosis or "" for c in ph2.cases}
    folds = stratified_folds(diag, diag, PH2_N_FOLDS, SEED)
    _write_rows(out_dir / PH2_FOLDS_FILE.name, ["case_id", "diagnosis", "fold"],
                ([cid, diag[cid], folds[cid]] for cid in sorted(folds)))
    kv = read_dataset(datasets_root / "kvasir-seg", "kvasir-seg")
    parts = random_split([c.case_id for c in kv.cases], {"train": 0.8, "val": 0.1, "test": 0.1}, SEED)
    _write_rows(out_dir / KVASIR_SPLIT_FILE.name, ["case_id", "split"], ([cid, parts[cid]] for cid in sorted(parts)))

    busi = read_dataset(datasets_root / "busi", "busi")
    bdiag = {c.case_id: c.diagnosis or "" for c in busi.cases}
    dup_rows = read_labels_pairs(datasets_root / "busi" / "near_duplicates.csv")
    groups = near_duplicate_groups(bdiag, dup_rows)
    parts = grouped_split(groups, bdiag, {"train": 0.7, "val": 0.1, "test": 0.2}, SEED)
    _write_rows(out_dir / BUSI_SPLIT_FILE.name, ["case_id", "diagnosis", "split"],
                ([cid, bdiag[cid], parts[cid]] for cid in sorted(parts)))

    lidc = read_labels(datasets_root / "lidc-nodules" / "labels.csv")
    patients = {cid: row["patient_id"] for cid, row in lidc.items()}
    parts = grouped_split(patients, dict.fromkeys(patients, ""), {"train": 0.7, "val": 0.1, "test": 0.2}, SEED)
    _write_rows(out_dir / LIDC_SPLIT_FILE.name, ["case_id", "patient_id", "split"],
                ([cid, patients[cid], parts[cid]] for cid in sorted(parts)))


def read_labels_pairs(path: Path) -> list[tuple[str, str]]:
    """The ``(case_a, case_b)`` pairs of a ``near_duplicates.csv``; none when the file is absent."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return [(r["case_a"], r["case_b"]) for r in csv.DictReader(fh)]

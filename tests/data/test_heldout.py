"""The benchmarks' held-out sets hold only what no model of their domain trained on."""

from __future__ import annotations

from pathlib import Path

from radvlsm.data.heldout import held_out_cases
from radvlsm.data.splits import BUSBRA_HOLDOUT_FOLD, busi_split


def test_ultrasound_held_out_sets(datasets_root: Path) -> None:
    sets = held_out_cases(datasets_root, "ultrasound")
    split = busi_split()
    assert {c.case_id for c in sets["busi"]} == split.ids("test")
    assert all(c.labels["fold5"] == str(BUSBRA_HOLDOUT_FOLD) for c in sets["bus-bra"])
    lesions = held_out_cases(datasets_root, "ultrasound", normals=False)["busi"]
    assert 0 < len(lesions) < len(sets["busi"]) and all(c.diagnosis != "normal" for c in lesions)


def test_default_held_out_sets(datasets_root: Path) -> None:
    sets = held_out_cases(datasets_root, "dermoscopy-colonoscopy")
    assert len(sets["ph2"]) == 32 and len(sets["kvasir-seg"]) == 100

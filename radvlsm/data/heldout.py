"""The held-out cases each family of embedded models is measured on (the benchmarks' data), by dataset name."""

from __future__ import annotations

from pathlib import Path

from radvlsm.data.cases import LesionCase, read_dataset
from radvlsm.data.splits import (
    BUSBRA_HOLDOUT_FOLD,
    PH2_HOLDOUT_FOLD,
    busbra_folds,
    busi_split,
    kvasir_split,
    ph2_folds,
)


def held_out_cases(root: Path, domain: str, *, normals: bool = True) -> dict[str, list[LesionCase]]:
    """Cases no model of ``domain`` trained on, keyed by dataset name.

    ``ultrasound``: ``busi`` (the committed split's ``test`` part; its normal images too unless ``not
    normals``) and ``bus-bra`` (fold :data:`BUSBRA_HOLDOUT_FOLD` of the official ``fold5``). Otherwise (the
    default models): ``ph2`` (fold :data:`PH2_HOLDOUT_FOLD`) and ``kvasir-seg`` (the ``test`` part).
    """
    if domain == "ultrasound":
        busi = read_dataset(root / "busi").subset(busi_split().ids("test"))
        bra = read_dataset(root / "bus-bra")
        fold = busbra_folds({c.case_id: c.labels for c in bra.cases}).ids(str(BUSBRA_HOLDOUT_FOLD))
        return {"busi": [c for c in busi.cases if normals or c.diagnosis != "normal"],
                "bus-bra": list(bra.subset(fold).cases)}
    return {"ph2": list(read_dataset(root / "ph2").subset(ph2_folds().ids(str(PH2_HOLDOUT_FOLD))).cases),
            "kvasir-seg": list(read_dataset(root / "kvasir-seg").subset(kvasir_split().ids("test")).cases)}

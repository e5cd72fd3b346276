"""The report's dermoscopic findings against PH2's expert annotations, and the fitting of their parameters.

Asymmetry (0 / 1 / 2) is scored with Cohen's weighted kappa, **quadratic** weights (the figure of record;
linear weights are printed beside it); each of the six colours with F1 (present / absent per case). Findings
are computed from the image and PH2's ground-truth mask, with the same functions the report uses
(:func:`radvlsm.reporting.asymmetry.asymmetry`, :func:`radvlsm.reporting.colour.colour_features`,
:func:`radvlsm.reporting.colour.decide_presence`).

Three modes:

    python benchmarks/findings_ph2.py           # the committed parameters on the hold-out fold 0 (32 cases)
    python benchmarks/findings_ph2.py --cv      # 5-fold CV: fitted on four folds, scored on the fifth, pooled
    python benchmarks/findings_ph2.py --fit     # fit on folds 1-4 and write radvlsm/reporting/params/ph2_findings.json

The committed parameters come from ``--fit`` (PH2 folds 1-4 only; fold 0 never seen). ``--cv`` refits
everything for each fold with the same code (:mod:`radvlsm.reporting.fitting`), so no fold's figures come from
parameters that saw it; its fold-0 model is the committed one, which the script checks.

What is fitted (see :mod:`radvlsm.reporting.fitting`): the asymmetry model's colour weight (ridge regression)
and score cut-points (max. quadratic kappa) and its shape-only threshold; per colour a non-negative logistic
presence model (penalty and probability threshold by leave-one-fold-out CV inside the training folds) and a
share threshold. The colour prototypes are hand-set (:data:`radvlsm.reporting.colour.REFERENCE_PROTOTYPES`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
from sklearn.metrics import cohen_kappa_score, confusion_matrix  # noqa: E402

from radvlsm.data.cases import read_dataset  # noqa: E402
from radvlsm.data.paths import shared_datasets_root  # noqa: E402
from radvlsm.data.splits import PH2_HOLDOUT_FOLD, ph2_folds  # noqa: E402
from radvlsm.io import read_image, read_mask, to_display_rgb  # noqa: E402
from radvlsm.reporting import shape  # noqa: E402
from radvlsm.reporting.asymmetry import (  # noqa: E402
    DEFAULT_ASYMMETRY_MODEL,
    AsymmetryModel,
    asymmetry,
    score_from_indices,
)
from radvlsm.reporting.colour import (  # noqa: E402
    DEFAULT_COLOUR_MODEL,
    PARAMS_FILE,
    REFERENCE_PROTOTYPES,
    ColourModel,
    colour_features,
    decide_presence,
    lesion_pixels,
)
from radvlsm.reporting.fitting import fit_asymmetry_model, fit_colour_model, write_params  # noqa: E402
from radvlsm.reporting.records import DERMOSCOPIC_COLOURS  # noqa: E402

COLS = DERMOSCOPIC_COLOURS
#: The analysis the features are measured with: hand-set prototypes, no presence models.
BASE_COLOUR_MODEL = dataclasses.replace(DEFAULT_COLOUR_MODEL, prototypes=REFERENCE_PROTOTYPES, presence=())
COLOUR_SIGMA = 0.1


@dataclass(frozen=True, eq=False)
class Case:
    case_id: str
    fold: str
    asymmetry: int
    colours: np.ndarray  # (6,) bool, expert
    features: dict[str, float]
    fractions: np.ndarray  # (6,)
    shape_index: tuple[float, float]
    mirror_colour_index: tuple[float, float]


def load_cases(root: Path) -> list[Case]:
    ds = read_dataset(root / "ph2")
    folds = ph2_folds()
    measure = AsymmetryModel(colour_weight=1.0, colour_sigma=COLOUR_SIGMA)  # any weight: we want the indices
    out = []
    for c in ds.cases:
        rec = read_image(c.image_path)
        mask = read_mask(c.mask_path, like=rec)  # type: ignore[arg-type]
        rgb = to_display_rgb(rec)
        comps = shape.components(mask)
        px = lesion_pixels(rgb, comps.kept(), BASE_COLOUR_MODEL)
        feats = colour_features(px, BASE_COLOUR_MODEL)
        a = asymmetry(comps.largest(), None, px, measure)
        listed = {x for x in c.labels.get("colors", "").split(";") if x}
        out.append(Case(c.case_id, folds.assignment[c.case_id], int(c.labels["asymmetry"]),
                        np.array([k in listed for k in COLS]), feats,
                        np.array([feats[f"fraction:{k}"] ** 2 for k in COLS]),
                        a.shape_index, a.mirror_colour_index))  # type: ignore[arg-type]
    return out


# ------------------------------------------------------------------------------------------------ models

def fit(cases: list[Case]) -> tuple[AsymmetryModel, ColourModel]:
    am = fit_asymmetry_model(np.array([c.shape_index for c in cases]),
                             np.array([c.mirror_colour_index for c in cases]),
                             np.array([c.asymmetry for c in cases]), colour_sigma=COLOUR_SIGMA)
    cm = fit_colour_model(BASE_COLOUR_MODEL, [c.features for c in cases], np.array([c.colours for c in cases]),
                          [c.fold for c in cases])
    return am, cm


def asym_scores(cases: list[Case], model: AsymmetryModel) -> list[int]:
    return [score_from_indices(c.shape_index, c.mirror_colour_index, model)[0] for c in cases]


def colour_predictions(cases: list[Case], model: ColourModel) -> np.ndarray:
    return np.array([[k in decide_presence(c.fractions, c.features, model)[0] for k in COLS] for c in cases])


# ------------------------------------------------------------------------------------------------ report

def f1_per_colour(pred: np.ndarray, truth: np.ndarray) -> list[dict[str, float]]:
    """Per colour: F1 (NaN when the colour is neither annotated nor predicted), precision, recall, support."""
    out = []
    for k in range(len(COLS)):
        tp = int((pred[:, k] & truth[:, k]).sum())
        fp = int((pred[:, k] & ~truth[:, k]).sum())
        fn = int((~pred[:, k] & truth[:, k]).sum())
        denom = 2 * tp + fp + fn
        out.append({
            "f1": 2 * tp / denom if denom else float("nan"),
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "recall": tp / (tp + fn) if tp + fn else float("nan"),
            "support": int(truth[:, k].sum()),
            "predicted": int(pred[:, k].sum()),
        })
    return out


def print_results(title: str, asym_true: list[int], asym_pred: list[int], col_true: np.ndarray,
                  col_pred: np.ndarray) -> None:
    qwk = cohen_kappa_score(asym_true, asym_pred, weights="quadratic")
    lwk = cohen_kappa_score(asym_true, asym_pred, weights="linear")
    print(f"\n### {title} ({len(asym_true)} cases)\n")
    print(f"Asymmetry: quadratic-weighted kappa **{qwk:.3f}** (linear-weighted {lwk:.3f}), "
          f"exact agreement {np.mean(np.array(asym_true) == np.array(asym_pred)):.3f}")
    cm = confusion_matrix(asym_true, asym_pred, labels=[0, 1, 2])
    print("\n| expert \\ found | 0 | 1 | 2 |\n| --- | --- | --- | --- |")
    for i, row in enumerate(cm):
        print(f"| {i} | " + " | ".join(str(v) for v in row) + " |")
    stats = f1_per_colour(col_pred, col_true)
    always = f1_per_colour(np.ones_like(col_true), col_true)
    print("\n| colour | F1 | precision | recall | annotated | found | F1 of 'always present' |\n"
          "| --- | --- | --- | --- | --- | --- | --- |")
    for name, s, b in zip(COLS, stats, always, strict=True):
        print(f"| {name} | {s['f1']:.3f} | {s['precision']:.3f} | {s['recall']:.3f} | {s['support']} | "
              f"{s['predicted']} | {b['f1']:.3f} |")
    f1 = [s["f1"] for s in stats]
    defined = [v for v in f1 if not np.isnan(v)]
    with_support = [s["f1"] for s in stats if s["support"] > 0]
    print(f"\nMean colour F1 over the {len(defined)} colours where F1 is defined: **{np.mean(defined):.3f}**; "
          f"over the {len(with_support)} colours annotated at least once: {np.nanmean(with_support):.3f}")


def describe(am: AsymmetryModel, cm: ColourModel) -> None:
    print(f"\nAsymmetryModel: colour weight {am.colour_weight} per ΔE, cuts {am.cuts}, shape-only threshold "
          f"{am.shape_threshold}")
    for p in cm.presence:
        w = ", ".join(f"{n} {v:g}" for n, v in zip(p.features, p.weights, strict=True))
        print(f"  {p.colour}: threshold p >= {p.threshold:.3f}; weights {w}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--cv", action="store_true", help="5-fold cross-validation, refitting on each training part")
    mode.add_argument("--fit", action="store_true", help=f"fit on folds 1-4 and write {PARAMS_FILE.name}")
    args = ap.parse_args()

    t0 = time.perf_counter()
    root = shared_datasets_root()
    cases = load_cases(root)
    print(f"command: python benchmarks/findings_ph2.py{' --cv' if args.cv else ' --fit' if args.fit else ''}")
    print(f"{len(cases)} PH2 cases read and measured in {time.perf_counter() - t0:.0f} s (ground-truth masks)")
    hold = str(PH2_HOLDOUT_FOLD)
    if args.fit:
        train = [c for c in cases if c.fold != hold]
        am, cm = fit(train)
        folds = sorted({c.fold for c in train})
        path = write_params(cm, am, {
            "fitted_by": "python benchmarks/findings_ph2.py --fit "
                         "(radvlsm.reporting.fitting.fit_asymmetry_model / fit_colour_model)",
            "dataset": "PH2, ground-truth masks, expert asymmetry and colours",
            "folds": [int(f) for f in folds],
            "cases": len(train),
            "held_out_fold": int(hold),
        })
        print(f"\nFitted on folds {folds} ({len(train)} cases); written to {path}")
        describe(am, cm)
        return
    if args.cv:
        at: list[int] = []
        ap_: list[int] = []
        ct, cp = [], []
        for fold in sorted({c.fold for c in cases}):
            train = [c for c in cases if c.fold != fold]
            test = [c for c in cases if c.fold == fold]
            print(f"fold {fold}: fitting on {len(train)} cases", file=sys.stderr, flush=True)
            am, cm = fit(train)
            if fold == hold:
                same = am == DEFAULT_ASYMMETRY_MODEL and cm == DEFAULT_COLOUR_MODEL
                print(f"fold {fold}: the refitted models {'equal' if same else 'DIFFER FROM'} the committed ones"
                      + ("" if same else " (rerun --fit)"))
            at += [c.asymmetry for c in test]
            ap_ += asym_scores(test, am)
            ct.append(np.array([c.colours for c in test]))
            cp.append(colour_predictions(test, cm))
        print_results("5-fold cross-validation, pooled (each fold scored by models fitted on the other four)",
                      at, ap_, np.concatenate(ct), np.concatenate(cp))
    else:
        test = [c for c in cases if c.fold == hold]
        print_results(f"PH2 hold-out fold {hold}, committed parameters (fitted on folds 1-4)",
                      [c.asymmetry for c in test], asym_scores(test, DEFAULT_ASYMMETRY_MODEL),
                      np.array([c.colours for c in test]), colour_predictions(test, DEFAULT_COLOUR_MODEL))
        describe(DEFAULT_ASYMMETRY_MODEL, DEFAULT_COLOUR_MODEL)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

"""The report's dermoscopic findings against PH2's expert annotations.

Asymmetry (0 / 1 / 2) is scored with Cohen's weighted kappa, **quadratic** weights (the figure of record;
linear weights are printed beside it); each of the six colours with F1 (present / absent per case). Findings
are computed from the image and PH2's ground-truth mask.

The colour model and the asymmetry thresholds were tuned on PH2 folds 1-4 only. Three modes:

    python benchmarks/findings_ph2.py           # the committed models on the hold-out fold 0 (32 cases)
    python benchmarks/findings_ph2.py --cv      # 5-fold CV: re-tuned on four folds, scored on the fifth, pooled
    python benchmarks/findings_ph2.py --tune    # re-tune on folds 1-4 and print the parameters to commit

Tuning: the asymmetry thresholds by grid search (shape index x colour ΔE) maximising quadratic kappa; the colour
model (seven CIELAB prototypes, six area thresholds, the skin weight) by coordinate ascent on the mean F1 over
the six colours, from hand-set starting prototypes, on up to 3000 sampled lesion pixels per case.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from radvlsm.data.cases import read_dataset
from radvlsm.data.paths import shared_datasets_root
from radvlsm.data.splits import PH2_HOLDOUT_FOLD, ph2_folds
from radvlsm.io import read_image, read_mask, to_display_rgb
from radvlsm.reporting import shape
from radvlsm.reporting.asymmetry import DEFAULT_ASYMMETRY_MODEL, AsymmetryModel, colour_halves_difference
from radvlsm.reporting.colour import DEFAULT_COLOUR_MODEL, ColourModel, assign, lesion_pixels
from radvlsm.reporting.records import DERMOSCOPIC_COLOURS

COLS = DERMOSCOPIC_COLOURS
SAMPLE_PX = 3000
START_PROTOTYPES = (
    ("white", (85.0, 5.0, 8.0)), ("red", (50.0, 40.0, 25.0)), ("light-brown", (55.0, 20.0, 35.0)),
    ("dark-brown", (38.0, 18.0, 22.0)), ("blue-gray", (45.0, 2.0, -5.0)), ("black", (18.0, 3.0, 3.0)),
    ("skin", (70.0, 15.0, 20.0)),
)
SHAPE_GRID = (0.05, 0.06, 0.07, 0.08, 0.09, 0.10, 0.11, 0.12, 0.14, 0.16, 0.20, 1.0)
COLOUR_GRID = (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0, 1e9)
THRESHOLD_GRID = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.16, 0.2, 0.3)


@dataclass(frozen=True, eq=False)
class Case:
    case_id: str
    fold: str
    asymmetry: int
    colours: np.ndarray  # (6,) bool, expert
    lab_all: np.ndarray  # analysed lesion pixels (CIELAB)
    lab_sample: np.ndarray
    shape_index: tuple[float, float]
    colour_index: tuple[float, float]


def load_cases(root: Path) -> list[Case]:
    ds = read_dataset(root / "ph2")
    folds = ph2_folds()
    rng = np.random.default_rng(0)
    base = dataclasses.replace(DEFAULT_COLOUR_MODEL)
    out = []
    for c in ds.cases:
        rec = read_image(c.image_path)
        mask = read_mask(c.mask_path, like=rec)  # type: ignore[arg-type]
        rgb = to_display_rgb(rec)
        comps = shape.components(mask)
        big = comps.largest()
        px = lesion_pixels(rgb, comps.kept(), base)
        axes = shape.principal_axes(big)
        si = tuple(shape.reflection_overlap(big, axes, k) for k in (0, 1))
        ci = tuple(colour_halves_difference(px, big.shape, axes, k, within=big) for k in (0, 1))
        sample = px.lab if len(px.lab) <= SAMPLE_PX else px.lab[rng.choice(len(px.lab), SAMPLE_PX, replace=False)]
        listed = {x for x in c.labels.get("colors", "").split(";") if x}
        out.append(Case(c.case_id, folds.assignment[c.case_id], int(c.labels["asymmetry"]),
                        np.array([k in listed for k in COLS]), px.lab, sample, si, ci))  # type: ignore[arg-type]
    return out


# ------------------------------------------------------------------------------------------------ metrics

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


def asym_scores(cases: list[Case], model: AsymmetryModel) -> np.ndarray:
    ct = model.colour_threshold if model.colour_threshold is not None else np.inf
    return np.array([sum((c.shape_index[k] > model.shape_threshold) or (c.colour_index[k] > ct) for k in (0, 1))
                     for c in cases])


def colour_predictions(cases: list[Case], model: ColourModel, sample: bool = False) -> np.ndarray:
    thr = model.threshold_array()
    rows = []
    for c in cases:
        lab = c.lab_sample if sample else c.lab_all
        fr = np.bincount(assign(lab, model), minlength=7)[:6] / max(len(lab), 1)
        rows.append(fr >= thr)
    return np.array(rows)


def mean_f1(model: ColourModel, cases: list[Case], truth: np.ndarray) -> float:
    f = [r["f1"] for r in f1_per_colour(colour_predictions(cases, model, sample=True), truth)]
    return float(np.nanmean(f))


# ------------------------------------------------------------------------------------------------ tuning

def tune_asymmetry(cases: list[Case]) -> AsymmetryModel:
    y = [c.asymmetry for c in cases]
    best, best_k = AsymmetryModel(), -np.inf
    for ts in SHAPE_GRID:
        for tc in COLOUR_GRID:
            m = AsymmetryModel(ts, tc)
            k = cohen_kappa_score(y, asym_scores(cases, m), weights="quadratic")
            if k > best_k + 1e-12:
                best, best_k = m, k
    return best


def tune_colours(cases: list[Case], rounds: int = 2, log: bool = True) -> ColourModel:
    truth = np.array([c.colours for c in cases])
    model = dataclasses.replace(DEFAULT_COLOUR_MODEL, prototypes=START_PROTOTYPES, skin_weight=1.0,
                                thresholds=tuple((n, 0.02 if n in ("white", "red", "black") else 0.05) for n in COLS))
    best = mean_f1(model, cases, truth)
    names = [n for n, _ in model.prototypes]
    for r in range(rounds):
        for i in range(len(names)):
            for j in range(3):
                for step in (8.0, 4.0, 2.0):
                    improved = True
                    while improved:
                        improved = False
                        for s in (step, -step):
                            protos = [list(p) for _, p in model.prototypes]
                            protos[i][j] += s
                            cand = dataclasses.replace(
                                model, prototypes=tuple((n, tuple(p)) for n, p in zip(names, protos, strict=True)))
                            v = mean_f1(cand, cases, truth)
                            if v > best + 1e-9:
                                best, model, improved = v, cand, True
                                break
        for k, name in enumerate(COLS):
            for t in THRESHOLD_GRID:
                thr = list(model.thresholds)
                thr[k] = (name, t)
                cand = dataclasses.replace(model, thresholds=tuple(thr))
                v = mean_f1(cand, cases, truth)
                if v > best + 1e-9:
                    best, model = v, cand
        for sw in (0.5, 0.7, 1.0, 1.4, 2.0):
            cand = dataclasses.replace(model, skin_weight=sw)
            v = mean_f1(cand, cases, truth)
            if v > best + 1e-9:
                best, model = v, cand
        if log:
            print(f"  colour tuning round {r + 1}: training mean F1 {best:.3f}", file=sys.stderr, flush=True)
    return model


# ------------------------------------------------------------------------------------------------ report

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--cv", action="store_true", help="5-fold cross-validation, re-tuning on each training part")
    mode.add_argument("--tune", action="store_true", help="re-tune on folds 1-4 and print the parameters")
    ap.add_argument("--rounds", type=int, default=2, help="coordinate-ascent rounds of the colour tuning")
    args = ap.parse_args()

    t0 = time.perf_counter()
    root = shared_datasets_root()
    cases = load_cases(root)
    print(f"command: python benchmarks/findings_ph2.py{' --cv' if args.cv else ' --tune' if args.tune else ''}")
    print(f"{len(cases)} PH2 cases read in {time.perf_counter() - t0:.0f} s (ground-truth masks)")
    hold = str(PH2_HOLDOUT_FOLD)
    if args.tune:
        train = [c for c in cases if c.fold != hold]
        am = tune_asymmetry(train)
        cm = tune_colours(train, args.rounds)
        print(f"\nTuned on folds {sorted({c.fold for c in train})} ({len(train)} cases):")
        print(f"AsymmetryModel(shape_threshold={am.shape_threshold}, colour_threshold={am.colour_threshold})")
        print("ColourModel(")
        print("    prototypes=(")
        for n, p in cm.prototypes:
            print(f"        ({n!r}, ({p[0]:.1f}, {p[1]:.1f}, {p[2]:.1f})),")
        print("    ),")
        print("    thresholds=(" + ", ".join(f"({n!r}, {t})" for n, t in cm.thresholds) + "),")
        print(f"    skin_weight={cm.skin_weight},")
        print(")")
        return
    if args.cv:
        at, ap_, ct, cp = [], [], [], []
        for fold in sorted({c.fold for c in cases}):
            train = [c for c in cases if c.fold != fold]
            test = [c for c in cases if c.fold == fold]
            print(f"fold {fold}: tuning on {len(train)} cases", file=sys.stderr, flush=True)
            am = tune_asymmetry(train)
            cm = tune_colours(train, args.rounds, log=False)
            at += [c.asymmetry for c in test]
            ap_ += list(asym_scores(test, am))
            ct.append(np.array([c.colours for c in test]))
            cp.append(colour_predictions(test, cm))
        print_results("5-fold cross-validation, pooled (each fold scored by models tuned on the other four)",
                      at, ap_, np.concatenate(ct), np.concatenate(cp))
    else:
        test = [c for c in cases if c.fold == hold]
        print_results(f"PH2 hold-out fold {hold}, committed models (tuned on folds 1-4)",
                      [c.asymmetry for c in test], list(asym_scores(test, DEFAULT_ASYMMETRY_MODEL)),
                      np.array([c.colours for c in test]), colour_predictions(test, DEFAULT_COLOUR_MODEL))
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

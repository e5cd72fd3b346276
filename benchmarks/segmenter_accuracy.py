"""Held-out Dice of box-prompted segmentation, beside the baselines.

Data the default did not train on: PH2 hold-out fold (fold 0, 32 images) and the Kvasir-SEG test split
(100 images). Protocols (see radvlsm.stage2_segment.evaluate): exact ground-truth boxes, boxes jittered by
up to ±10%, and 3–5 noisy candidates (aggregation vs best-predicted-IoU vs mean). Baselines: the ellipse
inscribed in the box and GrabCut started from it.

    python benchmarks/segmenter_accuracy.py [--model default] [--json benchmarks/results/segmenter_accuracy.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from radvlsm.data.cases import read_dataset
from radvlsm.data.paths import shared_datasets_root
from radvlsm.data.splits import PH2_HOLDOUT_FOLD, kvasir_split, ph2_folds
from radvlsm.stage2_segment.build import load_segmenter
from radvlsm.stage2_segment.evaluate import evaluate_cases, summarize
from radvlsm.stage2_segment.predictor import SegmenterPredictor

COLUMNS = [
    ("exact", "model"), ("exact", "ellipse"), ("exact", "grabcut"),
    ("jitter10", "model"), ("jitter10", "ellipse"), ("jitter10", "grabcut"),
    ("noisy", "reliability"), ("noisy", "best_iou"), ("noisy", "mean"),
]


def held_out_sets(root: Path) -> dict[str, list]:
    ph2 = read_dataset(root / "ph2").subset(ph2_folds().ids(str(PH2_HOLDOUT_FOLD)))
    kv = read_dataset(root / "kvasir-seg").subset(kvasir_split().ids("test"))
    return {f"PH2 fold {PH2_HOLDOUT_FOLD}": list(ph2.cases), "Kvasir-SEG test": list(kv.cases)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="cases per set (0: all)")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    predictor = SegmenterPredictor(load_segmenter(args.model))
    results: dict[str, dict[str, list[float]]] = {}
    t0 = time.perf_counter()
    for name, cases in held_out_sets(shared_datasets_root()).items():
        if args.limit:
            cases = cases[: args.limit]
        rows = evaluate_cases(predictor, cases, baselines=not args.no_baselines)
        results[name] = {f"{p}/{m}": [mean, n] for (p, m), (mean, n) in summarize(rows).items()}
    header = "| data | " + " | ".join(f"{p} {m}" for p, m in COLUMNS) + " |"
    print(header)
    print("|" + " --- |" * (len(COLUMNS) + 1))
    for name, res in results.items():
        cells = [f"{res[f'{p}/{m}'][0]:.4f}" if f"{p}/{m}" in res else "–" for p, m in COLUMNS]
        n = next(iter(res.values()))[1]
        print(f"| {name} (n={n}) | " + " | ".join(cells) + " |")
    print(f"\n{time.perf_counter() - t0:.0f} s; model {args.model}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": args.model, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()

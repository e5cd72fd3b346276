"""Held-out Dice of box-prompted segmentation, beside the baselines.

Data the default did not train on: PH2 hold-out fold (fold 0, 32 images) and the Kvasir-SEG test split
(100 images); with ``--domain ultrasound``, the BUSI test split's lesion images (128) and BUS-BRA's hold-out
fold (fold 1, 376 images), which the ultrasound model did not train on. Protocols (see
radvlsm.stage2_segment.evaluate): exact ground-truth boxes, boxes jittered by up to ±10%, and 3–5 noisy
candidates (aggregation vs best-predicted-IoU vs mean). Baselines: the ellipse inscribed in the box and GrabCut
started from it.

    python benchmarks/segmenter_accuracy.py [--model default] [--json benchmarks/results/segmenter_accuracy.json]
    python benchmarks/segmenter_accuracy.py --domain ultrasound --model ultrasound \
        --json benchmarks/results/segmenter_accuracy_ultrasound.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from radvlsm.data.heldout import held_out_cases
from radvlsm.data.paths import shared_datasets_root
from radvlsm.data.splits import BUSBRA_HOLDOUT_FOLD, PH2_HOLDOUT_FOLD
from radvlsm.stage2_segment.build import load_segmenter
from radvlsm.stage2_segment.evaluate import evaluate_cases, summarize
from radvlsm.stage2_segment.predictor import SegmenterPredictor

COLUMNS = [
    ("exact", "model"), ("exact", "ellipse"), ("exact", "grabcut"),
    ("jitter10", "model"), ("jitter10", "ellipse"), ("jitter10", "grabcut"),
    ("noisy", "reliability"), ("noisy", "best_iou"), ("noisy", "mean"),
]


#: How the held-out sets are named in the tables.
TITLES = {"busi": "BUSI test", "bus-bra": f"BUS-BRA fold {BUSBRA_HOLDOUT_FOLD}", "ph2": f"PH2 fold {PH2_HOLDOUT_FOLD}",
          "kvasir-seg": "Kvasir-SEG test"}


def held_out_sets(root: Path, domain: str = "dermoscopy-colonoscopy") -> dict[str, list]:
    """The held-out lesion images of ``domain`` by title (BUSI's normal images have no box to prompt)."""
    return {TITLES[k]: v for k, v in held_out_cases(root, domain, normals=False).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--domain", default="dermoscopy-colonoscopy", choices=["dermoscopy-colonoscopy", "ultrasound"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="cases per set (0: all)")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    predictor = SegmenterPredictor(load_segmenter(args.model))
    results: dict[str, dict[str, list[float]]] = {}
    t0 = time.perf_counter()
    for name, cases in held_out_sets(shared_datasets_root(), args.domain).items():
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
        record = {"model": args.model, "domain": args.domain, "results": results}
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Held-out figures of text-prompted localization and of the fully automatic pipeline.

Data the default models did not train on: PH2 hold-out fold (fold 0) and the Kvasir-SEG test split. For each
image, the default prompt and the domain's first train phrases ("trained"), every held-out paraphrase
("paraphrase", never seen in training) and every other domain's phrase ("negative", must be rejected) are asked
(see radvlsm.stage1_localize.evaluate). Reported: box recall@1/@5 (IoU >= 0.5), automatic Dice (prompt only:
stage 1 -> stage 2 -> aggregation) beside the ellipse inscribed in stage 1's top box, the rejection rate of
negative prompts, Dice per prompt; then the throughput of `radvlsm segment` with --prompt next to --boxes on
the Kvasir-SEG test images (2 threads, models loaded once, outputs written).

    python benchmarks/localizer_accuracy.py [--json benchmarks/results/localizer_accuracy.json] [--limit N] [--tta]
    python benchmarks/localizer_accuracy.py --domain ultrasound --model ultrasound --localizer ultrasound \
        --json benchmarks/results/localizer_accuracy_ultrasound.json

With ``--domain ultrasound`` the data are the BUSI test split (its normal images included: every prompt asked
of them must be rejected, kind "normal") and BUS-BRA's hold-out fold 1; throughput is measured on BUSI test
with the prompt "breast mass".
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from radvlsm.data.boxes import mask_to_box
from radvlsm.data.cases import write_gt_boxes_csv
from radvlsm.data.heldout import held_out_cases
from radvlsm.data.paths import shared_datasets_root
from radvlsm.io import read_mask
from radvlsm.pipeline.inputs import discover_inputs
from radvlsm.pipeline.prompts import read_boxes_csv
from radvlsm.pipeline.segment import TTA_FLIPS, BoxFilePrompts, LocalizerPrompts, run_segment
from radvlsm.stage1_localize.build import check_segmenter, load_localizer
from radvlsm.stage1_localize.evaluate import evaluate_prompts, per_prompt_dice, summarize_prompts
from radvlsm.stage1_localize.predictor import LocalizerPredictor
from radvlsm.stage1_localize.text import TextEncoder
from radvlsm.stage2_segment.build import load_segmenter
from radvlsm.stage2_segment.predictor import SegmenterPredictor


def throughput(seg: SegmenterPredictor, loc: LocalizerPredictor, cases: list, work: Path,
               prompt: str = "polyp", flips: tuple[str, ...] = ()) -> dict[str, float]:
    """Images/s of run_segment over the lesion images of ``cases``, from ground-truth boxes and from the
    prompt."""
    cases = [c for c in cases if mask_to_box(read_mask(c.mask_path)) is not None]
    boxes_csv = write_gt_boxes_csv(cases, work / "boxes.csv")
    links = work / "images"
    links.mkdir()
    for c in cases:
        (links / c.image_path.name).symlink_to(c.image_path.resolve())
    items, _ = discover_inputs([links])
    out = {}
    for name, source in (("boxes", BoxFilePrompts(read_boxes_csv(boxes_csv))),
                         ("prompt", LocalizerPrompts(loc, prompt, flips=flips))):
        s = run_segment(items, work / f"out-{name}", seg, source, model_name="default", prompt_text=None)
        out[name] = s.images_per_s
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="segmenter spec")
    ap.add_argument("--localizer", default="default", help="localizer spec")
    ap.add_argument("--domain", default="dermoscopy-colonoscopy", choices=["dermoscopy-colonoscopy", "ultrasound"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="cases per set (0: all)")
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--tta", action="store_true", help="as segment --tta: mirrored views averaged in stage 1")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    seg_model = load_segmenter(args.model)
    loc_model = load_localizer(args.localizer)
    check_segmenter(loc_model.config, seg_model, strict=False)
    seg = SegmenterPredictor(seg_model)
    loc = LocalizerPredictor(loc_model, TextEncoder())
    root = shared_datasets_root()
    sets = held_out_cases(root, args.domain)
    speed_set, speed_prompt = ("busi", "breast mass") if args.domain == "ultrasound" else ("kvasir-seg", "polyp")
    flips = TTA_FLIPS if args.tta else ()
    t0 = time.perf_counter()
    rows = []
    for name, cases in sets.items():
        rows += evaluate_prompts(seg, loc, cases[: args.limit] if args.limit else cases, name, flips=flips)
    summary = summarize_prompts(rows)
    print("| data | prompts | n | recall@1 | recall@5 | found | rejected | automatic Dice | ellipse in top box |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in summary:
        print(f"| {s.dataset} | {s.kind} | {s.n} | {s.recall_at_1:.3f} | {s.recall_at_5:.3f} | {s.found:.3f} | "
              f"{s.rejected:.3f} | {s.dice:.4f} | {s.ellipse_dice:.4f} |")
    per_prompt = per_prompt_dice(rows)
    print("\n| data | kind | prompt | automatic Dice |\n| --- | --- | --- | --- |")
    for (d, k, p), v in per_prompt.items():
        print(f"| {d} | {k} | {p} | {v:.4f} |")
    result = {"domain": args.domain, "segmenter": args.model, "localizer": args.localizer, "tta": list(flips),
              "seconds": time.perf_counter() - t0,
              "summary": [asdict(s) for s in summary],
              "per_prompt": [{"dataset": d, "kind": k, "prompt": p, "dice": v} for (d, k, p), v in per_prompt.items()]}
    if not args.no_throughput:
        kv = sets[speed_set][: args.limit] if args.limit else sets[speed_set]
        with tempfile.TemporaryDirectory() as tmp:
            tp = throughput(seg, loc, kv, Path(tmp), speed_prompt, flips)
        print(f"\nthroughput on {len(kv)} {speed_set} held-out images ({args.threads} threads): "
              f"--boxes {tp['boxes']:.1f} images/s, --prompt {tp['prompt']:.1f} images/s")
        result["throughput_images_per_s"] = tp
        result["throughput_images"] = len(kv)
    print(f"\n{result['seconds']:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

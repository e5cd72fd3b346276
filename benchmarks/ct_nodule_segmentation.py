"""3-D Dice of CT nodule segmentation on LIDC nodules of patients not trained on, beside the ellipsoid baseline.

Data: the LIDC ``test`` part of the committed split by patient (``radvlsm.data.splits.lidc_split``; ``--part val``
for the choices of settings). Each nodule's VOI (HU, native spacing) is segmented by
:class:`radvlsm.stage2_segment.volume.VolumeSegmenter`, prompted

- ``box``: by the ground-truth 3-D box (the tight box of the nodule mask, voxel edges);
- ``point``: by the labelled centre ``coordX/Y/Z`` (scanner mm, mapped through the VOI's origin, direction and
  spacing) with ``diameter_mm``: the box of that sphere scaled by ``VolumeConfig.point_extent`` (measured on
  LIDC ``train``, see :mod:`radvlsm.stage2_segment.volume`).

Baselines, beside every figure: the ellipsoid inscribed in the same box; for ``point`` also the sphere of the
labelled diameter itself.
Dice is computed in 3-D on the VOI's voxel grid against the dataset's mask.

    python benchmarks/ct_nodule_segmentation.py --model ct \
        --json benchmarks/results/ct_nodule_segmentation.json

The inference choices were made on LIDC ``val`` (``--part val``; ``--slice-prompts ellipsoid|propagate|box``,
results in ``benchmarks/results/ct_nodule_segmentation_val_*.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from radvlsm.data.cases import read_dataset
from radvlsm.data.paths import shared_datasets_root
from radvlsm.data.splits import lidc_split
from radvlsm.io import Modality, read_image, read_mask
from radvlsm.metrics.segmentation import dice
from radvlsm.stage2_segment.build import load_segmenter
from radvlsm.stage2_segment.predictor import SegmenterPredictor
from radvlsm.stage2_segment.volume import (
    SLICE_PROMPTS,
    NodulePoint,
    VolumeConfig,
    VolumeSegmenter,
    VoxelBox,
    point_to_box,
)

log = logging.getLogger("ct_nodule_segmentation")
#: Nodule size groups (diameter_mm) the figures are also given for.
SIZE_GROUPS = (("< 6 mm", 0.0, 6.0), ("6-10 mm", 6.0, 10.0), ("≥ 10 mm", 10.0, 1e9))


def evaluate(seg: VolumeSegmenter, cases: list, kinds: tuple[str, ...]) -> list[dict]:
    rows = []
    for i, case in enumerate(cases):
        vol = read_image(case.image_path, modality=Modality.CT)
        gt = read_mask(case.mask_path, like=vol)
        lab = case.labels
        diameter = float(lab["diameter_mm"])
        row: dict = {"case_id": case.case_id, "diameter_mm": diameter, "voxels": int(gt.sum())}
        gt_box = VoxelBox.from_mask(gt)
        if gt_box is None:
            log.warning("%s: empty mask, skipped", case.case_id)
            continue
        point = NodulePoint(float(lab["coordX"]), float(lab["coordY"]), float(lab["coordZ"]), diameter)
        boxes = {"box": gt_box, "point": seg.point_box(vol, point)}
        sphere = point_to_box(point, vol.geometry)
        for kind in kinds:
            box = boxes[kind]
            t0 = time.perf_counter()
            res = seg.segment_box(vol, box) if kind == "box" else seg.segment_point(vol, point)
            row[f"{kind}/model"] = dice(res.mask, gt)
            row[f"{kind}/seconds"] = time.perf_counter() - t0
            row[f"{kind}/ellipsoid"] = dice(box.ellipsoid(gt.shape), gt)
            if kind == "point":
                row["point/sphere"] = dice(sphere.ellipsoid(gt.shape), gt)
            if res.mask.shape != gt.shape:
                raise RuntimeError(f"{case.case_id}: mask {res.mask.shape} is not the volume's {gt.shape}")
        rows.append(row)
        if (i + 1) % 20 == 0:
            log.info("%d/%d nodules", i + 1, len(cases))
    return rows


def summarize(rows: list[dict], kinds: tuple[str, ...]) -> dict:
    out: dict = {"n": len(rows)}
    for kind in kinds:
        for what in ("model", "ellipsoid", "sphere"):
            if f"{kind}/{what}" not in rows[0]:
                continue
            v = np.array([r[f"{kind}/{what}"] for r in rows])
            out[f"{kind}/{what}"] = {"mean": float(v.mean()), "median": float(np.median(v)), "n": len(v)}
            for name, lo, hi in SIZE_GROUPS:
                g = np.array([r[f"{kind}/{what}"] for r in rows if lo <= r["diameter_mm"] < hi])
                out[f"{kind}/{what}"][name] = [float(g.mean()) if g.size else float("nan"), int(g.size)]
        out[f"{kind}/seconds_per_nodule"] = float(np.mean([r[f"{kind}/seconds"] for r in rows]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ct")
    ap.add_argument("--part", default="test", choices=["test", "val"])
    ap.add_argument("--kinds", default="box,point")
    ap.add_argument("--slice-prompts", default=VolumeConfig.slice_prompts, choices=list(SLICE_PROMPTS))
    ap.add_argument("--min-section", type=float, default=VolumeConfig.min_section)
    ap.add_argument("--point-extent", default=",".join(map(str, VolumeConfig.point_extent)),
                    help="xy,z factors from a point's diameter to its box")
    ap.add_argument("--grow", type=float, default=VolumeConfig.grow)
    ap.add_argument("--presence-stop", type=float, default=VolumeConfig.presence_stop)
    ap.add_argument("--no-core", action="store_true", help="keep every 3-D component")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="nodules (0: all)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    cfg = dataclasses.replace(VolumeConfig(), slice_prompts=args.slice_prompts, grow=args.grow,
                              min_section=args.min_section,
                              point_extent=tuple(float(v) for v in args.point_extent.split(",")),
                              presence_stop=args.presence_stop, keep_core=not args.no_core)
    seg = VolumeSegmenter(SegmenterPredictor(load_segmenter(args.model)), cfg)
    lidc = read_dataset(shared_datasets_root() / "lidc-nodules", "lidc-nodules")
    cases = list(lidc.subset(lidc_split().ids(args.part)).cases)
    if args.limit:
        cases = cases[: args.limit]
    t0 = time.perf_counter()
    rows = evaluate(seg, cases, kinds)
    summary = summarize(rows, kinds)
    lines = [f"LIDC {args.part}, {summary['n']} nodules, model {args.model}: 3-D Dice mean (median)",
             "| prompt | model | ellipsoid in the same box | "
             + " | ".join(f"model vs ellipsoid {g[0]}" for g in SIZE_GROUPS) + " |",
             "| --- | ---: | ---: |" + " ---: |" * len(SIZE_GROUPS)]
    for kind in kinds:
        m, e = summary[f"{kind}/model"], summary[f"{kind}/ellipsoid"]
        groups = " | ".join(f"{m[g[0]][0]:.3f} vs {e[g[0]][0]:.3f} (n={m[g[0]][1]})" for g in SIZE_GROUPS)
        lines.append(f"| {kind} | {m['mean']:.4f} ({m['median']:.3f}) | {e['mean']:.4f} ({e['median']:.3f}) | "
                     f"{groups} |")
        if f"{kind}/sphere" in summary:
            lines.append(f"| {kind}: the sphere of diameter_mm | | {summary[f'{kind}/sphere']['mean']:.4f} | |")
    for line in lines:
        log.info("%s", line)
    log.info("%.0f s", time.perf_counter() - t0)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        config = dataclasses.asdict(cfg) | {"window": str(cfg.window)}
        payload = {"model": args.model, "part": args.part, "config": config, "summary": summary, "cases": rows,
                   "threads": args.threads}
        args.json.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

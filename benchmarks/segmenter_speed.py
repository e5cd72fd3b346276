"""Speed of the box-prompted segmenter on CPU (or GPU with --device cuda).

1. ``radvlsm segment`` end to end (read, embed, decode, aggregate, write masks, overlays, records) with the
   embedded default on N Kvasir-SEG test images (256x256), as images/s.
2. The decoder hot loop: prompts of 8 images decoded in one batched pass vs one prompt at a time, at 1, 8 and
   32 boxes per image (ratio measured in the same run).
3. The same segment pipeline with a SAM ViT-B image encoder (random weights: timing only), for the ratio to
   the compact default.

    python benchmarks/segmenter_speed.py [--threads 2] [--images 100] [--device cpu]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from radvlsm.data.boxes import mask_to_box
from radvlsm.data.cases import read_dataset
from radvlsm.data.paths import shared_datasets_root
from radvlsm.data.splits import kvasir_split
from radvlsm.io import read_image, read_mask, to_display_rgb
from radvlsm.pipeline.inputs import discover_inputs
from radvlsm.pipeline.prompts import read_boxes_csv
from radvlsm.pipeline.segment import BoxFilePrompts, run_segment
from radvlsm.stage2_segment.build import create_segmenter, load_segmenter
from radvlsm.stage2_segment.modeling import ImageFeatures, LesionSegmenter
from radvlsm.stage2_segment.predictor import PROMPTS_PER_PASS, SegmenterPredictor


def _inputs(n: int, tmp: Path) -> tuple[Path, Path]:
    kv = read_dataset(shared_datasets_root() / "kvasir-seg").subset(kvasir_split().ids("test"))
    cases = kv.cases[:n]
    img_dir = tmp / "images"
    img_dir.mkdir()
    with (tmp / "boxes.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "x0", "y0", "x1", "y1"])
        for c in cases:
            shutil.copyfile(c.image_path, img_dir / c.image_path.name)
            w.writerow([c.image_path.name, *mask_to_box(read_mask(c.mask_path)).tolist()])
    return img_dir, tmp / "boxes.csv"


def time_segment(model: LesionSegmenter, name: str, img_dir: Path, boxes: Path, out: Path, device: str,
                 batch: int) -> float:
    predictor = SegmenterPredictor(model, device=device, encoder_batch=batch)
    items, _ = discover_inputs([img_dir])
    prompts = BoxFilePrompts(read_boxes_csv(boxes))
    run_segment(items[:batch], out / "warmup", predictor, prompts, model_name=name, batch_size=batch)
    summary = run_segment(items, out / name, predictor, prompts, model_name=name, batch_size=batch, overwrite=True)
    return summary.images_per_s


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.inference_mode()
def time_decoder(
    model: LesionSegmenter, n_images: int, per_image: int, device: str, repeats: int = 5
) -> tuple[float, float]:
    """Seconds per call: (batched, looped) for ``n_images`` x ``per_image`` prompts."""
    s = model.config.image_size
    torch.manual_seed(0)
    feats = model.embed(torch.rand(n_images, 3, s, s, device=device) * 255)
    xy = torch.rand(n_images * per_image, 2, device=device) * s * 0.6
    boxes = torch.cat([xy, xy + s * 0.3], 1)
    index = torch.arange(n_images, device=device).repeat_interleave(per_image)
    singles = [
        ImageFeatures(
            feats.embedding[i : i + 1], None if feats.hires is None else tuple(h[i : i + 1] for h in feats.hires)
        )
        for i in range(n_images)
    ]
    zero = torch.zeros(1, dtype=torch.long, device=device)

    def batched() -> None:  # as the predictor does: passes of PROMPTS_PER_PASS prompts across images
        for a in range(0, len(boxes), PROMPTS_PER_PASS):
            model.decode(feats, boxes[a : a + PROMPTS_PER_PASS], index[a : a + PROMPTS_PER_PASS])

    def looped() -> None:
        for j in range(len(boxes)):
            model.decode(singles[int(index[j])], boxes[j : j + 1], zero)

    out = []
    for fn in (batched, looped):
        fn()
        times = []
        for _ in range(repeats):
            _sync(device)
            t = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t)
        out.append(statistics.median(times))
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--vit-images", type=int, default=16, help="images for the (slow) ViT-B run")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res: dict = {"threads": args.threads, "device": args.device, "torch": torch.__version__,
                 "cpu": platform.processor() or platform.machine()}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        img_dir, boxes = _inputs(args.images, tmp)
        default = load_segmenter("default")
        res["segment_default_images_per_s"] = time_segment(default, "default", img_dir, boxes, tmp / "out",
                                                           args.device, args.batch)
        dec = {}
        for k in (1, 8, 32):
            b, lp = time_decoder(default.to(args.device), 8, k, args.device)
            dec[k] = {"batched_s": b, "looped_s": lp, "ratio": lp / b}
        res["decoder_8_images"] = dec
        vit_dir = tmp / "vit"
        vit_dir.mkdir()
        for f in sorted(img_dir.iterdir())[: args.vit_images]:
            shutil.copyfile(f, vit_dir / f.name)
        vit = create_segmenter("sam_vit_b")
        res["segment_sam_vit_b_images_per_s"] = time_segment(vit, "sam_vit_b", vit_dir, boxes, tmp / "out",
                                                             args.device, min(args.batch, 4))
        res["default_over_vit_b"] = res["segment_default_images_per_s"] / res["segment_sam_vit_b_images_per_s"]
        # the encoder alone, for context
        rgb = to_display_rgb(read_image(next(iter(sorted(img_dir.iterdir())))))
        pred = SegmenterPredictor(default, device=args.device, encoder_batch=args.batch)
        pred.set_images([rgb] * args.batch)
        t = time.perf_counter()
        for _ in range(3):
            pred.set_images([rgb] * args.batch)
        res["default_encoder_images_per_s"] = 3 * args.batch / (time.perf_counter() - t)
    print(json.dumps(res, indent=2))
    print()
    print(f"| measure ({args.device}, {args.threads} threads) | value |")
    print("| --- | --- |")
    print(f"| `radvlsm segment`, default, {args.images} Kvasir-SEG 256x256 images | "
          f"{res['segment_default_images_per_s']:.1f} images/s |")
    print(f"| `radvlsm segment`, SAM ViT-B encoder (random weights), {args.vit_images} images | "
          f"{res['segment_sam_vit_b_images_per_s']:.2f} images/s |")
    print(f"| default / ViT-B | {res['default_over_vit_b']:.0f}x |")
    for k, d in dec.items():
        print(f"| decoder, 8 images x {k} boxes: looped / batched | {d['ratio']:.2f}x "
              f"({d['looped_s'] * 1e3:.1f} ms vs {d['batched_s'] * 1e3:.1f} ms) |")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()

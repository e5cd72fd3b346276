"""``radvlsm segment``: lesion masks for folders of images."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from radvlsm.cli.logsetup import console
from radvlsm.errors import RadvlsmError

log = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    import torch

    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise typer.BadParameter(f"--device must be cpu or cuda, not {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise typer.BadParameter("--device cuda: no CUDA device is available on this machine")
    return device


def segment(
    inputs: list[Path] = typer.Argument(..., help="Image files or folders (PNG, JPEG, BMP, TIFF, DICOM)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    boxes: Path = typer.Option(None, "--boxes", help="CSV of box prompts: image,x0,y0,x1,y1[,score] (pixels)."),
    model: str = typer.Option("default", "--model", help="default | sam_vit_b:PATH | medsam:PATH | model folder."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images embedded together."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads for the model (0: all cores)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo images already in OUT."),
) -> None:
    """Segment the lesion in each image from box prompts; write masks, overlays and results.csv."""
    import torch

    from radvlsm.pipeline.inputs import InputProblem, discover_inputs
    from radvlsm.pipeline.prompts import read_boxes_csv
    from radvlsm.pipeline.segment import BoxFilePrompts, run_segment
    from radvlsm.stage2_segment.build import load_segmenter
    from radvlsm.stage2_segment.predictor import SegmenterPredictor

    if boxes is None:
        raise typer.BadParameter("give the box prompts with --boxes boxes.csv", param_hint="--boxes")
    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    try:
        prompts = BoxFilePrompts(read_boxes_csv(boxes))
        predictor = SegmenterPredictor(load_segmenter(model), device=dev, encoder_batch=batch_size)
    except RadvlsmError as exc:
        log.error("%s", exc)
        raise typer.Exit(2) from exc
    items, problems = discover_inputs(inputs)
    known = {it.case_id for it in items}
    for cid in sorted(set(prompts.boxes.by_case) - known):
        row = prompts.boxes.by_case[cid][0]
        problems.append(InputProblem(boxes, f"line {row.line}: image {row.image!r} is not among the inputs"))
    if not items:
        log.error("no input images found in %s", ", ".join(map(str, inputs)))
        raise typer.Exit(1)
    progress = Progress(TextColumn("segment"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)
    with progress:
        task = progress.add_task("segment", total=len(items))
        summary = run_segment(
            items, out, predictor, prompts, model_name=model, batch_size=batch_size, overwrite=overwrite,
            problems=problems, on_progress=lambda n: progress.advance(task, n),
        )
    log.info("%d image(s) segmented, %d already done, %d failed in %.1f s (%.1f images/s) → %s",
             summary.written, summary.skipped, len(summary.failed), summary.seconds, summary.images_per_s, out)
    if summary.failed:
        log.warning("failed inputs (also in %s):", out / "errors.csv")
        for p in summary.failed:
            log.warning("  %s: %s", p.path, p.reason)

"""``radvlsm segment``: lesion masks for folders of images."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from radvlsm.cli.logsetup import console
from radvlsm.errors import ConfigError, RadvlsmError

if TYPE_CHECKING:
    from radvlsm.fusion.head import DiagnosisHead
    from radvlsm.pipeline.modality import ModelSet
    from radvlsm.stage2_segment.modeling import LesionSegmenter

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
    prompt: str = typer.Option(
        None, "--prompt", help='Text prompt for the stage-1 localizer ("polyp"); default "lesion" without --boxes.'
    ),
    top_k: int = typer.Option(None, "--top-k", min=1, help="Candidate boxes per image from --prompt (default 5)."),
    modality: str = typer.Option(
        None, "--modality", help="dermoscopy | colonoscopy | ultrasound: picks the embedded models for it "
        "(default: dermoscopy's, which also segment colonoscopy)."
    ),
    localizer: str = typer.Option(
        None, "--localizer", help="default | ultrasound | localizer folder (with --prompt; default: the modality's)."
    ),
    model: str = typer.Option(
        None, "--model", help="default | ultrasound | sam_vit_b:PATH | medsam:PATH | model folder (default: the "
        "modality's)."
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images embedded together."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads for the model (0: all cores)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo images already in OUT."),
) -> None:
    """Segment the lesion in each image, from box prompts or from a text prompt; write masks, overlays,
    records and results.csv (and, from a text prompt, the boxes stage 1 proposed in boxes.csv)."""
    models = _model_set(modality)
    run_batch(inputs, out, boxes=boxes, prompt=prompt, top_k=top_k, localizer=localizer or models.localizer,
              model=model or models.segmenter, batch_size=batch_size, device=device, threads=threads,
              overwrite=overwrite)


def _model_set(modality: str | None) -> ModelSet:
    from radvlsm.pipeline.modality import Modality, model_set

    if modality is None:
        return model_set(None)
    try:
        return model_set(Modality(modality.strip().lower()))
    except ValueError:
        names = ", ".join(m.value for m in Modality)
        raise typer.BadParameter(f"{modality!r} is not one of {names}", param_hint="--modality") from None


def check_head_segmenter(head: DiagnosisHead, seg: LesionSegmenter, head_spec: str, model_spec: str) -> None:
    """Fail early when the head's visual features cannot come from this segmenter (another embedding size)."""
    visual = [n for n in head.feature_names if n.startswith("visual_")]
    n_seg = 2 * seg.config.embed_dim
    beyond = [n for n in visual if not n.removeprefix("visual_").isdigit() or int(n.removeprefix("visual_")) >= n_seg]
    if beyond:
        raise ConfigError(f"{head_spec}: the diagnosis head reads visual features up to {beyond[-1]}, but the "
                          f"segmenter {model_spec!r} gives {n_seg}; use the head trained with this segmenter "
                          "(radvlsm train diagnoser --segmenter)")


def diagnose(
    inputs: list[Path] = typer.Argument(..., help="Image files or folders (PNG, JPEG, BMP, TIFF, DICOM)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    boxes: Path = typer.Option(None, "--boxes", help="CSV of box prompts: image,x0,y0,x1,y1[,score] (pixels)."),
    prompt: str = typer.Option(
        None, "--prompt", help='Text prompt for the stage-1 localizer ("pigmented lesion"); default "lesion" '
        "without --boxes."
    ),
    top_k: int = typer.Option(None, "--top-k", min=1, help="Candidate boxes per image from --prompt (default 5)."),
    modality: str = typer.Option(
        None, "--modality", help="dermoscopy | ultrasound: picks the embedded models and head for it (default: "
        "dermoscopy's, the PH2 head)."
    ),
    head: str = typer.Option(
        None, "--head", help="default | ultrasound | diagnosis head folder (head.json + booster.json, from "
        "radvlsm train diagnoser); it must come from the same segmenter as --model (default: the modality's)."
    ),
    localizer: str = typer.Option(
        None, "--localizer", help="default | ultrasound | localizer folder (default: the modality's)."
    ),
    domain_prompt: str = typer.Option(
        None, "--domain-prompt", help="Diagnose only images the localizer matches with this phrase (the "
        "head's kind of lesion: 'skin lesion' for dermoscopy, 'breast mass' for ultrasound); others are "
        "out_of_domain. \"\" diagnoses all."
    ),
    model: str = typer.Option(
        None, "--model", help="default | ultrasound | sam_vit_b:PATH | medsam:PATH | model folder (default: the "
        "modality's)."
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images embedded together."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads for the model (0: all cores)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo images already in OUT."),
) -> None:
    """Segment and diagnose the lesion in each image: what segment writes, plus each lesion's class
    probabilities in the records and diagnoses.csv (an image whose lesion is not found gets no label)."""
    models = _model_set(modality)
    head = head or models.head
    if head is None:
        raise typer.BadParameter(f"radvlsm has no diagnosis head for {modality}; give one with --head",
                                 param_hint="--modality")
    gate = models.domain_prompt if domain_prompt is None else domain_prompt
    run_batch(inputs, out, boxes=boxes, prompt=prompt, top_k=top_k, localizer=localizer or models.localizer,
              model=model or models.segmenter, batch_size=batch_size, device=device, threads=threads,
              overwrite=overwrite, diagnosis_head=head, domain_prompt=" ".join(gate.split()))


def run_batch(
    inputs: list[Path], out: Path, *, boxes: Path | None, prompt: str | None, top_k: int | None, localizer: str,
    model: str, batch_size: int, device: str, threads: int, overwrite: bool, diagnosis_head: str | None = None,
    domain_prompt: str = "",
) -> None:
    """What ``segment`` and ``diagnose`` share: check the options, load the models, run, report failures.
    With ``diagnosis_head`` (a head spec) every lesion found is diagnosed too."""
    import torch

    from radvlsm.fusion.predictor import Diagnoser, load_head
    from radvlsm.pipeline.inputs import InputProblem, discover_inputs
    from radvlsm.pipeline.prompts import read_boxes_csv
    from radvlsm.pipeline.segment import BoxFilePrompts, DiagnosisStep, LocalizerPrompts, PromptSource, run_segment
    from radvlsm.stage1_localize.build import check_segmenter, load_localizer
    from radvlsm.stage1_localize.phrases import DEFAULT_PROMPT
    from radvlsm.stage1_localize.predictor import LocalizerPredictor
    from radvlsm.stage1_localize.text import TextEncoder
    from radvlsm.stage2_segment.build import load_segmenter
    from radvlsm.stage2_segment.predictor import SegmenterPredictor

    if boxes is not None and (prompt is not None or top_k is not None):
        raise typer.BadParameter("give either --boxes or --prompt/--top-k, not both", param_hint="--boxes")
    if prompt is not None and not prompt.strip():
        raise typer.BadParameter("the prompt is empty", param_hint="--prompt")
    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    text = None if boxes is not None else " ".join((prompt or DEFAULT_PROMPT).split())
    try:
        seg = load_segmenter(model)
        dhead = None
        if diagnosis_head is not None:  # checked first: the head is what diagnose is about
            dhead = load_head(diagnosis_head)
            check_head_segmenter(dhead, seg, diagnosis_head, model)
        prompts: PromptSource
        loc_predictor = None
        if boxes is None or (diagnosis_head is not None and domain_prompt):
            loc = load_localizer(localizer)
            check_segmenter(loc.config, seg, strict=False)
            loc_predictor = LocalizerPredictor(loc, TextEncoder(), device=dev)
        if boxes is not None:
            prompts = BoxFilePrompts(read_boxes_csv(boxes))
        else:
            assert loc_predictor is not None  # loaded above whenever there are no boxes
            prompts = LocalizerPrompts(loc_predictor, text, top_k)
        predictor = SegmenterPredictor(seg, device=dev, encoder_batch=batch_size)
        step = None
        if dhead is not None and diagnosis_head is not None:
            step = DiagnosisStep(Diagnoser(dhead), diagnosis_head, loc_predictor, domain_prompt)
    except RadvlsmError as exc:
        log.error("%s", exc)
        raise typer.Exit(2) from exc
    items, problems = discover_inputs(inputs)
    if isinstance(prompts, BoxFilePrompts):
        known = {it.case_id for it in items}
        for cid in sorted(set(prompts.boxes.by_case) - known):
            row = prompts.boxes.by_case[cid][0]
            problems.append(InputProblem(boxes, f"line {row.line}: image {row.image!r} is not among the inputs"))
    if not items:
        log.error("no input images found in %s", ", ".join(map(str, inputs)))
        raise typer.Exit(1)
    progress = Progress(TextColumn("diagnose" if step else "segment"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console)
    with progress:
        task = progress.add_task("segment", total=len(items))
        summary = run_segment(
            items, out, predictor, prompts, model_name=model, prompt_text=text, batch_size=batch_size,
            overwrite=overwrite, problems=problems, on_progress=lambda n: progress.advance(task, n), diagnosis=step,
        )
    if step is not None:
        log.info("diagnoses → %s", out / "diagnoses.csv")
    log.info("%d image(s) segmented, %d already done, %d failed in %.1f s (%.1f images/s) → %s",
             summary.written, summary.skipped, len(summary.failed), summary.seconds, summary.images_per_s, out)
    if summary.failed:
        log.warning("failed inputs (also in %s):", out / "errors.csv")
        for p in summary.failed:
            log.warning("  %s: %s", p.path, p.reason)

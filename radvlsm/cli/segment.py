"""``radvlsm segment``: lesion masks for folders of images."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from radvlsm.cli.logsetup import console
from radvlsm.cli.outdir import ensure_output_folder
from radvlsm.errors import ConfigError, RadvlsmError

if TYPE_CHECKING:
    from radvlsm.fusion.head import DiagnosisHead
    from radvlsm.fusion.volume import VolumeDiagnoser
    from radvlsm.pipeline.executor import RunTotals
    from radvlsm.pipeline.inputs import InputItem, InputProblem
    from radvlsm.pipeline.modality import Modality
    from radvlsm.pipeline.segment import BoxFilePrompts, DiagnosisStep, PromptSource, Work
    from radvlsm.pipeline.volume import StudyPoints, VolumeStudyWork
    from radvlsm.stage2_segment.modeling import LesionSegmenter
    from radvlsm.stage2_segment.predictor import SegmenterPredictor
    from radvlsm.stage2_segment.volume import VolumeSegmenter

log = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    import torch

    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise typer.BadParameter(f"--device must be cpu or cuda, not {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise typer.BadParameter("--device cuda: no CUDA device is available on this machine")
    return device


TTA_HELP = ("With --prompt: also localize on the mirrored images (horizontal, vertical) and average the relevance "
            "maps; three encoder passes per image instead of one.")
POINTS_HELP = ("CSV of nodule positions for CT studies: \\[study,]x,y,z\\[,diameter_mm] in scanner mm (LIDC's "
               "coordX/Y/Z); rows without a study serve every CT study.")  # \\[: not rich markup
INPUTS_HELP = ("Image files, DICOM series folders, NIfTI volumes, or folders of them (PNG, JPEG, BMP, TIFF, DICOM, "
               "NIfTI).")


def segment(
    inputs: list[Path] = typer.Argument(..., help=INPUTS_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    boxes: Path = typer.Option(None, "--boxes", help="CSV of box prompts: image,x0,y0,x1,y1[,score] (pixels)."),
    points: Path = typer.Option(None, "--points", help=POINTS_HELP),
    prompt: str = typer.Option(
        None, "--prompt", help='Text prompt for the stage-1 localizer ("polyp"); default "lesion" without --boxes.'
    ),
    top_k: int = typer.Option(None, "--top-k", min=1, help="Candidate boxes per image from --prompt (default 5)."),
    tta: bool = typer.Option(False, "--tta", help=TTA_HELP),
    modality: str = typer.Option(
        None, "--modality", help="dermoscopy | colonoscopy | ultrasound | ct: picks the embedded models for it "
        "(default: read from each input: DICOM Modality, NIfTI = ct, grey images = ultrasound, else dermoscopy's)."
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
    """Segment the lesion in each image, from box prompts or from a text prompt, and the nodules of each CT
    study from --points; write masks (NIfTI label maps and DICOM SEG for volumes), overlays, records,
    results.csv (lesions.csv for volumes) and, from a text prompt, the boxes stage 1 proposed in boxes.csv."""
    run_batch(inputs, out, boxes=boxes, points=points, prompt=prompt, top_k=top_k, modality=_modality(modality),
              choice=ModelChoice(model, localizer), batch_size=batch_size, device=device, threads=threads,
              overwrite=overwrite, tta=tta)


def _modality(value: str | None) -> Modality | None:
    from radvlsm.pipeline.modality import Modality

    if value is None:
        return None
    try:
        return Modality(value.strip().lower())
    except ValueError:
        names = ", ".join(m.value for m in Modality)
        raise typer.BadParameter(f"{value!r} is not one of {names}", param_hint="--modality") from None


@dataclass(frozen=True)
class ModelChoice:
    """The models the user named; ``None`` takes the one of each input's modality (:mod:`radvlsm.pipeline.modality`)."""

    model: str | None = None
    localizer: str | None = None
    head: str | None = None
    domain_prompt: str | None = None


def check_head_segmenter(head: DiagnosisHead, seg: LesionSegmenter, head_spec: str, model_spec: str) -> None:
    """Fail early when the head was trained on another segmenter's masks and features (its recorded fingerprint
    differs), or when its visual features cannot come from this segmenter (another embedding size)."""
    from radvlsm.fusion.train import segmenter_fingerprint

    if head.segmenter_fingerprint and head.segmenter_fingerprint != (got := segmenter_fingerprint(seg)):
        raise ConfigError(f"{head_spec}: the diagnosis head was trained on the masks and visual features of the "
                          f"segmenter with fingerprint {head.segmenter_fingerprint}, not of {model_spec!r} "
                          f"({got}); use the head trained with this segmenter (radvlsm train diagnoser --segmenter)")
    visual = [n for n in head.feature_names if n.startswith("visual_")]
    n_seg = 2 * seg.config.embed_dim
    beyond = [n for n in visual if not n.removeprefix("visual_").isdigit() or int(n.removeprefix("visual_")) >= n_seg]
    if beyond:
        raise ConfigError(f"{head_spec}: the diagnosis head reads visual features up to {beyond[-1]}, but the "
                          f"segmenter {model_spec!r} gives {n_seg}; use the head trained with this segmenter "
                          "(radvlsm train diagnoser --segmenter)")


def diagnose(
    inputs: list[Path] = typer.Argument(..., help=INPUTS_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    boxes: Path = typer.Option(None, "--boxes", help="CSV of box prompts: image,x0,y0,x1,y1[,score] (pixels)."),
    points: Path = typer.Option(None, "--points", help=POINTS_HELP),
    prompt: str = typer.Option(
        None, "--prompt", help='Text prompt for the stage-1 localizer ("pigmented lesion"); default "lesion" '
        "without --boxes."
    ),
    top_k: int = typer.Option(None, "--top-k", min=1, help="Candidate boxes per image from --prompt (default 5)."),
    tta: bool = typer.Option(False, "--tta", help=TTA_HELP),
    modality: str = typer.Option(
        None, "--modality", help="dermoscopy | ultrasound | ct: picks the embedded models and head for it "
        "(default: read from each input, as for segment)."
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
    threads: int = typer.Option(
        0, "--threads", min=0, help="CPU threads for the model (0: all cores); with --executor ray, per worker "
        "(0: 1), and the CPUs each worker reserves."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo images already in OUT."),
    executor: str = typer.Option(
        "local", "--executor", help="local: in this process | ray: on Ray worker actors, each loading the models "
        "once (pip install 'radvlsm\\[ray]'); inputs and OUT must then be on storage every node sees."
    ),
    ray_address: str = typer.Option(
        None, "--ray-address", help="With --executor ray: auto (the cluster 'ray start' runs here) or HOST:PORT "
        "of its head node; default: start a local Ray on this machine."
    ),
    workers: int = typer.Option(
        None, "--workers", min=1, help="With --executor ray: worker actors (default: as many as the cluster's "
        "CPUs allow)."
    ),
) -> None:
    """Segment and diagnose the lesion in each image, and each nodule of a CT study given by --points: what
    segment writes, plus each lesion's class probabilities in the records and diagnoses.csv (an image whose
    lesion is not found gets no label)."""
    from radvlsm.pipeline.modality import model_set

    mod = _modality(modality)
    if mod is not None and head is None and model_set(mod).head is None:
        raise typer.BadParameter(f"radvlsm has no diagnosis head for {mod.value}; give one with --head",
                                 param_hint="--modality")
    gate = None if domain_prompt is None else " ".join(domain_prompt.split())
    run_batch(inputs, out, boxes=boxes, points=points, prompt=prompt, top_k=top_k, modality=mod,
              choice=ModelChoice(model, localizer, head, gate), batch_size=batch_size, device=device,
              threads=threads, overwrite=overwrite, diagnose=True,
              executor=_executor(executor, ray_address, workers), tta=tta)


def _executor(kind: str, ray_address: str | None, workers: int | None) -> ExecutorChoice:
    kind = kind.strip().lower()
    if kind not in ("local", "ray"):
        raise typer.BadParameter(f"{kind!r} is not one of local, ray", param_hint="--executor")
    if kind == "local":
        for value, name in ((ray_address, "--ray-address"), (workers, "--workers")):
            if value is not None:
                raise typer.BadParameter("only with --executor ray", param_hint=name)
    if ray_address is not None and not ray_address.strip():
        raise typer.BadParameter("the address is empty (auto, or HOST:PORT of the head node)",
                                 param_hint="--ray-address")
    return ExecutorChoice(kind, None if ray_address is None else ray_address.strip(), workers)


@dataclass(frozen=True)
class ExecutorChoice:
    """Where the studies run: ``local`` (this process) or ``ray`` (worker actors; :mod:`radvlsm.pipeline.executor`),
    on the cluster at ``ray_address`` (``None``: a local Ray started for the run) with ``workers`` actors."""

    kind: str = "local"
    ray_address: str | None = None
    workers: int | None = None


def run_batch(
    inputs: list[Path], out: Path, *, boxes: Path | None, prompt: str | None, top_k: int | None,
    points: Path | None = None,
    modality: Modality | None, choice: ModelChoice, batch_size: int, device: str, threads: int, overwrite: bool,
    diagnose: bool = False, executor: ExecutorChoice | None = None, tta: bool = False,
) -> None:
    """What ``segment`` and ``diagnose`` share: check the options, find the inputs, and run each modality's
    inputs with that modality's models (or those the user named), in this process or on Ray workers; assemble
    the CSVs from the records at the end and report failures. With ``diagnose`` every lesion found is diagnosed
    too. Studies already done in ``out`` are left alone (``overwrite`` redoes them); a group with nothing left
    to do loads no model."""
    import torch

    from radvlsm.pipeline.executor import ray_session
    from radvlsm.pipeline.inputs import InputProblem, discover_inputs
    from radvlsm.pipeline.modality import group_by_modality
    from radvlsm.pipeline.outputs import OutputFolder
    from radvlsm.pipeline.prompts import read_boxes_csv
    from radvlsm.pipeline.segment import TTA_FLIPS, BoxFilePrompts, plan_studies, study_done, write_summaries
    from radvlsm.pipeline.volume import StudyPoints
    from radvlsm.stage1_localize.phrases import DEFAULT_PROMPT

    executor = executor or ExecutorChoice()
    if boxes is not None and (prompt is not None or top_k is not None):
        raise typer.BadParameter("give either --boxes or --prompt/--top-k, not both", param_hint="--boxes")
    if boxes is not None and tta:
        raise typer.BadParameter("--tta mirrors the images for the text prompt's localizer; --boxes has none",
                                 param_hint="--tta")
    if prompt is not None and not prompt.strip():
        raise typer.BadParameter("the prompt is empty", param_hint="--prompt")
    dev = resolve_device(device)
    if threads and executor.kind == "local":
        torch.set_num_threads(threads)
    text = None if boxes is not None else " ".join((prompt or DEFAULT_PROMPT).split())
    try:
        box_file = BoxFilePrompts(read_boxes_csv(boxes)) if boxes is not None else None
        study_points = StudyPoints.read(points) if points is not None else None
    except RadvlsmError as exc:
        log.error("%s", exc)
        raise typer.Exit(2) from exc
    ensure_output_folder(out)
    items, problems = discover_inputs(inputs)
    items, problems = _outside(out, items, problems)
    known = {it.case_id for it in items}
    unused: list[InputProblem] = []  # rows of the prompt files that name no input
    if box_file is not None:
        for cid in sorted(set(box_file.boxes.by_case) - known):
            row = box_file.boxes.by_case[cid][0]
            unused.append(InputProblem(boxes, f"line {row.line}: image {row.image!r} is not among the inputs"))
    if study_points is not None and points is not None:
        unused += [InputProblem(points, f"study {cid!r} is not among the inputs")
                   for cid in sorted(study_points.studies() - known)]
    if not items:
        log.error("no input images found in %s", ", ".join(map(str, inputs)))
        raise typer.Exit(1)
    groups = group_by_modality(items, modality)
    failed: list[InputProblem] = [*problems, *unused]
    written = skipped = 0
    ran = False
    group_errors: list[str] = []
    t0 = time.perf_counter()
    progress = Progress(TextColumn("diagnose" if diagnose else "segment"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console)
    plans = [(mod, group, *plan_studies(out, group, diagnose=diagnose, overwrite=overwrite)) for mod, group in groups]
    ray_needed = executor.kind == "ray" and any(todo for _, _, todo, _ in plans)
    try:
        with progress, ray_session(executor.ray_address) if ray_needed else contextlib.nullcontext():
            task = progress.add_task("studies", total=len(items))

            def advance(n: int) -> None:
                progress.advance(task, n)

            for mod, group, todo, done in plans:
                if len(groups) > 1:
                    log.info("%d input(s) of modality %s", len(group),
                             mod.value if mod else "unknown (default models)")
                if done:
                    log.info("%d image(s) already done in %s (use --overwrite to redo them)", len(done), out)
                    skipped += len(done)
                    advance(len(done))
                if not todo:
                    continue
                spec = PipelineSpec(mod, choice, box_file, text, top_k, dev, batch_size, diagnose, out, threads,
                                    study_points, TTA_FLIPS if tta else ())
                try:
                    totals = _run_group(spec, todo, executor, advance, overwrite)
                except RadvlsmError as exc:
                    group_errors.append(str(exc))
                    left = [it for it in todo if not study_done(OutputFolder(out), it.case_id, diagnose=diagnose)]
                    failed += [InputProblem(it.path, str(exc)) for it in left]
                    advance(len(left))
                    continue
                ran = True
                written += len(totals.written)
                skipped += len(totals.found_done)
                failed += totals.problems
    except RadvlsmError as exc:  # Ray could not be reached or started
        log.error("%s", exc)
        raise typer.Exit(2) from exc
    except KeyboardInterrupt:
        log.warning("interrupted: what is written in %s stays; a rerun does the rest", out)
        raise typer.Exit(130) from None
    if group_errors and not ran:  # nothing could run (a --head or --model that is missing, say): an error
        for message in dict.fromkeys(group_errors):
            log.error("%s", message)
        raise typer.Exit(2)
    write_summaries(out, failed, diagnose=diagnose)
    seconds = time.perf_counter() - t0
    if diagnose:
        log.info("diagnoses → %s", out / "diagnoses.csv")
    log.info("%d image(s) segmented, %d already done, %d failed%s in %.1f s (%.1f images/s) → %s", written, skipped,
             len(failed) - len(unused), f", {len(unused)} prompt row(s) for no input" if unused else "", seconds,
             written / seconds if seconds > 0 else float("nan"), out)
    if failed:
        log.warning("failed inputs (also in %s):", out / "errors.csv")
        for p in failed:
            log.warning("  %s: %s", p.path, p.reason)


def _outside(out: Path, items: list[InputItem], problems: list[InputProblem]
             ) -> tuple[list[InputItem], list[InputProblem]]:
    """Leave out what lies in the output folder's own subfolders (an input folder that holds the output folder):
    its masks and overlays are this command's outputs, not inputs."""
    from radvlsm.pipeline.outputs import OutputFolder

    roots = [d.resolve() for d in OutputFolder(out).written_folders]

    def written(p: Path) -> bool:
        r = p.resolve()
        return any(r.is_relative_to(d) for d in roots)

    kept = [it for it in items if not written(it.path)]
    if len(kept) < len(items):
        log.info("%d file(s) in the output folder's masks/, overlays/, seg/ left out of the inputs",
                 len(items) - len(kept))
    return kept, [p for p in problems if not written(p.path)]


@dataclass(frozen=True)
class PipelineSpec:
    """What one modality's pipeline is made of, by name: a worker (this process, or a Ray actor on another
    machine) rebuilds the models from it (:meth:`build`); the models themselves never travel."""

    modality: Modality | None
    choice: ModelChoice
    box_file: BoxFilePrompts | None
    text: str | None
    top_k: int | None
    device: str
    batch_size: int
    diagnose: bool
    out: Path
    threads: int = 0
    points: StudyPoints | None = None
    flips: tuple[str, ...] = ()

    def build(self) -> Work:
        """Load the models (:func:`_load_pipeline`, :func:`_load_volume_work` for CT) and return the per-study
        work writing into ``out``."""
        import torch

        from radvlsm.pipeline.segment import StudyWork

        if self.threads:
            torch.set_num_threads(self.threads)
        if self.modality is not None and self.modality.is_volume:
            return _load_volume_work(self)
        run = _load_pipeline(self.modality, self.choice, self.box_file, self.text, self.top_k, self.device,
                             self.batch_size, self.diagnose, self.flips)
        return StudyWork(self.out, run.predictor, run.prompts, model_name=run.model, prompt_text=self.text,
                         diagnosis=run.step)


@dataclass(frozen=True)
class _Pipeline:
    predictor: SegmenterPredictor
    prompts: PromptSource
    model: str
    step: DiagnosisStep | None


def _localizer_for(model: str, fallback: str) -> str:
    """The localizer that reads ``model``'s features: the embedded one of the same name for an embedded
    segmenter (``default``, ``ultrasound``), else ``fallback`` (checked against the segmenter when loaded)."""
    from radvlsm.stage1_localize.build import EMBEDDED_LOCALIZERS

    return model if model in EMBEDDED_LOCALIZERS else fallback


def _load_pipeline(
    modality: Modality | None, choice: ModelChoice, box_file: BoxFilePrompts | None, text: str | None,
    top_k: int | None, device: str, batch_size: int, diagnose: bool, flips: tuple[str, ...] = (),
) -> _Pipeline:
    """Load the models for one modality's inputs (the user's choices first, then the modality's)."""
    from radvlsm.fusion.predictor import Diagnoser, load_head
    from radvlsm.pipeline.modality import model_set
    from radvlsm.pipeline.segment import DiagnosisStep, LocalizerPrompts
    from radvlsm.stage1_localize.build import check_segmenter, load_localizer
    from radvlsm.stage1_localize.predictor import LocalizerPredictor
    from radvlsm.stage1_localize.text import TextEncoder
    from radvlsm.stage2_segment.build import load_segmenter
    from radvlsm.stage2_segment.predictor import SegmenterPredictor

    models = model_set(modality)
    model = choice.model or models.segmenter
    seg = load_segmenter(model)
    dhead = head_spec = None
    if diagnose:  # checked first: the head is what diagnose is about
        head_spec = choice.head or models.head
        if head_spec is None:
            raise ConfigError(f"radvlsm has no diagnosis head for {modality.value if modality else 'these'} "
                              "images; give one with --head")
        dhead = load_head(head_spec)
        check_head_segmenter(dhead, seg, head_spec, model)
    gate_prompt = models.domain_prompt if choice.domain_prompt is None else choice.domain_prompt
    loc_predictor = None
    if box_file is None or (diagnose and gate_prompt):
        loc = load_localizer(choice.localizer or _localizer_for(model, models.localizer))
        check_segmenter(loc.config, seg, strict=False)
        loc_predictor = LocalizerPredictor(loc, TextEncoder(), device=device)
    prompts: PromptSource
    if box_file is not None:
        prompts = box_file
    else:
        assert loc_predictor is not None and text is not None  # loaded above whenever there are no boxes
        prompts = LocalizerPrompts(loc_predictor, text, top_k, flips=flips)
    predictor = SegmenterPredictor(seg, device=device, encoder_batch=batch_size)
    step = None
    if dhead is not None and head_spec is not None:
        step = DiagnosisStep(Diagnoser(dhead), head_spec, loc_predictor, gate_prompt)
    return _Pipeline(predictor, prompts, model, step)


def _load_volume_work(spec: PipelineSpec) -> VolumeStudyWork:
    """The CT pipeline: the modality's (or the user's) segmenter through
    :class:`~radvlsm.stage2_segment.volume.VolumeSegmenter`, and with ``diagnose`` its volume head."""
    from radvlsm.pipeline.modality import model_set
    from radvlsm.pipeline.volume import VolumeDiagnosisStep, VolumeStudyWork
    from radvlsm.stage2_segment.build import load_segmenter
    from radvlsm.stage2_segment.predictor import SegmenterPredictor
    from radvlsm.stage2_segment.volume import VolumeSegmenter

    models = model_set(spec.modality)
    model = spec.choice.model or models.segmenter
    segmenter = VolumeSegmenter(SegmenterPredictor(load_segmenter(model), device=spec.device))
    step = None
    if spec.diagnose:
        head_spec = spec.choice.head or models.head
        if head_spec is None:
            raise ConfigError("radvlsm has no diagnosis head for CT studies; give one with --head")
        step = VolumeDiagnosisStep(load_volume_diagnoser(head_spec, segmenter), head_spec)
    return VolumeStudyWork(spec.out, segmenter, spec.points, model_name=model, diagnosis=step)


def load_volume_diagnoser(head_spec: str, segmenter: VolumeSegmenter) -> VolumeDiagnoser:
    """The volume diagnosis head ``head_spec`` reading ``segmenter``'s features."""
    from radvlsm.fusion.predictor import load_head
    from radvlsm.fusion.volume import VolumeDiagnoser

    return VolumeDiagnoser(load_head(head_spec), segmenter)


def _run_group(spec: PipelineSpec, todo: list[InputItem], executor: ExecutorChoice,
               advance: Callable[[int], None], overwrite: bool) -> RunTotals:
    """Run one modality's studies still to do with ``executor``; raises :class:`RadvlsmError` when its models
    cannot be loaded (before anything in OUT is touched: ``--overwrite`` forgets the old records only then)."""
    from radvlsm.pipeline.executor import RayOptions, absolute_items, run_local, run_ray
    from radvlsm.pipeline.segment import forget_studies

    def ready() -> None:
        if overwrite:
            forget_studies(spec.out, todo)

    if executor.kind == "local":
        work = spec.build()
        ready()
        return run_local(work, todo, batch_size=spec.batch_size, on_progress=advance)
    cpus = spec.threads or 1
    spec = replace(spec, out=spec.out.absolute(), threads=cpus)  # workers do not run in this folder
    options = RayOptions(address=executor.ray_address, workers=executor.workers, cpus_per_worker=cpus,
                         gpus_per_worker=1.0 if spec.device.startswith("cuda") else 0.0)
    return run_ray(spec, absolute_items(todo), batch_size=spec.batch_size, options=options, on_progress=advance,
                   on_ready=ready)

"""``radvlsm train …``: thin wrappers over the training recipes."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from radvlsm.cli.logsetup import console
from radvlsm.cli.outdir import check_output_folder
from radvlsm.data.paths import shared_datasets_root

if TYPE_CHECKING:
    from radvlsm.stage2_segment.train import TrainingDomain

log = logging.getLogger(__name__)


def _export(final: Path, export: Path) -> None:
    """Copy the files of a run's ``final/`` folder into ``export``."""
    export.mkdir(parents=True, exist_ok=True)
    for f in final.iterdir():
        if f.is_file():
            shutil.copy2(f, export / f.name)
    log.info("exported the trained model to %s", export)


def segmenter(
    data: Path = typer.Option(
        None, "--data", help="Folder holding ph2/ and kvasir-seg/ (default: ../shared/datasets)."
    ),
    out: Path = typer.Option(Path("runs/segmenter"), "--out", "-o", help="Run folder: checkpoint, log, final model."),
    epochs: int = typer.Option(80, min=1, help="Training epochs."),
    batch_size: int = typer.Option(16, min=2, help="Images per step (each with several box candidates)."),
    threads: int = typer.Option(2, min=1, help="CPU threads."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint.pt."),
    box_prior: bool = typer.Option(False, "--box-prior", help="Feed the box's inscribed ellipse as a dense prior."),
    domain: str = typer.Option(
        "dermoscopy-colonoscopy", "--domain",
        help="Training data: dermoscopy-colonoscopy (PH2 + Kvasir-SEG) or ultrasound (BUSI + BUS-BRA).",
    ),
    init_from: str = typer.Option(
        "", "--init-from", help="Start from this model's weights (default | model folder) instead of at random."
    ),
    lr: float = typer.Option(1e-3, min=0.0, help="Peak learning rate."),
    export: Path = typer.Option(None, "--export", help="Copy the final model (safetensors + config) here."),
) -> None:
    """Train the box-prompted segmenter on the training splits of one domain's datasets."""
    from radvlsm.errors import RadvlsmError
    from radvlsm.stage2_segment.config import SegmenterConfig
    from radvlsm.stage2_segment.train import TrainConfig, TrainingDomain, train_segmenter

    dom = _domain(domain)
    root = data or shared_datasets_root()
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, threads=threads, model=SegmenterConfig(box_prior=box_prior),
                      domain=dom, init_from=init_from, lr=lr, upright=dom is TrainingDomain.ULTRASOUND)
    _prepare_run(out, resume)
    try:
        train_segmenter(root, out, cfg, resume=resume, console=console)
    except RadvlsmError as exc:
        log.error("%s", exc)
        raise typer.Exit(2) from exc
    if export is not None:
        _export(out / "final", export)


def _prepare_run(out: Path, resume: bool) -> None:
    """The run folder is a folder or can be made one (exit 2 otherwise); ``--resume`` without a checkpoint says so."""
    check_output_folder(out)
    if resume and not (out / "checkpoint.pt").is_file():
        log.warning("--resume: no checkpoint.pt in %s, so the run starts from the first epoch", out)


def _domain(value: str) -> TrainingDomain:
    from radvlsm.stage2_segment.train import TrainingDomain

    try:
        return TrainingDomain(value)
    except ValueError:
        names = ", ".join(d.value for d in TrainingDomain)
        raise typer.BadParameter(f"{value!r} is not one of {names}", param_hint="--domain") from None


def localizer(
    data: Path = typer.Option(
        None, "--data", help="Folder holding ph2/ and kvasir-seg/ (default: ../shared/datasets)."
    ),
    segmenter_spec: str = typer.Option(
        "default", "--segmenter", help="The segmenter whose image features the localizer reads (default | folder)."
    ),
    out: Path = typer.Option(Path("runs/localizer"), "--out", "-o", help="Run folder: checkpoint, log, final model."),
    epochs: int = typer.Option(30, min=1, help="Training epochs."),
    batch_size: int = typer.Option(32, min=2, help="Images per step (one positive, two negative phrases each)."),
    threads: int = typer.Option(2, min=1, help="CPU threads."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint.pt (features cached there)."),
    init_qformer: Path = typer.Option(
        None, "--init-qformer", help="Initialise the Q-Former from an official BLIP-2 folder (Hugging Face format)."
    ),
    domain: str = typer.Option(
        "dermoscopy-colonoscopy", "--domain",
        help="Training data (that of the segmenter): dermoscopy-colonoscopy or ultrasound (BUSI + BUS-BRA).",
    ),
    context_blocks: int = typer.Option(
        4, "--context-blocks", min=0, help="Prompt-modulated context blocks on the relevance map's keys (0: none)."
    ),
    augmentations: str = typer.Option(
        "identity,hflip,vflip,rot90,rot270,transpose", "--augmentations",
        help="Comma-separated cached augmentations (identity, hflip, vflip, rot90, rot270, transpose).",
    ),
    image_branch: bool = typer.Option(
        False, "--image-branch/--no-image-branch",
        help="Give the localizer its own copy of the segmenter's last encoder stage, trained on the stride-8 "
        "features (the segmenter stays frozen).",
    ),
    normal_repeat: int = typer.Option(4, "--normal-repeat", min=1,
                                      help="Ultrasound: times each BUSI normal image is drawn per epoch."),
    normal_rejection: float = typer.Option(
        0.95, "--normal-rejection", min=0.0, max=1.0,
        help="Ultrasound: set the matching threshold to the least (0.5 to 0.95) that rejects this share of the "
        "validation images without a lesion (0: keep 0.5).",
    ),
    branch_lr_scale: float = typer.Option(0.3, "--branch-lr-scale", min=0.0,
                                          help="Learning rate of the image branch, as a share of the localizer's."),
    export: Path = typer.Option(None, "--export", help="Copy the final model (safetensors + config) here."),
) -> None:
    """Train the text-prompted localizer on the frozen segmenter's features (the training splits of one domain)."""
    import torch

    from radvlsm.errors import RadvlsmError
    from radvlsm.stage1_localize.config import LocalizerConfig
    from radvlsm.stage1_localize.train import LocalizerTrainConfig, train_localizer
    from radvlsm.stage2_segment.build import load_segmenter

    torch.set_num_threads(threads)
    root = data or shared_datasets_root()
    cfg = LocalizerTrainConfig(epochs=epochs, batch_size=batch_size, threads=threads, domain=_domain(domain),
                               init_qformer=str(init_qformer) if init_qformer else "",
                               augmentations=tuple(a.strip() for a in augmentations.split(",") if a.strip()),
                               image_branch=image_branch, branch_lr_scale=branch_lr_scale,
                               normal_repeat=normal_repeat, normal_rejection=normal_rejection or None,
                               model=LocalizerConfig(map_context_blocks=context_blocks))
    _prepare_run(out, resume)
    try:
        seg = load_segmenter(segmenter_spec)
        train_localizer(seg, root, out, cfg, resume=resume, console=console, segmenter_name=segmenter_spec)
    except RadvlsmError as exc:
        log.error("%s", exc)
        raise typer.Exit(2) from exc
    if export is not None:
        _export(out / "final", export)


def diagnoser(
    data: Path = typer.Option(
        None, "--data", help="Folder holding ph2/, busi/ and bus-bra/, or lidc-nodules/ (default: "
        "../shared/datasets)."
    ),
    task_name: str = typer.Option(
        "ph2", "--task",
        help="What the head tells apart: ph2 (PH2 dermoscopy, 3 classes, melanoma AUC), breast-ultrasound "
             "(BUSI lesions + BUS-BRA, benign vs malignant; folds 1-5, fold 1 = BUSI test + BUS-BRA fold 1) or "
             "lidc (LIDC CT nodules, benign vs malignant from 3-D features; folds 1-5 by patient from train+val, "
             "the test patients held out; use --segmenter ct).",
    ),
    segmenter_spec: str = typer.Option(
        "default", "--segmenter", help="The segmenter giving the visual features (default | model folder | spec)."
    ),
    out: Path = typer.Option(
        Path("runs/diagnoser"), "--out", "-o", help="Run folder: feature cache, CV report, final head."
    ),
    masks: str = typer.Option(
        "gt", "--masks",
        help="Lesion masks for the features: gt (the experts') or predicted (the segmenter's, from the "
             "ground-truth box, as radvlsm diagnose --boxes does).",
    ),
    threads: int = typer.Option(2, min=1, help="CPU threads (segmenter and xgboost)."),
    export: Path = typer.Option(None, "--export", help="Copy the final head (head.json, booster.json, card) here."),
) -> None:
    """Train the diagnosis head of one task (PH2 dermoscopy, breast ultrasound or LIDC CT nodules): lesion
    features, cross-validation on the task's 5 folds (ablations radiomics / visual / colour / fused), then the final
    head on all cases with its model card."""
    import torch

    from radvlsm.errors import RadvlsmError
    from radvlsm.fusion.head import HeadConfig
    from radvlsm.fusion.tasks import TASKS
    from radvlsm.fusion.train import DiagnoserConfig, MaskMode, train_diagnoser
    from radvlsm.stage2_segment.build import load_segmenter

    modes = [m.value for m in MaskMode]
    if masks not in modes:
        raise typer.BadParameter(f"{masks!r} is not one of {', '.join(modes)}", param_hint="--masks")
    if task_name not in TASKS:
        raise typer.BadParameter(f"{task_name!r} is not one of {', '.join(TASKS)}", param_hint="--task")
    torch.set_num_threads(threads)
    root = data or shared_datasets_root()
    cfg = DiagnoserConfig(masks=MaskMode(masks), head=HeadConfig(threads=threads), task=TASKS[task_name])
    check_output_folder(out)
    try:
        seg = load_segmenter(segmenter_spec)
        report = train_diagnoser(root, out, seg, cfg, segmenter_name=segmenter_spec, console=console)
    except RadvlsmError as exc:
        log.error("%s", exc)
        raise typer.Exit(2) from exc
    _print_scores(report)
    if export is not None:
        _export(report.final_dir, export)


def _print_scores(report: object) -> None:
    from rich.table import Table

    from radvlsm.fusion.tasks import TASKS
    from radvlsm.fusion.train import DiagnoserReport

    if not isinstance(report, DiagnoserReport):
        raise TypeError(f"expected a DiagnoserReport, not {type(report).__name__}")
    data = TASKS[report.task].title if report.task in TASKS else report.task
    table = Table(title=f"{data}, {report.n_cases} cases, {report.masks.value} masks: "
                        f"cross-validated on {len(report.folds)} folds")
    for col in ("features", "n", f"{report.positive_class} AUC [95% CI]", "accuracy", "balanced acc."):
        table.add_column(col, justify="left" if col == "features" else "right")
    for s in (*report.scores, *report.holdout_fold_scores):
        table.add_row(s.features, str(s.n_features),
                      f"{s.positive_auc:.3f} [{s.positive_auc_low:.3f}, {s.positive_auc_high:.3f}]",
                      f"{s.accuracy:.3f}", f"{s.balanced_accuracy:.3f}")
    console.print(table)

"""``radvlsm report``: findings and reports (JSON, Markdown, HTML) per case, and an index page."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from radvlsm.cli.logsetup import console
from radvlsm.cli.outdir import ensure_output_folder
from radvlsm.errors import RadvlsmError

log = logging.getLogger(__name__)

InputsArg = Annotated[
    list[Path],
    typer.Argument(
        help="Output folders of 'radvlsm segment' / 'diagnose' (with records/ and masks/), or image files and "
        "folders together with --masks.",
    ),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", file_okay=False, help="Output folder.")]
MasksOpt = Annotated[
    Path | None,
    typer.Option("--masks", file_okay=False, help="Folder of lesion masks for image inputs, paired by case id (file "
                 "name without extension: IMD002.jpg ↔ IMD002.png)."),
]
DiagnosesOpt = Annotated[
    Path | None,
    typer.Option("--diagnoses", dir_okay=False, help="diagnoses.csv of the diagnosis stage (read automatically "
                 "from a segment/diagnose folder that holds one)."),
]
ModalityOpt = Annotated[
    str,
    typer.Option("--modality", help="auto (from DICOM), dermoscopy, ultrasound, ct, endoscopy or other: decides "
                 "which findings apply. Plain image files carry no modality."),
]
SpacingOpt = Annotated[
    float | None,
    typer.Option("--pixel-spacing", min=0.0, help="In-plane pixel spacing in mm for images that do not carry one "
                 "(sizes are otherwise reported in pixels)."),
]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Redo cases already reported in OUT.")]
LlmUrlOpt = Annotated[
    str | None,
    typer.Option("--llm-url", help="OpenAI-compatible endpoint (e.g. http://localhost:8000/v1) to rewrite the "
                 "template as prose; default $RADVLSM_LLM_URL. Nothing is contacted unless a URL and a model are set."),
]
LlmModelOpt = Annotated[str | None, typer.Option("--llm-model", help="Model name; default $RADVLSM_LLM_MODEL.")]
LlmKeyOpt = Annotated[
    str | None,
    typer.Option("--llm-api-key", help="API key; default $RADVLSM_LLM_API_KEY (prefer the variable: options show "
                 "in the process list). Never logged or written.", show_default=False),
]
LlmTimeoutOpt = Annotated[float, typer.Option("--llm-timeout", min=0.1, help="Seconds to wait for the endpoint.")]


def report(
    inputs: InputsArg,
    out: OutOpt,
    masks: MasksOpt = None,
    diagnoses: DiagnosesOpt = None,
    modality: ModalityOpt = "auto",
    pixel_spacing: SpacingOpt = None,
    overwrite: OverwriteOpt = False,
    llm_url: LlmUrlOpt = None,
    llm_model: LlmModelOpt = None,
    llm_api_key: LlmKeyOpt = None,
    llm_timeout: LlmTimeoutOpt = 60.0,
) -> None:
    """Measure the findings of each lesion and write OUT/reports/<case>.json, .md, .html and OUT/index.html.

    Cases that fail are listed in OUT/errors.csv and the batch goes on. Exit code 2 for unusable options or
    inputs (e.g. images without masks), 1 when no case could be reported.
    """
    from radvlsm.reporting.batch import (
        ReportSettings,
        collect_jobs,
        load_diagnoses,
        run_reports,
    )
    from radvlsm.reporting.findings import MODALITIES
    from radvlsm.reporting.llm import LlmClient, LlmConfig, LlmRewriter

    mod = modality.strip().lower()
    if mod != "auto" and mod not in MODALITIES:
        raise typer.BadParameter(f"choose auto, {', '.join(MODALITIES)}; not {modality!r}", param_hint="--modality")
    if pixel_spacing is not None and not 1e-4 <= pixel_spacing <= 100:
        raise typer.BadParameter(f"{pixel_spacing:g} mm is not a pixel spacing: give one between 0.0001 and 100 mm",
                                 param_hint="--pixel-spacing")
    try:
        llm_cfg = LlmConfig.resolve(llm_url, llm_model, llm_api_key, llm_timeout)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--llm-url / --llm-model") from exc
    try:
        collected = collect_jobs(inputs, masks)
        files = list(collected.diagnoses_files) + ([diagnoses] if diagnoses is not None else [])
        dx = load_diagnoses(files)
    except RadvlsmError as exc:
        log.error("%s", exc)
        raise typer.Exit(2) from exc
    if files:
        log.info("diagnoses of %d case(s) read from %s", len(dx), ", ".join(map(str, files)))
    else:
        log.info("no diagnoses.csv: the reports say that no diagnosis was run")
    if not collected.jobs and not collected.problems:
        log.error("no input images found in %s", ", ".join(map(str, inputs)))
        raise typer.Exit(1)
    llm = None
    if llm_cfg is not None:
        log.info("LLM prose from %s (model %s); every fact it states is checked", llm_cfg.endpoint, llm_cfg.model)
        llm = LlmRewriter(LlmClient(llm_cfg))
    out_res = out.resolve()
    errors_name = "report_errors.csv" if any(f.resolve() == out_res for f in collected.segment_folders) \
        else "errors.csv"
    settings = ReportSettings(modality=mod, pixel_spacing_mm=pixel_spacing, overwrite=overwrite)
    ensure_output_folder(out)
    progress = Progress(TextColumn("report"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)
    with progress:
        task = progress.add_task("report", total=len(collected.jobs))
        summary = run_reports(
            collected.jobs, out, settings=settings, diagnoses=dx, llm=llm, problems=collected.problems,
            errors_name=errors_name, on_progress=lambda n: progress.advance(task, n),
        )
    log.info("%d case(s) reported, %d already done, %d failed in %.1f s → %s", summary.written, summary.skipped,
             len(summary.failed), summary.seconds, out / "index.html")
    if llm is not None:
        log.info("LLM prose: %s", ", ".join(f"{k} {v}" for k, v in sorted(summary.llm.items())) or "none")
    if summary.failed:
        log.warning("failed inputs (also in %s):", summary.errors_csv)
        for p in summary.failed:
            log.warning("  %s: %s", p.path, p.reason)
    if summary.written + summary.skipped == 0:
        raise typer.Exit(1)

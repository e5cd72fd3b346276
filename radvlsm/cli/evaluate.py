"""``radvlsm evaluate``: score a folder of predicted masks against a folder of ground-truth masks."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from radvlsm.cli.logsetup import case_progress, console
from radvlsm.errors import RadvlsmError

if TYPE_CHECKING:
    from radvlsm.metrics.folder import FolderEvaluation

log = logging.getLogger(__name__)

#: At most this many missing / failed cases are listed on the console (the CSV lists them all).
MAX_LISTED = 50

_LABELS = {"dice": "Dice", "iou": "IoU", "hd95": "HD95", "assd": "ASSD"}


def parse_spacing(text: str | None) -> tuple[float, ...] | None:
    """``"0.5,0.5"`` → ``(0.5, 0.5)``; ``None`` or an empty string → ``None``."""
    if text is None or not text.strip():
        return None
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r} is not a comma-separated list of numbers (e.g. 0.5,0.5)", param_hint="--spacing"
        ) from exc
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise typer.BadParameter(f"{text!r}: every spacing must be a positive number", param_hint="--spacing")
    return values


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.3f}"


def _summary_table(ev: FolderEvaluation) -> Table:
    unit = ev.unit or "px"
    table = Table(title=f"Segmentation metrics ({len(ev.evaluated)} cases evaluated)")
    table.add_column("metric")
    for col in ("mean", "median", "std", "n"):
        table.add_column(col, justify="right")
    for name, label in _LABELS.items():
        s = ev.summary[name]
        if name in ("hd95", "assd"):
            label = f"{label} [{unit}]"
        table.add_row(Text(label), _fmt(s.mean), _fmt(s.median), _fmt(s.std), str(s.n))
    return table


PredDir = Annotated[
    Path,
    typer.Argument(
        exists=True, file_okay=False, dir_okay=True, readable=True, help="Folder of predicted masks."
    ),
]
GtDir = Annotated[
    Path,
    typer.Argument(
        exists=True, file_okay=False, dir_okay=True, readable=True, help="Folder of ground-truth masks."
    ),
]
OutputCsv = Annotated[
    Path, typer.Option("--output", "-o", dir_okay=False, help="Per-case CSV to write (atomically).")
]
SpacingOpt = Annotated[
    str | None,
    typer.Option(
        "--spacing",
        help="Pixel size in mm per array axis, comma-separated, e.g. 0.5,0.5 (row, column), or one value for "
        "every axis; distances are then in mm. Default: the header spacing of volume files, pixels for plain "
        "images.",
    ),
]


def evaluate(
    pred_dir: PredDir,
    gt_dir: GtDir,
    output: OutputCsv = Path("metrics.csv"),
    spacing: SpacingOpt = None,
) -> None:
    """Score predicted masks against ground-truth masks, paired by case id (file name without extension).

    Writes Dice, IoU, HD95 and ASSD per case to the CSV, prints their mean, median and standard deviation,
    and lists cases missing on either side or failing to read. Exit code 1 when no case could be evaluated.
    """
    from radvlsm.metrics.folder import evaluate_folders

    sp = parse_spacing(spacing)
    with case_progress("evaluating") as _advance:
        try:
            ev = evaluate_folders(pred_dir, gt_dir, sp, progress=_advance)
        except (RadvlsmError, ValueError) as exc:
            log.error("%s", exc)
            raise typer.Exit(2) from exc

    if not ev.cases:
        log.error("no mask files found in %s or %s", pred_dir, gt_dir)
        raise typer.Exit(1)

    try:
        ev.write_csv(output)
    except OSError as exc:
        log.error("cannot write %s: %s", output, exc)
        raise typer.Exit(2) from exc
    log.info("per-case metrics written to %s", output)

    if ev.evaluated:
        console.print(_summary_table(ev))
        if ev.n_nan_hd95:
            console.print(
                f"HD95/ASSD undefined (NaN) for {ev.n_nan_hd95} case(s) whose mask is empty on exactly "
                "one side."
            )

    problems = [*ev.missing_pred, *ev.missing_gt, *ev.errors]
    if problems:
        console.print(
            f"{len(ev.missing_pred)} case(s) without prediction, {len(ev.missing_gt)} without ground truth, "
            f"{len(ev.errors)} failed:",
            markup=False,
        )
        for case in problems[:MAX_LISTED]:
            console.print(f"  {case.case_id}  {case.status}  {case.reason}", markup=False, highlight=False)
        if len(problems) > MAX_LISTED:
            console.print(f"  … and {len(problems) - MAX_LISTED} more (see {output})", markup=False)

    if not ev.evaluated:
        log.error(
            "nothing evaluated: no case has a readable prediction and ground truth of the same size "
            "(%d missing prediction, %d missing ground truth, %d failed); see %s",
            len(ev.missing_pred), len(ev.missing_gt), len(ev.errors), output,
        )
        raise typer.Exit(1)

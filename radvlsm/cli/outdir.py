"""The output folder of a command: created up front, or a clear error before any work is done."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

log = logging.getLogger(__name__)


def ensure_output_folder(out: Path) -> None:
    """Create ``out`` (and its parents) and check that it can be written to.

    Raises:
        typer.Exit: code 2, after logging which folder and why (a file of that name, no permission …).
    """
    check_output_folder(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.error("%s: cannot create the output folder: %s", out, exc.strerror or exc)
        raise typer.Exit(2) from exc
    if not os.access(out, os.W_OK | os.X_OK):
        log.error("%s: the output folder is not writable", out)
        raise typer.Exit(2)


def check_output_folder(out: Path) -> None:
    """Check, without creating anything, that ``out`` is a folder or can be made one (for commands that create it
    themselves once their inputs are known to be good).

    Raises:
        typer.Exit: code 2, after logging which folder and why.
    """
    if out.exists() and not out.is_dir():
        log.error("%s: is a file; the output must be a folder (-o/--out)", out)
        raise typer.Exit(2)
    parent = out.resolve()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        log.error("%s: cannot create the output folder: %s is a file", out, parent)
        raise typer.Exit(2)
    if not os.access(parent, os.W_OK | os.X_OK):
        log.error("%s: cannot create the output folder: %s is not writable", out, parent)
        raise typer.Exit(2)

"""Logging for the command line: rich-formatted, to stderr."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

#: The console all commands share for progress bars and tables (stderr: stdout stays clean for data).
console = Console(stderr=True)


def setup_logging(verbosity: int) -> None:
    """``verbosity``: -1 quiet (warnings), 0 info, 1 debug."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    handler = RichHandler(console=console, show_path=False, show_time=False, markup=False)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    for noisy in ("radiomics", "PIL", "matplotlib", "urllib3", "httpx", "transformers"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


@contextmanager
def case_progress(label: str) -> Iterator[Callable[[int, int, str], None]]:
    """A transient progress bar over cases; yields ``advance(done, total, case_id)`` (the ``on_progress``
    callback of the folder functions), which shows the current case's name."""
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def advance(done: int, total: int, case_id: str) -> None:
            bar.update(task, completed=done, total=total, description=escape(case_id))

        yield advance

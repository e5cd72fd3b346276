"""Logging for the command line: rich-formatted, to stderr."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler

#: The console all commands share for progress bars and tables (stderr: stdout stays clean for data).
console = Console(stderr=True)


def setup_logging(verbosity: int) -> None:
    """``verbosity``: -1 quiet (warnings), 0 info, 1 debug."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    handler = RichHandler(console=console, show_path=False, show_time=False, markup=False)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    for noisy in ("radiomics", "PIL", "matplotlib", "urllib3", "httpx", "transformers"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))

"""The project's exception types.

Every failure caused by user input is raised as a :class:`RadvlsmError` subclass whose message names the
offending file (or study) and the reason, so that a batch can log it, list it in ``errors.csv`` and go on.
"""

from __future__ import annotations

from pathlib import Path


class RadvlsmError(Exception):
    """Base class of every error radvlsm raises on purpose."""


class InputError(RadvlsmError):
    """A user-supplied file or value cannot be used.

    Attributes:
        path: the file (or folder) at fault, or ``None`` when the input is not a file.
        reason: a short, human-readable reason, without the path.
    """

    def __init__(self, path: str | Path | None, reason: str) -> None:
        self.path = Path(path) if path is not None else None
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path is not None else reason)


class ImageReadError(InputError):
    """An image, volume or mask could not be read."""


class ConfigError(RadvlsmError):
    """A model, parameter or configuration file is invalid."""

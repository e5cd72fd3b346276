"""Where the shared datasets live."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that overrides the location of the shared datasets folder.
ENV_VAR = "RADVLSM_DATASETS"


def shared_datasets_root() -> Path:
    """The folder holding ``ph2/``, ``kvasir-seg/`` …: ``$RADVLSM_DATASETS`` if set, else the first of
    ``./../shared/datasets`` and ``<repo>/../shared/datasets`` that exists (the latter for editable installs)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    candidates = [
        Path.cwd() / ".." / "shared" / "datasets",
        Path(__file__).resolve().parents[3] / "shared" / "datasets",
    ]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return candidates[0]

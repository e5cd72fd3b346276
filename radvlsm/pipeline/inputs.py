"""Turn the paths a user gives (files and folders) into a list of input images, one per case id."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from radvlsm.io.record import case_stem

log = logging.getLogger(__name__)

#: File endings taken from folders (files named explicitly are always tried).
INPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".nii", ".nii.gz")


@dataclass(frozen=True)
class InputItem:
    """One input file and the case id its outputs are named by (the file stem)."""

    case_id: str
    path: Path


@dataclass(frozen=True)
class InputProblem:
    """An input that cannot become a case (shown in ``errors.csv``)."""

    path: Path
    reason: str


def discover_inputs(paths: Iterable[Path]) -> tuple[list[InputItem], list[InputProblem]]:
    """Expand files and folders (recursively, sorted) into input items.

    Hidden files and files with other endings inside folders are skipped. Two inputs with the same case id
    (file stem) would overwrite each other's outputs: the second is reported as a problem.
    """
    items: list[InputItem] = []
    problems: list[InputProblem] = []
    seen: dict[str, Path] = {}

    def add(p: Path) -> None:
        cid = case_stem(p)
        if cid in seen:
            problems.append(InputProblem(p, f"case id {cid!r} is also the name of {seen[cid]}; rename one of them"))
            return
        seen[cid] = p
        items.append(InputItem(cid, p))

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            try:
                found = sorted(
                    f for f in p.rglob("*")
                    if f.is_file() and not f.name.startswith(".") and f.name.lower().endswith(INPUT_SUFFIXES)
                )
            except OSError as exc:
                problems.append(InputProblem(p, f"cannot list folder ({exc.strerror or exc})"))
                continue
            if not found:
                problems.append(InputProblem(p, "folder holds no image files"))
            for f in found:
                add(f)
        elif p.exists():
            add(p)
        else:
            problems.append(InputProblem(p, "no such file or directory"))
    return items, problems

"""Box prompts given by the user in a CSV file (``--boxes boxes.csv``).

Columns ``image,x0,y0,x1,y1[,score]``: ``image`` is the file name of an input, with or without its
extension; coordinates are XYXY in pixels of the original image (``x1``/``y1`` the right/bottom edge);
``score`` in [0, 1] is optional (1 when absent). Several rows for one image are its candidates.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radvlsm.errors import InputError
from radvlsm.io.record import case_stem

REQUIRED = ("image", "x0", "y0", "x1", "y1")


@dataclass(frozen=True)
class BoxPrompt:
    """One row of the boxes file; ``line`` is its line number there (for error messages)."""

    image: str
    box: tuple[float, float, float, float]
    score: float
    line: int


@dataclass(frozen=True)
class BoxPrompts:
    """All rows of a boxes file, grouped by case id."""

    source: Path
    by_case: dict[str, tuple[BoxPrompt, ...]]

    def for_case(self, case_id: str) -> tuple[BoxPrompt, ...]:
        return self.by_case.get(case_id, ())


def read_boxes_csv(path: str | Path) -> BoxPrompts:
    """Parse and check a boxes file.

    Raises:
        InputError: naming the file and line, for a missing column, a non-numeric or non-finite value, a
            score outside [0, 1], ``x1 <= x0`` or ``y1 <= y0`` (zero or negative area); a file that is not UTF-8
            text.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "boxes file not found")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise InputError(path, f"cannot read the boxes file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(
            path, f"boxes file is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as CSV in UTF-8"
        ) from exc
    with io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise InputError(path, f"missing column(s) {', '.join(missing)}; expected image,x0,y0,x1,y1[,score]")
        reader.fieldnames = header
        groups: dict[str, list[BoxPrompt]] = {}
        for row in reader:
            line = reader.line_num
            name = (row.get("image") or "").strip()
            if not name:
                raise InputError(path, f"line {line}: empty image name")
            try:
                coords = tuple(float(row[c]) for c in ("x0", "y0", "x1", "y1"))
                score = float(row["score"]) if row.get("score") not in (None, "") else 1.0
            except (TypeError, ValueError) as exc:
                raise InputError(path, f"line {line}: coordinates and score must be numbers ({exc})") from exc
            if not all(math.isfinite(v) for v in (*coords, score)):
                raise InputError(path, f"line {line}: coordinates and score must be finite")
            x0, y0, x1, y1 = coords
            if x1 <= x0 or y1 <= y0:
                raise InputError(
                    path, f"line {line}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) has no area: need x1 > x0 and y1 > y0"
                )
            if not 0.0 <= score <= 1.0:
                raise InputError(path, f"line {line}: score {score:g} outside [0, 1]")
            groups.setdefault(case_stem(name), []).append(BoxPrompt(name, coords, score, line))  # type: ignore[arg-type]
    if not groups:
        raise InputError(path, "boxes file has no rows")
    return BoxPrompts(path, {k: tuple(v) for k, v in groups.items()})


def check_boxes_in_image(prompts: tuple[BoxPrompt, ...], hw: tuple[int, int], source: Path) -> np.ndarray:
    """``(K, 4)`` boxes clipped to the image.

    A box that only partly leaves the image is clipped to it; a box with no overlap with the image is an
    error (naming the boxes file, the line and the image size).
    """
    h, w = hw
    out = []
    for p in prompts:
        x0, y0, x1, y1 = p.box
        cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h))
        if cx1 - cx0 < 1.0 or cy1 - cy0 < 1.0:
            raise InputError(
                source, f"line {p.line}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) lies outside the {w}x{h} image {p.image}"
            )
        out.append((cx0, cy0, cx1, cy1))
    return np.asarray(out, dtype=np.float64)

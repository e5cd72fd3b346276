"""Reading the diagnosis stage's ``diagnoses.csv`` into typed :class:`~radvlsm.reporting.records.Diagnosis`.

Expected layout (one row per case; extra columns are ignored)::

    case_id,label,p_<class 1>,p_<class 2>,...,malignant_probability[,model][,mask][,reliability]

* ``label``: the predicted class (``predicted``, ``predicted_label`` or ``prediction`` are accepted too);
* ``p_<class>``: the probability of each class (``prob_<class>`` / ``probability_<class>`` accepted), in the
  order the report lists them;
* ``malignant_probability``: the summed probability of the malignant classes; when the column is absent and a
  class is called ``malignant``, that class's probability is used; otherwise the report gives none.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

from radvlsm.errors import InputError
from radvlsm.reporting.records import Diagnosis

log = logging.getLogger(__name__)

DIAGNOSES_FILE = "diagnoses.csv"
_LABEL_COLUMNS = ("label", "predicted_label", "predicted", "prediction")
_PROB_PREFIXES = ("probability_", "prob_", "p_")
_NO_DIAGNOSIS_STATUSES = ("not_found", "out_of_domain", "failed")  # statuses the pipeline writes with no label


def _probability(text: str, where: str) -> float:
    try:
        p = float(text)
    except ValueError as exc:
        raise ValueError(f"{where}: {text!r} is not a number") from exc
    if not math.isfinite(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{where}: probability {text!r} is outside 0..1")
    return p


def read_diagnoses(path: Path) -> dict[str, Diagnosis]:
    """Diagnoses by case id. A malformed row is logged and left out; a file without ``case_id`` or a label
    column raises :class:`InputError`."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"cannot read diagnoses: {exc}") from exc
    if "case_id" not in fields:
        raise InputError(path, "no 'case_id' column")
    label_col = next((c for c in _LABEL_COLUMNS if c in fields), None)
    if label_col is None:
        raise InputError(path, f"no label column (one of {', '.join(_LABEL_COLUMNS)})")
    prob_cols: list[tuple[str, str]] = []
    for c in fields:
        if c == "malignant_probability":
            continue
        for pre in _PROB_PREFIXES:
            if c.startswith(pre) and len(c) > len(pre):
                prob_cols.append((c, c[len(pre):]))
                break
    out: dict[str, Diagnosis] = {}
    for i, row in enumerate(rows, start=2):
        cid = (row.get("case_id") or "").strip()
        try:
            if not cid:
                raise ValueError("empty case_id")
            label = (row.get(label_col) or "").strip()
            if not label:
                if (row.get("status") or "").strip() in _NO_DIAGNOSIS_STATUSES:
                    continue  # the pipeline found no lesion to diagnose: nothing to read, nothing wrong
                raise ValueError("empty label")
            probs = tuple((cls, round(_probability(row[col], col), 4)) for col, cls in prob_cols
                          if (row.get(col) or "").strip())
            mal_text = (row.get("malignant_probability") or "").strip()
            if mal_text:
                mal: float | None = round(_probability(mal_text, "malignant_probability"), 4)
            else:
                mal = next((p for c, p in probs if c.lower() == "malignant"), None)
        except ValueError as exc:
            log.warning("%s line %d: %s; row ignored", path, i, exc)
            continue
        if cid in out:
            log.warning("%s line %d: case %r appears again; the later row is used", path, i, cid)
        out[cid] = Diagnosis(label=label, probabilities=probs, malignant_probability=mal,
                             model=(row.get("model") or "").strip() or None)
    return out

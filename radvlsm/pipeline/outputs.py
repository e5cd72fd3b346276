"""The output folder of ``segment`` (and later ``diagnose``), resumable case by case.

Layout::

    OUT/masks/<case>.png      0/255, the input's size
    OUT/overlays/<case>.png   contour on the image
    OUT/records/<case>.json   everything measured for the case (written last: its presence means "done")
    OUT/results.csv           one row per case, assembled from records/
    OUT/diagnoses.csv         (diagnose) one row per case, assembled from records/
    OUT/errors.csv            inputs that failed in the latest run, with the reason

Each file is written atomically (:func:`radvlsm.io.writers.atomic_write`: a temporary file in the same folder,
then :func:`os.replace`), so a killed run or a killed worker leaves whole files only; a case whose record is
missing is done again by the next run (or by the retry of its batch), which rewrites the same files. The CSVs are
assembled from the records, so a case appears in them once however often it was attempted.
"""

from __future__ import annotations

import csv
import glob
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from radvlsm.fusion.diagnosis import Diagnosis
from radvlsm.io.writers import atomic_write

log = logging.getLogger(__name__)

RECORD_SCHEMA = 1
RESULT_COLUMNS = (
    "image", "n_candidates", "reliability", "area_px", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1", "status",
    "mask", "input",
)


@dataclass(frozen=True)
class CandidateRecord:
    box: tuple[float, float, float, float]
    score: float
    predicted_iou: float
    presence: float | None
    reliability: float
    weight: float


@dataclass(frozen=True)
class CaseRecord:
    """What ``records/<case>.json`` holds for one segmented image."""

    case_id: str
    input: str
    image_size: tuple[int, int]
    status: str
    reliability: float
    area_px: int
    bbox: tuple[int, int, int, int] | None
    candidates: tuple[CandidateRecord, ...]
    mask: str
    overlay: str
    model: str
    prompt: str | None = None
    embedding: tuple[float, ...] = ()
    diagnosis: Diagnosis | None = None
    #: ``ok`` (diagnosed), ``out_of_domain`` (not the head's kind of image: no label), ``None`` (not asked)
    diagnosis_status: str | None = None
    schema: int = RECORD_SCHEMA

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> CaseRecord:
        raw = json.loads(text)
        raw["image_size"] = tuple(raw["image_size"])
        raw["bbox"] = tuple(raw["bbox"]) if raw.get("bbox") else None
        raw["candidates"] = tuple(
            CandidateRecord(**{**c, "box": tuple(c["box"])}) for c in raw.get("candidates", [])
        )
        raw["embedding"] = tuple(raw.get("embedding", ()))
        d = raw.get("diagnosis")
        if d is not None:
            mal = d.get("malignant_probability")
            raw["diagnosis"] = Diagnosis(
                label=d["label"], probabilities=tuple((str(c), float(p)) for c, p in d["probabilities"]),
                malignant_probability=None if mal is None else float(mal), model=d.get("model"),
            )
        return cls(**raw)


@dataclass(frozen=True)
class OutputFolder:
    root: Path

    @property
    def masks(self) -> Path:
        return self.root / "masks"

    @property
    def overlays(self) -> Path:
        return self.root / "overlays"

    @property
    def records(self) -> Path:
        return self.root / "records"

    def create(self) -> OutputFolder:
        for d in (self.masks, self.overlays, self.records):
            d.mkdir(parents=True, exist_ok=True)
        return self

    def mask_path(self, case_id: str) -> Path:
        return self.masks / f"{case_id}.png"

    def overlay_path(self, case_id: str) -> Path:
        return self.overlays / f"{case_id}.png"

    def record_path(self, case_id: str) -> Path:
        return self.records / f"{case_id}.json"

    def write_record(self, record: CaseRecord) -> None:
        with atomic_write(self.record_path(record.case_id)) as fh:
            fh.write(record.to_json() + "\n")

    def read_record(self, case_id: str) -> CaseRecord | None:
        """The record of ``case_id``, ``None`` when there is none (or it cannot be read: the case is redone)."""
        path = self.record_path(case_id)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return CaseRecord.from_json(text)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("%s: unreadable record, ignored (%s)", path, exc)
            return None

    def forget(self, case_id: str) -> None:
        """Remove the record of study ``case_id`` and those of its frames (``<case>_f0000`` …), so that it is
        not done any more; its mask and overlay stay until they are rewritten."""
        self.record_path(case_id).unlink(missing_ok=True)
        prefix = f"{case_id}_f"
        for p in self.records.glob(f"{glob.escape(prefix)}*.json"):
            if p.stem[len(prefix):].isdigit():
                p.unlink(missing_ok=True)

    def read_records(self) -> list[CaseRecord]:
        out = []
        for p in sorted(self.records.glob("*.json")):
            try:
                out.append(CaseRecord.from_json(p.read_text(encoding="utf-8")))
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("%s: unreadable record, ignored (%s)", p, exc)
        return out

    def write_results_csv(self, records: Iterable[CaseRecord] | None = None) -> Path:
        """Rewrite ``results.csv`` from ``records`` (default: every record in the folder), sorted by case."""
        path = self.root / "results.csv"
        rows = sorted(self.read_records() if records is None else records, key=lambda r: r.case_id)
        with atomic_write(path, newline="") as fh:
            w = csv.writer(fh)
            w.writerow(RESULT_COLUMNS)
            for r in rows:
                bbox = r.bbox or ("", "", "", "")
                w.writerow([r.case_id, len(r.candidates), f"{r.reliability:.4f}", r.area_px, *bbox, r.status,
                            r.mask, r.input])
        return path

    def write_diagnoses_csv(self, records: Iterable[CaseRecord]) -> Path:
        """Rewrite ``diagnoses.csv``: case, predicted label, probability of each class, malignant probability,
        mask, segmentation reliability, status (``not_found`` and ``out_of_domain`` cases have no label: never
        a guess)."""
        rows = sorted(records, key=lambda r: r.case_id)
        classes: list[str] = []
        for r in rows:
            for c, _ in r.diagnosis.probabilities if r.diagnosis else ():
                if c not in classes:
                    classes.append(c)
        path = self.root / "diagnoses.csv"
        with atomic_write(path, newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["case_id", "label", *(f"p_{c}" for c in classes), "malignant_probability", "mask",
                        "reliability", "status"])
            for r in rows:
                d = r.diagnosis
                probs = dict(d.probabilities) if d else {}
                mal = d.malignant_probability if d else None
                w.writerow([
                    r.case_id, d.label if d else "", *(f"{probs[c]:.4f}" if c in probs else "" for c in classes),
                    "" if mal is None else f"{mal:.4f}", r.mask, f"{r.reliability:.4f}",
                    "out_of_domain" if r.diagnosis_status == "out_of_domain" else r.status,
                ])
        return path

    def write_boxes_csv(self, records: Iterable[CaseRecord]) -> Path:
        """Rewrite ``boxes.csv``: the candidate boxes each image was segmented from, ``image, rank, x0, y0, x1,
        y1, score`` (XYXY pixels of the original image, rank 1 = best); images with none have no row. The file
        reads back as ``--boxes`` input."""
        path = self.root / "boxes.csv"
        with atomic_write(path, newline="") as fh:
            w = csv.writer(fh)
            w.writerow(("image", "rank", "x0", "y0", "x1", "y1", "score"))
            for r in sorted(records, key=lambda r: r.case_id):
                for k, c in enumerate(r.candidates, start=1):
                    w.writerow([r.case_id, k, *(f"{v:.2f}" for v in c.box), f"{c.score:.5f}"])
        return path

    def write_errors_csv(self, errors: Iterable[tuple[str, str]]) -> Path:
        """Rewrite ``errors.csv``: one ``input, reason`` row per failure of the latest run."""
        path = self.root / "errors.csv"
        with atomic_write(path, newline="") as fh:
            w = csv.writer(fh)
            w.writerow(("input", "reason"))
            w.writerows(errors)
        return path


def relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def round_floats(values: Sequence[float], digits: int = 5) -> tuple[float, ...]:
    return tuple(round(float(v), digits) for v in values)

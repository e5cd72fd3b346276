"""The output folder of ``segment`` (and later ``diagnose``), resumable case by case.

Layout::

    OUT/masks/<case>.png      0/255, the input's size
    OUT/masks/<study>.nii.gz  a volume study (CT): label map, nodule k = k, the input's exact geometry
    OUT/seg/<study>.dcm       a DICOM series study: the nodules as a DICOM SEG referencing the series
    OUT/overlays/<case>.png   contour on the image (a volume: each nodule's largest axial section)
    OUT/records/<case>.json   everything measured for the case (written last: its presence means "done")
    OUT/results.csv           one row per case (study), assembled from records/
    OUT/lesions.csv           (volume studies) one row per nodule: position, size, volume, diagnosis
    OUT/diagnoses.csv         (diagnose) one row per case, and one per nodule of a volume (``<study>_n1`` …)
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
LESION_COLUMNS = (
    "study", "lesion", "x_mm", "y_mm", "z_mm", "diameter_mm", "centroid_x_mm", "centroid_y_mm", "centroid_z_mm",
    "voxels", "volume_mm3", "equivalent_diameter_mm", "reliability", "status", "label", "malignant_probability",
    "mask", "dicom_seg",
)
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
class LesionRecord:
    """One nodule of a volume study, as prompted and as segmented.

    Attributes:
        index: 1, 2 … in the order of the points; the nodule's value in the label map.
        point_mm: the prompt's centre, scanner (LPS) mm; ``diameter_mm`` its diameter if given.
        box_voxels: the prompt's voxel box ``x0, y0, z0, x1, y1, z1`` (voxel edges).
        voxels, volume_mm3: the mask's size; ``equivalent_diameter_mm`` that of the sphere of that volume.
        centroid_mm: the mask's centroid in scanner mm (``None`` when not found).
        reliability: mean predicted IoU of the slices that hold the mask.
        status: ``ok`` or ``not_found``.
        diagnosis, diagnosis_status: as for a case.
    """

    index: int
    point_mm: tuple[float, float, float]
    diameter_mm: float | None
    box_voxels: tuple[float, float, float, float, float, float]
    voxels: int
    volume_mm3: float
    equivalent_diameter_mm: float
    centroid_mm: tuple[float, float, float] | None
    reliability: float
    status: str
    diagnosis: Diagnosis | None = None
    diagnosis_status: str | None = None


def _diagnosis_from(d: dict | None) -> Diagnosis | None:
    if d is None:
        return None
    mal = d.get("malignant_probability")
    return Diagnosis(
        label=d["label"], probabilities=tuple((str(c), float(p)) for c, p in d["probabilities"]),
        malignant_probability=None if mal is None else float(mal), model=d.get("model"),
    )


def _lesion_from(raw: dict) -> LesionRecord:
    return LesionRecord(**{
        **raw, "point_mm": tuple(raw["point_mm"]), "box_voxels": tuple(raw["box_voxels"]),
        "centroid_mm": tuple(raw["centroid_mm"]) if raw.get("centroid_mm") else None,
        "diagnosis": _diagnosis_from(raw.get("diagnosis")),
    })


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
    #: a volume study: its ``(Z, Y, X)`` shape, its nodules, and its DICOM SEG (relative path) if written, or why
    #: none was written for a DICOM series (its header breaks the standard …; the mask and record stand)
    volume_shape: tuple[int, int, int] | None = None
    lesions: tuple[LesionRecord, ...] = ()
    dicom_seg: str | None = None
    dicom_seg_error: str | None = None
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
        raw["diagnosis"] = _diagnosis_from(raw.get("diagnosis"))
        raw["volume_shape"] = tuple(raw["volume_shape"]) if raw.get("volume_shape") else None
        raw["lesions"] = tuple(_lesion_from(x) for x in raw.get("lesions", ()))
        return cls(**raw)

    @property
    def is_volume(self) -> bool:
        return self.volume_shape is not None


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

    def volume_mask_path(self, case_id: str) -> Path:
        return self.masks / f"{case_id}.nii.gz"

    @property
    def seg(self) -> Path:
        return self.root / "seg"

    @property
    def written_folders(self) -> tuple[Path, ...]:
        """The subfolders this output folder writes files into (masks, overlays, records, DICOM SEG)."""
        return (self.masks, self.overlays, self.records, self.seg)

    def seg_path(self, case_id: str) -> Path:
        return self.seg / f"{case_id}.dcm"

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
        rows: list[tuple[str, Diagnosis | None, str, float, str]] = []
        for r in sorted(records, key=lambda r: r.case_id):
            if r.is_volume and r.lesions:  # a volume: one row per nodule
                rows += [(lesion_case_id(r.case_id, x.index), x.diagnosis, r.mask, x.reliability,
                          _diagnosis_row_status(x.status, x.diagnosis_status)) for x in r.lesions]
            else:
                rows.append((r.case_id, r.diagnosis, r.mask, r.reliability,
                             _diagnosis_row_status(r.status, r.diagnosis_status)))
        classes: list[str] = []
        for _, d, *_rest in rows:
            for c, _ in d.probabilities if d else ():
                if c not in classes:
                    classes.append(c)
        path = self.root / "diagnoses.csv"
        with atomic_write(path, newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["case_id", "label", *(f"p_{c}" for c in classes), "malignant_probability", "mask",
                        "reliability", "status"])
            for cid, d, mask, reliability, status in rows:
                probs = dict(d.probabilities) if d else {}
                mal = d.malignant_probability if d else None
                w.writerow([
                    cid, d.label if d else "", *(f"{probs[c]:.4f}" if c in probs else "" for c in classes),
                    "" if mal is None else f"{mal:.4f}", mask, f"{reliability:.4f}", status,
                ])
        return path

    def write_lesions_csv(self, records: Iterable[CaseRecord]) -> Path:
        """Rewrite ``lesions.csv``: one row per nodule of every volume study (:data:`LESION_COLUMNS`)."""
        path = self.root / "lesions.csv"
        with atomic_write(path, newline="") as fh:
            w = csv.writer(fh)
            w.writerow(LESION_COLUMNS)
            for r in sorted(records, key=lambda r: r.case_id):
                for x in r.lesions:
                    d = x.diagnosis
                    mal = d.malignant_probability if d else None
                    w.writerow([
                        r.case_id, x.index, *_mm(x.point_mm), "" if x.diameter_mm is None else f"{x.diameter_mm:.2f}",
                        *_mm(x.centroid_mm),
                        x.voxels, f"{x.volume_mm3:.2f}", f"{x.equivalent_diameter_mm:.2f}",
                        f"{x.reliability:.4f}", x.status, d.label if d else "",
                        "" if mal is None else f"{mal:.4f}", r.mask, r.dicom_seg or "",
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


def round_diagnosis(d: Diagnosis, model: str, digits: int = 5) -> Diagnosis:
    """``d`` as records keep it: probabilities rounded to ``digits``, the head's spec name as ``model``."""
    mal = d.malignant_probability
    return Diagnosis(
        label=d.label, probabilities=tuple((c, round(p, digits)) for c, p in d.probabilities),
        malignant_probability=None if mal is None else round(mal, digits), model=model,
    )


def lesion_case_id(study: str, index: int) -> str:
    """The case id of nodule ``index`` (from 1) of a volume study in ``diagnoses.csv``: ``<study>_n1``."""
    return f"{study}_n{index}"


def _mm(xyz: Sequence[float] | None) -> tuple[str, str, str]:
    return ("", "", "") if xyz is None else (f"{xyz[0]:.2f}", f"{xyz[1]:.2f}", f"{xyz[2]:.2f}")


def _diagnosis_row_status(status: str, diagnosis_status: str | None) -> str:
    return "out_of_domain" if diagnosis_status == "out_of_domain" else status


def relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def round_floats(values: Sequence[float], digits: int = 5) -> tuple[float, ...]:
    return tuple(round(float(v), digits) for v in values)

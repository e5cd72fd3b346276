"""The batch behind ``radvlsm report``: find the cases, measure, write the reports, the index and the errors.

Inputs are either output folders of ``radvlsm segment`` / ``diagnose`` (recognised by their ``records/`` and
``masks/`` folders: each record names its input image and its mask, and a ``diagnoses.csv`` beside them is
read when present), or image files / folders paired by case id (file stem) with the masks of a ``--masks``
folder.

Output layout::

    OUT/reports/<case>.json    findings and text (ReportRecord, schema SCHEMA_VERSION); written last: its
                               presence means "done"
    OUT/reports/<case>.md      the report in Markdown
    OUT/reports/<case>.html    the report as one self-contained page (picture embedded)
    OUT/reports/thumbs/<case>.jpg   the index's thumbnail
    OUT/index.html             every report in OUT, one row each, sortable
    OUT/errors.csv             inputs that failed in the latest run, with the reason (report_errors.csv when
                               OUT is also a segment folder given as input, so its own errors.csv is kept)

A case that fails is listed and the batch goes on; every file is written atomically; a rerun skips the cases
already done unless ``overwrite``.
"""

from __future__ import annotations

import csv
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from radvlsm.errors import InputError, RadvlsmError
from radvlsm.io import atomic_write, read_image, read_mask
from radvlsm.io.record import case_stem
from radvlsm.pipeline.inputs import INPUT_SUFFIXES, InputProblem, discover_inputs, frame_of_case
from radvlsm.pipeline.outputs import CaseRecord
from radvlsm.reporting.diagnosis import DIAGNOSES_FILE, read_diagnoses
from radvlsm.reporting.findings import TO_DICOM, FindingsConfig, compute_findings
from radvlsm.reporting.html import IndexRow, case_html, index_html
from radvlsm.reporting.llm import LlmRewriter, not_configured
from radvlsm.reporting.picture import png_bytes, report_picture, thumbnail_jpeg
from radvlsm.reporting.records import SCHEMA_VERSION, Diagnosis, ReportRecord, SegmentationInfo
from radvlsm.reporting.text import findings_text, markdown_report

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportJob:
    """One case to report: its image, its mask and, when it came from ``segment``, the segmentation record."""

    case_id: str
    image: Path
    mask: Path
    segmentation: SegmentationInfo | None = None
    #: the modality the segment run knew (``ct`` for its volume studies), used when the report's is ``auto``
    modality: str | None = None
    #: the series of ``image`` (a folder holding several DICOM series: one study each)
    series_uid: str | None = None
    #: the frame of ``image`` (a multi-frame input, an ultrasound cine: one case per frame)
    frame: int | None = None


@dataclass(frozen=True)
class CollectedInputs:
    jobs: tuple[ReportJob, ...]
    problems: tuple[InputProblem, ...]
    diagnoses_files: tuple[Path, ...]
    segment_folders: tuple[Path, ...]


def is_segment_folder(path: Path) -> bool:
    """An output folder of ``radvlsm segment`` (it has ``records/`` and ``masks/``)."""
    return path.is_dir() and (path / "records").is_dir() and (path / "masks").is_dir()


def valid_case_id(case_id: str) -> str | None:
    """Why ``case_id`` cannot name report files, or ``None`` when it can."""
    if not case_id or case_id in (".", ".."):
        return "empty case id"
    if any(ch in case_id for ch in ("/", "\\", "\x00")):
        return f"case id {case_id!r} holds a path separator"
    if len(case_id.encode("utf-8")) > 200:
        return "case id longer than 200 bytes"
    return None


def _image_of(record: CaseRecord, folder: Path) -> Path | None:
    p = Path(record.input)
    if p.is_absolute():
        return p if p.exists() else None
    for cand in (p, folder.parent / p, folder / p):
        if cand.exists():
            return cand
    return None


def _series_of(case_id: str, folder: Path) -> str | None:
    """The SeriesInstanceUID of study ``case_id`` in a DICOM folder, as ``segment`` found it (``<folder>_s<number>``
    for one of several series), or ``None``."""
    items, _ = discover_inputs([folder])
    return next((it.series_uid for it in items if it.case_id == case_id), None)


def _segment_jobs(folder: Path) -> tuple[list[ReportJob], list[InputProblem]]:
    jobs: list[ReportJob] = []
    problems: list[InputProblem] = []
    for rp in sorted((folder / "records").glob("*.json")):
        try:
            rec = CaseRecord.from_json(rp.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
            problems.append(InputProblem(rp, f"unreadable segment record ({type(exc).__name__}: {exc})"))
            continue
        image = _image_of(rec, folder)
        if image is None:
            problems.append(InputProblem(Path(rec.input), f"input image of record {rp.name} not found (moved?)"))
            continue
        mask = folder / rec.mask
        if not mask.is_file():
            problems.append(InputProblem(mask, f"mask of record {rp.name} not found"))
            continue
        seg = SegmentationInfo(source=str(rp), status=rec.status, reliability=round(float(rec.reliability), 4),
                               model=rec.model or None, prompt=rec.prompt)
        series = _series_of(rec.case_id, image) if image.is_dir() else None
        frame = None if image.is_dir() else frame_of_case(rec.case_id, case_stem(image))
        jobs.append(ReportJob(rec.case_id, image, mask, seg, "ct" if rec.is_volume else None, series, frame))
    if not jobs and not problems:
        problems.append(InputProblem(folder, "segment folder holds no records"))
    return jobs, problems


def _masks_by_stem(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(INPUT_SUFFIXES):
            found.setdefault(case_stem(p), p)
    return found


def collect_jobs(inputs: Sequence[Path], masks: Path | None = None) -> CollectedInputs:
    """The cases to report from the command's inputs (see the module docstring).

    Raises:
        InputError: images were given without ``masks`` (run ``radvlsm segment`` first, or pass ``--masks``),
            or ``masks`` is not a folder.
    """
    jobs: list[ReportJob] = []
    problems: list[InputProblem] = []
    diag_files: list[Path] = []
    seg_folders: list[Path] = []
    image_inputs: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if is_segment_folder(p):
            j, pr = _segment_jobs(p)
            jobs += j
            problems += pr
            seg_folders.append(p)
            if (p / DIAGNOSES_FILE).is_file():
                diag_files.append(p / DIAGNOSES_FILE)
        else:
            image_inputs.append(p)
    if image_inputs:
        items, pr = discover_inputs(image_inputs)
        problems += pr
        if items and masks is None:
            raise InputError(
                image_inputs[0],
                "images without masks: run 'radvlsm segment' on them first and report on its output folder, or "
                "pass the masks with --masks DIR (paired by file name without extension)",
            )
        if masks is not None:
            if not masks.is_dir():
                raise InputError(masks, "--masks must be a folder of mask files")
            by_stem = _masks_by_stem(masks)
            for it in items:
                mp = by_stem.get(it.case_id)
                if mp is None:
                    problems.append(InputProblem(it.path, f"no mask named {it.case_id}.* in {masks}"))
                    continue
                jobs.append(ReportJob(it.case_id, it.path, mp, None, series_uid=it.series_uid))
    seen: dict[str, ReportJob] = {}
    unique: list[ReportJob] = []
    for j in jobs:
        why = valid_case_id(j.case_id)
        if why is not None:
            problems.append(InputProblem(j.image, why))
        elif j.case_id in seen:
            problems.append(InputProblem(j.image, f"case id {j.case_id!r} is also the case of {seen[j.case_id].image}"))
        else:
            seen[j.case_id] = j
            unique.append(j)
    return CollectedInputs(tuple(unique), tuple(problems), tuple(diag_files), tuple(seg_folders))


@dataclass(frozen=True)
class ReportSettings:
    """``modality``: ``auto`` or a modality name; ``pixel_spacing_mm``: in-plane spacing for images that do not
    carry one; ``overwrite``: redo cases already reported."""

    modality: str = "auto"
    pixel_spacing_mm: float | None = None
    overwrite: bool = False
    findings: FindingsConfig = field(default_factory=FindingsConfig)


@dataclass(frozen=True)
class ReportSummary:
    written: int
    skipped: int
    failed: tuple[InputProblem, ...]
    seconds: float
    out_dir: Path
    llm: Mapping[str, int]
    errors_csv: Path


@dataclass(frozen=True)
class ReportFolder:
    root: Path

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def thumbs(self) -> Path:
        return self.reports / "thumbs"

    def path(self, case_id: str, ext: str) -> Path:
        return self.reports / f"{case_id}.{ext}"

    def thumb(self, case_id: str) -> Path:
        return self.thumbs / f"{case_id}.jpg"

    def is_done(self, case_id: str) -> bool:
        return all(self.path(case_id, e).is_file() for e in ("json", "md", "html"))

    def read_all(self) -> list[ReportRecord]:
        out = []
        for p in sorted(self.reports.glob("*.json")):
            try:
                out.append(ReportRecord.from_json(p.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
                log.warning("%s: unreadable report, left out of the index (%s)", p, exc)
        return out


def report_case(
    job: ReportJob,
    out: ReportFolder,
    settings: ReportSettings,
    diagnosis: Diagnosis | None,
    llm: LlmRewriter | None,
) -> ReportRecord:
    """Measure and write one case; raises on a bad input (the batch catches it)."""
    modality = job.modality if settings.modality.lower() == "auto" and job.modality else settings.modality
    rec = read_image(job.image, modality=TO_DICOM.get(modality.lower()), series_uid=job.series_uid)
    if job.frame is not None and rec.is_multiframe:
        try:
            rec = rec.frame(job.frame)
        except ValueError as exc:
            raise InputError(job.image, f"case {job.case_id}: {str(exc).removeprefix(f'{job.image}: ')}") from exc
    mask = read_mask(job.mask, like=rec)
    findings = compute_findings(
        rec, mask, case_id=job.case_id, modality=modality, mask_source=str(job.mask),
        segmentation=job.segmentation, diagnosis=diagnosis, pixel_spacing_mm=settings.pixel_spacing_mm,
        config=settings.findings,
    )
    template = findings_text(findings)
    prose, outcome = llm.rewrite(job.case_id, template) if llm is not None else (None, not_configured())
    record = ReportRecord(SCHEMA_VERSION, findings, template, prose, outcome)
    picture = report_picture(rec, mask, findings)
    png = png_bytes(picture)
    out.thumbs.mkdir(parents=True, exist_ok=True)
    with atomic_write(out.thumb(job.case_id), "wb") as fh:
        fh.write(thumbnail_jpeg(picture))
    with atomic_write(out.path(job.case_id, "md")) as fh:
        fh.write(markdown_report(record))
    with atomic_write(out.path(job.case_id, "html")) as fh:
        fh.write(case_html(record, png))
    with atomic_write(out.path(job.case_id, "json")) as fh:
        fh.write(record.to_json())
    return record


def write_index(out: ReportFolder, errors: Sequence[tuple[str, str]] = ()) -> Path:
    rows = []
    for r in out.read_all():
        tp = out.thumb(r.findings.case_id)
        thumb = tp.read_bytes() if tp.is_file() else None
        rows.append(IndexRow(r, f"reports/{r.findings.case_id}.html", thumb))
    path = out.root / "index.html"
    with atomic_write(path) as fh:
        fh.write(index_html(rows, errors))
    return path


def run_reports(
    jobs: Sequence[ReportJob],
    out_dir: Path,
    *,
    settings: ReportSettings = ReportSettings(),
    diagnoses: Mapping[str, Diagnosis] | None = None,
    llm: LlmRewriter | None = None,
    problems: Sequence[InputProblem] = (),
    errors_name: str = "errors.csv",
    on_progress: Callable[[int], None] | None = None,
) -> ReportSummary:
    """Report every job into ``out_dir`` (see the module docstring); a failing case is listed and skipped."""
    t0 = time.perf_counter()
    out = ReportFolder(out_dir)
    out.reports.mkdir(parents=True, exist_ok=True)
    failed = list(problems)
    written = skipped = 0
    llm_counts: Counter[str] = Counter()
    for job in jobs:
        if not settings.overwrite and out.is_done(job.case_id):
            skipped += 1
        else:
            reason: str | None = None
            try:
                record = report_case(job, out, settings, (diagnoses or {}).get(job.case_id), llm)
                written += 1
                llm_counts[record.llm.status] += 1
            except (RadvlsmError, ValueError, OSError, cv2.error, np.linalg.LinAlgError) as exc:
                reason = str(exc)
                for prefix in (f"{job.image}: ", f"{job.mask}: "):
                    reason = reason.removeprefix(prefix)
            except Exception as exc:  # noqa: BLE001 (one case's unexpected failure must not stop the batch)
                reason = f"the report failed ({type(exc).__name__}: {exc}); please report this as a bug"
            if reason is not None:
                log.warning("%s: %s", job.image, reason)
                failed.append(InputProblem(job.image, reason))
        if on_progress:
            on_progress(1)
    if skipped:
        log.info("%d case(s) already reported in %s (use --overwrite to redo them)", skipped, out_dir)
    errors = [(str(p.path), p.reason) for p in failed]
    errors_csv = out_dir / errors_name
    with atomic_write(errors_csv, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(("input", "reason"))
        w.writerows(errors)
    write_index(out, errors)
    return ReportSummary(written, skipped, tuple(failed), time.perf_counter() - t0, out_dir, dict(llm_counts),
                         errors_csv)


def load_diagnoses(files: Sequence[Path]) -> dict[str, Diagnosis]:
    """Diagnoses from several files, later files winning."""
    out: dict[str, Diagnosis] = {}
    for f in files:
        out.update(read_diagnoses(f))
    return out

"""Turn the paths a user gives (files and folders) into a list of studies (input images and volumes), one per
case id.

A study is an image file (PNG, JPEG, BMP, TIFF, a DICOM file, a multi-frame DICOM cine), a NIfTI volume, or a
DICOM series: the single-frame DICOM slices of one SeriesInstanceUID in one folder (:func:`dicom_series_studies`).
DICOM objects that are not images (RTSTRUCT, SEG, SR …) are skipped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from radvlsm.io.dicom import has_dicom_preamble
from radvlsm.io.record import case_stem

log = logging.getLogger(__name__)

#: File endings taken from folders (files named explicitly are always tried).
INPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".nii", ".nii.gz")


@dataclass(frozen=True)
class InputItem:
    """One study: an input file, or a DICOM series folder, and the case id its outputs are named by (the file
    stem; a series: its folder's name).

    Attributes:
        series_uid: for a DICOM series folder, the SeriesInstanceUID of the study's slices (other files in the
            folder, a scout or another series, are not part of it).
    """

    case_id: str
    path: Path
    series_uid: str | None = None


def frame_case_id(case_id: str, frame: int) -> str:
    """The case id of frame ``frame`` (from 0) of a multi-frame input (an ultrasound cine): ``<case>_f0003``."""
    return f"{case_id}_f{frame:04d}"


def frame_of_case(case_id: str, input_case: str) -> int | None:
    """The frame :func:`frame_case_id` numbered in ``case_id`` when it is a frame of the input ``input_case``;
    ``None`` when it is not (the case is the whole input)."""
    m = re.fullmatch(re.escape(input_case) + r"_f(\d{4,})", case_id)
    return int(m.group(1)) if m else None


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

    def add(p: Path, cid: str | None = None, series_uid: str | None = None) -> None:
        cid = cid or case_stem(p)
        if cid in seen:
            problems.append(InputProblem(p, f"case id {cid!r} is also the name of {seen[cid]}; rename one of them"))
            return
        seen[cid] = p
        items.append(InputItem(cid, p, series_uid))

    def add_series(s_: SeriesStudy) -> None:
        add(s_.folder, s_.case_id, s_.series_uid)  # the reader reads only this series, whatever lies beside it

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            try:
                found = sorted(f for f in p.rglob("*") if f.is_file() and _is_candidate(f))
            except OSError as exc:
                problems.append(InputProblem(p, f"cannot list folder ({exc.strerror or exc})"))
                continue
            if not found:
                problems.append(InputProblem(p, "folder holds no image files"))
            dicom = [f for f in found if not f.name.lower().endswith(NOT_DICOM)]
            series, single = dicom_series_studies(dicom)
            files = sorted({*(f for f in found if f.name.lower().endswith(NOT_DICOM)), *single})
            studies = sorted([*((s.folder, s) for s in series), *((f, None) for f in files)],
                             key=lambda x: x[0].as_posix())
            for path, s_ in studies:
                if s_ is None:
                    add(path)
                else:
                    add_series(s_)
        elif p.exists():
            add(p)
        else:
            problems.append(InputProblem(p, "no such file or directory"))
    return items, problems


#: File endings that are never DICOM.
NOT_DICOM = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".nii", ".nii.gz")


def _is_candidate(f: Path) -> bool:
    """A file worth trying as input inside a folder: a known ending, or no ending and DICOM's ``DICM`` marker."""
    if f.name.startswith("."):
        return False
    if f.name.lower().endswith(INPUT_SUFFIXES):
        return True
    if f.suffix or f.name.upper() == "DICOMDIR":
        return False
    try:
        with f.open("rb") as fh:
            return has_dicom_preamble(fh.read(132))
    except OSError:
        return False


@dataclass(frozen=True)
class SeriesStudy:
    """The slices of one DICOM series in one folder, read together as one volume.

    Attributes:
        folder: the folder holding the slices.
        series_uid: their SeriesInstanceUID.
        case_id: the folder's name, and the series number after it when the folder holds several series
            (``<folder>_s3``).
        shared_folder: whether other series of several slices share the folder (then the case id names the
            series).
        n_files: the number of slice files.
    """

    folder: Path
    series_uid: str
    case_id: str
    shared_folder: bool
    n_files: int


_HEADER_TAGS = ["Modality", "SeriesInstanceUID", "SeriesNumber", "NumberOfFrames", "ImagePositionPatient",
                "SOPClassUID"]


def dicom_series_studies(files: Iterable[Path]) -> tuple[list[SeriesStudy], list[Path]]:
    """Group DICOM files into series studies; return those and the files that stay single studies.

    Single-frame images that carry a slice position (ImagePositionPatient: CT, MR, PET …) and share a
    SeriesInstanceUID with another such file in the same folder form one study (a volume). Multi-frame files,
    images without a position (an ultrasound or endoscopy frame) and files whose header cannot be read stay
    single studies (reading them later says what is wrong). DICOM objects without an image (RTSTRUCT, SEG, SR,
    KOs …) are skipped, with a log line per folder. Only headers are read.
    """
    by_folder: dict[Path, list[Path]] = {}
    for f in files:
        by_folder.setdefault(f.parent, []).append(f)
    series: list[SeriesStudy] = []
    single: list[Path] = []
    for folder, group in by_folder.items():
        slices: dict[str, list[tuple[Path, str]]] = {}
        skipped: dict[str, int] = {}
        for f in group:
            try:
                ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=_HEADER_TAGS, force=True)
                sop = ds.get("SOPClassUID")
                sop_name = getattr(sop, "name", "") if sop is not None else ""
                frames = int(ds.get("NumberOfFrames") or 1)
                positioned = ds.get("ImagePositionPatient") is not None
            except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError, KeyError):
                single.append(f)
                continue
            if sop_name and "Image" not in sop_name and not positioned:
                skipped[sop_name] = skipped.get(sop_name, 0) + 1
            elif positioned and frames == 1 and ds.get("SeriesInstanceUID"):
                slices.setdefault(str(ds.SeriesInstanceUID), []).append((f, str(ds.get("SeriesNumber") or "")))
            else:
                single.append(f)
        for name, n in skipped.items():
            log.info("%s: skipped %d DICOM object(s) that are not images (%s)", folder, n, name)
        shared = sum(len(v) > 1 for v in slices.values()) > 1
        for k, (uid, members) in enumerate(sorted(slices.items(), key=lambda kv: kv[1][0][0].name), start=1):
            if len(members) == 1:  # a lone positioned slice is an image of its own
                single.append(members[0][0])
                continue
            number = members[0][1] or str(k)
            cid = f"{folder.name}_s{number}" if shared else folder.name
            series.append(SeriesStudy(folder, uid, cid, shared, len(members)))
    return series, single

"""DICOM Segmentation objects (highdicom) for masks of DICOM inputs, referencing their source images.

A mask of a 2-D DICOM image, of every frame of a multi-frame image (an ultrasound cine), or of a DICOM series
(a CT volume) becomes one binary SEG instance with one segment per lesion ("Lesion", SNOMED CT 52988006,
algorithm type AUTOMATIC, algorithm radvlsm), in a new series of the source's study; only frames that hold
lesion voxels are stored (highdicom's default), each referencing its source image or frame.

The SEG necessarily repeats the source's patient and study modules (a SEG belongs to its patient's study): it
carries the identifiers the input carried, no more. A source whose patient module breaks the standard (a birth
date that is not a DICOM date, several patient names …) gets no SEG: :class:`InputError` names the attribute, never
its value, and nothing highdicom or pydicom says about such a value reaches an error message unredacted
(:func:`redact`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sr.codedict import codes

from radvlsm.errors import InputError
from radvlsm.io.record import ImageRecord

log = logging.getLogger(__name__)
# highdicom logs every module it copies from the source at INFO, quoting its UIDs: not for our users' logs
logging.getLogger("highdicom").setLevel(logging.WARNING)

SERIES_DESCRIPTION = "radvlsm lesion segmentation"

#: Attributes of the source whose values identify the patient: never quoted in an error message.
IDENTIFYING_ATTRIBUTES = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientBirthTime", "OtherPatientIDs", "OtherPatientNames",
    "PatientBirthName", "PatientMotherBirthName", "PatientAddress", "PatientTelephoneNumbers", "IssuerOfPatientID",
    "AccessionNumber", "ReferringPhysicianName", "InstitutionName",
)
#: Single-valued attributes of the patient and study modules that a SEG copies, and the form the standard gives
#: them (DA: ``YYYYMMDD``; TM: ``HHMMSS.FFFFFF`` or a prefix).
_DATE = re.compile(r"\d{8}")
_TIME = re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?")
_SINGLE_VALUED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                  "StudyID", "AccessionNumber", "ReferringPhysicianName")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("radvlsm")
    except PackageNotFoundError:
        return "0"


def source_datasets(record: ImageRecord) -> list[Dataset]:
    """The DICOM datasets (with pixels) behind a record read from DICOM, in the record's order: one for a 2-D
    image or a multi-frame file, the series' slices in ``z`` order for a volume.

    Raises:
        InputError: the record did not come from DICOM, or its slices cannot be found again.
    """
    if record.source_format == "dicom":
        return [pydicom.dcmread(record.path)]
    if record.source_format != "dicom-series" or record.instance_uids is None:
        raise InputError(record.path, "a DICOM SEG needs a DICOM input; this one was read as "
                         f"{record.source_format or 'an in-memory image'}")
    wanted = set(record.instance_uids)
    found: dict[str, Dataset] = {}
    for f in sorted(p for p in record.path.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            ds = pydicom.dcmread(f)
        except (pydicom.errors.InvalidDicomError, OSError):
            continue
        uid = str(ds.get("SOPInstanceUID", ""))
        if uid in wanted:
            found[uid] = ds
    missing = [u for u in record.instance_uids if u not in found]
    if missing:
        raise InputError(record.path, f"{len(missing)} slice(s) of the series are no longer in the folder")
    return [found[u] for u in record.instance_uids]


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """highdicom's and pydicom's warnings about the source's values (a person name too long …) are silenced,
    warnings and pydicom's logger alike: they may quote a patient's values, and they name no file."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def redact(text: str, source: Dataset) -> str:
    """``text`` with every value of the source's :data:`IDENTIFYING_ATTRIBUTES` (whole, and each component of a
    person name or a multi-valued one) replaced by ``<redacted>``."""
    values: set[str] = set()
    for keyword in IDENTIFYING_ATTRIBUTES:
        elem = source.get(keyword)
        if elem is None:
            continue
        items = list(elem) if isinstance(elem, MultiValue) else [elem]
        for item in items:
            raw = str(item)
            values.add(raw)
            values.update(part for part in re.split(r"[\^=\\]", raw) if len(part) >= 3)
    for value in sorted((v for v in values if v.strip()), key=len, reverse=True):
        text = text.replace(value, "<redacted>")
    return text


def patient_module_problem(source: Dataset) -> str | None:
    """What keeps the source's patient and study modules from being copied into a SEG, naming the attribute
    (never its value); ``None`` when nothing does."""
    for keyword in _SINGLE_VALUED:
        elem = source.get(keyword)
        if isinstance(elem, MultiValue):
            return f"{keyword} holds {len(elem)} values where the standard allows one"
    for keyword, form, pattern in (("PatientBirthDate", "a DICOM date (YYYYMMDD)", _DATE),
                                   ("StudyDate", "a DICOM date (YYYYMMDD)", _DATE),
                                   ("StudyTime", "a DICOM time (HHMMSS)", _TIME)):
        value = str(source.get(keyword) or "").strip()
        if value and not pattern.fullmatch(value):
            return f"{keyword} is not {form}"
    return None


def write_dicom_seg(record: ImageRecord, mask: np.ndarray, out_path: Path, *, label: str = "lesion",
                    sources: Sequence[Dataset] | None = None) -> Path:
    """Write the ``mask`` of a DICOM input as a DICOM SEG file at ``out_path``.

    Args:
        record: the input as read (2-D image, multi-frame image or series volume).
        mask: the shape of ``record.pixels`` without colour channels: ``(H, W)``, ``(F, H, W)`` for a
            multi-frame image, ``(Z, Y, X)`` for a volume (slices in the record's order). Boolean: one segment;
            an integer label map (lesion ``k`` = ``k``, e.g. the nodules of a CT study): segments ``1 … max``,
            labelled ``"<label> k"``, in the same numbers (a lesion not found is an empty segment).
        out_path: where to write (the parent folder is created); written whole or not at all.
        label: the segment's label (the segments' prefix for a label map).
        sources: the source datasets if already read (:func:`source_datasets` otherwise).

    Raises:
        InputError: the input is not DICOM, the mask does not fit it, or the source's header cannot be copied into
            a SEG (:func:`patient_module_problem`, or highdicom refusing it; the message is :func:`redact`-ed).
    """
    sources = list(sources) if sources is not None else source_datasets(record)
    shape = record.pixels.shape[:-1] if record.is_rgb else record.pixels.shape
    raw = np.asarray(mask)
    if raw.shape != shape:
        raise InputError(record.path, f"the mask is {raw.shape}, the image {shape}: they do not fit")
    if not raw.any():
        raise InputError(record.path, "the mask is empty: a DICOM SEG of nothing is not written")
    if raw.dtype == bool:
        m, labels = raw.astype(np.uint8), [label]
    else:
        if raw.min() < 0 or raw.max() > 255:
            raise InputError(record.path, f"a label map holds lesions 1..255, not {raw.min()}..{raw.max()}")
        m = raw.astype(np.uint8)
        labels = [f"{label} {k}" for k in range(1, int(m.max()) + 1)]
    study = sources[0]
    with _quiet_pydicom():
        problem = patient_module_problem(study)
    if problem is not None:
        raise InputError(record.path, f"no DICOM SEG written: the source's {problem}")
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=k,
            segment_label=text[:64],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=hd.AlgorithmIdentificationSequence(
                name="radvlsm", version=_version(), family=codes.DCM.ArtificialIntelligence),
        )
        for k, text in enumerate(labels, start=1)
    ]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    with _quiet_pydicom():
        try:
            seg = _segmentation(sources, m, descriptions, study)
            seg.save_as(tmp)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
            tmp.unlink(missing_ok=True)
            detail = redact(" ".join(str(exc).split()), study) or type(exc).__name__
            raise InputError(record.path, f"no DICOM SEG written: highdicom refused the source's header ({detail})") \
                from None
    tmp.replace(out_path)
    return out_path


def _segmentation(sources: list[Dataset], m: np.ndarray, descriptions: list[hd.seg.SegmentDescription],
                  study: Dataset) -> hd.seg.Segmentation:
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=m,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=int(study.get("SeriesNumber") or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="radvlsm",
        manufacturer_model_name="radvlsm",
        software_versions=_version(),
        device_serial_number="0",
        series_description=SERIES_DESCRIPTION,
    )

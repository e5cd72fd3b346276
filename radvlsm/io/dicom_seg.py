"""DICOM Segmentation objects (highdicom) for masks of DICOM inputs, referencing their source images.

A mask of a 2-D DICOM image, of every frame of a multi-frame image (an ultrasound cine), or of a DICOM series
(a CT volume) becomes one binary SEG instance with one segment per lesion ("Lesion", SNOMED CT 52988006,
algorithm type AUTOMATIC, algorithm radvlsm), in a new series of the source's study; only frames that hold
lesion voxels are stored (highdicom's default), each referencing its source image or frame.

The SEG necessarily repeats the source's patient and study modules (a SEG belongs to its patient's study): it
carries the identifiers the input carried, no more.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from radvlsm.errors import InputError
from radvlsm.io.record import ImageRecord

log = logging.getLogger(__name__)
# highdicom logs every module it copies from the source at INFO, quoting its UIDs: not for our users' logs
logging.getLogger("highdicom").setLevel(logging.WARNING)

SERIES_DESCRIPTION = "radvlsm lesion segmentation"


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
        InputError: the input is not DICOM, or the mask does not fit it.
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
    with warnings.catch_warnings():  # highdicom's warnings quote patient names: never let them reach a log
        warnings.simplefilter("ignore")
        seg = _segmentation(sources, m, descriptions, study)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    seg.save_as(tmp)
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

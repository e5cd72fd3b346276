"""DICOM: single files (2-D images, multi-frame cines) and single-series folders (3-D volumes).

Conventions of the pixels returned:

* **Modality LUT.** ``RescaleSlope``/``RescaleIntercept`` are applied. CT always comes back as
  ``float32`` Hounsfield units; other modalities come back as ``float32`` when the rescale is not the
  identity, else in the stored dtype.
* **MONOCHROME1** (low values displayed white) is inverted to the MONOCHROME2 convention (high = bright) over
  the range of the stored bits, except for CT, whose Hounsfield units are physical quantities and are kept:
  display windows map low HU to dark anyway.
* **Colour.** RGB and YBR (``YBR_FULL``, ``YBR_FULL_422``, …) come back as RGB ``(..., 3)``; PALETTE COLOR is
  expanded through its LUT.
* **Multi-frame** files (e.g. an ultrasound cine) keep their frames: ``(F, H, W[, 3])`` with ``frames = F``
  and no volume geometry.
* **Series folders** become a volume ``(Z, Y, X)`` sorted along the slice normal, with a
  :class:`~radvlsm.io.record.VolumeGeometry` in the DICOM/ITK patient frame (LPS). Missing slices, duplicate
  positions, irregular or sheared (gantry-tilted) stacks, mixed orientations and several series in one folder
  are reported as :class:`~radvlsm.errors.ImageReadError`, never guessed around. Non-image objects (RTSTRUCT,
  SR, presentation states, DICOMDIR …) in the folder are skipped; an RTSTRUCT's contours are rasterised onto the
  series by :mod:`radvlsm.io.rtstruct`, which matches them by the SOP instance UIDs kept in ``instance_uids``.

Privacy: patient identifiers (every element of group 0010: PatientName, PatientID, PatientBirthDate …) are
removed from each dataset right after it is parsed, and any pydicom message is scrubbed of their values before
it reaches an error message or a log line.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, get_decoder
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from radvlsm.errors import ImageReadError
from radvlsm.io.record import ImageRecord, Modality, VolumeGeometry

logger = logging.getLogger(__name__)

DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".ima"})

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_PATIENT_GROUP = 0x0010
# Everything pydicom and its pixel plugins raise for corrupt, truncated or unsupported input.
_DICOM_ERRORS = (
    InvalidDicomError,
    OSError,
    EOFError,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    IndexError,
    NotImplementedError,
    RuntimeError,
    OverflowError,
    struct.error,
    MemoryError,
)

# Tolerances for the geometry checks of a slice stack.
_ORIENTATION_ATOL = 1e-3  # direction cosines
_SPACING_RTOL = 1e-3  # pixel spacing between slices
_DUPLICATE_FRACTION = 0.05  # a step under 5 % of the median step is a duplicate position
_GAP_FACTOR = 1.5  # a step over 1.5x the median step means missing slices
_IRREGULAR_FRACTION = 0.1  # slice off its regular-grid position by > 10 % of the spacing
_SHEAR_PIXELS = 0.1  # in-plane drift of the slice origin > 0.1 pixel: sheared stack (gantry tilt)


# --------------------------------------------------------------------------------------------------------
# Privacy
# --------------------------------------------------------------------------------------------------------


class _Scrubber:
    """Removes the values of patient identifiers from free text (error messages, warnings)."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add_from(self, ds: Dataset) -> None:
        """Remember the values of every group-0010 element of ``ds`` (read raw, never converted)."""
        for tag in list(ds.keys()):
            if tag.group != _PATIENT_GROUP:
                continue
            try:
                raw = ds.get_item(tag).value
            except _DICOM_ERRORS:
                continue
            if raw is None or isinstance(raw, Sequence):
                continue
            if isinstance(raw, bytes):
                text = raw.decode("latin-1", errors="ignore")
            elif isinstance(raw, list | tuple | MultiValue):
                text = "\\".join(str(v) for v in raw)
            else:
                text = str(raw)  # str, numbers, PersonName (datasets built in memory)
            text = text.strip(" \x00")
            if len(text) >= 2:
                self._secrets.add(text)
            # Person names: also each component (family^given^middle, and alphabetic=ideographic groups).
            for part in re.split(r"[\^=\\]", text):
                part = part.strip(" \x00")
                if len(part) >= 3:
                    self._secrets.add(part)

    def update(self, other: _Scrubber) -> None:
        """Also redact what ``other`` redacts (the identifiers of several files of one series)."""
        self._secrets |= other._secrets

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "<redacted>")
        return text


def _drop_patient_identifiers(ds: Dataset) -> None:
    """Delete every element of the patient group (0010,xxxx) from ``ds``."""
    for tag in [t for t in list(ds.keys()) if t.group == _PATIENT_GROUP]:
        del ds[tag]


@contextmanager
def _captured_warnings(path: Path, scrub: _Scrubber) -> Iterator[None]:
    """Turn pydicom warnings into scrubbed DEBUG log lines (their text may quote element values)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                logger.debug("%s: %s", path, scrub(str(w.message)))


# --------------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------------


def has_dicom_preamble(head: bytes) -> bool:
    """True when ``head`` (the first >= 132 bytes of a file) carries the DICOM Part 10 ``DICM`` marker."""
    return len(head) >= 132 and head[128:132] == b"DICM"


def _reason(exc: BaseException, scrub: _Scrubber) -> str:
    msg = scrub(str(exc)).strip() or type(exc).__name__
    return msg if len(msg) <= 200 else msg[:197] + "..."


def read_dataset(path: Path, *, force: bool = False, defer: bool = False) -> Dataset:
    """Parse one DICOM file; patient identifiers are removed before the dataset is returned.

    Args:
        path: the file.
        force: also accept files without the Part 10 preamble (``force=True`` of pydicom); the result must
            then at least have a SOP Class UID or pixel data.
        defer: leave large values (pixel data) on disk until they are used.

    Raises:
        ImageReadError: not a DICOM file, truncated or corrupt.
    """
    scrub = _Scrubber()
    try:
        with _captured_warnings(path, scrub):
            ds = pydicom.dcmread(path, force=force, defer_size="4 KB" if defer else None)
            scrub.add_from(ds)
            if force and "SOPClassUID" not in ds and not any(k in ds for k in _PIXEL_KEYWORDS):
                raise ImageReadError(path, "not a DICOM file (no DICM marker and no DICOM image elements)")
            _drop_patient_identifiers(ds)
    except ImageReadError:
        raise
    except InvalidDicomError as exc:
        raise ImageReadError(path, f"not a DICOM file ({_reason(exc, scrub)})") from exc
    except PermissionError as exc:
        raise ImageReadError(path, "permission denied: the file is not readable") from exc
    except _DICOM_ERRORS as exc:
        raise ImageReadError(path, f"corrupt or truncated DICOM file: {_reason(exc, scrub)}") from exc
    ds.__dict__["_radvlsm_scrub"] = scrub  # keep the scrubber for messages raised while decoding pixels
    return ds


def _scrubber_of(ds: Dataset) -> _Scrubber:
    scrub = ds.__dict__.get("_radvlsm_scrub")
    return scrub if isinstance(scrub, _Scrubber) else _Scrubber()


def scrubber_of(ds: Dataset) -> Callable[[str], str]:
    """The redaction of a dataset read by :func:`read_dataset`: text in, text with the values of its patient
    identifiers replaced by ``<redacted>`` out (for messages that quote free-text elements such as ROI names)."""
    return _scrubber_of(ds)


def _sop_name(ds: Dataset) -> str:
    uid = ds.get("SOPClassUID")
    if not uid:
        return "object of unknown SOP class"
    name = UID(str(uid)).name
    return name if name and name != str(uid) else f"SOP class {uid}"


def has_pixel_data(ds: Dataset) -> bool:
    """True when the dataset holds an image (Pixel Data, Float or Double Float Pixel Data)."""
    return any(k in ds for k in _PIXEL_KEYWORDS)


def _transfer_syntax(ds: Dataset) -> UID:
    """The transfer syntax of ``ds``; without a file meta header it is inferred from the encoding."""
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return UID(str(ts))
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit in (None, True):
        ts = ImplicitVRLittleEndian
    else:
        ts = ExplicitVRLittleEndian if little in (None, True) else ExplicitVRBigEndian
    if meta is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    return UID(ts)


def _check_decodable(ds: Dataset, path: Path) -> None:
    """Raise a clear error for compressed pixel data that no installed plugin can decode."""
    ts = _transfer_syntax(ds)
    if not ts.is_compressed:
        return
    label = f"'{ts.name}' ({ts})" if ts.name != str(ts) else f"'{ts}'"
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as exc:
        raise ImageReadError(path, f"unsupported transfer syntax {label}: pydicom has no decoder for it") from exc
    if not decoder.is_available:
        needs = "; ".join(decoder.missing_dependencies) or "a pixel-data plugin"
        raise ImageReadError(
            path,
            f"compressed transfer syntax {label} cannot be decoded: no decoder is installed (needs {needs})",
        )


# --------------------------------------------------------------------------------------------------------
# Pixel values
# --------------------------------------------------------------------------------------------------------


def _float(ds: Dataset, keyword: str, *, strict: bool = False) -> float | None:
    """The number in ``ds.<keyword>``; None when absent. Malformed values are None, or with ``strict`` a
    ``ValueError`` naming the element (for values that change what the pixels mean)."""
    try:
        value = ds.get(keyword)
        if value is None or value == "":
            return None
        out = float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        if strict:
            raise ValueError(f"{keyword} is not a number") from exc
        return None
    if not np.isfinite(out):
        if strict:
            raise ValueError(f"{keyword} is not finite")
        return None
    return out


def _functional_item(ds: Dataset, sequence: str, frame: int | None) -> Dataset | None:
    """An item of a functional-group macro (enhanced multi-frame), per-frame first, then shared."""
    if frame is not None:
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        if per_frame is not None and frame < len(per_frame):
            seq = per_frame[frame].get(sequence)
            if seq:
                return seq[0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        seq = shared[0].get(sequence)
        if seq:
            return seq[0]
    return None


def _rescale(ds: Dataset, frame: int | None = None) -> tuple[float, float, bool]:
    """``(slope, intercept, present)`` of the modality LUT of ``ds`` (or of one frame of it)."""
    source: Dataset = ds
    if "RescaleSlope" not in ds and "RescaleIntercept" not in ds:
        item = _functional_item(ds, "PixelValueTransformationSequence", frame)
        if item is not None:
            source = item
    slope = _float(source, "RescaleSlope", strict=True)
    intercept = _float(source, "RescaleIntercept", strict=True)
    present = slope is not None or intercept is not None
    return (1.0 if slope is None or slope == 0 else slope), (intercept or 0.0), present


def _stored_range(ds: Dataset) -> tuple[int, int]:
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    if int(ds.get("PixelRepresentation") or 0) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _decode(ds: Dataset, path: Path) -> np.ndarray:
    """Decode the pixel data of ``ds`` to ``(H, W)``, ``(H, W, 3)``, ``(F, H, W)`` or ``(F, H, W, 3)``."""
    if not has_pixel_data(ds):
        sop = _sop_name(ds)
        if "Image Storage" in sop:  # an image object whose pixel data is missing: cut short while copying?
            raise ImageReadError(
                path,
                f"DICOM file has no pixel data although it is a {sop} object: the file is truncated or incomplete",
            )
        raise ImageReadError(
            path,
            f"DICOM file has no pixel data: it is a {sop} (modality {ds.get('Modality', 'unknown')}), not an image",
        )
    _check_decodable(ds, path)
    scrub = _scrubber_of(ds)
    try:
        with _captured_warnings(path, scrub):
            arr = ds.pixel_array
            if str(ds.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR":
                arr = apply_color_lut(arr, ds)
    except ImageReadError:
        raise
    except PermissionError as exc:
        raise ImageReadError(path, "permission denied: the file is not readable") from exc
    except _DICOM_ERRORS as exc:
        ts = _transfer_syntax(ds)
        raise ImageReadError(
            path, f"cannot decode pixel data ({ts.name}; truncated or corrupt file?): {_reason(exc, scrub)}"
        ) from exc
    return np.asarray(arr)


def _to_values(arr: np.ndarray, ds: Dataset, modality: Modality, path: Path, frame: int | None = None) -> np.ndarray:
    """Apply the modality LUT and the MONOCHROME1 inversion to one decoded image (or all frames of one)."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    colour = arr.ndim >= 3 and arr.shape[-1] in (3, 4) and int(ds.get("SamplesPerPixel") or 1) > 1
    if colour or photometric == "PALETTE COLOR":
        return arr[..., :3] if arr.shape[-1] == 4 else arr
    n_frames = int(ds.get("NumberOfFrames") or 1)
    per_frame = frame is None and n_frames > 1 and "PerFrameFunctionalGroupsSequence" in ds
    if per_frame and "RescaleSlope" not in ds:
        rescales = [_rescale(ds, i) for i in range(n_frames)]
    else:
        rescales = [_rescale(ds, frame)]
    identity = all(s == 1.0 and i == 0.0 for s, i, _ in rescales)
    if modality is Modality.CT and not any(p for _, _, p in rescales):
        logger.warning("%s: CT without RescaleSlope/Intercept: stored values are taken as HU", path)
    values = arr
    if modality is Modality.CT or not identity:
        values = arr.astype(np.float64)
        if len(rescales) > 1:
            slopes = np.asarray([s for s, _, _ in rescales]).reshape(-1, *([1] * (arr.ndim - 1)))
            intercepts = np.asarray([i for _, i, _ in rescales]).reshape(-1, *([1] * (arr.ndim - 1)))
            values = values * slopes + intercepts
        else:
            slope, intercept, _ = rescales[0]
            values = values * slope + intercept
        values = values.astype(np.float32)
    if photometric == "MONOCHROME1":
        if modality is Modality.CT:
            logger.info("%s: MONOCHROME1 CT: Hounsfield units kept as they are (no inversion)", path)
        else:
            lo, hi = _stored_range(ds)
            slope, intercept, _ = rescales[0]
            a, b = sorted((lo * slope + intercept, hi * slope + intercept))
            if values.dtype.kind == "f":
                values = (a + b - values).astype(values.dtype)
            else:
                inverted = np.clip(int(a + b) - values.astype(np.int64), a, b)
                values = inverted.astype(arr.dtype)
    return values


def _pixel_spacing(ds: Dataset, path: Path) -> tuple[float, float] | None:
    """(row, column) spacing in mm: PixelSpacing, the enhanced Pixel Measures macro, ImagerPixelSpacing
    (detector plane, for projection X-ray) or the ultrasound regions calibration, in that order."""
    candidates: list[tuple[str, object]] = [("PixelSpacing", ds.get("PixelSpacing"))]
    item = _functional_item(ds, "PixelMeasuresSequence", 0)
    if item is not None:
        candidates.append(("PixelMeasuresSequence", item.get("PixelSpacing")))
    candidates.append(("ImagerPixelSpacing", ds.get("ImagerPixelSpacing")))
    for name, value in candidates:
        if value is None:
            continue
        try:
            row, col = (float(v) for v in value)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            logger.warning("%s: malformed %s ignored", path, name)
            continue
        if row > 0 and col > 0 and np.isfinite(row) and np.isfinite(col):
            if name == "ImagerPixelSpacing":
                logger.debug("%s: pixel spacing from ImagerPixelSpacing (detector plane)", path)
            return row, col
    return _ultrasound_spacing(ds)


def _ultrasound_spacing(ds: Dataset) -> tuple[float, float] | None:
    """Spacing from SequenceOfUltrasoundRegions when every calibrated region agrees (units: cm)."""
    regions = ds.get("SequenceOfUltrasoundRegions")
    if not regions:
        return None
    found = set()
    for region in regions:
        # Physical units code 3 = cm.
        if region.get("PhysicalUnitsXDirection") == 3 and region.get("PhysicalUnitsYDirection") == 3:
            dx, dy = _float(region, "PhysicalDeltaX"), _float(region, "PhysicalDeltaY")
            if dx and dy and dx > 0 and dy > 0:
                found.add((round(dy * 10.0, 9), round(dx * 10.0, 9)))
    return found.pop() if len(found) == 1 else None


# --------------------------------------------------------------------------------------------------------
# Single files
# --------------------------------------------------------------------------------------------------------


def _modality(ds: Dataset, hint: Modality | None) -> Modality:
    modality = Modality.from_dicom(ds.get("Modality"))
    if modality is Modality.OT and hint is not None:
        return hint
    return modality


def record_from_dataset(ds: Dataset, path: Path, modality_hint: Modality | None = None) -> ImageRecord:
    """Build the record of one DICOM file (2-D image or multi-frame stack) from its parsed dataset."""
    modality = _modality(ds, modality_hint)
    arr = _decode(ds, path)
    original = str(arr.dtype)
    n_frames = int(ds.get("NumberOfFrames") or 1)
    values = _to_values(arr, ds, modality, path)
    return ImageRecord(
        path=path,
        pixels=np.ascontiguousarray(values),
        modality=modality,
        original_dtype=original,
        pixel_spacing_mm=_pixel_spacing(ds, path),
        series_uid=str(ds.get("SeriesInstanceUID") or "") or None,
        frames=n_frames,
        source_format="dicom",
    )


def read_dicom_file(path: Path, *, force: bool = False, modality_hint: Modality | None = None) -> ImageRecord:
    """Read one DICOM file.

    Returns:
        A 2-D record ``(H, W)`` / ``(H, W, 3)`` with ``pixel_spacing_mm`` (row, column) when known, or for a
        multi-frame file a frame stack ``(F, H, W[, 3])`` with ``frames = F``. No volume geometry.

    Raises:
        ImageReadError: not DICOM, corrupt, no pixel data (RTSTRUCT, SR …), or compressed pixel data that no
            installed decoder handles (the message names the transfer syntax).
    """
    return _checked_record(read_dataset(path, force=force), path, modality_hint)


def _checked_record(ds: Dataset, path: Path, modality_hint: Modality | None) -> ImageRecord:
    """:func:`record_from_dataset`, with malformed element values reported as :class:`ImageReadError`."""
    try:
        return record_from_dataset(ds, path, modality_hint)
    except ImageReadError:
        raise
    except _DICOM_ERRORS as exc:
        raise ImageReadError(path, f"malformed DICOM data: {_reason(exc, _scrubber_of(ds))}") from exc


# --------------------------------------------------------------------------------------------------------
# Series folders
# --------------------------------------------------------------------------------------------------------


@dataclass
class _Slice:
    path: Path
    ds: Dataset
    position: np.ndarray  # ImagePositionPatient, mm (LPS)
    orientation: np.ndarray  # ImageOrientationPatient, 6 direction cosines
    spacing: tuple[float, float]  # (row, column) mm


def _vector(ds: Dataset, keyword: str, n: int, path: Path) -> np.ndarray:
    value = ds.get(keyword)
    if value is None:
        raise ImageReadError(path, f"cannot build a volume: the slice has no {keyword}")
    try:
        vec = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ImageReadError(path, f"cannot build a volume: malformed {keyword}") from exc
    if vec.shape != (n,) or not np.all(np.isfinite(vec)):
        raise ImageReadError(path, f"cannot build a volume: {keyword} must hold {n} finite numbers")
    return vec


def _make_slice(path: Path, ds: Dataset) -> _Slice:
    spacing = _pixel_spacing(ds, path)
    if spacing is None:
        given = ds.get("PixelSpacing")
        values = ", ".join(map(str, given if isinstance(given, list | tuple | MultiValue) else [given]))
        what = "no PixelSpacing" if given is None else f"no usable PixelSpacing (it holds {values}; two " \
            "positive numbers in mm are needed)"
        raise ImageReadError(path, f"cannot build a volume: the slice has {what}")
    return _Slice(
        path=path,
        ds=ds,
        position=_vector(ds, "ImagePositionPatient", 3, path),
        orientation=_vector(ds, "ImageOrientationPatient", 6, path),
        spacing=spacing,
    )


def _list_folder(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as it:
            entries = sorted(Path(e.path) for e in it)
    except PermissionError as exc:
        raise ImageReadError(folder, "permission denied: the folder cannot be listed") from exc
    except OSError as exc:
        raise ImageReadError(folder, f"cannot list folder: {exc.strerror or exc}") from exc
    return entries


def _dicom_kind(path: Path) -> str | None:
    """``"part10"``: the file has the DICM marker; ``"suffix"``: a DICOM extension without it; else None."""
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except PermissionError as exc:
        raise ImageReadError(path, "permission denied: the file is not readable") from exc
    except OSError as exc:
        raise ImageReadError(path, f"cannot read file: {exc.strerror or exc}") from exc
    if has_dicom_preamble(head):
        return "part10"
    return "suffix" if path.suffix.lower() in DICOM_SUFFIXES else None


def _series_label(uid: str, slices: list[tuple[Path, Dataset]]) -> str:
    ds = slices[0][1]
    number = ds.get("SeriesNumber")
    number = number if number not in (None, "") else "?"
    tail = uid[-12:] if uid else "(none)"
    return f"series {number} ({ds.get('Modality', '?')}, {len(slices)} files, UID ...{tail})"


def read_dicom_series(
    folder: Path, *, modality_hint: Modality | None = None, series_uid: str | None = None
) -> ImageRecord:
    """Read the one DICOM image series in ``folder`` (not recursive) as a volume; with ``series_uid``, the series
    of that SeriesInstanceUID among several in the folder.

    Files that are not DICOM (no ``DICM`` marker and no DICOM extension) and hidden files are ignored;
    DICOM objects without pixel data (RTSTRUCT, SR, DICOMDIR …) are skipped. A folder holding one multi-frame
    file is read as that file (see :func:`read_dicom_file`).

    Returns:
        A volume record: ``pixels`` ``(Z, Y, X)`` (``float32`` HU for CT) sorted by the position of each slice
        along the slice normal; ``geometry`` with ``origin`` = ImagePositionPatient of the first slice,
        ``direction`` columns = row direction, column direction and slice normal (from
        ImageOrientationPatient), ``spacing`` = (column spacing, row spacing, measured slice spacing) in mm;
        ``pixel_spacing_mm`` = (row, column). ``path`` is the folder.

    Raises:
        ImageReadError: naming the folder (or the offending file) for: no image, several series, inconsistent
            slices, duplicate positions, missing slices, irregular or sheared stacks, undecodable pixels.
    """
    files = [p for p in _list_folder(folder) if not p.name.startswith(".") and p.name.upper() != "DICOMDIR"]
    subfolders = [p.name for p in files if p.is_dir()]
    images: list[tuple[Path, Dataset]] = []
    non_image: Counter[str] = Counter()
    ignored = 0
    for f in files:
        if not f.is_file():
            continue
        kind = _dicom_kind(f)
        if kind is None:
            ignored += 1
            continue
        ds = read_dataset(f, force=kind == "suffix", defer=True)
        if has_pixel_data(ds):
            images.append((f, ds))
        elif "Image Storage" in _sop_name(ds):
            _decode(ds, f)  # raises: an image object without pixel data is a truncated slice
        else:
            non_image[_sop_name(ds)] += 1
    if ignored:
        logger.debug("%s: ignored %d non-DICOM file(s)", folder, ignored)
    for name, count in non_image.items():
        logger.info("%s: skipped %d non-image DICOM object(s): %s", folder, count, name)
    if not images:
        if non_image:
            what = ", ".join(f"{n} {name}" for name, n in non_image.items())
            raise ImageReadError(folder, f"no DICOM image in the folder, only non-image objects ({what})")
        hint = f" (it has subfolders: {', '.join(subfolders[:5])}; pass one series folder)" if subfolders else ""
        raise ImageReadError(folder, f"no DICOM image files in the folder{hint}")

    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    for f, ds in images:
        groups.setdefault(str(ds.get("SeriesInstanceUID") or ""), []).append((f, ds))
    if series_uid is not None:
        if series_uid not in groups:
            raise ImageReadError(folder, f"no image of series UID ...{series_uid[-12:]} in the folder any more")
        groups = {series_uid: groups[series_uid]}
    if len(groups) > 1:
        labels = "; ".join(_series_label(uid, items) for uid, items in groups.items())
        raise ImageReadError(
            folder,
            f"the folder holds {len(groups)} image series ({labels}); put each series in its own folder",
        )
    ((uid, items),) = groups.items()
    multi = [f for f, ds in items if int(ds.get("NumberOfFrames") or 1) > 1]
    if multi:
        if len(items) == 1:
            return _checked_record(items[0][1], items[0][0], modality_hint)
        raise ImageReadError(
            folder,
            f"the series mixes multi-frame ({multi[0].name}) and other files; read the files one by one",
        )
    slices = [_make_slice(f, ds) for f, ds in items]
    try:
        return _stack_slices(folder, slices, uid, modality_hint)
    except ImageReadError:
        raise
    except _DICOM_ERRORS as exc:
        scrub = _Scrubber()
        for _, ds in items:
            scrub.update(_scrubber_of(ds))
        raise ImageReadError(folder, f"malformed DICOM data: {_reason(exc, scrub)}") from exc


def _check_consistent(folder: Path, slices: list[_Slice]) -> None:
    first = slices[0]
    rows, cols = first.ds.get("Rows"), first.ds.get("Columns")
    for s in slices:
        if int(s.ds.get("SamplesPerPixel") or 1) != 1:
            raise ImageReadError(folder, f"colour slice {s.path.name}: a volume must be grayscale")
    for s in slices[1:]:
        if (s.ds.get("Rows"), s.ds.get("Columns")) != (rows, cols):
            raise ImageReadError(
                folder,
                f"slices differ in size: {first.path.name} is {cols}x{rows}, {s.path.name} is "
                f"{s.ds.get('Columns')}x{s.ds.get('Rows')}",
            )
        if not np.allclose(s.orientation, first.orientation, atol=_ORIENTATION_ATOL):
            raise ImageReadError(
                folder,
                f"slices differ in ImageOrientationPatient ({first.path.name} vs {s.path.name}); "
                "a localizer or a second orientation in the series?",
            )
        if not np.allclose(s.spacing, first.spacing, rtol=_SPACING_RTOL):
            raise ImageReadError(
                folder,
                f"slices differ in PixelSpacing ({first.path.name} {first.spacing} vs {s.path.name} {s.spacing})",
            )


def _stack_slices(folder: Path, slices: list[_Slice], uid: str, modality_hint: Modality | None) -> ImageRecord:
    _check_consistent(folder, slices)
    first = slices[0]
    row_dir, col_dir = first.orientation[:3], first.orientation[3:]
    if (
        abs(np.linalg.norm(row_dir) - 1) > 1e-2
        or abs(np.linalg.norm(col_dir) - 1) > 1e-2
        or abs(float(row_dir @ col_dir)) > 1e-2
    ):
        raise ImageReadError(folder, "ImageOrientationPatient is not a pair of orthogonal unit vectors")
    row_dir = row_dir / np.linalg.norm(row_dir)
    col_dir = col_dir / np.linalg.norm(col_dir)
    normal = np.cross(row_dir, col_dir)
    normal /= np.linalg.norm(normal)

    positions = np.stack([s.position for s in slices])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    slices = [slices[i] for i in order]
    positions, along = positions[order], along[order]
    n = len(slices)
    if n == 1:
        slice_spacing = _float(first.ds, "SpacingBetweenSlices") or _float(first.ds, "SliceThickness")
        if not slice_spacing or slice_spacing <= 0:
            logger.warning("%s: one-slice series without SliceThickness: slice spacing set to 1 mm", folder)
            slice_spacing = 1.0
    else:
        slice_spacing = _measure_spacing(folder, slices, positions, along, normal)

    modality = _modality(first.ds, modality_hint)
    planes = []
    original = ""
    for s in slices:
        arr = _decode(s.ds, s.path)
        if arr.ndim != 2:
            raise ImageReadError(s.path, f"expected a 2-D slice, got pixel array of shape {arr.shape}")
        original = original or str(arr.dtype)
        planes.append(_to_values(arr, s.ds, modality, s.path))
    dtypes = {p.dtype for p in planes}
    volume = np.stack(planes).astype(np.float32 if any(d.kind == "f" for d in dtypes) else np.result_type(*dtypes))

    direction = np.column_stack([row_dir, col_dir, normal])
    geometry = VolumeGeometry(
        spacing=(first.spacing[1], first.spacing[0], float(slice_spacing)),
        origin=tuple(float(v) for v in positions[0]),  # type: ignore[arg-type]
        direction=tuple(float(v) for v in direction.ravel()),  # type: ignore[arg-type]
    )
    logger.debug("%s: %d slices, spacing %s mm", folder, n, geometry.spacing)
    return ImageRecord(
        path=folder,
        pixels=np.ascontiguousarray(volume),
        modality=modality,
        original_dtype=original,
        pixel_spacing_mm=first.spacing,
        geometry=geometry,
        series_uid=uid or None,
        frames=1,
        source_format="dicom-series",
        instance_uids=tuple(str(s.ds.get("SOPInstanceUID") or "") for s in slices),
    )


def _measure_spacing(
    folder: Path, slices: list[_Slice], positions: np.ndarray, along: np.ndarray, normal: np.ndarray
) -> float:
    """Check the sorted slice positions form a regular stack along ``normal``; return its spacing in mm."""
    steps = np.diff(along)
    median = float(np.median(steps))
    duplicate = steps <= max(1e-4, _DUPLICATE_FRACTION * median)
    if duplicate.any():
        k = int(np.argmax(duplicate))
        raise ImageReadError(
            folder,
            f"duplicate slice position: {slices[k].path.name} and {slices[k + 1].path.name} are both at "
            f"{along[k]:.3f} mm along the slice normal ({int(duplicate.sum())} duplicate(s) in "
            f"{len(slices)} slices)",
        )
    gaps = steps > _GAP_FACTOR * median
    if gaps.any():
        k = int(np.argmax(gaps))
        missing = max(1, round(steps[k] / median) - 1)
        raise ImageReadError(
            folder,
            f"missing slice(s): gap of {steps[k]:.3f} mm between {slices[k].path.name} "
            f"({along[k]:.3f} mm) and {slices[k + 1].path.name} ({along[k + 1]:.3f} mm), median spacing "
            f"{median:.3f} mm: about {missing} slice(s) missing ({int(gaps.sum())} gap(s) in total)",
        )
    spacing = float((along[-1] - along[0]) / (len(slices) - 1))
    off_grid = np.abs(along - (along[0] + spacing * np.arange(len(slices))))
    if off_grid.max() > _IRREGULAR_FRACTION * spacing:
        k = int(np.argmax(off_grid))
        raise ImageReadError(
            folder,
            f"irregular slice spacing: {slices[k].path.name} is {off_grid[k]:.3f} mm off a regular "
            f"{spacing:.3f} mm grid",
        )
    in_plane = positions - positions[0] - np.outer(along - along[0], normal)
    drift = float(np.linalg.norm(in_plane, axis=1).max())
    if drift > _SHEAR_PIXELS * min(slices[0].spacing):
        raise ImageReadError(
            folder,
            f"slices are not stacked along their normal (in-plane shift up to {drift:.3f} mm: gantry "
            "tilt or sheared acquisition); resample the series before use",
        )
    return spacing

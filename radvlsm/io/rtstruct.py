"""DICOM RT Structure Sets (RTSTRUCT): ROI contours rasterised onto the grid of the series they were drawn on.

An RTSTRUCT holds, per region of interest (ROI), closed polygons in patient coordinates (mm, LPS), one or more per
image plane. :func:`rasterise_roi` turns one ROI into a voxel mask on the grid of a DICOM series volume (as
:func:`radvlsm.io.read_image` returns it for a series folder):

* **Which series.** The RTSTRUCT must reference the series: its ``ReferencedFrameOfReferenceSequence`` →
  ``RTReferencedStudySequence`` → ``RTReferencedSeriesSequence`` lists ``SeriesInstanceUID``\\ s, and contours may
  name the slice they lie on (``ContourImageSequence`` → ``ReferencedSOPInstanceUID``). A series UID or slice
  UID that the volume does not have is an error, never a silent misplacement.
* **Which slice.** Each contour's points are mapped through the volume's origin, direction cosines and spacing
  (:meth:`~radvlsm.io.record.VolumeGeometry.physical_to_index`); every point must lie within
  ``SLICE_TOLERANCE`` (a fraction of the slice spacing) of one slice plane. When the contour names its slice by
  UID, the two must agree.
* **Which voxels.** A voxel belongs to the ROI when its *centre* is inside the polygons of its slice by the
  **even-odd rule**, taken over all the ROI's contours on that slice together: a contour inside another is a hole
  (and a hole inside it an island again), as the DICOM standard describes for inner contours, and "keyhole"
  contours that trace a hole through a cut come out the same. Scan lines run through voxel centres; an edge counts
  for the rows ``min(y0, y1) <= y < max(y0, y1)`` (a vertex on a row is counted once, horizontal edges never),
  and a centre counts as inside when an odd number of crossings lie at or left of it (a centre exactly on a
  left edge is in, on a right edge out).
* Only ``CLOSED_PLANAR`` contours enclose an area; ``POINT`` and ``OPEN_*`` contours are skipped (logged).

Errors (:class:`~radvlsm.errors.ImageReadError`, naming the RTSTRUCT file): not an RTSTRUCT; an RTSTRUCT of
another series; an ROI name it does not have (the names it has are listed); an ROI without closed contours; a
contour off the grid (outside the volume in-plane, between slices, or not in one slice plane); malformed contour
data.

Privacy: the file is parsed by :func:`radvlsm.io.dicom.read_dataset`, which removes every patient identifier
(group 0010) and keeps their values to redact them from any text; ROI names and every message here pass through
that redaction too.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import RTStructureSetStorage

from radvlsm.errors import ImageReadError
from radvlsm.io.dicom import has_dicom_preamble, read_dataset, scrubber_of
from radvlsm.io.record import ImageRecord, Modality, VolumeGeometry

logger = logging.getLogger(__name__)

__all__ = [
    "IN_PLANE_TOLERANCE",
    "SLICE_TOLERANCE",
    "RoiMask",
    "StructureSet",
    "is_rtstruct",
    "rasterise_roi",
    "read_structure_set",
]

#: How far (in slice spacings) a contour point may lie from the slice plane it is assigned to.
SLICE_TOLERANCE = 0.1
#: How far (in voxels) beyond the outermost voxel centres a contour point may lie: half a voxel is the edge of the
#: image itself.
IN_PLANE_TOLERANCE = 0.5

_CLOSED = "CLOSED_PLANAR"
# What pydicom raises for malformed elements, met when sequences are parsed lazily.
_PARSE_ERRORS = (InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
                 struct.error)


@dataclass(frozen=True)
class StructureSet:
    """What an RTSTRUCT file says about itself, without rasterising anything.

    Attributes:
        path: the file.
        roi_names: the names of its ROIs (``StructureSetROISequence``), in file order.
        series_uids: the image series it references (``RTReferencedSeriesSequence``); empty when it names none.
        instance_uids: the SOP instance UIDs of the slices it references (in the referenced series and in the
            contours' ``ContourImageSequence``).
        frame_of_reference_uid: its (first) referenced frame of reference, ``None`` when absent.
    """

    path: Path
    roi_names: tuple[str, ...]
    series_uids: tuple[str, ...]
    instance_uids: frozenset[str]
    frame_of_reference_uid: str | None


@dataclass(frozen=True, eq=False)
class RoiMask:
    """One ROI of an RTSTRUCT rasterised onto the grid of its image series.

    Attributes:
        path: the RTSTRUCT file.
        roi_name: the ROI.
        mask: read-only ``bool`` array ``(Z, Y, X)``, the shape of the series' pixels (``True`` = inside).
        geometry: the series' geometry (the mask's voxels are the series' voxels).
        series_uid: the series' SeriesInstanceUID.
        n_contours: closed planar contours rasterised.
    """

    path: Path
    roi_name: str
    mask: np.ndarray
    geometry: VolumeGeometry
    series_uid: str | None
    n_contours: int

    def __post_init__(self) -> None:
        if self.mask.flags.writeable:
            arr = self.mask.view()
            arr.flags.writeable = False
            object.__setattr__(self, "mask", arr)

    def to_record(self) -> ImageRecord:
        """The mask as a volume :class:`ImageRecord` (``uint8`` 0/1, the series' geometry), e.g. to write it."""
        return ImageRecord(
            path=self.path,
            pixels=self.mask.astype(np.uint8),
            modality=Modality.OT,
            original_dtype="uint8",
            pixel_spacing_mm=(self.geometry.spacing[1], self.geometry.spacing[0]),
            geometry=self.geometry,
            series_uid=self.series_uid,
            source_format="rtstruct",
        )


# --------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------


def is_rtstruct(path: str | Path) -> bool:
    """True when ``path`` is a DICOM file holding an RT Structure Set (header only; never raises)."""
    path = Path(path)
    try:
        if not path.is_file():
            return False
        with path.open("rb") as fh:
            head = fh.read(132)
        if not has_dicom_preamble(head):
            return False
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "Modality"])
    except _PARSE_ERRORS:
        return False  # a probe: what cannot be read is not an RTSTRUCT (read_image says why)
    return _is_structure_set(ds)


def _is_structure_set(ds: Dataset) -> bool:
    return str(ds.get("SOPClassUID", "")) == RTStructureSetStorage or str(ds.get("Modality", "")) == "RTSTRUCT"


def _load(path: Path) -> Dataset:
    ds = read_dataset(path)
    if not _is_structure_set(ds):
        what = str(ds.get("Modality") or "unknown modality")
        raise ImageReadError(path, f"not an RT Structure Set (RTSTRUCT): the DICOM file is a {what} object")
    return ds


def _items(ds: Dataset, keyword: str) -> Iterator[Dataset]:
    yield from ds.get(keyword) or ()


def _image_uids(item: Dataset) -> list[str]:
    """The ReferencedSOPInstanceUIDs of an item's ContourImageSequence (empty ones left out)."""
    uids = (str(im.get("ReferencedSOPInstanceUID") or "") for im in _items(item, "ContourImageSequence"))
    return [u for u in uids if u]


def _structure_set(ds: Dataset, path: Path) -> StructureSet:
    scrub = scrubber_of(ds)
    series: list[str] = []
    instances: set[str] = set()
    frame: str | None = None
    for for_item in _items(ds, "ReferencedFrameOfReferenceSequence"):
        frame = frame or (str(for_item.get("FrameOfReferenceUID") or "") or None)
        for study in _items(for_item, "RTReferencedStudySequence"):
            for ser in _items(study, "RTReferencedSeriesSequence"):
                uid = str(ser.get("SeriesInstanceUID") or "")
                if uid and uid not in series:
                    series.append(uid)
                instances.update(_image_uids(ser))
    for roi in _items(ds, "ROIContourSequence"):
        for contour in _items(roi, "ContourSequence"):
            instances.update(_image_uids(contour))
    names = tuple(scrub(str(item.get("ROIName") or "")).strip() for item in _items(ds, "StructureSetROISequence"))
    return StructureSet(
        path=path,
        roi_names=names,
        series_uids=tuple(series),
        instance_uids=frozenset(instances),
        frame_of_reference_uid=frame,
    )


def read_structure_set(path: str | Path) -> StructureSet:
    """The ROI names and references of an RTSTRUCT file.

    Raises:
        ImageReadError: not a readable DICOM file, or not an RTSTRUCT.
    """
    path = Path(path)
    ds = _load(path)
    try:
        return _structure_set(ds, path)
    except _PARSE_ERRORS as exc:
        raise _malformed(ds, path, exc) from exc


def _malformed(ds: Dataset, path: Path, exc: BaseException) -> ImageReadError:
    detail = scrubber_of(ds)(str(exc)).strip() or type(exc).__name__
    return ImageReadError(path, f"malformed RTSTRUCT: {detail[:200]}")


# --------------------------------------------------------------------------------------------------------
# Rasterising
# --------------------------------------------------------------------------------------------------------


def _tail(uid: str) -> str:
    return f"...{uid[-12:]}" if len(uid) > 12 else uid


def _check_series(info: StructureSet, series: ImageRecord, path: Path) -> dict[str, int]:
    """Check the RTSTRUCT refers to ``series``; return the slice index of each SOP instance UID of the series."""
    if not series.is_volume or series.geometry is None:
        raise ImageReadError(path, f"an RTSTRUCT is rasterised onto a volume; {series.path.name} is a 2-D image")
    if not series.series_uid or series.instance_uids is None:
        raise ImageReadError(
            path,
            f"{series.path.name} is not a DICOM series (no SeriesInstanceUID to match the RTSTRUCT's references): "
            "read the DICOM series folder the contours were drawn on",
        )
    by_uid = {uid: k for k, uid in enumerate(series.instance_uids) if uid}
    if info.series_uids and series.series_uid not in info.series_uids:
        refs = ", ".join(_tail(u) for u in info.series_uids)
        raise ImageReadError(
            path,
            f"RTSTRUCT of another series: it references series {refs}, the image {series.path.name} is series "
            f"{_tail(series.series_uid)}",
        )
    if info.instance_uids and not info.instance_uids & set(by_uid):
        raise ImageReadError(
            path,
            f"RTSTRUCT of another series: none of the {len(info.instance_uids)} slices it references is a slice of "
            f"{series.path.name} (series {_tail(series.series_uid)})",
        )
    if not info.series_uids and not info.instance_uids:
        logger.warning(
            "%s: the RTSTRUCT references no series or slice; contours are placed by their coordinates only", path
        )
    return by_uid


def _pick_roi(ds: Dataset, info: StructureSet, roi: str | None, path: Path) -> tuple[str, list[Dataset]]:
    """The ROI's name and its contour items."""
    scrub = scrubber_of(ds)
    items = list(_items(ds, "StructureSetROISequence"))
    names = [str(item.get("ROIName") or "").strip() for item in items]
    available = ", ".join(repr(n) for n in info.roi_names) or "none"
    if roi is None:
        if len(names) != 1:
            raise ImageReadError(path, f"the RTSTRUCT has {len(names)} ROIs: choose one by name (it has: {available})")
        roi = names[0]
    matches = [i for i, name in enumerate(names) if name == roi.strip()]
    if not matches:
        folded = [info.roi_names[i] for i, n in enumerate(names) if n.casefold() == roi.strip().casefold()]
        hint = f" (did you mean {folded[0]!r}?)" if folded else ""
        raise ImageReadError(path, f"no ROI named {scrub(roi)!r} in the RTSTRUCT{hint}; it has: {available}")
    if len(matches) > 1:
        numbers = ", ".join(str(items[i].get("ROINumber", "?")) for i in matches)
        raise ImageReadError(path, f"{len(matches)} ROIs are named {scrub(roi)!r} (ROI numbers {numbers})")
    number = str(items[matches[0]].get("ROINumber", ""))
    contours: list[Dataset] = []
    for item in _items(ds, "ROIContourSequence"):
        if str(item.get("ReferencedROINumber", "")) == number:
            contours.extend(_items(item, "ContourSequence"))
    return names[matches[0]], contours


def _points(contour: Dataset, path: Path, roi: str, n: int) -> np.ndarray:
    try:
        values = np.asarray([float(v) for v in contour.get("ContourData") or ()], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ImageReadError(path, f"ROI {roi!r}, contour {n}: ContourData is not a list of numbers") from exc
    if values.size == 0 or values.size % 3 or not np.all(np.isfinite(values)):
        raise ImageReadError(
            path, f"ROI {roi!r}, contour {n}: ContourData must hold finite (x, y, z) triplets, got {values.size} values"
        )
    return values.reshape(-1, 3)


def _slice_of(
    points: np.ndarray,
    contour: Dataset,
    by_uid: dict[str, int],
    series: ImageRecord,
    path: Path,
    where: str,
) -> tuple[int, np.ndarray]:
    """The slice a contour lies on and its vertices in continuous (x, y) voxel indices; errors for contours off
    the grid."""
    geo = series.geometry
    assert geo is not None  # checked by _check_series
    nz, ny, nx = series.pixels.shape[:3]
    ijk = geo.physical_to_index(points)
    k_float = float(np.mean(ijk[:, 2]))
    k = round(k_float)
    if float(np.ptp(ijk[:, 2])) > 2 * SLICE_TOLERANCE:
        raise ImageReadError(path, f"{where}: contour off the grid: its points are not in one slice plane")
    if not 0 <= k < nz:
        raise ImageReadError(
            path, f"{where}: contour off the grid: at slice position {k_float:.2f}, outside the series' {nz} slices"
        )
    spread = float(np.max(np.abs(ijk[:, 2] - k)))
    if spread > SLICE_TOLERANCE:
        raise ImageReadError(
            path,
            f"{where}: contour off the grid: {spread * geo.spacing[2]:.3f} mm from the nearest slice plane "
            f"(tolerance {SLICE_TOLERANCE * geo.spacing[2]:.3f} mm)",
        )
    x, y = ijk[:, 0], ijk[:, 1]
    tol = IN_PLANE_TOLERANCE
    if x.min() < -tol or y.min() < -tol or x.max() > nx - 1 + tol or y.max() > ny - 1 + tol:
        raise ImageReadError(
            path,
            f"{where}: contour off the grid: it reaches outside the {nx}x{ny} image in-plane (voxel x "
            f"{x.min():.1f}..{x.max():.1f}, y {y.min():.1f}..{y.max():.1f})",
        )
    named = _image_uids(contour)
    if named:
        if named[0] not in by_uid:
            raise ImageReadError(
                path, f"{where}: RTSTRUCT of another series: the contour's slice {_tail(named[0])} is not in it"
            )
        if by_uid[named[0]] != k:
            raise ImageReadError(
                path, f"{where}: the contour names slice {by_uid[named[0]]} of the series but lies on slice {k}"
            )
    return k, ijk[:, :2]


def fill_even_odd(polygons: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise polygons by the even-odd rule at pixel centres.

    Args:
        polygons: ``(N, 2)`` arrays of vertices in continuous pixel coordinates ``(x, y)`` (column, row); each is
            closed implicitly (last vertex to first).
        shape: ``(rows, columns)`` of the output.

    Returns:
        ``bool`` ``(rows, columns)``: pixel ``(y, x)`` is ``True`` when an odd number of polygon edges cross the
        row ``y`` at or left of ``x`` (edges cover the rows ``min(y0, y1) <= y < max(y0, y1)``).
    """
    ny, nx = shape
    toggles = np.zeros((ny, nx + 1), dtype=np.int32)
    for poly in polygons:
        pts = np.asarray(poly, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[0] < 3 or pts.shape[1] != 2:
            continue
        x0, y0 = pts[:, 0], pts[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        sloped = y0 != y1
        x0, y0, x1, y1 = x0[sloped], y0[sloped], x1[sloped], y1[sloped]
        first = np.clip(np.ceil(np.minimum(y0, y1)), 0, ny).astype(np.int64)
        stop = np.clip(np.ceil(np.maximum(y0, y1)), 0, ny).astype(np.int64)
        counts = np.maximum(stop - first, 0)
        if not counts.sum():
            continue
        edge = np.repeat(np.arange(counts.size), counts)
        offsets = np.arange(edge.size) - np.repeat(np.cumsum(counts) - counts, counts)
        rows = first[edge] + offsets
        t = (rows - y0[edge]) / (y1[edge] - y0[edge])
        xs = x0[edge] + t * (x1[edge] - x0[edge])
        cols = np.clip(np.ceil(xs), 0, nx).astype(np.int64)
        np.add.at(toggles, (rows, cols), 1)
    return (np.cumsum(toggles, axis=1)[:, :nx] % 2).astype(bool)


def rasterise_roi(rtstruct: str | Path, series: ImageRecord, roi: str | None = None) -> RoiMask:
    """Rasterise one ROI of an RTSTRUCT onto the voxel grid of the DICOM series it references.

    Args:
        rtstruct: the RTSTRUCT file.
        series: the series volume, as :func:`radvlsm.io.read_image` returns it for the series folder (it carries
            the series and slice UIDs the RTSTRUCT is matched against).
        roi: the ROI's name (exact; see :attr:`StructureSet.roi_names`); ``None`` when the RTSTRUCT has one ROI.

    Returns:
        A :class:`RoiMask` with the series' shape and geometry.

    Raises:
        ImageReadError: naming the RTSTRUCT file: not an RTSTRUCT, another series, no such ROI (the available
            names are listed), no closed contours, a contour off the grid, malformed contour data.
    """
    path = Path(rtstruct)
    ds = _load(path)
    try:
        return _rasterise(ds, path, series, roi)
    except _PARSE_ERRORS as exc:
        raise _malformed(ds, path, exc) from exc


def _rasterise(ds: Dataset, path: Path, series: ImageRecord, roi: str | None) -> RoiMask:
    info = _structure_set(ds, path)
    by_uid = _check_series(info, series, path)
    name, contours = _pick_roi(ds, info, roi, path)
    shown = scrubber_of(ds)(name)
    geo = series.geometry
    assert geo is not None  # checked by _check_series
    shape = series.pixels.shape[:3]
    per_slice: dict[int, list[np.ndarray]] = {}
    skipped: dict[str, int] = {}
    for n, contour in enumerate(contours, start=1):
        kind = str(contour.get("ContourGeometricType") or "").strip().upper() or "(no type)"
        if kind != _CLOSED:
            skipped[kind] = skipped.get(kind, 0) + 1
            continue
        points = _points(contour, path, shown, n)
        where = f"ROI {shown!r}, contour {n} (z {float(np.mean(points[:, 2])):.2f} mm)"
        k, xy = _slice_of(points, contour, by_uid, series, path, where)
        per_slice.setdefault(k, []).append(xy)
    for kind, count in skipped.items():
        logger.info("%s: ROI %r: skipped %d %s contour(s) (they enclose no area)", path, shown, count, kind)
    if not per_slice:
        what = f" (only {', '.join(skipped)} contours)" if skipped else ""
        raise ImageReadError(path, f"ROI {shown!r} has no closed planar contours{what}: nothing to rasterise")
    mask = np.zeros(shape, dtype=bool)
    for k, polygons in per_slice.items():
        mask[k] = fill_even_odd(polygons, (shape[1], shape[2]))
    n_contours = sum(len(p) for p in per_slice.values())
    if not mask.any():
        logger.warning("%s: ROI %r: its %d contour(s) enclose no voxel centre", path, shown, n_contours)
    logger.debug(
        "%s: ROI %r: %d contour(s) on %d slice(s), %d voxels", path, shown, n_contours, len(per_slice), int(mask.sum())
    )
    return RoiMask(
        path=path, roi_name=name, mask=mask, geometry=geo, series_uid=series.series_uid, n_contours=n_contours
    )

"""Score a folder of predicted masks against a folder of ground-truth masks (library of ``radvlsm evaluate``).

Files are paired by case id (:func:`radvlsm.io.case_stem`: the file name without its extension, ``.nii.gz``
counted as one), so ``pred/IMD002.png`` is scored against ``gt/IMD002.jpg``. Every case found on either side
is one row of the result, nothing is dropped silently:

* ``ok``: both masks read and scored (see :mod:`radvlsm.metrics.segmentation` for the metrics and their
  empty-mask conventions);
* ``missing_pred`` / ``missing_gt``: the case has a file on one side only;
* ``error``: a mask could not be read, the two masks differ in size, or a case has several files on one side;
  ``reason`` says which. One bad case never stops the others.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import numpy as np

from radvlsm.errors import InputError, RadvlsmError
from radvlsm.io import ImageRecord, case_stem, geometry_difference, read_image, read_mask
from radvlsm.metrics.segmentation import score_masks

__all__ = [
    "CSV_COLUMNS",
    "MASK_SUFFIXES",
    "SUMMARY_METRICS",
    "CaseResult",
    "CaseStatus",
    "FolderEvaluation",
    "MetricSummary",
    "ProgressCallback",
    "evaluate_case",
    "evaluate_folders",
    "list_masks",
]

log = logging.getLogger(__name__)

#: File name endings taken as masks (lower-cased comparison); other files in the folders are ignored.
MASK_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".nii", ".nii.gz")
_RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})

#: Metrics summarised over the evaluated cases.
SUMMARY_METRICS: tuple[str, ...] = ("dice", "iou", "hd95", "assd")

#: Columns of the per-case CSV, in order.
CSV_COLUMNS: tuple[str, ...] = (
    "case_id", "dice", "iou", "hd95", "assd", "unit", "pred_area", "gt_area", "status", "reason",
    "pred_file", "gt_file",
)

CaseStatus = Literal["ok", "missing_pred", "missing_gt", "error"]

#: ``progress(done, total, case_id)``, called once after each case.
ProgressCallback = Callable[[int, int, str], None]


@dataclass(frozen=True)
class CaseResult:
    """One row of the evaluation: one case id.

    Metric fields are NaN unless ``status == "ok"`` (and HD95/ASSD are NaN for an ``ok`` case whose mask is
    empty on exactly one side). Distances are in ``unit`` (``"mm"`` or ``"px"``), areas in ``unit``² (³ for
    volumes), or pixel counts for ``"px"``.
    """

    case_id: str
    status: CaseStatus
    dice: float = math.nan
    iou: float = math.nan
    hd95: float = math.nan
    assd: float = math.nan
    unit: str = ""
    pred_area: float = math.nan
    gt_area: float = math.nan
    reason: str = ""
    pred_file: str = ""
    gt_file: str = ""

    def csv_row(self) -> dict[str, str]:
        """The row as CSV strings: floats at full precision (``nan`` for an undefined metric of an ``ok``
        case), empty metric cells for cases that were not evaluated."""
        row: dict[str, str] = {}
        for col in CSV_COLUMNS:
            value = getattr(self, col)
            if isinstance(value, float):
                row[col] = repr(value) if self.status == "ok" else ""
            else:
                row[col] = str(value)
        return row


@dataclass(frozen=True)
class MetricSummary:
    """Summary of one metric over the evaluated cases, ignoring NaN values.

    ``n`` is the number of non-NaN values; ``std`` is the population standard deviation (``ddof=0``); all
    three statistics are NaN when ``n == 0``.
    """

    mean: float
    median: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray) -> MetricSummary:
        arr = np.asarray(values, dtype=np.float64)
        arr = arr[~np.isnan(arr)]
        if arr.size == 0:
            return cls(math.nan, math.nan, math.nan, 0)
        return cls(float(arr.mean()), float(np.median(arr)), float(arr.std()), int(arr.size))


@dataclass(frozen=True)
class FolderEvaluation:
    """Result of :func:`evaluate_folders`.

    Attributes:
        pred_dir, gt_dir: the two folders.
        cases: one :class:`CaseResult` per case id found in either folder, sorted by case id.
        summary: metric name (``dice``, ``iou``, ``hd95``, ``assd``) → :class:`MetricSummary` over the ``ok``
            cases.
        n_nan_hd95: number of ``ok`` cases whose HD95 is NaN (mask empty on exactly one side).
        unit: distance unit of the summary: ``"mm"``, ``"px"``, ``"mixed"`` (cases differ), or ``""`` when no
            case was evaluated.
    """

    pred_dir: Path
    gt_dir: Path
    cases: tuple[CaseResult, ...]
    summary: Mapping[str, MetricSummary] = field(default_factory=dict)
    n_nan_hd95: int = 0
    unit: str = ""

    def _with(self, status: str) -> tuple[CaseResult, ...]:
        return tuple(c for c in self.cases if c.status == status)

    @property
    def evaluated(self) -> tuple[CaseResult, ...]:
        """The cases scored (status ``ok``)."""
        return self._with("ok")

    @property
    def missing_pred(self) -> tuple[CaseResult, ...]:
        """Cases with a ground truth but no prediction."""
        return self._with("missing_pred")

    @property
    def missing_gt(self) -> tuple[CaseResult, ...]:
        """Cases with a prediction but no ground truth."""
        return self._with("missing_gt")

    @property
    def errors(self) -> tuple[CaseResult, ...]:
        """Cases that could not be scored (unreadable mask, size mismatch, ambiguous files)."""
        return self._with("error")

    def write_csv(self, path: str | Path) -> Path:
        """Write one row per case (columns :data:`CSV_COLUMNS`) to ``path``, atomically.

        The rows go to a temporary file in the same folder, which then replaces ``path`` in one step: a
        reader never sees a half-written file and an interrupted write leaves any previous file intact.
        Missing parent folders are created. Returns ``path``.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A unique name created exclusively: usual (umask) permissions, unlike mkstemp's 0600.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            with tmp.open("x", newline="", encoding="utf-8") as out:
                writer = csv.DictWriter(out, fieldnames=list(CSV_COLUMNS))
                writer.writeheader()
                for case in self.cases:
                    writer.writerow(case.csv_row())
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path


def _suffix(path: Path) -> str | None:
    low = path.name.lower()
    for suf in MASK_SUFFIXES:
        if low.endswith(suf) and len(low) > len(suf):
            return suf
    return None


def list_masks(folder: str | Path) -> dict[str, list[Path]]:
    """Mask files of ``folder`` (not recursive; hidden files skipped) grouped by case id.

    A case id maps to more than one path when the folder holds, e.g., ``a.png`` and ``a.jpg``.

    Raises:
        InputError: ``folder`` does not exist or is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder" if folder.exists() else "no such folder")
    found: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or _suffix(p) is None:
            continue
        found.setdefault(case_stem(p), []).append(p)
    return found


def _header_spacing(rec: ImageRecord | None, ndim: int) -> tuple[float, ...] | None:
    """Pixel spacing (mm, array order) the header of a volume-format file gives (``rec``: the file read);
    ``None`` for rasters (``rec`` is ``None``)."""
    if rec is None:
        return None
    spacing: tuple[float, ...] | None = None
    if rec.geometry is not None:
        spacing = tuple(float(s) for s in reversed(rec.geometry.spacing))  # (x, y, z) → (z, y, x)
    elif rec.pixel_spacing_mm is not None:
        spacing = tuple(float(s) for s in rec.pixel_spacing_mm)
    if spacing is None or len(spacing) != ndim:
        return None
    return spacing


def _describe_shape(shape: tuple[int, ...]) -> str:
    if len(shape) == 2:
        return f"{shape[1]}x{shape[0]} pixels (WxH)"
    return f"shape {shape}"


def evaluate_case(
    case_id: str, pred_path: Path, gt_path: Path, spacing: Sequence[float] | None = None
) -> CaseResult:
    """Read and score one pair of masks; every failure becomes a row with status ``error`` and its reason.

    Spacing: the given ``spacing`` (mm per array axis) if any, else the GT file's header spacing for volume
    formats (NIfTI), else none (pixels). Without ``spacing``, two volume masks must also lie on the same grid
    (origin, spacing and direction, :func:`radvlsm.io.geometry_difference`): the same array shape shifted or
    flipped in the scanner is an error, not a perfect score.
    """
    files = {"pred_file": pred_path.name, "gt_file": gt_path.name}
    side = "gt"
    try:
        gt = read_mask(gt_path)
        side = "pred"
        pred = read_mask(pred_path)
        side = "gt"
        if pred.shape != gt.shape:
            return CaseResult(
                case_id, "error",
                reason=f"size mismatch: pred mask is {_describe_shape(pred.shape)} but gt mask is "
                f"{_describe_shape(gt.shape)}",
                **files,
            )
        gt_rec = None if _suffix(gt_path) in _RASTER_SUFFIXES else read_image(gt_path)
        if spacing is None and gt_rec is not None and gt_rec.geometry is not None:
            pred_geo = read_image(pred_path).geometry
            diff = geometry_difference(pred_geo, gt_rec.geometry) if pred_geo else "pred mask has no volume geometry"
            if diff is not None:
                return CaseResult(
                    case_id, "error", reason=f"geometry mismatch: pred and gt masks lie on different grids ({diff})",
                    **files,
                )
        sp = tuple(spacing) if spacing is not None else _header_spacing(gt_rec, gt.ndim)
        side = "metrics"
        s = score_masks(pred, gt, sp)
    except RadvlsmError as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        return CaseResult(case_id, "error", reason=f"{side}: {reason}", **files)
    except (OSError, ValueError, RuntimeError, MemoryError) as exc:
        return CaseResult(case_id, "error", reason=f"{side}: {type(exc).__name__}: {exc}", **files)
    return CaseResult(
        case_id, "ok", dice=s.dice, iou=s.iou, hd95=s.hd95, assd=s.assd, unit=s.unit,
        pred_area=s.pred_area, gt_area=s.gt_area, **files,
    )


def _summarize(cases: Sequence[CaseResult]) -> tuple[dict[str, MetricSummary], int, str]:
    ok = [c for c in cases if c.status == "ok"]
    summary = {m: MetricSummary.of([getattr(c, m) for c in ok]) for m in SUMMARY_METRICS}
    n_nan = sum(1 for c in ok if math.isnan(c.hd95))
    units = {c.unit for c in ok}
    unit = "" if not units else units.pop() if len(units) == 1 else "mixed"
    return summary, n_nan, unit


def evaluate_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    spacing: Sequence[float] | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> FolderEvaluation:
    """Score every predicted mask of ``pred_dir`` against the same case's mask in ``gt_dir``.

    Args:
        pred_dir, gt_dir: folders of masks (``.png .jpg .jpeg .bmp .tif .tiff .nii .nii.gz``; any format
            :func:`radvlsm.io.read_mask` reads, JPEG masks thresholded at 128), paired by case id.
        spacing: pixel size per array axis in mm (array order: ``(row, col)`` for 2-D); ``None`` to use the
            header spacing of volume files and pixels for plain images.
        progress: optional ``progress(done, total, case_id)`` callback, called after each case (the library
            draws no progress bar itself).

    Returns:
        A :class:`FolderEvaluation` with one row per case id found in either folder (missing and failed cases
        included, with their status) and the NaN-aware summary over the ``ok`` cases.

    Raises:
        InputError: a folder does not exist or is not a folder.
        ValueError: ``spacing`` holds a non-positive or non-finite value.
        Nothing else: per-case problems (unreadable mask, size mismatch, spacing of the wrong length for a
        case's mask) are rows with status ``error``.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if spacing is not None:
        spacing = tuple(float(s) for s in spacing)
        if not spacing or not all(math.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(f"spacing must be finite positive numbers (mm per array axis), got {spacing}")
    preds = list_masks(pred_dir)
    gts = list_masks(gt_dir)
    ids = sorted(set(preds) | set(gts))
    cases: list[CaseResult] = []
    for done, case_id in enumerate(ids, start=1):
        p_paths, g_paths = preds.get(case_id, []), gts.get(case_id, [])
        p_name = ";".join(p.name for p in p_paths)
        g_name = ";".join(p.name for p in g_paths)
        if not p_paths:
            row = CaseResult(case_id, "missing_pred", reason="no prediction for this case", gt_file=g_name)
        elif not g_paths:
            row = CaseResult(case_id, "missing_gt", reason="no ground truth for this case", pred_file=p_name)
        elif len(p_paths) > 1 or len(g_paths) > 1:
            where = "pred" if len(p_paths) > 1 else "gt"
            names = p_name if len(p_paths) > 1 else g_name
            row = CaseResult(
                case_id, "error", reason=f"ambiguous: several {where} files for this case ({names})",
                pred_file=p_name, gt_file=g_name,
            )
        else:
            row = evaluate_case(case_id, p_paths[0], g_paths[0], spacing)
        if row.status == "error":
            log.warning("%s: %s", case_id, row.reason)
        cases.append(row)
        if progress is not None:
            progress(done, len(ids), case_id)
    summary, n_nan, unit = _summarize(cases)
    result = FolderEvaluation(
        pred_dir=pred_dir, gt_dir=gt_dir, cases=tuple(cases), summary=MappingProxyType(summary),
        n_nan_hd95=n_nan, unit=unit,
    )
    log.info(
        "%d cases: %d evaluated, %d missing prediction, %d missing ground truth, %d errors",
        len(cases), len(result.evaluated), len(result.missing_pred), len(result.missing_gt),
        len(result.errors),
    )
    return result

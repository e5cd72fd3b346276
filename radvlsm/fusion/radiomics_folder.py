"""A folder of images and masks (or a DICOM series and its RTSTRUCT) into a resumable features CSV.

This is the library behind ``radvlsm radiomics``; each case is extracted by
:class:`radvlsm.fusion.radiomics.RadiomicsExtractor`::

    summary = extract_folder("images/", "masks/", "features.csv", workers=2)

**Output columns.** ``case_id``, ``mask`` (path), ``image`` (path), then pyradiomics' own feature names in its
own order (``original_shape2D_Elongation`` …, ``original_firstorder_Mean`` …, ``original_glcm_Contrast`` …).
pyradiomics' ``diagnostics_*`` entries (versions, settings, hashes: text, not numbers) are left out, so every
feature cell is a number (``nan`` where pyradiomics gives NaN), written at full precision (``repr``).

**Pairing and errors.** Images and masks are paired by case id (:func:`radvlsm.io.case_stem`: ``IMD002.jpg`` ↔
``IMD002.png``, ``x.nii.gz`` ↔ ``x.nii.gz``). A DICOM series folder goes with an RTSTRUCT file instead
(:func:`series_pair`; ``extract_folder(series_dir, None, out, rtstruct=rs, roi="GTV-1")``): one case, named after the
folder, whose ROI is rasterised onto the series (:func:`radvlsm.io.rasterise_roi`) and extracted in 3-D with the
series' voxel spacing. Every case that gives no row is a row of ``<stem>_errors.csv``
beside the features CSV (``features.csv`` → ``features_errors.csv``; columns ``case_id, image, mask, reason``),
and the others go on: an image without a mask, a mask without an image, an unreadable image or mask, a mask of
another size or geometry than its image, an empty mask (no lesion), a 3-D volume in a 2-D run (or the reverse),
a mask pyradiomics refuses (a single voxel …). The errors file is rewritten at the end of every run and lists
the failures of that run (failed cases are retried by the next run, since they are not in the CSV).

**Resumability.** The features CSV itself is the record of what is done; the design keeps it valid at every
instant:

* only the parent process writes it; workers return rows;
* each finished row is appended as *one* ``os.write`` of the whole line on an ``O_APPEND`` descriptor, followed
  by ``fsync``: a crash can at worst leave one partial *last* line;
* on start, the existing CSV is read; a trailing partial line (no final newline), a line with the wrong number
  of cells or non-numeric feature cells, and a repeated case id are dropped and the file is rewritten atomically
  (:func:`radvlsm.io.atomic_write`) with the valid rows, with a warning; the cases so dropped are extracted again;
* cases already in the CSV (by case id) are skipped; the others are appended, in completion order;
* at the end of a run that completes, the file is rewritten atomically sorted by case id (an interrupted run
  leaves complete rows in completion order, sorted by the next run);
* the parameters a CSV was computed with are recorded beside it in ``<stem>_params.yaml`` (dimension, the
  validated parameter mapping, the enforced overrides, versions). A rerun with other parameters, or whose
  features come out with other column names, is refused with a :class:`ConfigError` instead of mixing rows; pass
  ``overwrite=True`` (``--overwrite``) to recompute every case.

**Parallelism.** With ``workers > 1``, cases run in a :class:`~concurrent.futures.ProcessPoolExecutor` whose
workers each build their extractor once (pool initializer) and run SimpleITK single-threaded. Workers are
started with ``forkserver`` (POSIX; preloading this module) or ``spawn``, never ``fork``: the caller may hold
threads (a progress bar), and forking a threaded process can deadlock. ``workers == 1`` runs in-process.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import SimpleITK as sitk  # noqa: N813 (the library's own convention)
import yaml

from radvlsm.errors import ConfigError, InputError
from radvlsm.fusion.radiomics import (
    ERROR_COLUMNS,
    ID_COLUMNS,
    CaseError,
    CasePair,
    Dimension,
    FeatureRow,
    RadiomicsExtractor,
)
from radvlsm.fusion.resampling import IbsiProcessing
from radvlsm.io import atomic_write, case_stem, is_rtstruct

__all__ = [
    "ProgressCallback",
    "RadiomicsSummary",
    "default_workers",
    "errors_csv_path",
    "extract_folder",
    "pair_cases",
    "params_record_path",
    "series_pair",
]

log = logging.getLogger(__name__)

#: File endings read as volumes when ``dimension="auto"`` has to choose a folder's dimension from names.
_VOLUME_SUFFIXES = (".nii", ".nii.gz")

#: ``on_progress(done, total, case_id)``, called in the calling process after each case is extracted or fails.
ProgressCallback = Callable[[int, int, str], None]


@dataclass(frozen=True)
class RadiomicsSummary:
    """What :func:`extract_folder` did.

    Attributes:
        features_csv, errors_csv, params_record: the three files beside each other (``features_csv`` does not
            exist when no case ever gave a row).
        dimension: ``"2d"`` or ``"3d"``: the run's dimension.
        written: rows added by this run.
        already_done: cases skipped because the CSV already held them.
        failed: the cases of this run that gave no row (also in ``errors_csv``), sorted by case id.
        rows: rows in the CSV now.
        n_features: feature columns of the CSV (0 when there is none).
        repaired: invalid or partial lines dropped from the existing CSV on start.
        workers: processes used (1: in-process).
        seconds: wall time of the run.
    """

    features_csv: Path
    errors_csv: Path
    params_record: Path
    dimension: Literal["2d", "3d"]
    written: int
    already_done: int
    failed: tuple[CaseError, ...]
    rows: int
    n_features: int
    repaired: int
    workers: int
    seconds: float

    @property
    def cases_per_s(self) -> float:
        """Cases extracted or failed by this run per second of wall time."""
        n = self.written + len(self.failed)
        return n / self.seconds if self.seconds > 0 else math.nan


# --------------------------------------------------------------------------------------------------------
# Pairing
# --------------------------------------------------------------------------------------------------------


def _as_paths(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(paths, (str, Path)):
        return [Path(paths)]
    return [Path(p) for p in paths]


def pair_cases(
    images: str | Path | Sequence[str | Path], masks: str | Path | Sequence[str | Path]
) -> tuple[list[CasePair], list[CaseError]]:
    """Pair image files with mask files by case id.

    Args:
        images, masks: files and/or folders (searched recursively, like ``radvlsm segment``'s inputs:
            :func:`radvlsm.pipeline.inputs.discover_inputs`).

    Returns:
        ``(pairs, errors)``, both sorted by case id. Errors: an image without a mask, a mask without an image,
        two files with one case id on one side, a missing path, a file name with a line break.
    """
    from radvlsm.pipeline.inputs import discover_inputs

    img_items, img_problems = discover_inputs(_as_paths(images))
    mask_items, mask_problems = discover_inputs(_as_paths(masks))
    errors = [CaseError(case_stem(p.path), str(p.path), "", f"image: {p.reason}") for p in img_problems]
    errors += [CaseError(case_stem(p.path), "", str(p.path), f"mask: {p.reason}") for p in mask_problems]
    by_id = {m.case_id: m.path for m in mask_items}
    image_ids = {it.case_id for it in img_items}
    pairs: list[CasePair] = []
    for it in img_items:
        mask = by_id.get(it.case_id)
        if mask is None:
            errors.append(CaseError(it.case_id, str(it.path), "", f"no mask named {it.case_id}.* among the masks"))
        elif any(ch in str(p) for p in (it.path, mask) for ch in "\r\n"):
            errors.append(CaseError(it.case_id, str(it.path), str(mask), "file name holds a line break"))
        else:
            pairs.append(CasePair(it.case_id, it.path, mask, series_uid=it.series_uid))
    for m in mask_items:
        if m.case_id not in image_ids:
            errors.append(CaseError(m.case_id, "", str(m.path), f"no image named {m.case_id}.* among the images"))
    pairs.sort(key=lambda p: p.case_id)
    errors.sort(key=lambda e: e.case_id)
    return pairs, errors


def series_pair(
    series: str | Path, rtstruct: str | Path, roi: str | None = None, case_id: str | None = None
) -> CasePair:
    """The case of a DICOM series folder and an RTSTRUCT drawn on it.

    Args:
        series: the folder of the series (read by :func:`radvlsm.io.read_image`; an RTSTRUCT inside is skipped).
        rtstruct: the RTSTRUCT file; its ROI is rasterised onto the series (:func:`radvlsm.io.rasterise_roi`).
        roi: the ROI's name; ``None`` when the RTSTRUCT has one ROI.
        case_id: the case id; default: the series folder's name.

    Raises:
        InputError: ``series`` is not a folder, or ``rtstruct`` not a file.
    """
    series, rtstruct = Path(series), Path(rtstruct)
    if not series.is_dir():
        raise InputError(series, "with an RTSTRUCT, the image must be the folder of the DICOM series it was drawn on")
    if not rtstruct.is_file():
        raise InputError(rtstruct, "the RTSTRUCT is not a file")
    return CasePair(case_id or series.resolve().name, series, rtstruct, roi)


def _lone_rtstruct(
    images: str | Path | Sequence[str | Path], masks: str | Path | Sequence[str | Path] | None
) -> Path | None:
    """The RTSTRUCT when ``images`` is one folder and ``masks`` one RTSTRUCT file (a series and its contours)."""
    if masks is None:
        return None
    image_paths, mask_paths = _as_paths(images), _as_paths(masks)
    if len(image_paths) == 1 and len(mask_paths) == 1 and image_paths[0].is_dir() and is_rtstruct(mask_paths[0]):
        return mask_paths[0]
    return None


def _guess_volume(path: Path) -> bool:
    return path.is_dir() or path.name.lower().endswith(_VOLUME_SUFFIXES)

# --------------------------------------------------------------------------------------------------------
# The features CSV (resumable)
# --------------------------------------------------------------------------------------------------------


def _csv_line(cells: Sequence[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def errors_csv_path(features_csv: str | Path) -> Path:
    """``features.csv`` → ``features_errors.csv`` (same folder)."""
    p = Path(features_csv)
    stem = p.name[: -len(".csv")] if p.name.lower().endswith(".csv") else p.name
    return p.with_name(f"{stem}_errors.csv")


def params_record_path(features_csv: str | Path) -> Path:
    """``features.csv`` → ``features_params.yaml`` (same folder): the parameters the CSV was computed with."""
    p = Path(features_csv)
    stem = p.name[: -len(".csv")] if p.name.lower().endswith(".csv") else p.name
    return p.with_name(f"{stem}_params.yaml")


class _FeatureTable:
    """The features CSV: loaded and repaired on open, appended one fsync'ed row at a time, sorted at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header: list[str] | None = None
        self.lines: dict[str, str] = {}  # case id → its line (with "\n"), in file order
        self.repaired = 0
        self._fd: int | None = None
        self._load()

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise InputError(self.path, f"cannot read the features CSV: {exc.strerror or exc}") from exc
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(self.path, "not a features CSV of radvlsm radiomics (not UTF-8 text)") from exc
        complete, newline, partial = text.rpartition("\n")
        dropped = 1 if partial.strip() else 0
        lines = complete.split("\n") if newline else []
        if lines:
            header = next(csv.reader([lines[0]]), [])
            if tuple(header[: len(ID_COLUMNS)]) != ID_COLUMNS or len(header) <= len(ID_COLUMNS):
                raise InputError(
                    self.path,
                    "not a features CSV of radvlsm radiomics (its first columns are not case_id, mask, image): "
                    "choose another output file",
                )
            self.header = header
            for line in lines[1:]:
                cells = next(csv.reader([line]), [])
                ok = (
                    len(cells) == len(header)
                    and bool(cells[0])
                    and cells[0] not in self.lines
                    and all(_is_number(c) for c in cells[len(ID_COLUMNS):])
                )
                if ok:
                    self.lines[cells[0]] = line.rstrip("\r") + "\n"
                elif line.strip():
                    dropped += 1
        if dropped:
            self.repaired = dropped
            log.warning(
                "%s: dropped %d incomplete or invalid line(s) (an interrupted run?); those cases are extracted "
                "again", self.path, dropped,
            )
            self._rewrite(sort=False)

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        return tuple(self.header[len(ID_COLUMNS):]) if self.header else None

    def _rewrite(self, *, sort: bool) -> None:
        ids = sorted(self.lines) if sort else list(self.lines)
        if self.header is None:
            self.path.unlink(missing_ok=True)
            return
        with atomic_write(self.path) as fh:
            fh.write(_csv_line(self.header))
            fh.writelines(self.lines[i] for i in ids)
        self.lines = {i: self.lines[i] for i in ids}

    def append(self, row: FeatureRow) -> None:
        """Append one row as one write, then fsync (the header goes with the first row of a new file)."""
        line = _csv_line(row.csv_cells())
        payload = line
        if self.header is None:
            self.header = [*ID_COLUMNS, *row.names]
            payload = _csv_line(self.header) + line
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
        data = memoryview(payload.encode("utf-8"))
        while data:
            n = os.write(self._fd, data)
            data = data[n:]
        os.fsync(self._fd)
        self.lines[row.case_id] = line

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def finish(self) -> None:
        """Close, and rewrite sorted by case id when the file is not already."""
        self.close()
        if list(self.lines) != sorted(self.lines):
            self._rewrite(sort=True)


def _provenance(extractor: RadiomicsExtractor, dimension: Literal["2d", "3d"]) -> dict[str, Any]:
    import radiomics

    from radvlsm import __version__

    ps = extractor.param_set(dimension)
    return {
        "dimension": dimension,
        "params_file": str(ps.path),
        "params": json.loads(json.dumps(dict(ps.params))),
        "overrides": dict(ps.overrides),
        "ibsi_processing": json.loads(json.dumps(asdict(extractor.ibsi))) if extractor.ibsi is not None else None,
        "pyradiomics": str(radiomics.__version__),
        "radvlsm": __version__,
    }


def _first_difference(a: Any, b: Any, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            sub = f"{where}.{key}" if where else str(key)
            if key not in a or key not in b:
                return f"{sub} only in {'the file' if key in a else 'this run'}"
            diff = _first_difference(a[key], b[key], sub)
            if diff:
                return diff
        return None
    return None if a == b else f"{where or 'value'}: {a!r} before, {b!r} now"


def _check_provenance(csv_path: Path, record_path: Path, now: dict[str, Any]) -> bool:
    """Refuse to complete a CSV computed with other parameters. Returns whether the record could be checked."""
    if not record_path.is_file():
        log.warning(
            "%s: %s is missing, so the parameters of the existing rows cannot be checked; appending anyway",
            csv_path, record_path.name,
        )
        return False
    try:
        before = yaml.safe_load(record_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{record_path}: cannot read it ({exc}); delete it or pass --overwrite") from exc
    if not isinstance(before, dict):
        raise ConfigError(f"{record_path}: not a parameter record; delete it or pass --overwrite")
    keys = ("dimension", "params", "overrides", "ibsi_processing")
    diff = _first_difference({k: before.get(k) for k in keys}, {k: now[k] for k in keys})
    if diff:
        raise ConfigError(
            f"{csv_path} was computed with other pyradiomics parameters ({diff}; see {record_path}): write to "
            "another file, or pass --overwrite to recompute every case"
        )
    return True

# --------------------------------------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------------------------------------

_WORKER: RadiomicsExtractor | None = None


def _init_worker(params: str | None, dimension: Dimension, ibsi: IbsiProcessing | None) -> None:
    """Pool initializer: one extractor per worker process, SimpleITK single-threaded (the pool is the parallelism).

    The parent already validated the parameters and logs every case's outcome and warnings: the worker's own
    radvlsm loggers are kept to errors (a worker has no log handler of its own).
    """
    global _WORKER
    logging.getLogger("radvlsm").setLevel(logging.ERROR)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    _WORKER = RadiomicsExtractor(params, dimension, ibsi)
    if dimension != "auto":
        _WORKER.pyradiomics_extractor(dimension)


def _work(pair: CasePair) -> tuple[FeatureRow | CaseError, tuple[str, ...]]:
    if _WORKER is None:  # pragma: no cover (the initializer always runs first)
        raise RuntimeError("worker not initialised")
    return _WORKER.extract_case(pair)


def _pool_context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__, "radiomics.featureextractor"])
        return ctx
    return multiprocessing.get_context("spawn")


def default_workers() -> int:
    """The number of CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)

# --------------------------------------------------------------------------------------------------------
# Folder
# --------------------------------------------------------------------------------------------------------


def extract_folder(
    images: str | Path | Sequence[str | Path],
    masks: str | Path | Sequence[str | Path] | None,
    out_csv: str | Path,
    *,
    workers: int | None = None,
    params: str | Path | None = None,
    dimension: Dimension = "auto",
    overwrite: bool = False,
    on_progress: ProgressCallback | None = None,
    rtstruct: str | Path | None = None,
    roi: str | None = None,
    case_id: str | None = None,
    ibsi: IbsiProcessing | None = None,
) -> RadiomicsSummary:
    """Extract the features of every image/mask pair into ``out_csv``, resuming what is already there.

    Args:
        images, masks: files and/or folders; paired by case id (:func:`pair_cases`). Or ``images`` one DICOM
            series folder and ``masks`` one RTSTRUCT file (or ``None`` with ``rtstruct``): one case
            (:func:`series_pair`), extracted in 3-D with the series' spacing.
        out_csv: the features CSV (columns ``case_id, mask, image``, then pyradiomics' features); beside it
            ``<stem>_errors.csv`` and ``<stem>_params.yaml`` (see the module documentation).
        workers: processes; ``None``: the number of CPU cores (:func:`default_workers`); 1: in-process.
        params: a pyradiomics parameter file for every case, or ``None`` for the built-in one of the run's
            dimension.
        dimension: ``"2d"``, ``"3d"``, or ``"auto"``: 3-D when most inputs are volumes by name
            (``.nii``/``.nii.gz``), else 2-D; cases of the other kind are then errors (their features differ:
            run them into another CSV).
        overwrite: recompute every case (the old CSV, errors and parameter record are replaced).
        on_progress: ``on_progress(done, total, case_id)`` after each case this run extracts or fails.
        rtstruct: an RTSTRUCT drawn on the DICOM series folder ``images`` (then ``masks`` is ``None``).
        roi: the RTSTRUCT's ROI (``None``: its only one).
        case_id: the case id of a series with an RTSTRUCT (default: the series folder's name).
        ibsi: IBSI's processing before pyradiomics (:class:`RadiomicsExtractor`); recorded with the parameters.

    Returns:
        A :class:`RadiomicsSummary`.

    Raises:
        ConfigError: an invalid parameter file, or an existing CSV computed with other parameters.
        InputError: ``out_csv`` exists and is not a features CSV of this command; an RTSTRUCT with ``images``
            that are not one folder, or with ``masks`` as well; no masks at all.
        Nothing for a bad case: it is a row of the errors CSV.
    """
    t0 = time.perf_counter()
    out_csv = Path(out_csv)
    errors_csv, record_path = errors_csv_path(out_csv), params_record_path(out_csv)
    rtstruct = rtstruct if rtstruct is not None else _lone_rtstruct(images, masks)
    if rtstruct is not None:
        if masks is not None and Path(rtstruct) not in _as_paths(masks):
            raise InputError(rtstruct, "give either MASKS or an RTSTRUCT, not both")
        series = _as_paths(images)
        if len(series) != 1:
            raise InputError(rtstruct, f"an RTSTRUCT goes with one DICOM series folder, got {len(series)} image paths")
        pairs, failed = [series_pair(series[0], rtstruct, roi, case_id)], []
    elif masks is None:
        raise InputError(None, "no masks: give a mask file or folder, or an RTSTRUCT with its DICOM series")
    else:
        pairs, failed = pair_cases(images, masks)
    for err in failed:
        log.warning("%s: %s", err.case_id, err.reason)
    if dimension == "auto":
        n_vol = sum(_guess_volume(p.image) for p in pairs)
        run_dim: Literal["2d", "3d"] = "3d" if n_vol * 2 > len(pairs) else "2d"
    else:
        run_dim = dimension
    extractor = RadiomicsExtractor(params, run_dim, ibsi)  # validates the parameter file: ConfigError
    provenance = _provenance(extractor, run_dim)

    out_csv.parent.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for p in (out_csv, errors_csv, record_path):
            p.unlink(missing_ok=True)
    table = _FeatureTable(out_csv)
    # Existing columns come from the same parameters (checked) or from unknown ones (no record beside the CSV).
    verified = table.header is None or _check_provenance(out_csv, record_path, provenance)
    todo = [p for p in pairs if p.case_id not in table.lines]
    already = len(pairs) - len(todo)
    n_workers = max(1, min(workers if workers is not None else default_workers(), len(todo)))
    log.info(
        "%d case(s): %d already in %s, %d to extract (%s, %d worker(s))",
        len(pairs), already, out_csv.name, len(todo), run_dim.upper(), n_workers,
    )

    written = 0
    first_of_run = True
    done = 0

    def handle(pair: CasePair, result: FeatureRow | CaseError, notes: tuple[str, ...]) -> None:
        nonlocal written, first_of_run, done
        for w in notes:
            log.warning("%s: pyradiomics: %s", pair.case_id, w)
        if isinstance(result, FeatureRow):
            names = table.feature_names
            if names is not None and result.names != names:
                missing = [n for n in names if n not in result.names][:3]
                if first_of_run and not verified:
                    extra = [n for n in result.names if n not in names][:3]
                    raise ConfigError(
                        f"{out_csv}: its columns differ from what these parameters give (missing {missing}, "
                        f"new {extra}): write to another file, or pass --overwrite to recompute every case"
                    )
                result = CaseError(
                    pair.case_id, str(pair.image), str(pair.mask),
                    f"its features differ from the CSV's columns (missing {missing}…): pyradiomics skipped a "
                    "filter for this image (too small for a LoG sigma?)",
                )
            else:
                if names is None:
                    with atomic_write(record_path) as fh:
                        yaml.safe_dump(provenance, fh, sort_keys=False)
                table.append(result)
                written += 1
                first_of_run = False
        if isinstance(result, CaseError):
            log.warning("%s: %s", result.case_id, result.reason)
            failed.append(result)
        done += 1
        if on_progress is not None:
            on_progress(done, len(todo), pair.case_id)

    try:
        if n_workers == 1:
            for pair in todo:
                result, notes = extractor.extract_case(pair)
                handle(pair, result, notes)
        elif todo:
            _run_pool(todo, n_workers, params, run_dim, ibsi, handle)
    finally:
        table.close()
        failed.sort(key=lambda e: e.case_id)
        with atomic_write(errors_csv, newline="") as fh:
            fh.write(_csv_line(ERROR_COLUMNS))
            fh.writelines(_csv_line(e.csv_cells()) for e in failed)
    table.finish()
    seconds = time.perf_counter() - t0
    return RadiomicsSummary(
        features_csv=out_csv, errors_csv=errors_csv, params_record=record_path, dimension=run_dim,
        written=written, already_done=already, failed=tuple(failed), rows=len(table.lines),
        n_features=len(table.feature_names or ()), repaired=table.repaired, workers=n_workers, seconds=seconds,
    )


def _run_pool(
    todo: Sequence[CasePair],
    n_workers: int,
    params: str | Path | None,
    dimension: Literal["2d", "3d"],
    ibsi: IbsiProcessing | None,
    handle: Callable[[CasePair, FeatureRow | CaseError, tuple[str, ...]], None],
) -> None:
    pool = ProcessPoolExecutor(
        max_workers=n_workers, mp_context=_pool_context(), initializer=_init_worker,
        initargs=(str(params) if params is not None else None, dimension, ibsi),
    )
    try:
        futures: dict[Future[tuple[FeatureRow | CaseError, tuple[str, ...]]], CasePair] = {
            pool.submit(_work, pair): pair for pair in todo
        }
        for fut in as_completed(futures):
            pair = futures[fut]
            try:
                result, notes = fut.result()
            except BrokenProcessPool:
                result = CaseError(
                    pair.case_id, str(pair.image), str(pair.mask),
                    "the worker processes stopped (one died: out of memory? or could not start); rerun to retry",
                )
                notes = ()
            handle(pair, result, notes)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

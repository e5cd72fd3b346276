"""Radiomics features with pyradiomics: one case in memory, or a folder of images and masks into a CSV.

This is the library behind ``radvlsm radiomics`` and the radiomics half of the fusion stage.

Single case (in memory, no files)::

    ex = RadiomicsExtractor()                      # built-in parameters, 2-D or 3-D chosen per image
    feats = ex.extract(record, mask)               # ImageRecord + bool mask -> {"original_firstorder_Mean": …}
    feats = ex.extract_arrays(rgb, mask)           # numpy (H, W, 3) + (H, W); spacing optional

Folder::

    summary = extract_folder("images/", "masks/", "features.csv", workers=2)

**Parameters.** pyradiomics' extractor (:class:`radiomics.featureextractor.RadiomicsFeatureExtractor`) is
configured by a parameter file (YAML or JSON). Every file, the built-in ones included, is first checked against
pyradiomics' *own* schema (``radiomics/schemas/paramSchema.yaml`` with ``schemaFuncs.py``, through pykwalify,
exactly as the extractor validates a file it is given); a file that fails gives a :class:`ConfigError` naming the
file and each offending key (``setting.binWidth: Value 'abc' is not of type 'float'``, ``unknown key 'binWidht'
in setting (did you mean 'binWidth'?)``), never a pykwalify traceback. The built-in sets are
``params/default_2d.yaml`` and ``params/default_3d.yaml`` beside this module (:data:`DEFAULT_PARAMS`; their
comments say why each value).

**2-D and 3-D.** A volume (NIfTI, DICOM series: ``record.is_volume``) goes to pyradiomics as stored (CT in HU)
with its real spacing, origin and direction. A 2-D image is converted to grayscale when it is in colour (BT.601
luma, :func:`to_grayscale`) and handed over as a one-slice volume ``1 x H x W`` with ``force2D: true`` (so every
texture matrix is in-plane and ``shape2D`` describes the outline); its spacing is the file's pixel spacing when it
records one, else 1 x 1 (features in pixels). Whatever a parameter file says, 2-D images are extracted with
``force2D: true, force2Ddimension: 0`` and every mask with ``label: 1`` (radvlsm masks are binary); a file that
says otherwise gets a warning.

**IBSI processing.** ``RadiomicsExtractor(params, ibsi=IbsiProcessing())`` (``radvlsm radiomics --ibsi``) does
the parameter file's resampling IBSI's way before pyradiomics (:mod:`radvlsm.fusion.resampling`: the grid centred on
the image, the mask interpolated linearly and kept where >= 0.5, interpolated whole-number intensities rounded, an
optional first re-segmentation range) and tells pyradiomics not to resample; the processing is recorded with the
parameters of the CSV.

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

**Logging.** pyradiomics logs each step at INFO; its logger is set to WARNING and its own stderr handler is
muted. Its warnings are collected per case and logged through this module's logger (prefixed by the case), in the
parent process for pooled runs. Nothing here prints; progress goes to the ``on_progress`` callback.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import io
import json
import logging
import math
import multiprocessing
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import SimpleITK as sitk  # noqa: N813 (the library's own convention)
import yaml

from radvlsm.errors import ConfigError, InputError, RadvlsmError
from radvlsm.fusion.resampling import IbsiProcessing, Interpolation, process
from radvlsm.io import ImageRecord, atomic_write, case_stem, is_rtstruct, read_image, read_mask

if TYPE_CHECKING:
    from radiomics.featureextractor import RadiomicsFeatureExtractor

__all__ = [
    "DEFAULT_PARAMS",
    "ERROR_COLUMNS",
    "ID_COLUMNS",
    "LUMA_WEIGHTS",
    "CaseError",
    "CasePair",
    "Dimension",
    "FeatureRow",
    "ParamSet",
    "ProgressCallback",
    "RadiomicsExtractor",
    "RadiomicsSummary",
    "default_workers",
    "errors_csv_path",
    "extract_folder",
    "load_params",
    "pair_cases",
    "params_record_path",
    "series_pair",
    "to_grayscale",
    "to_sitk",
]

log = logging.getLogger(__name__)

#: ``"2d"``, ``"3d"``, or ``"auto"`` (volumes 3-D, other images 2-D).
Dimension = Literal["2d", "3d", "auto"]

_PARAMS_DIR = Path(__file__).resolve().with_name("params")
#: The built-in pyradiomics parameter files, by dimension.
DEFAULT_PARAMS: Mapping[str, Path] = MappingProxyType(
    {"2d": _PARAMS_DIR / "default_2d.yaml", "3d": _PARAMS_DIR / "default_3d.yaml"}
)

#: ITU-R BT.601 luma weights (R, G, B), as integers per mille: Y = (299 R + 587 G + 114 B) / 1000.
LUMA_WEIGHTS: tuple[int, int, int] = (299, 587, 114)

#: The first columns of the features CSV, before the features.
ID_COLUMNS: tuple[str, str, str] = ("case_id", "mask", "image")
#: The columns of the errors CSV.
ERROR_COLUMNS: tuple[str, str, str, str] = ("case_id", "image", "mask", "reason")

#: Settings radvlsm imposes whatever the parameter file says: 2-D images are one-slice volumes, masks binary.
_FORCED_2D: Mapping[str, Any] = MappingProxyType({"force2D": True, "force2Ddimension": 0})
_FORCED_ALL: Mapping[str, Any] = MappingProxyType({"label": 1})

#: File endings read as volumes when ``dimension="auto"`` has to choose a folder's dimension from names.
_VOLUME_SUFFIXES = (".nii", ".nii.gz")

#: ``on_progress(done, total, case_id)``, called in the calling process after each case is extracted or fails.
ProgressCallback = Callable[[int, int, str], None]


# --------------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureRow:
    """The features of one case: one row of the features CSV.

    Attributes:
        case_id: the case id (file stem).
        image_path, mask_path: the files, as given (empty for in-memory inputs).
        features: ``(name, value)`` pairs in pyradiomics' order; names are pyradiomics' own
            (``original_glcm_Contrast``), values plain floats (units: those of the image and its spacing).
    """

    case_id: str
    image_path: str
    mask_path: str
    features: tuple[tuple[str, float], ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The feature names, in order."""
        return tuple(name for name, _ in self.features)

    def as_dict(self) -> dict[str, float]:
        """Feature name → value, in order."""
        return dict(self.features)

    def csv_cells(self) -> list[str]:
        """``case_id, mask, image`` then every value at full precision (``repr``: ``nan``, ``inf`` as such)."""
        return [self.case_id, self.mask_path, self.image_path, *(repr(float(v)) for _, v in self.features)]


@dataclass(frozen=True)
class CaseError:
    """A case that gave no row (one row of the errors CSV): why, in words."""

    case_id: str
    image_path: str
    mask_path: str
    reason: str

    def csv_cells(self) -> list[str]:
        return [self.case_id, self.image_path, self.mask_path, self.reason]


@dataclass(frozen=True)
class CasePair:
    """An image and its mask, paired by case id.

    Attributes:
        case_id: the case id (file stem, or the series folder's name for a DICOM series with an RTSTRUCT).
        image: the image file or DICOM series folder.
        mask: the mask file (an RTSTRUCT for a DICOM series).
        roi: the RTSTRUCT's ROI; ``None`` for other masks, or for an RTSTRUCT with one ROI.
    """

    case_id: str
    image: Path
    mask: Path
    roi: str | None = None


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
# Parameter files
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamSet:
    """A validated parameter file and what radvlsm imposes on top of it.

    Attributes:
        path: the file.
        params: its content after validation, as plain data (``setting``, ``imageType``, ``featureClass`` …).
        overrides: settings radvlsm passes to the extractor over the file's (``label: 1``; for 2-D also
            ``force2D: true, force2Ddimension: 0``; with IBSI processing ``resampledPixelSpacing: null``, radvlsm
            resampling instead), only those that differ from the file.
        interpolation: with IBSI processing, the file's resampling done by radvlsm (``None``: none, or
            pyradiomics resamples).
    """

    path: Path
    params: Mapping[str, Any]
    overrides: Mapping[str, Any]
    interpolation: Interpolation | None = None


@contextlib.contextmanager
def _quiet_pykwalify() -> Iterator[None]:
    """pykwalify logs ``validation.valid`` at INFO and each error at ERROR before raising: we report instead."""
    lg = logging.getLogger("pykwalify")
    old = lg.level
    lg.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            # pykwalify loads pyradiomics' schemaFuncs.py with the deprecated importlib load_module().
            warnings.filterwarnings("ignore", "the load_module", DeprecationWarning)
            yield
    finally:
        lg.setLevel(old)


@cache
def _schema() -> dict[str, Any]:
    import radiomics

    schema_file, _ = radiomics.getParameterValidationFiles()
    with Path(schema_file).open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _schema_keys(path: str) -> list[str]:
    """The keys pyradiomics' schema allows at a pykwalify path such as ``/setting`` or ``/imageType/LoG``."""
    node: Any = _schema()
    for part in (p for p in path.split("/") if p):
        mapping = node.get("mapping", {}) if isinstance(node, dict) else {}
        nxt = mapping.get(part)
        if nxt is None:
            nxt = next((v for k, v in mapping.items() if str(k).startswith("regex;")), None)
        if nxt is None:
            return []
        node = nxt
    mapping = node.get("mapping", {}) if isinstance(node, dict) else {}
    return [k for k in mapping if not str(k).startswith("regex;")]


_UNDEFINED_KEY = re.compile(r"^Key '(?P<key>.*)' was not defined\. Path: '(?P<path>.*)'$")
_WITH_PATH = re.compile(r"^(?P<msg>.*?)\.? ?(?:Value )?[Pp]ath: '(?P<path>[^']*)'(?P<rest>.*)$")


def _dotted(path: str) -> str:
    return ".".join(p for p in path.split("/") if p)


def _explain_schema_error(line: str) -> str:
    """One pykwalify error line → a sentence naming the key (``setting.binWidth: …``)."""
    line = line.strip().rstrip(".")
    m = _UNDEFINED_KEY.match(line)
    if m:
        key, where = m["key"], m["path"]
        text = f"unknown key '{key}' in {_dotted(where) or 'the top level'}"
        close = difflib.get_close_matches(key, _schema_keys(where), n=1, cutoff=0.6)
        return f"{text} (did you mean '{close[0]}'?)" if close else text
    m = _WITH_PATH.match(line)
    if m:
        return f"{_dotted(m['path']) or 'top level'}: {m['msg']}{m['rest'].rstrip('.')}"
    return line


def load_params(path: str | Path) -> dict[str, Any]:
    """Read a pyradiomics parameter file and check it against pyradiomics' own schema.

    The check is pyradiomics' (pykwalify with ``radiomics/schemas/paramSchema.yaml`` and ``schemaFuncs.py``),
    run the way :class:`~radiomics.featureextractor.RadiomicsFeatureExtractor` runs it on a file path.

    Returns:
        The file's content as plain data (``dict`` / ``list`` / scalars).

    Raises:
        ConfigError: naming the file and every problem found: missing or unreadable file, YAML/JSON syntax (with
            the line), unknown keys (with the closest valid one), values of the wrong type or range, unknown
            image types, feature classes or features.
    """
    import pykwalify.core
    import pykwalify.errors
    import radiomics
    from ruamel.yaml.error import YAMLError

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: pyradiomics parameter file not found")
    if not path.is_file():
        raise ConfigError(f"{path}: not a file (a pyradiomics parameter file, YAML or JSON, is expected)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the parameter file: {exc}") from exc
    if not any(ln.strip() and not ln.lstrip().startswith("#") for ln in text.splitlines()):
        raise ConfigError(
            f"{path}: the parameter file is empty (expected a mapping with 'setting', 'imageType' and/or "
            "'featureClass')"
        )
    if path.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise ConfigError(f"{path}: a pyradiomics parameter file must be named .yaml, .yml or .json")
    schema_file, schema_funcs = radiomics.getParameterValidationFiles()
    with _quiet_pykwalify():
        try:
            core = pykwalify.core.Core(source_file=str(path), schema_files=[schema_file], extensions=[schema_funcs])
            data = core.validate(raise_exception=True)
        except pykwalify.errors.SchemaError as exc:
            lines = [ln.strip()[2:] for ln in str(exc.msg).splitlines() if ln.strip().startswith("- ")]
            problems = [_explain_schema_error(ln) for ln in lines] or [str(exc.msg)]
            raise ConfigError(f"{path}: invalid pyradiomics parameters: {'; '.join(problems)}") from exc
        except pykwalify.errors.PyKwalifyException as exc:
            raise ConfigError(f"{path}: not a usable pyradiomics parameter file: {exc.msg}") from exc
        except (YAMLError, json.JSONDecodeError) as exc:
            detail = " ".join(str(exc).split())
            raise ConfigError(f"{path}: cannot parse the parameter file: {detail}") from exc
        except (ValueError, TypeError) as exc:  # pyradiomics' schemaFuncs (image types, feature classes …)
            raise ConfigError(f"{path}: invalid pyradiomics parameters: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with 'setting', 'imageType' and/or 'featureClass'")
    return json.loads(json.dumps(data))


def _param_set(path: Path, dimension: Literal["2d", "3d"], ibsi: bool = False) -> ParamSet:
    params = load_params(path)
    settings = params.get("setting") or {}
    forced = dict(_FORCED_ALL) | (dict(_FORCED_2D) if dimension == "2d" else {})
    defaults = {"force2D": False, "force2Ddimension": 0, "label": 1}  # pyradiomics' defaults
    overrides = {k: v for k, v in forced.items() if settings.get(k, defaults[k]) != v}
    for key, value in overrides.items():
        if key in settings:
            log.warning(
                "%s: setting %s: %r ignored, radvlsm uses %s: %r for %s", path, key, settings[key], key, value,
                "2-D images" if key.startswith("force2D") else "its binary masks",
            )
    interpolation = Interpolation.from_settings(settings, str(path)) if ibsi else None
    if interpolation is not None:
        overrides["resampledPixelSpacing"] = None
    return ParamSet(
        path=path, params=MappingProxyType(params), overrides=MappingProxyType(overrides),
        interpolation=interpolation,
    )


# --------------------------------------------------------------------------------------------------------
# pyradiomics logging
# --------------------------------------------------------------------------------------------------------


def _configure_pyradiomics_logging() -> None:
    """pyradiomics' logger to WARNING, its own stderr handler muted (its warnings are re-logged by us)."""
    import radiomics

    logging.getLogger("radiomics").setLevel(logging.WARNING)
    stock = getattr(radiomics, "handler", None)
    if isinstance(stock, logging.Handler):
        stock.setLevel(logging.CRITICAL + 1)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(record.getMessage())
        except (TypeError, ValueError):
            self.handleError(record)


@contextlib.contextmanager
def _collect_pyradiomics_warnings() -> Iterator[list[str]]:
    lg = logging.getLogger("radiomics")
    handler = _Collect()
    propagate = lg.propagate
    lg.addHandler(handler)
    lg.propagate = False
    try:
        yield handler.messages
    finally:
        lg.removeHandler(handler)
        lg.propagate = propagate


# --------------------------------------------------------------------------------------------------------
# Arrays to SimpleITK
# --------------------------------------------------------------------------------------------------------


def to_grayscale(pixels: np.ndarray) -> np.ndarray:
    """A 2-D image as ``float64`` grayscale ``(H, W)``.

    Colour ``(H, W, 3)`` (RGB) becomes ITU-R BT.601 luma, ``Y = (299 R + 587 G + 114 B) / 1000`` computed in
    integers then divided once (exact and order-independent; the Y of JPEG's YCbCr, PIL's ``"L"`` without
    rounding), so an 8-bit image stays in 0..255. A 4th (alpha) channel is ignored. Grayscale ``(H, W)`` is
    only cast to ``float64``.

    Raises:
        ValueError: any other shape.
    """
    arr = np.asarray(pixels)
    if arr.ndim == 2:
        return arr.astype(np.float64)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        rgb = arr[..., :3]
        if rgb.dtype.kind in "biu":
            w = np.asarray(LUMA_WEIGHTS, dtype=np.int64)
            return (rgb.astype(np.int64) @ w).astype(np.float64) / 1000.0
        w = np.asarray(LUMA_WEIGHTS, dtype=np.float64)
        return (rgb.astype(np.float64) @ w) / 1000.0
    raise ValueError(f"expected a (H, W) or (H, W, 3) image, got shape {arr.shape}")


def _check_spacing(spacing: Sequence[float], n: int) -> tuple[float, ...]:
    values = tuple(float(s) for s in spacing)
    if len(values) != n or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing must be {n} positive finite numbers (mm per array axis), got {tuple(spacing)}")
    return values


def to_sitk(
    pixels: np.ndarray,
    mask: np.ndarray,
    spacing: Sequence[float] | None = None,
    *,
    volume: bool,
    origin: Sequence[float] | None = None,
    direction: Sequence[float] | None = None,
) -> tuple[sitk.Image, sitk.Image]:
    """The image and mask exactly as radvlsm hands them to pyradiomics.

    Args:
        pixels: 2-D: ``(H, W)`` or ``(H, W, 3)`` RGB (converted by :func:`to_grayscale`); volume: ``(Z, Y, X)``,
            kept in its own dtype (e.g. HU).
        mask: ``(H, W)`` or ``(Z, Y, X)``, same shape as the image; non-zero = lesion.
        spacing: mm per *array* axis: ``(row, column)`` for 2-D, ``(z, y, x)`` for a volume; ``None``: 1 each.
        volume: whether ``pixels`` is a volume.
        origin, direction: volume only, ITK (x, y, z) / row-major 3x3 (as :class:`radvlsm.io.VolumeGeometry`);
            they do not change any feature, only what pyradiomics records.

    Returns:
        ``(image, mask)``: 3-D SimpleITK images (2-D ones as ``1 x H x W``), the mask ``uint8`` 0/1.

    Raises:
        ValueError: shapes or spacing that do not fit.
    """
    arr = np.asarray(pixels)
    m = np.asarray(mask)
    if volume:
        if arr.ndim != 3:
            raise ValueError(f"a volume must be (Z, Y, X), got shape {arr.shape}")
        sp = _check_spacing(spacing, 3) if spacing is not None else (1.0, 1.0, 1.0)
        img_arr = arr if arr.dtype != np.bool_ else arr.astype(np.uint8)
        sitk_spacing = sp[::-1]
    else:
        gray = to_grayscale(arr)
        sp = _check_spacing(spacing, 2) if spacing is not None else (1.0, 1.0)
        img_arr = gray[np.newaxis]
        m = m[np.newaxis] if m.ndim == 2 else m
        sitk_spacing = (sp[1], sp[0], 1.0)
    if m.shape != img_arr.shape:
        raise ValueError(f"mask shape {np.asarray(mask).shape} does not match image shape {arr.shape}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(img_arr))
    label = sitk.GetImageFromArray(np.ascontiguousarray(m != 0, dtype=np.uint8))
    for im in (image, label):
        im.SetSpacing(sitk_spacing)
        if volume and origin is not None:
            im.SetOrigin(tuple(float(v) for v in origin))
        if volume and direction is not None:
            im.SetDirection(tuple(float(v) for v in direction))
    return image, label


# --------------------------------------------------------------------------------------------------------
# The extractor
# --------------------------------------------------------------------------------------------------------


class RadiomicsExtractor:
    """pyradiomics' feature extractor with radvlsm's parameter handling; reusable across many cases.

    Args:
        params: a pyradiomics parameter file (YAML/JSON) used for every case, or ``None`` for the built-in
            :data:`DEFAULT_PARAMS` of each case's dimension.
        dimension: ``"2d"`` (2-D images only), ``"3d"`` (volumes only) or ``"auto"`` (both, each its way).
        ibsi: do IBSI's processing before pyradiomics (:mod:`radvlsm.fusion.resampling`: the file's resampling on
            IBSI's grid, rounding, mask interpolation, and these steps' options); ``None``: pyradiomics' own.

    Raises:
        ConfigError: an invalid parameter file (checked here, once), or one whose interpolator has no IBSI
            counterpart when ``ibsi`` is given.
    """

    def __init__(
        self, params: str | Path | None = None, dimension: Dimension = "auto", ibsi: IbsiProcessing | None = None
    ) -> None:
        if dimension not in ("2d", "3d", "auto"):
            raise ValueError(f"dimension must be '2d', '3d' or 'auto', got {dimension!r}")
        self.params = Path(params) if params is not None else None
        self.dimension: Dimension = dimension
        self.ibsi = ibsi
        _configure_pyradiomics_logging()
        dims: tuple[Literal["2d", "3d"], ...] = ("2d", "3d") if dimension == "auto" else (dimension,)
        self._param_sets = {d: _param_set(self.params or DEFAULT_PARAMS[d], d, ibsi is not None) for d in dims}
        self._extractors: dict[tuple[str, str], RadiomicsFeatureExtractor] = {}

    def param_set(self, dimension: Literal["2d", "3d"]) -> ParamSet:
        """The validated parameters used for cases of ``dimension``."""
        try:
            return self._param_sets[dimension]
        except KeyError:
            raise ValueError(f"this extractor is {self.dimension}, not {dimension}") from None

    def pyradiomics_extractor(
        self, dimension: Literal["2d", "3d"], part: Literal["all", "shape", "rest"] = "all"
    ) -> RadiomicsFeatureExtractor:
        """The underlying pyradiomics extractor for ``dimension`` (built once, from the parameter file's path);
        ``part``: all the file's feature classes, only its shape classes, or all but those."""
        key = (dimension, part)
        if key not in self._extractors:
            from radiomics.featureextractor import RadiomicsFeatureExtractor

            ps = self.param_set(dimension)
            with _quiet_pykwalify():
                ex = RadiomicsFeatureExtractor(str(ps.path), **dict(ps.overrides))
            if part != "all":
                kept = {k: v for k, v in ex.enabledFeatures.items() if k.startswith("shape") == (part == "shape")}
                ex.disableAllFeatures()
                ex.enableFeaturesByName(**kept)
            self._extractors[key] = ex
        return self._extractors[key]

    # -- single case ------------------------------------------------------------------------------------

    def _check_dimension(self, volume: bool, where: Path | None) -> Literal["2d", "3d"]:
        dim: Literal["2d", "3d"] = "3d" if volume else "2d"
        if self.dimension not in ("auto", dim):
            what = "a 3-D volume" if volume else "a 2-D image"
            raise InputError(where, f"{what}, but this extraction is {self.dimension.upper()} only")
        return dim

    def extract_sitk(
        self, image: sitk.Image, mask: sitk.Image, dimension: Literal["2d", "3d"]
    ) -> tuple[dict[str, float], tuple[str, ...]]:
        """Run pyradiomics on SimpleITK images prepared by :func:`to_sitk`.

        Returns:
            ``(features, warnings)``: feature name → value without ``diagnostics_*`` entries, and pyradiomics'
            warnings for this case (not logged here).

        With IBSI processing (``ibsi``), the images are processed first (:func:`radvlsm.fusion.resampling.process`)
        and shape features are measured on the interpolated mask before ``range_first``.

        Raises:
            InputError: pyradiomics refused the case (e.g. a mask of one voxel), with its reason, or nothing of the
                mask is left after IBSI's interpolation or first re-segmentation.
        """
        if self.ibsi is None:
            return self._execute(image, mask, dimension)
        ps = self.param_set(dimension)
        pad = int((ps.params.get("setting") or {}).get("padDistance", 5))  # pyradiomics' default
        try:
            done = process(
                sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(mask), tuple(reversed(image.GetSpacing())),
                ps.interpolation, self.ibsi, pad,
            )
        except ValueError as exc:
            raise InputError(None, f"IBSI processing: {exc}") from exc
        if not done.intensity_mask.any():
            lo, hi = self.ibsi.range_first or (math.nan, math.nan)
            raise InputError(None, f"no voxel of the lesion is within the first re-segmentation range [{lo:g}, {hi:g}]")
        img, kept = to_sitk(done.pixels, done.intensity_mask, done.spacing_zyx, volume=True)
        enabled = self.pyradiomics_extractor(dimension).enabledFeatures
        if self.ibsi.range_first is None or not any(k.startswith("shape") for k in enabled):
            return self._execute(img, kept, dimension)
        # Shape on the whole interpolated mask, the rest on what the first range keeps (pyradiomics' own order:
        # shape features come first).
        _, whole = to_sitk(done.pixels, done.mask, done.spacing_zyx, volume=True)
        features, notes = self._execute(img, whole, dimension, "shape")
        if any(not k.startswith("shape") for k in enabled):
            rest, more = self._execute(img, kept, dimension, "rest")
            features.update(rest)
            notes += more
        return features, notes

    def _execute(
        self,
        image: sitk.Image,
        mask: sitk.Image,
        dimension: Literal["2d", "3d"],
        part: Literal["all", "shape", "rest"] = "all",
    ) -> tuple[dict[str, float], tuple[str, ...]]:
        ex = self.pyradiomics_extractor(dimension, part)
        with _collect_pyradiomics_warnings() as messages:
            try:
                result = ex.execute(image, mask)
            except (ValueError, RuntimeError, IndexError, ArithmeticError, TypeError) as exc:
                detail = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
                raise InputError(None, f"pyradiomics cannot extract features: {detail}") from exc
        features = {k: float(np.asarray(v)) for k, v in result.items() if not k.startswith("diagnostics_")}
        return features, tuple(messages)

    def _extract_record(self, image: ImageRecord, mask: np.ndarray) -> tuple[dict[str, float], tuple[str, ...]]:
        if image.is_multiframe:
            raise InputError(image.path, f"a stack of {image.frames} frames: radiomics needs one image or volume")
        dim = self._check_dimension(image.is_volume, image.path)
        mask = np.asarray(mask)
        if image.is_volume:
            if image.is_rgb:
                raise InputError(image.path, "colour volumes are not supported")
            geo = image.geometry
            if geo is None:  # is_volume means a geometry; keeps type checkers informed
                raise InputError(image.path, "volume without geometry")
            expected: tuple[int, ...] = tuple(image.pixels.shape[:3])
            spacing: tuple[float, ...] | None = tuple(reversed(geo.spacing))
            origin, direction = geo.origin, geo.direction
        else:
            expected = image.size_hw
            spacing = image.pixel_spacing_mm
            origin = direction = None
        if mask.shape != expected:
            raise InputError(image.path, f"mask shape {mask.shape} does not match the image's {expected}")
        if not mask.any():
            raise InputError(image.path, "mask is empty (no lesion): nothing to extract")
        img, msk = to_sitk(image.pixels, mask, spacing, volume=image.is_volume, origin=origin, direction=direction)
        return self.extract_sitk(img, msk, dim)

    def extract(self, image: ImageRecord, mask: np.ndarray) -> dict[str, float]:
        """Features of one image (as :func:`radvlsm.io.read_image` returns it) and its lesion mask.

        Args:
            image: a 2-D image (grayscale or RGB) or a volume with its geometry.
            mask: ``(H, W)`` / ``(Z, Y, X)`` like ``image.pixels``; non-zero = lesion.

        Returns:
            pyradiomics feature name → value, in pyradiomics' order. Shape features are in the image's spacing
            units (mm, mm², mm³; pixels for plain image files).

        Raises:
            InputError: empty mask, shapes that differ, wrong dimension, or pyradiomics refusing the case.
        """
        features, notes = self._extract_record(image, mask)
        for w in notes:
            log.warning("%s: pyradiomics: %s", image.path, w)
        return features

    def extract_arrays(
        self,
        pixels: np.ndarray,
        mask: np.ndarray,
        spacing: Sequence[float] | None = None,
        *,
        volume: bool | None = None,
    ) -> dict[str, float]:
        """Features of an image held in memory (e.g. an image and a predicted mask in the fusion stage).

        Args:
            pixels: ``(H, W)``, ``(H, W, 3)`` RGB, or a volume ``(Z, Y, X)``.
            mask: same spatial shape; non-zero = lesion.
            spacing: mm per array axis (``(row, col)``; ``(z, y, x)``), ``None`` for 1 (pixels).
            volume: whether ``pixels`` is a volume; ``None``: a volume when the extractor is ``"3d"``, or for
                ``"auto"`` when ``pixels`` is 3-D and not ``(H, W, 3)``.

        Raises:
            InputError: empty mask or pyradiomics refusing the case. ValueError: shapes or spacing that do not fit.
        """
        arr = np.asarray(pixels)
        mask = np.asarray(mask)
        if volume is None:
            volume = self.dimension == "3d" or (
                self.dimension == "auto" and arr.ndim == 3 and not (arr.shape[2] in (3, 4) and mask.ndim == 2)
            )
        dim = self._check_dimension(volume, None)
        if not mask.any():
            raise InputError(None, "mask is empty (no lesion): nothing to extract")
        img, msk = to_sitk(arr, mask, spacing, volume=volume)
        features, notes = self.extract_sitk(img, msk, dim)
        for w in notes:
            log.warning("pyradiomics: %s", w)
        return features

    def extract_case(self, pair: CasePair) -> tuple[FeatureRow | CaseError, tuple[str, ...]]:
        """Read and extract one case; every failure becomes a :class:`CaseError` (never raises for a bad case).

        Returns:
            ``(row or error, pyradiomics warnings)``.
        """
        side = "image"  # what is being read or computed, to prefix the reason
        try:
            record = read_image(pair.image)
            side = "mask"
            mask = read_mask(pair.mask, like=record, roi=pair.roi)
            side = ""
            features, notes = self._extract_record(record, mask)
        except RadvlsmError as exc:
            reason: str | None = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        except MemoryError:
            reason = "out of memory"
        except Exception as exc:  # noqa: BLE001 (one case's unexpected failure must not stop the batch)
            reason = f"{type(exc).__name__}: {exc}"
        else:
            reason = None
        if reason is not None:
            if side and not reason.startswith(side):
                reason = f"{side}: {reason}"
            return CaseError(pair.case_id, str(pair.image), str(pair.mask), reason), ()
        row = FeatureRow(pair.case_id, str(pair.image), str(pair.mask), tuple(features.items()))
        return row, notes


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
            pairs.append(CasePair(it.case_id, it.path, mask))
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

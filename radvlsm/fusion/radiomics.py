"""Radiomics features of one case with pyradiomics: an image (2-D or a volume) and its lesion mask.

The radiomics half of the fusion stage; ``radvlsm radiomics`` runs it over folders
(:mod:`radvlsm.fusion.radiomics_folder`), and parameter files are checked by
:mod:`radvlsm.fusion.radiomics_params`::

    ex = RadiomicsExtractor()                      # built-in parameters, 2-D or 3-D chosen per image
    feats = ex.extract(record, mask)               # ImageRecord + bool mask -> {"original_firstorder_Mean": …}
    feats = ex.extract_arrays(rgb, mask)           # numpy (H, W, 3) + (H, W); spacing optional

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

**Features.** pyradiomics' own names in its own order (``original_shape2D_Elongation`` …,
``original_firstorder_Mean`` …, ``original_glcm_Contrast`` …); its ``diagnostics_*`` entries (versions, settings,
hashes: text, not numbers) are left out, so every value is a number (``nan`` where pyradiomics gives NaN).

**Logging.** pyradiomics logs each step at INFO; its logger is set to WARNING and its own stderr handler is
muted. Its warnings are collected per case and logged through this module's logger (prefixed by the case); for
pooled runs (:mod:`radvlsm.fusion.radiomics_folder`) in the parent process. Nothing here prints.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import SimpleITK as sitk  # noqa: N813 (the library's own convention)

from radvlsm.errors import InputError, RadvlsmError
from radvlsm.fusion.radiomics_params import DEFAULT_PARAMS, ParamSet, build_param_set, quiet_pykwalify
from radvlsm.fusion.resampling import IbsiProcessing, process
from radvlsm.io import ImageRecord, read_image, read_mask

if TYPE_CHECKING:
    from radiomics.featureextractor import RadiomicsFeatureExtractor

__all__ = [
    "ERROR_COLUMNS",
    "ID_COLUMNS",
    "LUMA_WEIGHTS",
    "CaseError",
    "CasePair",
    "Dimension",
    "FeatureRow",
    "RadiomicsExtractor",
    "to_grayscale",
    "to_sitk",
]

log = logging.getLogger(__name__)

#: ``"2d"``, ``"3d"``, or ``"auto"`` (volumes 3-D, other images 2-D).
Dimension = Literal["2d", "3d", "auto"]

#: ITU-R BT.601 luma weights (R, G, B), as integers per mille: Y = (299 R + 587 G + 114 B) / 1000.
LUMA_WEIGHTS: tuple[int, int, int] = (299, 587, 114)

#: The first columns of the features CSV, before the features.
ID_COLUMNS: tuple[str, str, str] = ("case_id", "mask", "image")
#: The columns of the errors CSV.
ERROR_COLUMNS: tuple[str, str, str, str] = ("case_id", "image", "mask", "reason")


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
        series_uid: the series of ``image`` when it is a folder holding several DICOM series (one case each).
    """

    case_id: str
    image: Path
    mask: Path
    roi: str | None = None
    series_uid: str | None = None

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
            :data:`~radvlsm.fusion.radiomics_params.DEFAULT_PARAMS` of each case's dimension.
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
        self._param_sets = {d: build_param_set(self.params or DEFAULT_PARAMS[d], d, ibsi is not None) for d in dims}
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
            with quiet_pykwalify():
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
            record = read_image(pair.image, series_uid=pair.series_uid)
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

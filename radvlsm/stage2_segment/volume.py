"""3-D segmentation of CT nodules with the 2-D box-prompted segmenter, slice by slice.

Frames and conventions:

- a CT volume is an :class:`~radvlsm.io.ImageRecord` whose ``pixels`` are ``(Z, Y, X)`` Hounsfield units and
  whose :class:`~radvlsm.io.VolumeGeometry` maps voxel indices ``(x, y, z)`` to scanner (patient, LPS)
  millimetres: ``p = origin + direction @ (index * spacing)``. LIDC's ``coordX/Y/Z`` are such millimetres.
- a voxel box (:class:`VoxelBox`) is ``x0, y0, z0, x1, y1, z1`` in continuous voxel *edge* coordinates, as 2-D
  boxes are everywhere in radvlsm: voxel ``i`` spans ``[i, i + 1)``, so the box of a mask whose columns run from
  10 to 20 (inclusive) has ``x0 = 10, x1 = 21``. Its ``(x0, y0, x1, y1)`` is an XYXY box on every axial slice.
- a nodule point (:class:`NodulePoint`) is a centre in scanner mm with an optional diameter in mm; the sphere of
  that diameter becomes a voxel box through the geometry (:func:`point_to_box`).

Preprocessing (the same in training, :func:`nodule_slice_crops`, and inference, :class:`VolumeSegmenter`):
nodules are small (LIDC's median diameter is 6.6 mm, a dozen voxels), so each axial slice is seen as a zoomed
square crop (:class:`CropFrame`) centred on the prompt box, of side :data:`CROP_CONTEXT` times the box's
longer side (at least :data:`MIN_CROP_PX` voxels), resampled bilinearly to the model input, HU windowed to
8 bits with :data:`NODULE_WINDOW` (-1000..400 HU) and repeated into RGB. Outside the slice the crop is air
(:data:`PAD_HU`).

Inference (:meth:`VolumeSegmenter.segment_box`), by :attr:`VolumeConfig.slice_prompts`:

- ``ellipsoid`` (the default): every slice the 3-D box overlaps is prompted by the box of the cross-section of
  the ellipsoid inscribed in the 3-D box at that slice's centre (at least :attr:`VolumeConfig.min_section` of
  the box's ``xy``). A nodule narrows towards its first and last slices; prompted there with the whole ``xy``
  the 2-D model over-segments. On LIDC ``val`` (model after one epoch, ground-truth boxes) the 3-D Dice was
  0.848 with these boxes, 0.807 with the box's ``xy`` on every slice, 0.793 propagating, and 0.894 with each
  slice's own ground-truth box (the bound of any per-slice box);
- ``propagate``: the slice holding the box's centre is segmented from the box's ``xy``; the segmentation then
  propagates outwards, each slice prompted by the box of the previous slice's mask (grown by
  :attr:`VolumeConfig.grow`, kept within the ``xy`` grown by :attr:`VolumeConfig.max_outside`), and stops where
  the mask vanishes, where the presence head doubts the slice holds the nodule, or past the box's last slice
  (plus ``z_margin`` slices);
- ``box``: every slice the box overlaps prompted by its ``xy``.

The 3-D connected components of the stacked masks that touch the prompt's core (its middle half) are kept. The
mask has the volume's exact shape and its geometry.

A point prompt (:meth:`VolumeSegmenter.segment_point`) becomes the box of the ellipsoid of its diameter
scaled by :attr:`VolumeConfig.point_extent` (``xy``, ``z``): on LIDC ``train`` the tight box of a nodule's mask
is 1.29 (x, y) and 1.13 (z) times its labelled diameter (medians; the masks take in the boundary voxels that a
diameter leaves out).
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from radvlsm.data.boxes import mask_to_box
from radvlsm.errors import ConfigError, InputError
from radvlsm.io.record import ImageRecord, VolumeGeometry
from radvlsm.io.window import Window, apply_window

log = logging.getLogger(__name__)

#: HU window of the model input: -1000 (air) .. 400 HU, wide enough for ground-glass, solid and calcified nodules.
NODULE_WINDOW = Window(1400, -300, "nodule")
#: Crop side / longer side of the prompt box.
CROP_CONTEXT = 2.5
#: Smallest crop side, in voxels (a 3-voxel nodule is not zoomed up to the whole model input).
MIN_CROP_PX = 24.0
#: The value outside the slice (air).
PAD_HU = -1000.0
#: Diameter assumed for a nodule point given without one.
DEFAULT_DIAMETER_MM = 10.0


@dataclass(frozen=True)
class CropFrame:
    """A square window of a slice, ``side`` voxels wide with its top-left edge at ``(x0, y0)`` (voxel edge
    coordinates), resampled onto a ``size`` × ``size`` model input."""

    x0: float
    y0: float
    side: float
    size: int

    @property
    def scale(self) -> float:
        """Model-input pixels per slice voxel."""
        return self.size / self.side

    def matrix(self) -> np.ndarray:
        """``(2, 3)`` affine from slice voxel centres (integer ``x, y``) to crop pixel centres (cv2's frame)."""
        k = self.scale
        return np.array([[k, 0.0, k * (0.5 - self.x0) - 0.5], [0.0, k, k * (0.5 - self.y0) - 0.5]])

    def box_to_crop(self, box: np.ndarray) -> np.ndarray:
        """XYXY box(es) ``(..., 4)`` in slice voxel edges → crop pixel edges."""
        b = np.asarray(box, dtype=np.float64)
        return (b - np.array([self.x0, self.y0, self.x0, self.y0])) * self.scale

    def box_from_crop(self, box: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`box_to_crop`."""
        b = np.asarray(box, dtype=np.float64)
        return b / self.scale + np.array([self.x0, self.y0, self.x0, self.y0])


def crop_frame(box: np.ndarray, size: int, context: float = CROP_CONTEXT, min_side: float = MIN_CROP_PX) -> CropFrame:
    """The square crop centred on the XYXY ``box`` (slice voxel edges), ``context`` × its longer side wide
    (at least ``min_side`` voxels), for a ``size``² model input."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(context * max(x1 - x0, y1 - y0), min_side)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return CropFrame(cx - side / 2, cy - side / 2, side, size)


def crop_slice(hu: np.ndarray, frame: CropFrame, window: Window = NODULE_WINDOW) -> np.ndarray:
    """``(Y, X)`` HU slice → ``(size, size, 3)`` uint8 RGB model input (bilinear; air outside the slice)."""
    warped = cv2.warpAffine(np.ascontiguousarray(hu, dtype=np.float32), frame.matrix(), (frame.size, frame.size),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=PAD_HU)
    gray = apply_window(warped, window)
    return np.repeat(gray[:, :, None], 3, axis=2)


def crop_mask(mask: np.ndarray, frame: CropFrame) -> np.ndarray:
    """``(Y, X)`` mask → ``(size, size)`` uint8 {0, 1} (bilinear on 0/1, then ≥ 0.5)."""
    warped = cv2.warpAffine(np.ascontiguousarray(mask, dtype=np.float32), frame.matrix(), (frame.size, frame.size),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return (warped >= 0.5).astype(np.uint8)


def uncrop_mask(mask: np.ndarray, frame: CropFrame, hw: tuple[int, int]) -> np.ndarray:
    """``(size, size)`` mask over the crop → ``(Y, X)`` bool over the slice ``hw`` (bilinear, ≥ 0.5)."""
    h, w = hw
    back = cv2.warpAffine(np.ascontiguousarray(mask, dtype=np.float32), frame.matrix(), (w, h),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0.0)
    return back >= 0.5


@dataclass(frozen=True)
class VoxelBox:
    """An axis-aligned box in continuous voxel edge coordinates ``(x0, y0, z0, x1, y1, z1)``."""

    x0: float
    y0: float
    z0: float
    x1: float
    y1: float
    z1: float

    def __post_init__(self) -> None:
        vals = (self.x0, self.y0, self.z0, self.x1, self.y1, self.z1)
        if not all(math.isfinite(v) for v in vals):
            raise InputError(None, f"a voxel box needs finite coordinates, got {vals}")
        if self.x1 <= self.x0 or self.y1 <= self.y0 or self.z1 <= self.z0:
            raise InputError(None, f"an empty voxel box: {vals}")

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> VoxelBox | None:
        """The tight box of a ``(Z, Y, X)`` mask's non-zero voxels, ``None`` when it is empty."""
        nz = [np.flatnonzero(np.asarray(mask).any(axis=axes)) for axes in ((0, 1), (0, 2), (1, 2))]
        if nz[0].size == 0:
            return None
        (xs, ys, zs) = nz
        return cls(float(xs[0]), float(ys[0]), float(zs[0]), float(xs[-1] + 1), float(ys[-1] + 1),
                   float(zs[-1] + 1))

    @property
    def xy(self) -> np.ndarray:
        """``(4,)`` XYXY box on an axial slice."""
        return np.array([self.x0, self.y0, self.x1, self.y1], dtype=np.float64)

    @property
    def center(self) -> tuple[float, float, float]:
        """Centre ``(x, y, z)`` in voxel edge coordinates (voxel ``i``'s centre is ``i + 0.5``)."""
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2, (self.z0 + self.z1) / 2

    def slices(self, depth: int) -> range:
        """The axial slices ``z`` the box overlaps, within ``[0, depth)``."""
        return range(max(0, math.floor(self.z0)), min(depth, math.ceil(self.z1)))

    def ellipsoid(self, shape: tuple[int, int, int]) -> np.ndarray:
        """``(Z, Y, X)`` bool: voxels whose centre lies in the ellipsoid inscribed in the box (the baseline)."""
        cx, cy, cz = self.center
        ax, ay, az = (self.x1 - self.x0) / 2, (self.y1 - self.y0) / 2, (self.z1 - self.z0) / 2
        z = ((np.arange(shape[0]) + 0.5 - cz) / az) ** 2
        y = ((np.arange(shape[1]) + 0.5 - cy) / ay) ** 2
        x = ((np.arange(shape[2]) + 0.5 - cx) / ax) ** 2
        return (z[:, None, None] + y[None, :, None] + x[None, None, :]) <= 1.0


@dataclass(frozen=True)
class NodulePoint:
    """A nodule centre in scanner millimetres (the frame of the volume's geometry, e.g. LIDC's
    ``coordX/Y/Z``), with its diameter in mm when known."""

    x: float
    y: float
    z: float
    diameter_mm: float | None = None

    @property
    def xyz(self) -> np.ndarray:
        return np.array([self.x, self.y, self.z], dtype=np.float64)


def physical_to_voxel(points_mm: np.ndarray, geometry: VolumeGeometry) -> np.ndarray:
    """Scanner mm ``(..., 3)`` → continuous voxel indices ``(..., 3)`` in ``(x, y, z)`` order, through the
    geometry's origin, direction and spacing. A voxel's centre has integer indices; the voxel holding a point
    is ``floor(index + 0.5)``."""
    return geometry.physical_to_index(np.asarray(points_mm, dtype=np.float64))


def point_voxel(point: NodulePoint, geometry: VolumeGeometry) -> tuple[int, int, int]:
    """The ``(x, y, z)`` voxel holding ``point`` (may lie outside the volume)."""
    idx = physical_to_voxel(point.xyz, geometry)
    return tuple(int(v) for v in np.floor(idx + 0.5))  # type: ignore[return-value]


def point_to_box(point: NodulePoint, geometry: VolumeGeometry,
                 default_diameter_mm: float = DEFAULT_DIAMETER_MM) -> VoxelBox:
    """The voxel box of the sphere of ``point.diameter_mm`` (``default_diameter_mm`` when unknown) around the
    point. The direction matrix is orthonormal, so the sphere's half-extent along voxel axis ``i`` is
    ``radius / spacing[i]`` whatever the direction."""
    d = point.diameter_mm if point.diameter_mm is not None else default_diameter_mm
    c = physical_to_voxel(point.xyz, geometry) + 0.5  # voxel centre index → edge coordinates
    half = (d / 2) / np.asarray(geometry.spacing)
    lo, hi = c - half, c + half
    return VoxelBox(float(lo[0]), float(lo[1]), float(lo[2]), float(hi[0]), float(hi[1]), float(hi[2]))


_POINT_COLUMNS = ("x", "y", "z")


def read_points_csv(path: str | Path) -> tuple[NodulePoint, ...]:
    """Read nodule points from a CSV with a header ``x,y,z[,diameter_mm]`` (scanner mm, LIDC's coordX/Y/Z
    convention); other columns are ignored (see :func:`read_study_points` for a ``study`` column).

    Raises:
        InputError: naming the file and the reason: missing, unreadable or empty file, a missing column, a
            value that is not a finite number, a diameter that is not positive.
    """
    return tuple(p for _, p in read_study_points(path))


def read_study_points(path: str | Path) -> tuple[tuple[str, NodulePoint], ...]:
    """Read ``[study,]x,y,z[,diameter_mm]`` rows: each nodule point with the study (case id) it belongs to,
    ``""`` when the file has no ``study`` column or the row leaves it empty. Errors as :func:`read_points_csv`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "points file not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            missing = [c for c in _POINT_COLUMNS if c not in header]
            if missing:
                raise InputError(path, f"points CSV needs the columns [study,]x,y,z[,diameter_mm]; missing "
                                       f"{missing} (header: {','.join(header) or 'none'})")
            rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader]
    except UnicodeDecodeError as exc:
        raise InputError(path, f"points CSV is not UTF-8 text ({exc.reason})") from exc
    except csv.Error as exc:
        raise InputError(path, f"malformed CSV: {exc}") from exc
    points = []
    for line, row in enumerate(rows, start=2):
        vals = {}
        for col in (*_POINT_COLUMNS, "diameter_mm"):
            text = row.get(col, "")
            if col == "diameter_mm" and text == "":
                continue
            try:
                v = float(text)
            except ValueError:
                raise InputError(path, f"line {line}: {col} {text!r} is not a number") from None
            if not math.isfinite(v):
                raise InputError(path, f"line {line}: {col} {text!r} is not finite")
            vals[col] = v
        if "diameter_mm" in vals and vals["diameter_mm"] <= 0:
            raise InputError(path, f"line {line}: diameter_mm must be positive, got {vals['diameter_mm']}")
        points.append((row.get("study", ""), NodulePoint(vals["x"], vals["y"], vals["z"], vals.get("diameter_mm"))))
    if not points:
        raise InputError(path, "points CSV has no rows")
    return tuple(points)


# ---------------------------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class SliceCrops:
    """Zoomed crops of a nodule's axial slices: ``images (N, S, S, 3)`` uint8, ``masks (N, S, S)`` uint8 {0, 1},
    ``ids`` ``<case>:z<k>``."""

    ids: tuple[str, ...]
    images: np.ndarray
    masks: np.ndarray


def nodule_slice_crops(
    volume_hu: np.ndarray, mask: np.ndarray, case_id: str, size: int, rng: np.random.Generator | None = None,
) -> SliceCrops:
    """The crops of every axial slice of ``mask (Z, Y, X)`` that holds nodule voxels, over ``volume_hu (Z, Y, X)``.

    Each crop is centred on a prompt box as at inference: the slice's own mask box, or (with ``rng``, for half
    of the slices) the nodule's 3-D box, whose ``xy`` extent a 3-D box prompt gives every slice.
    """
    if volume_hu.shape != mask.shape:
        raise InputError(None, f"{case_id}: image {volume_hu.shape} and mask {mask.shape} differ in shape")
    box3 = VoxelBox.from_mask(mask)
    ids, images, masks = [], [], []
    if box3 is None:
        return SliceCrops((), np.zeros((0, size, size, 3), np.uint8), np.zeros((0, size, size), np.uint8))
    for z in box3.slices(mask.shape[0]):
        m = mask[z]
        box = mask_to_box(m)
        if box is None:
            continue
        ref = box3.xy if rng is not None and rng.random() < 0.5 else box
        frame = crop_frame(ref, size)
        cm = crop_mask(m, frame)
        if not cm.any():
            continue
        ids.append(f"{case_id}:z{z}")
        images.append(crop_slice(volume_hu[z], frame))
        masks.append(cm)
    return SliceCrops(tuple(ids), np.stack(images), np.stack(masks))


# --------------------------------------------------------------------------------------------------- inference


@dataclass(frozen=True)
class VolumeConfig:
    """Settings of :class:`VolumeSegmenter` (see the module docstring).

    Attributes:
        context, min_crop_px, window: the zoomed-crop preprocessing (as in training).
        slice_prompts: ``ellipsoid``, ``propagate`` or ``box``: how each slice's box comes from the 3-D box.
        min_section: ``ellipsoid``: the smallest cross-section box, as a fraction of the box's ``xy``.
        point_extent: ``(xy, z)`` factors from a point's diameter to its box's extent.
        grow: the previous mask's box grows by this fraction of its width / height on every side.
        max_outside: a propagated box stays within the prompt's ``xy`` grown by this fraction.
        presence_stop: propagation stops at a slice whose presence probability is below this.
        point_z_margin: slices a point prompt may propagate beyond its sphere's box, each way.
        keep_core: keep only the 3-D components touching the middle half of the prompt box.
    """

    context: float = CROP_CONTEXT
    min_crop_px: float = MIN_CROP_PX
    window: Window = NODULE_WINDOW
    slice_prompts: str = "ellipsoid"
    min_section: float = 0.3
    point_extent: tuple[float, float] = (1.29, 1.13)
    grow: float = 0.1
    max_outside: float = 0.2
    presence_stop: float = 0.5
    point_z_margin: int = 2
    keep_core: bool = True

    def __post_init__(self) -> None:
        if self.slice_prompts not in SLICE_PROMPTS:
            raise ConfigError(f"slice_prompts must be one of {SLICE_PROMPTS}, not {self.slice_prompts!r}")
        if not 0 <= self.min_section <= 1 or min(self.point_extent) <= 0 or self.context <= 0:
            raise ConfigError("min_section must lie in [0, 1]; point_extent and context must be positive")


#: The ways :class:`VolumeSegmenter` prompts the slices of a 3-D box.
SLICE_PROMPTS = ("ellipsoid", "propagate", "box")


def section_boxes(box: VoxelBox, zs: Sequence[int], min_section: float = 0.0) -> list[np.ndarray]:
    """XYXY boxes of the cross-sections of the ellipsoid inscribed in ``box`` at the centres of slices ``zs``
    (each at least ``min_section`` of the box's ``xy``, centred on the box)."""
    cx, cy, cz = box.center
    az = (box.z1 - box.z0) / 2
    out = []
    for z in zs:
        t = (z + 0.5 - cz) / az
        f = max(min_section, math.sqrt(max(0.0, 1.0 - t * t)))
        hw, hh = (box.x1 - box.x0) / 2 * f, (box.y1 - box.y0) / 2 * f
        out.append(np.array([cx - hw, cy - hh, cx + hw, cy + hh]))
    return out


@dataclass(frozen=True)
class SliceResult:
    """One axial slice's segmentation: its prompt ``box`` (XYXY voxel edges), presence and predicted IoU of the
    network, and the mask's ``area_px`` (before the 3-D component filter)."""

    z: int
    box: tuple[float, float, float, float]
    presence: float | None
    predicted_iou: float
    area_px: int


@dataclass(frozen=True, eq=False)
class VolumeSegmentation:
    """A 3-D nodule mask.

    Attributes:
        mask: ``(Z, Y, X)`` bool, the volume's exact shape; it lies in ``geometry``.
        geometry: the volume's geometry (a mask written with it lands where the nodule is).
        prompt: the voxel box that prompted it.
        slices: per-slice outcomes, in the order they were segmented.
        status: ``ok``, or ``not_found`` when the mask is empty.
    """

    mask: np.ndarray
    geometry: VolumeGeometry
    prompt: VoxelBox
    slices: tuple[SliceResult, ...] = field(default_factory=tuple)
    status: str = "ok"

    @property
    def volume_mm3(self) -> float:
        return float(self.mask.sum()) * float(np.prod(self.geometry.spacing))


def _check_volume(volume: ImageRecord) -> None:
    if not volume.is_volume or volume.geometry is None or volume.pixels.ndim != 3:
        raise InputError(volume.path, "3-D nodule segmentation needs a CT volume (Z, Y, X) with its geometry")
    if volume.is_rgb:
        raise InputError(volume.path, "3-D nodule segmentation needs a single-channel (HU) volume, not RGB")


class VolumeSegmenter:
    """Segments nodules in CT volumes with a box-prompted 2-D segmenter (see the module docstring).

    ``predictor`` is a :class:`~radvlsm.stage2_segment.predictor.SegmenterPredictor` of a model trained on
    these crops (``radvlsm train segmenter --domain ct``).
    """

    def __init__(self, predictor: object, config: VolumeConfig = VolumeConfig()) -> None:
        from radvlsm.stage2_segment.predictor import SegmenterPredictor

        if not isinstance(predictor, SegmenterPredictor):
            raise TypeError(f"expected a SegmenterPredictor, not {type(predictor).__name__}")
        self.predictor = predictor
        self.config = config
        self.size = predictor.model.config.image_size

    def _frame(self, box: np.ndarray) -> CropFrame:
        return crop_frame(box, self.size, self.config.context, self.config.min_crop_px)

    def _segment_slices(self, hu: np.ndarray, zs: Sequence[int], boxes: Sequence[np.ndarray],
                        ) -> list[tuple[np.ndarray, SliceResult]]:
        """Segment slices ``zs`` of ``hu (Z, Y, X)``, each from its XYXY box; returns (slice mask, result)."""
        frames = [self._frame(b) for b in boxes]
        self.predictor.set_images([crop_slice(hu[z], f, self.config.window) for z, f in zip(zs, frames, strict=True)])
        res = self.predictor.predict([f.box_to_crop(b)[None] for f, b in zip(frames, boxes, strict=True)])
        out = []
        for z, f, b, r in zip(zs, frames, boxes, res, strict=True):
            m = uncrop_mask(r.mask, f, hu.shape[1:]) if r.status == "ok" else np.zeros(hu.shape[1:], bool)
            c = r.candidates[0]
            out.append((m, SliceResult(int(z), tuple(float(v) for v in b), c.presence,  # type: ignore[arg-type]
                                       c.predicted_iou, int(m.sum()))))
        return out

    def _next_box(self, mask: np.ndarray, prompt: np.ndarray) -> np.ndarray | None:
        box = mask_to_box(mask)
        if box is None:
            return None
        g, o = self.config.grow, self.config.max_outside
        w, h = box[2] - box[0], box[3] - box[1]
        box = box + np.array([-g * w, -g * h, g * w, g * h])
        pw, ph = prompt[2] - prompt[0], prompt[3] - prompt[1]
        lim = prompt + np.array([-o * pw, -o * ph, o * pw, o * ph])
        box = np.array([max(box[0], lim[0]), max(box[1], lim[1]), min(box[2], lim[2]), min(box[3], lim[3])])
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            return None
        return box

    def segment_box(self, volume: ImageRecord, box: VoxelBox, z_margin: int = 0) -> VolumeSegmentation:
        """Segment the nodule in ``box`` (voxel edges) of ``volume`` (``(Z, Y, X)`` HU with geometry).

        ``z_margin``: slices the propagation may go beyond the box, each way (0 for a box that is known to hold
        the whole nodule).
        """
        _check_volume(volume)
        hu = volume.pixels
        depth, height, width = hu.shape
        zr = box.slices(depth)
        if len(zr) == 0 or box.x1 <= 0 or box.y1 <= 0 or box.x0 >= width or box.y0 >= height:
            where = f"x {box.x0:.1f}..{box.x1:.1f}, y {box.y0:.1f}..{box.y1:.1f}, z {box.z0:.1f}..{box.z1:.1f}"
            size = "x".join(map(str, hu.shape[::-1]))
            raise InputError(volume.path, f"its box (voxels {where}) lies outside the volume ({size} voxels)")
        prompt = box.xy
        mask = np.zeros(hu.shape, dtype=bool)
        results: list[SliceResult] = []
        zc = min(max(math.floor(box.center[2]), zr.start), zr.stop - 1)
        if self.config.slice_prompts != "propagate":
            zs = list(zr)
            boxes = (section_boxes(box, zs, self.config.min_section) if self.config.slice_prompts == "ellipsoid"
                     else [prompt] * len(zs))
            for m, r in self._segment_slices(hu, zs, boxes):
                mask[r.z] = m
                results.append(r)
        else:
            lo, hi = max(0, zr.start - z_margin), min(depth, zr.stop + z_margin)
            [(m, r)] = self._segment_slices(hu, [zc], [prompt])
            mask[zc] = m
            results.append(r)
            for step in (-1, 1):
                prev = m
                z = zc + step
                while lo <= z < hi:
                    nxt = self._next_box(prev, prompt)
                    if nxt is None:
                        break
                    [(m2, r2)] = self._segment_slices(hu, [z], [nxt])
                    if r2.presence is not None and r2.presence < self.config.presence_stop:
                        break
                    if not m2.any():
                        break
                    mask[z] = m2
                    results.append(r2)
                    prev = m2
                    z += step
        if self.config.keep_core:
            mask = keep_components_in_core(mask, box)
        status = "ok" if mask.any() else "not_found"
        return VolumeSegmentation(mask, volume.geometry, box, tuple(results), status)  # type: ignore[arg-type]

    def point_box(self, volume: ImageRecord, point: NodulePoint) -> VoxelBox:
        """The voxel box a point prompt segments in: its diameter's sphere scaled by ``point_extent``."""
        _check_volume(volume)
        box = point_to_box(point, volume.geometry)  # type: ignore[arg-type]
        (cx, cy, cz), (fxy, fz) = box.center, self.config.point_extent
        hx, hy, hz = (box.x1 - box.x0) / 2 * fxy, (box.y1 - box.y0) / 2 * fxy, (box.z1 - box.z0) / 2 * fz
        return VoxelBox(cx - hx, cy - hy, cz - hz, cx + hx, cy + hy, cz + hz)

    def segment_point(self, volume: ImageRecord, point: NodulePoint) -> VolumeSegmentation:
        """Segment the nodule at ``point`` (scanner mm, with its diameter when known) in :meth:`point_box`."""
        return self.segment_box(volume, self.point_box(volume, point), z_margin=self.config.point_z_margin)


def keep_components_in_core(mask: np.ndarray, box: VoxelBox) -> np.ndarray:
    """Keep the 3-D (26-connected) components of ``mask (Z, Y, X)`` that have a voxel in the middle half of
    ``box`` (every axis); when none has, the largest component."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n <= 1:
        return mask.copy()
    cx, cy, cz = box.center
    hx, hy, hz = (box.x1 - box.x0) / 4, (box.y1 - box.y0) / 4, (box.z1 - box.z0) / 4
    sl = tuple(slice(max(0, math.floor(c - h)), max(math.floor(c - h) + 1, math.ceil(c + h)))
               for c, h in ((cz, hz), (cy, hy), (cx, hx)))
    core = np.unique(labels[sl])
    core = core[core > 0]
    if core.size == 0:
        sizes = np.bincount(labels.ravel())[1:]
        core = np.array([int(np.argmax(sizes)) + 1])
    return np.isin(labels, core)


def segment_nodules(
    volume: ImageRecord, points: Sequence[NodulePoint], segmenter: VolumeSegmenter,
) -> tuple[VolumeSegmentation, ...]:
    """Segment one nodule per point (scanner mm, e.g. from :func:`read_points_csv`) in a CT volume.

    Returns one :class:`VolumeSegmentation` per point, in order, each ``(Z, Y, X)`` with the volume's geometry
    (write it with ``radvlsm.io.write_nifti_mask(path, seg.mask, seg.geometry)``).

    Raises:
        InputError: naming the volume: not a CT volume, or a point whose box lies outside it.
    """
    _check_volume(volume)
    out = []
    for i, p in enumerate(points):
        try:
            out.append(segmenter.segment_point(volume, p))
        except InputError as exc:
            raise InputError(volume.path, f"nodule {i + 1} at ({p.x:g}, {p.y:g}, {p.z:g}) mm: {exc.reason}") from exc
    return tuple(out)

"""CT display windows (HU -> 8-bit) and conversion of any image to display / model-input RGB.

Window presets (width / level in HU), the values in common radiological use:

==============  =======  =======
preset          width    level
==============  =======  =======
``lung``        1500     -600
``mediastinum`` 350      50
``soft_tissue`` 400      40
``liver``       150      30
``bone``        1800     400
``brain``       80       40
==============  =======  =======

The mapping is the linear VOI LUT function of DICOM PS3.3 C.11.2.1.2.1 (``WindowCenter``/``WindowWidth``),
with output 0..255: values at or below ``level - 0.5 - (width - 1) / 2`` are black, values above
``level - 0.5 + (width - 1) / 2`` are white.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from radvlsm.errors import InputError
from radvlsm.io.record import ImageRecord, Modality

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    """A CT display window in Hounsfield units.

    Attributes:
        width: window width (HU), at least 1.
        level: window centre (HU).
        name: preset name, or ``"custom"``.
    """

    width: float
    level: float
    name: str = "custom"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.width) and np.isfinite(self.level)) or self.width < 1:
            raise InputError(None, f"invalid CT window W{self.width}/L{self.level}: width must be >= 1 HU")

    @property
    def lower(self) -> float:
        """Highest HU shown black (approximately ``level - width / 2``)."""
        return self.level - 0.5 - (self.width - 1) / 2

    @property
    def upper(self) -> float:
        """Lowest HU shown white (approximately ``level + width / 2``)."""
        return self.level - 0.5 + (self.width - 1) / 2

    def apply(self, hu: np.ndarray) -> np.ndarray:
        """Map HU to ``uint8`` (same shape); see :func:`apply_window`."""
        return apply_window(hu, self)

    def __str__(self) -> str:
        return f"{self.name} (W{self.width:g}/L{self.level:g})"


PRESETS: dict[str, Window] = {
    w.name: w
    for w in (
        Window(1500, -600, "lung"),
        Window(350, 50, "mediastinum"),
        Window(400, 40, "soft_tissue"),
        Window(150, 30, "liver"),
        Window(1800, 400, "bone"),
        Window(80, 40, "brain"),
    )
}

WindowSpec = Window | str | tuple[float, float]


def get_window(spec: WindowSpec) -> Window:
    """Resolve a window given as a :class:`Window`, a preset name (``"lung"``, ``"soft-tissue"`` …,
    case-insensitive) or a ``(width, level)`` pair.

    Raises:
        InputError: unknown preset name, or a width below 1 HU.
    """
    if isinstance(spec, Window):
        return spec
    if isinstance(spec, str):
        key = spec.strip().lower().replace("-", "_").replace(" ", "_")
        if key in PRESETS:
            return PRESETS[key]
        raise InputError(None, f"unknown CT window {spec!r}; presets: {', '.join(PRESETS)}")
    try:
        width, level = (float(v) for v in spec)
    except (TypeError, ValueError) as exc:
        raise InputError(None, f"a CT window is a preset name or a (width, level) pair, got {spec!r}") from exc
    return Window(width, level)


def apply_window(hu: np.ndarray, window: WindowSpec) -> np.ndarray:
    """Map Hounsfield units to ``uint8`` display values through ``window`` (DICOM linear VOI function).

    Args:
        hu: array of HU values, any shape; NaN maps to 0.
        window: a :class:`Window`, preset name or ``(width, level)``.

    Returns:
        ``uint8`` array of the same shape.
    """
    w = get_window(window)
    x = np.asarray(hu, dtype=np.float64)
    if w.width == 1:
        out = np.where(x > w.level - 0.5, 255.0, 0.0)
    else:
        out = ((x - (w.level - 0.5)) / (w.width - 1) + 0.5) * 255.0
    out = np.nan_to_num(out, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def robust_rescale(values: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """Map any numeric array to ``uint8`` by its robust range (the given percentiles of its finite values).

    A constant image maps to 0; NaN maps to 0. Returns an array of the same shape.
    """
    x = np.asarray(values, dtype=np.float64)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return np.zeros(x.shape, dtype=np.uint8)
    lo, hi = (float(v) for v in np.percentile(finite, percentiles))
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        return np.zeros(x.shape, dtype=np.uint8)
    out = np.nan_to_num((x - lo) / (hi - lo) * 255.0, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def to_display_rgb(
    image: ImageRecord | np.ndarray,
    window: WindowSpec | None = None,
    *,
    index: int | None = None,
    percentiles: tuple[float, float] = (0.5, 99.5),
) -> np.ndarray:
    """Turn one 2-D image (or one slice / frame) into an ``(H, W, 3)`` ``uint8`` RGB array for display or as
    model input.

    Rules, in order:

    * ``window`` given: the values are taken as HU and windowed (:func:`apply_window`); the image must be
      single-channel. Use it for CT (records read from DICOM CT are HU; NIfTI CT is HU too).
    * ``uint8`` (and ``bool``, mapped to 0/255): passed through unchanged.
    * anything else (``uint16``, signed, float, CT without a window): rescaled by the robust range
      ``percentiles`` of its values (colour images: one range for all channels).
    * grayscale is repeated into 3 channels; an alpha channel is dropped.

    Args:
        image: an :class:`ImageRecord` or an array ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``.
        window: CT window (preset name, ``(width, level)`` or :class:`Window`), or None.
        index: for volumes (``[z, y, x]``) the slice ``z``, for frame stacks the frame; required for them.
        percentiles: the robust range used when rescaling non-8-bit data.

    Returns:
        A new C-contiguous ``(H, W, 3)`` ``uint8`` array.

    Raises:
        ValueError: a volume / frame stack without ``index``, an index out of range, an unsupported shape, or
            a window on a colour image.
    """
    if isinstance(image, ImageRecord):
        arr = image.pixels
        if image.is_volume or image.is_multiframe:
            what = "volume" if image.is_volume else "frame stack"
            if index is None:
                raise ValueError(f"{image.path}: a {what} needs the slice/frame index to display")
            if not -arr.shape[0] <= index < arr.shape[0]:
                raise ValueError(f"{image.path}: index {index} outside the {arr.shape[0]} slices/frames")
            arr = arr[index]
        if window is not None and image.modality not in (Modality.CT, Modality.OT):
            logger.warning("%s: CT window applied to a %s image", image.path, image.modality.value)
    else:
        arr = np.asarray(image)
        if index is not None:
            arr = arr[index]
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {arr.shape}")

    if window is not None:
        if arr.ndim == 3:
            raise ValueError("a CT window applies to single-channel (HU) images, not to colour images")
        gray = apply_window(arr, window)
    elif arr.dtype == np.bool_:
        gray = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint8:
        gray = arr
    else:
        gray = robust_rescale(arr, percentiles)
    if gray.ndim == 2:
        gray = np.repeat(gray[:, :, np.newaxis], 3, axis=2)
    return np.array(gray, dtype=np.uint8, order="C", copy=True)

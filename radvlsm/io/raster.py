"""Plain raster images: PNG, JPEG, BMP, TIFF (8/16-bit; grayscale, RGB, RGBA, palette)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from radvlsm.errors import ImageReadError
from radvlsm.io.record import ImageRecord, Modality

RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})

# PIL raises this for images whose pixel count suggests a decompression bomb; medical images can be large,
# but not this large.
Image.MAX_IMAGE_PIXELS = 40_000 * 40_000


def _jpeg_is_truncated(path: Path) -> bool:
    """A complete JPEG stream ends with the EOI marker (FF D9), possibly followed by padding."""
    with path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - 4096))
        tail = fh.read()
    return b"\xff\xd9" not in tail


def _to_array(img: Image.Image, path: Path) -> tuple[np.ndarray, str]:
    """Convert a loaded PIL image to (array, original dtype name); alpha and palettes are resolved."""
    mode = img.mode
    if mode == "P" or mode == "PA":
        img = img.convert("RGBA" if "transparency" in img.info or mode == "PA" else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA"):
        # Transparency carries no image content for our purposes: drop it.
        img = img.convert("RGB" if mode == "RGBA" else "L")
        mode = img.mode
    if mode in ("1", "L"):
        return np.asarray(img.convert("L"), dtype=np.uint8), "uint8"
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img).astype(np.uint16)
        return arr, "uint16"
    if mode == "I":
        arr = np.asarray(img)
        if arr.min() >= 0 and arr.max() <= 65535:
            return arr.astype(np.uint16), "uint16"
        return arr.astype(np.int32), "int32"
    if mode == "F":
        return np.asarray(img, dtype=np.float32), "float32"
    if mode in ("RGB", "YCbCr", "CMYK", "HSV", "LAB"):
        return np.asarray(img.convert("RGB"), dtype=np.uint8), "uint8"
    raise ImageReadError(path, f"unsupported pixel mode {mode!r}")


def read_raster(path: Path) -> ImageRecord:
    """Read a PNG/JPEG/BMP/TIFF file.

    Returns an :class:`ImageRecord` with ``(H, W)`` (grayscale) or ``(H, W, 3)`` (RGB) pixels; the alpha
    channel of RGBA images is dropped and palette images are expanded. Spacing is unknown (``None``).

    Raises:
        ImageReadError: empty, truncated or undecodable files, and files that are not images.
    """
    suffix = path.suffix.lower()
    try:
        with Image.open(path) as img:
            fmt = img.format
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img.load()
            if fmt == "JPEG" and _jpeg_is_truncated(path):
                raise ImageReadError(path, "truncated JPEG: the file ends before the end-of-image marker")
            n_frames = getattr(img, "n_frames", 1)
            arr, dtype = _to_array(img, path)
    except UnidentifiedImageError as exc:
        raise ImageReadError(path, f"not a readable image (extension {suffix or 'none'})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        msg = str(exc)
        if "truncated" in msg.lower():
            raise ImageReadError(path, f"truncated image file ({msg})") from exc
        raise ImageReadError(path, f"cannot decode image: {msg}") from exc
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return ImageRecord(path=path, pixels=arr, modality=Modality.OT, original_dtype=dtype, frames=n_frames)

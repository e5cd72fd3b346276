"""Plain raster images: PNG, JPEG, BMP, TIFF (8/16-bit; grayscale, RGB, RGBA, palette).

Pixels come back in the stored bit depth and in stored order (row 0 = first stored row). Conversions made:

* palette images are expanded to RGB through their palette;
* the alpha channel of RGBA / LA images is dropped (``RGBA`` -> ``RGB``, ``LA`` -> ``L``);
* 1-bit images become ``uint8`` 0/255;
* 16-bit colour PNG/TIFF (which Pillow would silently reduce to 8 bits) are read with OpenCV, so their
  ``uint16`` values are preserved;
* an EXIF orientation tag is *not* applied (a warning is logged): masks are drawn on stored pixels.

Multi-page TIFFs whose pages share one size become a frame stack ``(F, H, W[, 3])`` with ``frames = F``;
reduced-resolution pages (thumbnails, pyramid levels) are skipped.
"""

from __future__ import annotations

import logging
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from radvlsm.errors import ImageReadError
from radvlsm.io.record import ImageRecord, Modality

logger = logging.getLogger(__name__)

RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})

# PIL raises DecompressionBombError for images over twice this many pixels; medical images can be large
# (whole-slide images are not supported here), but not this large.
Image.MAX_IMAGE_PIXELS = 40_000 * 40_000

_PIL_FORMAT_NAMES = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "BMP": "bmp", "DIB": "bmp", "TIFF": "tiff"}
_TIFF_NEW_SUBFILE_TYPE = 254
_TIFF_BITS_PER_SAMPLE = 258
_TIFF_SAMPLES_PER_PIXEL = 277
_EXIF_ORIENTATION = 0x0112

# Everything Pillow and its codecs raise for corrupt or hostile files.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    KeyError,
    struct.error,
    zlib.error,
    MemoryError,
    Image.DecompressionBombError,
)


def _jpeg_is_truncated(data: bytes) -> bool:
    """True when the last scan of a JPEG stream is not followed by the end-of-image marker (FF D9).

    Inside entropy-coded data every FF byte is followed by 00 or a restart marker, so the last FF DA
    (start of scan) belongs to the main image, and a complete stream has FF D9 after it (trailing data such
    as an appended MPF image is allowed).
    """
    sos = data.rfind(b"\xff\xda")
    if sos < 0:
        return True
    return data.find(b"\xff\xd9", sos + 2) < 0


def _to_array(img: Image.Image, path: Path) -> tuple[np.ndarray, str]:
    """Convert one loaded PIL frame to ``(array, original dtype name)``; alpha and palettes are resolved."""
    mode = img.mode
    if mode in ("P", "PA"):
        img = img.convert("RGBA" if "transparency" in img.info or mode == "PA" else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "RGBa", "La"):
        # Transparency carries no image content for our purposes: drop it.
        img = img.convert("L" if mode in ("LA", "La") else "RGB")
        mode = img.mode
    if mode in ("1", "L"):
        return np.asarray(img.convert("L"), dtype=np.uint8), "uint8"
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img).astype(np.uint16), "uint16"
    if mode == "I;16S":
        return np.asarray(img).astype(np.int16), "int16"
    if mode == "I":
        return np.asarray(img).astype(np.int32), "int32"
    if mode == "F":
        return np.asarray(img, dtype=np.float32), "float32"
    if mode in ("RGB", "RGBX", "YCbCr", "CMYK", "HSV", "LAB"):
        return np.asarray(img.convert("RGB"), dtype=np.uint8), "uint8"
    raise ImageReadError(path, f"unsupported pixel mode {mode!r}")


def _is_16bit_colour(img: Image.Image, path: Path) -> bool:
    """Pillow has no 16-bit colour mode and reduces such PNG/TIFF files to 8 bits: detect them."""
    if img.format == "PNG":
        with path.open("rb") as fh:
            ihdr = fh.read(26)
        # Signature (8) + length (4) + "IHDR" (4) + width (4) + height (4) + bit depth (1) + colour type (1).
        return len(ihdr) == 26 and ihdr[24] == 16 and ihdr[25] in (2, 6)
    if img.format == "TIFF":
        bits = img.tag_v2.get(_TIFF_BITS_PER_SAMPLE)
        samples = img.tag_v2.get(_TIFF_SAMPLES_PER_PIXEL, 1)
        if isinstance(bits, tuple):
            bits = max(bits) if bits else 8
        return samples >= 3 and bits is not None and int(bits) > 8
    return False


def _read_16bit_colour(path: Path) -> np.ndarray:
    """Read a 16-bit RGB(A) PNG/TIFF with OpenCV as ``(H, W, 3)`` ``uint16`` RGB (alpha dropped)."""
    buf = np.fromfile(path, dtype=np.uint8)
    arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageReadError(path, "cannot decode 16-bit colour image")
    return np.ascontiguousarray(arr[:, :, 2::-1])  # BGR(A) -> RGB


def _page_indices(img: Image.Image) -> list[int]:
    """Indices of the full-resolution pages of a (multi-page) image."""
    n = int(getattr(img, "n_frames", 1) or 1)
    if n == 1:
        return [0]
    pages = []
    for i in range(n):
        img.seek(i)
        subfile = img.tag_v2.get(_TIFF_NEW_SUBFILE_TYPE, 0) if img.format == "TIFF" else 0
        if not int(subfile) & 1:  # bit 0: reduced-resolution version of another page
            pages.append(i)
    img.seek(0)
    return pages or [0]


def read_raster(path: Path) -> ImageRecord:
    """Read a PNG/JPEG/BMP/TIFF file (format decided by content, not by extension).

    Returns:
        An :class:`ImageRecord` with ``(H, W)`` (grayscale) or ``(H, W, 3)`` (RGB) pixels in the stored
        dtype (``uint8``, ``uint16``, ``int32`` or ``float32``), or ``(F, H, W[, 3])`` for a multi-page
        TIFF. Spacing is unknown (``None``) and the modality is ``OT``.

    Raises:
        ImageReadError: empty, truncated or undecodable files, and files that are not images.
    """
    fmt = ""
    try:
        with Image.open(path) as img:
            fmt = _PIL_FORMAT_NAMES.get(img.format or "", (img.format or "").lower())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img.load()
                if fmt == "jpeg" and _jpeg_is_truncated(path.read_bytes()):
                    raise ImageReadError(path, "truncated JPEG: the file ends before the end-of-image marker")
                orientation = img.getexif().get(_EXIF_ORIENTATION) if fmt in ("jpeg", "tiff") else None
                if orientation not in (None, 1):
                    logger.warning(
                        "%s: EXIF orientation %s is ignored; pixels are returned in stored order",
                        path,
                        orientation,
                    )
                if _is_16bit_colour(img, path):
                    if getattr(img, "n_frames", 1) > 1:
                        raise ImageReadError(path, "multi-page 16-bit colour TIFF is not supported")
                    return ImageRecord(
                        path=path,
                        pixels=_read_16bit_colour(path),
                        modality=Modality.OT,
                        original_dtype="uint16",
                        source_format=fmt,
                    )
                frames: list[np.ndarray] = []
                dtype = "uint8"
                for i in _page_indices(img):
                    img.seek(i)
                    arr, dtype = _to_array(img, path)
                    frames.append(arr)
    except ImageReadError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageReadError(path, "not an image: the content is not a recognised PNG/JPEG/BMP/TIFF") from exc
    except _DECODE_ERRORS as exc:
        msg = str(exc) or type(exc).__name__
        if "truncated" in msg.lower() or isinstance(exc, EOFError):
            what = f"{fmt.upper()} " if fmt else "image "
            raise ImageReadError(path, f"truncated {what}file ({msg})") from exc
        raise ImageReadError(path, f"cannot decode image: {msg}") from exc
    if len(frames) > 1:
        if len({(f.shape, f.dtype) for f in frames}) != 1:
            raise ImageReadError(path, f"multi-page image whose {len(frames)} pages differ in size or type")
        return ImageRecord(
            path=path,
            pixels=np.stack(frames),
            modality=Modality.OT,
            original_dtype=dtype,
            frames=len(frames),
            source_format=fmt,
        )
    return ImageRecord(path=path, pixels=frames[0], modality=Modality.OT, original_dtype=dtype, source_format=fmt)

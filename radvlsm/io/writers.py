"""Atomic writers for masks, overlays and any other output file.

Every write goes to a temporary file in the destination folder, is flushed to disk, and then replaces the
destination with :func:`os.replace` (atomic on POSIX and Windows): a reader never sees a half-written file,
and a failed write leaves the previous file (if any) untouched and no temporary file behind.

* :func:`atomic_write` - context manager yielding an open file object (text or bytes), for CSV, JSON …
* :func:`atomic_path` - context manager yielding a temporary *path* with the destination's extension, for
  libraries that write by file name (SimpleITK, OpenCV).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import SimpleITK as sitk  # noqa: N813 (the library's own convention)
from PIL import Image

from radvlsm.io.record import VolumeGeometry

logger = logging.getLogger(__name__)

__all__ = ["atomic_path", "atomic_write", "write_nifti_mask", "write_png_image", "write_png_mask"]


def _temp_name(path: Path) -> Path:
    """A fresh hidden name next to ``path`` that keeps its full extension (``.nii.gz`` stays last)."""
    name = path.name
    low = name.lower()
    ext = ".nii.gz" if low.endswith(".nii.gz") else path.suffix
    stem = name[: len(name) - len(ext)] if ext else name
    return path.with_name(f".{stem}.{secrets.token_hex(4)}.tmp{ext}")


def _create_exclusive(tmp: Path) -> int:
    # 0o666 filtered by the umask: the final file gets the same permissions a plain open() would give it.
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)


def _fsync_path(path: Path) -> None:
    with path.open("rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX); silently skipped where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder (same extension); on success it replaces ``path``.

    For writers that take a file name. The temporary file exists (empty) when the block starts. If the block
    raises, or leaves no file behind, the temporary file is removed and ``path`` is left as it was.

    Example::

        with atomic_path(out / "mask.nii.gz") as tmp:
            sitk.WriteImage(image, str(tmp), True)
    """
    path = Path(path)
    tmp = _temp_name(path)
    os.close(_create_exclusive(tmp))
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"{tmp}: the writer left no file to move to {path}")
        _fsync_path(tmp)
        tmp.replace(path)  # os.replace: atomic
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_write(
    path: str | Path, mode: str = "w", *, encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO[Any]]:
    """Open ``path`` for writing, atomically: yields a file object on a temporary file in the same folder,
    which replaces ``path`` when the block ends without an exception.

    Args:
        path: destination file (its folder must exist).
        mode: ``"w"`` (text) or ``"wb"`` (bytes); ``"x"`` / ``"xb"`` additionally refuse an existing
            destination (checked at the start).
        encoding: text encoding (ignored for bytes); ``utf-8`` by default, not the locale's.
        newline: as for :func:`open` (pass ``""`` for the csv module).

    Example::

        with atomic_write(out / "errors.csv", newline="") as fh:
            csv.writer(fh).writerows(rows)
    """
    if mode not in ("w", "wb", "wt", "x", "xb", "xt"):
        raise ValueError(f"atomic_write mode must be 'w', 'wb', 'x' or 'xb', got {mode!r}")
    path = Path(path)
    if mode.startswith("x") and path.exists():
        raise FileExistsError(f"{path}: already exists")
    binary = "b" in mode
    tmp = _temp_name(path)
    fd = _create_exclusive(tmp)
    try:
        fh = os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": encoding, "newline": newline}))
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    try:
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)  # os.replace: atomic
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


# --------------------------------------------------------------------------------------------------------
# Images and masks
# --------------------------------------------------------------------------------------------------------


def _check_suffix(path: Path, expected: tuple[str, ...], what: str) -> None:
    if not path.name.lower().endswith(expected):
        raise ValueError(f"{path}: {what} must be written as {' or '.join(expected)}")


def write_png_mask(path: str | Path, mask: np.ndarray) -> Path:
    """Write a 2-D binary mask as an 8-bit grayscale PNG holding 0 (background) and 255 (lesion).

    Args:
        path: destination, ending in ``.png`` (a lossless format is required for masks).
        mask: ``(H, W)`` array; any non-zero value is lesion. The PNG has the same ``H x W``.

    Returns:
        ``path`` as a :class:`Path`.
    """
    path = Path(path)
    _check_suffix(path, (".png",), "a mask")
    arr = np.asarray(mask)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{path}: a PNG mask must be a non-empty 2-D (H, W) array, got shape {arr.shape}")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"{path}: mask contains NaN")
    out = np.where(arr != 0, 255, 0).astype(np.uint8)
    with atomic_write(path, "wb") as fh:
        Image.fromarray(out).save(fh, format="PNG")
    return path


def write_png_image(path: str | Path, rgb: np.ndarray, compress_level: int = 6) -> Path:
    """Write an 8-bit image (an overlay, a display rendering) as PNG.

    Args:
        path: destination, ending in ``.png``.
        rgb: ``uint8`` array ``(H, W, 3)`` (RGB), ``(H, W, 4)`` (RGBA) or ``(H, W)`` (gray). Convert other
            data first with :func:`radvlsm.io.window.to_display_rgb`.
        compress_level: zlib level 0-9 (lossless at every level; 1 writes several times faster, a little larger).

    Returns:
        ``path`` as a :class:`Path`.
    """
    path = Path(path)
    _check_suffix(path, (".png",), "an image")
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 pixels, got {arr.dtype} (use to_display_rgb first)")
    if arr.size == 0 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ValueError(f"{path}: expected an (H, W), (H, W, 3) or (H, W, 4) array, got shape {arr.shape}")
    with atomic_write(path, "wb") as fh:  # PIL picks L / RGB / RGBA from the array shape
        Image.fromarray(np.ascontiguousarray(arr)).save(fh, format="PNG", compress_level=compress_level)
    return path


def write_nifti_mask(path: str | Path, mask_zyx: np.ndarray, geometry: VolumeGeometry, *,
                     labels: bool = False) -> Path:
    """Write a binary volume mask as NIfTI (``uint8`` 0/1) with exactly the geometry of its image; with
    ``labels``, a label map (``uint8`` 0..255: lesion ``k`` is value ``k``).

    Args:
        path: destination ending in ``.nii.gz`` (compressed) or ``.nii``.
        mask_zyx: ``(Z, Y, X)`` array indexed like the image's pixels; any non-zero value is lesion. A
            ``(Y, X)`` array is written as one slice.
        geometry: the image's geometry (LPS spacing, origin, direction), e.g. ``record.geometry``. Reading
            the file back with :func:`radvlsm.io.read_image` gives the same geometry (to NIfTI's float32
            precision).

    Returns:
        ``path`` as a :class:`Path`.
    """
    path = Path(path)
    _check_suffix(path, (".nii.gz", ".nii"), "a volume mask")
    arr = np.asarray(mask_zyx)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3 or arr.size == 0:
        raise ValueError(f"{path}: a volume mask must be a non-empty (Z, Y, X) array, got shape {arr.shape}")
    if not isinstance(geometry, VolumeGeometry):
        raise TypeError(f"{path}: geometry must be a VolumeGeometry, got {type(geometry).__name__}")
    if labels and (arr.min() < 0 or arr.max() > 255):
        raise ValueError(f"{path}: a label map holds values 0..255, got {arr.min()}..{arr.max()}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(arr if labels else arr != 0, dtype=np.uint8))
    try:
        image.SetSpacing(geometry.spacing)
        image.SetOrigin(geometry.origin)
        image.SetDirection(geometry.direction)
    except RuntimeError as exc:
        raise ValueError(f"{path}: invalid geometry for NIfTI: {str(exc).strip().splitlines()[-1]}") from exc
    compress = path.name.lower().endswith(".gz")
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), compress)
    return path

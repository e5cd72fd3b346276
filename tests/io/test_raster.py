"""Plain raster formats: modes, bit depths, multi-page TIFF, EXIF orientation, record invariants."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radvlsm.io import Modality, case_stem, read_image


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF"])
def test_lossless_rgb_and_gray_round_trip(tmp_path: Path, make, fmt: str) -> None:
    rgb = make.rgb(9, 11)
    rec = read_image(make.png(tmp_path / f"c.{fmt.lower()}", rgb, format=fmt))
    assert rec.source_format == fmt.lower() and rec.modality is Modality.OT and rec.pixel_spacing_mm is None
    np.testing.assert_array_equal(rec.pixels, rgb)
    gray = rgb[..., 1].copy()
    rec = read_image(make.png(tmp_path / f"g.{fmt.lower()}", gray, format=fmt))
    assert rec.pixels.shape == (9, 11) and rec.pixels.dtype == np.uint8
    np.testing.assert_array_equal(rec.pixels, gray)


def test_grayscale_jpeg(tmp_path: Path, make) -> None:
    gray = np.kron(np.array([[10, 200]], np.uint8), np.ones((16, 16), np.uint8))
    rec = read_image(make.jpeg(tmp_path / "us.jpeg", gray))
    assert rec.pixels.shape == (16, 32) and rec.source_format == "jpeg" and not rec.is_rgb
    assert np.abs(rec.pixels.astype(int) - gray).max() <= 3


def test_one_bit_and_gray_alpha(tmp_path: Path) -> None:
    bits = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("1")
    bits.save(tmp_path / "b.png")
    assert read_image(tmp_path / "b.png").pixels.tolist() == [[0, 255], [255, 0]]
    la = Image.merge("LA", [Image.fromarray(np.array([[40, 90]], np.uint8)), Image.new("L", (2, 1), 0)])
    la.save(tmp_path / "la.png")
    rec = read_image(tmp_path / "la.png")
    assert rec.pixels.shape == (1, 2) and rec.pixels.tolist() == [[40, 90]]


def test_int32_and_float_tiff(tmp_path: Path, make) -> None:
    ints = np.array([[-5, 70000]], np.int32)
    rec = read_image(make.png(tmp_path / "i.tif", ints))
    assert rec.pixels.dtype == np.int32 and rec.original_dtype == "int32"
    np.testing.assert_array_equal(rec.pixels, ints)
    floats = np.array([[-1.5, 1e6]], np.float32)
    rec = read_image(make.png(tmp_path / "f.tif", floats))
    assert rec.pixels.dtype == np.float32
    np.testing.assert_array_equal(rec.pixels, floats)


def test_multipage_tiff_is_a_frame_stack(tmp_path: Path) -> None:
    pages = [Image.fromarray(np.full((4, 5), v, np.uint8)) for v in (10, 20, 30)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    rec = read_image(tmp_path / "stack.tif")
    assert rec.frames == 3 and rec.is_multiframe and rec.pixels.shape == (3, 4, 5)
    assert rec.size_hw == (4, 5)
    assert rec.pixels[:, 0, 0].tolist() == [10, 20, 30]


def test_tiff_thumbnail_page_is_skipped(tmp_path: Path) -> None:
    from PIL import TiffImagePlugin

    full = Image.fromarray(np.full((8, 8), 50, np.uint8))
    thumb = Image.fromarray(np.full((2, 2), 99, np.uint8))
    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[254] = 1  # NewSubfileType: reduced-resolution image
    thumb.encoderinfo = {"tiffinfo": info}
    full.save(tmp_path / "pyramid.tif", save_all=True, append_images=[thumb])
    with Image.open(tmp_path / "pyramid.tif") as img:
        if getattr(img, "n_frames", 1) != 2:
            pytest.skip("this Pillow cannot write a second TIFF page here")
        img.seek(1)
        if int(img.tag_v2.get(254, 0)) != 1:
            pytest.skip("this Pillow does not write per-page NewSubfileType")
    rec = read_image(tmp_path / "pyramid.tif")
    assert rec.frames == 1 and rec.pixels.shape == (8, 8)


def test_pages_of_different_sizes_are_refused(tmp_path: Path) -> None:
    from radvlsm.errors import ImageReadError

    a = Image.fromarray(np.zeros((4, 4), np.uint8))
    b = Image.fromarray(np.zeros((3, 3), np.uint8))
    a.save(tmp_path / "mixed.tif", save_all=True, append_images=[b])
    with pytest.raises(ImageReadError, match="pages differ in size"):
        read_image(tmp_path / "mixed.tif")


def test_exif_orientation_is_reported_not_applied(tmp_path: Path, make, caplog) -> None:
    arr = make.rgb(8, 16)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    Image.fromarray(arr).save(tmp_path / "photo.jpg", quality=95, exif=exif)
    with caplog.at_level(logging.WARNING):
        rec = read_image(tmp_path / "photo.jpg")
    assert rec.pixels.shape == (8, 16, 3)  # stored order
    assert "EXIF orientation 6 is ignored" in caplog.text


def test_record_pixels_are_read_only(tmp_path: Path, make) -> None:
    rec = read_image(make.png(tmp_path / "x.png", make.rgb(3, 3)))
    with pytest.raises(ValueError, match="read-only"):
        rec.pixels[0, 0, 0] = 1
    with pytest.raises(AttributeError):
        rec.pixels = np.zeros((1, 1))  # type: ignore[misc]


def test_case_stem() -> None:
    assert case_stem("a/LIDC-IDRI-0001_R_1.nii.gz") == "LIDC-IDRI-0001_R_1"
    assert case_stem("IMD002.JPG") == "IMD002"
    assert case_stem("vol.NII.GZ") == "vol"

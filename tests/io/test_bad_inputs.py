"""The bad-input corpus: every input is built from code in ``tmp_path``; each either reads correctly (right
shape, dtype and values) or raises :class:`ImageReadError` whose message is ``"<path>: <specific reason>"``."""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from radvlsm.errors import ImageReadError, InputError
from radvlsm.io import read_image, read_mask

Reader = Callable[[Path], object]


@dataclass(frozen=True)
class Bad:
    """An input that must be refused: ``build`` returns the path to read and, optionally, the reader."""

    build: Callable[[Path, object], tuple[Path, Reader]]
    reason: str  # must appear in the message


def _img(path: Path) -> object:
    return read_image(path)


# ---------------------------------------------------------------------------------------------- builders


def truncated_jpeg(tmp: Path, make) -> tuple[Path, Reader]:
    full = make.jpeg(tmp / "full.jpg", make.rgb(64, 64))
    data = full.read_bytes()
    path = tmp / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    return path, _img


def jpeg_without_eoi(tmp: Path, make) -> tuple[Path, Reader]:
    full = make.jpeg(tmp / "full.jpg", make.rgb(64, 64))
    path = tmp / "no_eoi.jpg"
    path.write_bytes(full.read_bytes()[:-2])  # only the end-of-image marker is missing
    return path, _img


def truncated_png(tmp: Path, make) -> tuple[Path, Reader]:
    full = make.png(tmp / "full.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    path = tmp / "truncated.png"
    path.write_bytes(full.read_bytes()[:200])
    return path, _img


def zero_bytes(tmp: Path, make) -> tuple[Path, Reader]:
    path = tmp / "empty.png"
    path.touch()
    return path, _img


def text_named_png(tmp: Path, make) -> tuple[Path, Reader]:
    path = tmp / "notes.png"
    path.write_text("case_id,diagnosis\nISIC_0001,melanoma\n", encoding="utf-8")
    return path, _img


def binary_named_png(tmp: Path, make) -> tuple[Path, Reader]:
    path = tmp / "noise.png"
    path.write_bytes(bytes(range(256)) * 4)
    return path, _img


def text_named_nifti(tmp: Path, make) -> tuple[Path, Reader]:
    path = tmp / "volume.nii.gz"
    path.write_text("not a volume\n", encoding="utf-8")
    return path, _img


def truncated_nifti(tmp: Path, make) -> tuple[Path, Reader]:
    full = make.nifti(tmp / "full.nii.gz", np.arange(4000, dtype=np.int16).reshape(10, 20, 20))
    path = tmp / "truncated.nii.gz"
    path.write_bytes(full.read_bytes()[:300])
    return path, _img


def nifti_4d(tmp: Path, make) -> tuple[Path, Reader]:
    return make.nifti(tmp / "fmri.nii.gz", np.zeros((4, 5, 6, 3), np.int16)), _img


def dicom_without_pixels(tmp: Path, make) -> tuple[Path, Reader]:
    return make.rtstruct(tmp / "RS.dcm"), _img


def dicom_compressed(tmp: Path, make) -> tuple[Path, Reader]:
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here; the undecodable case cannot be built")
    return make.compressed(tmp / "jpegls.dcm"), _img


def dicom_truncated_pixels(tmp: Path, make) -> tuple[Path, Reader]:
    full = make.ct_slice(tmp / "full.dcm", np.zeros((64, 64), np.int16))
    path = tmp / "cut.dcm"
    path.write_bytes(full.read_bytes()[:2000])
    return path, _img


def dicom_truncated_header(tmp: Path, make) -> tuple[Path, Reader]:
    full = make.ct_slice(tmp / "full.dcm", np.zeros((64, 64), np.int16))
    path = tmp / "cut_header.dcm"
    data = full.read_bytes()
    path.write_bytes(data[: data.index(b"\x10\x00\x20\x00") + 6])  # inside the PatientID element
    return path, _img


def dicom_malformed_rescale(tmp: Path, make) -> tuple[Path, Reader]:
    ds = make.dataset(np.zeros((2, 2), np.int16))
    ds["RescaleSlope"].value = "1.0"
    path = make.save(ds, tmp / "bad_slope.dcm")
    data = path.read_bytes()
    path.write_bytes(data.replace(b"1.0 ", b"abc "))  # DS values are padded to even length
    return path, _img


def series_missing_slice(tmp: Path, make) -> tuple[Path, Reader]:
    return make.ct_series(tmp / "gap", 8, skip=[4]), _img


def series_duplicate_slice(tmp: Path, make) -> tuple[Path, Reader]:
    folder = make.ct_series(tmp / "dup", 5)
    src = folder / "IMG0002.dcm"
    (folder / "IMG0002_copy.dcm").write_bytes(src.read_bytes())
    return folder, _img


def two_series(tmp: Path, make) -> tuple[Path, Reader]:
    folder = make.ct_series(tmp / "mixed", 4, series_number=1, prefix="A")
    make.ct_series(folder, 4, series_number=2, prefix="B")
    return folder, _img


def sheared_series(tmp: Path, make) -> tuple[Path, Reader]:
    positions = [(-50.0 + 0.8 * k, 20.0, -100.0 + 2.5 * k) for k in range(5)]  # 0.8 mm in-plane per slice
    return make.ct_series(tmp / "tilt", 5, positions=positions), _img


def irregular_series(tmp: Path, make) -> tuple[Path, Reader]:
    zs = [0.0, 2.5, 5.0, 8.5, 11.0, 13.5, 16.0]  # one 3.5 mm step: below the missing-slice factor, off grid
    return make.ct_series(tmp / "irregular", 7, positions=[(0.0, 0.0, z) for z in zs]), _img


def zero_spacing_series(tmp: Path, make) -> tuple[Path, Reader]:
    folder = make.ct_series(tmp / "zero_spacing", 3)
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.PixelSpacing = [0, 0]
        ds.save_as(f)
    return folder, _img


def mixed_orientation(tmp: Path, make) -> tuple[Path, Reader]:
    folder = make.ct_series(tmp / "loc", 4)
    uid = read_image(folder / "IMG0000.dcm").series_uid
    make.ct_slice(folder / "LOCALIZER.dcm", orientation=(1, 0, 0, 0, 0, -1), series_uid=uid)
    return folder, _img


def corrupt_file_in_series(tmp: Path, make) -> tuple[Path, Reader]:
    folder = make.ct_series(tmp / "corrupt", 4)
    (folder / "IMG0001.dcm").write_bytes(b"\x00" * 50)
    return folder, _img


def truncated_last_slice(tmp: Path, make) -> tuple[Path, Reader]:
    folder = make.ct_series(tmp / "cut_series", 4)
    last = folder / "IMG0003.dcm"
    data = last.read_bytes()
    last.write_bytes(data[: data.index(b"\x10\x00\x20\x00") + 6])
    return folder, _img


def only_rtstruct_folder(tmp: Path, make) -> tuple[Path, Reader]:
    folder = tmp / "rtstruct"
    make.rtstruct(folder / "RS.dcm")
    return folder, _img


def folder_without_dicom(tmp: Path, make) -> tuple[Path, Reader]:
    folder = tmp / "lesion.png"  # a directory where a file is expected
    folder.mkdir()
    (folder / "readme.txt").write_text("nothing here", encoding="utf-8")
    return folder, _img


def nonexistent(tmp: Path, make) -> tuple[Path, Reader]:
    return tmp / "missing" / "case_001.png", _img


def mask_wrong_size(tmp: Path, make) -> tuple[Path, Reader]:
    image = read_image(make.png(tmp / "img.png", make.rgb(16, 24)))
    mask = make.png(tmp / "img_mask.png", np.zeros((16, 20), np.uint8))
    return mask, lambda p: read_mask(p, like=image)


def mask_volume_wrong_geometry(tmp: Path, make) -> tuple[Path, Reader]:
    image = read_image(make.nifti(tmp / "ct.nii.gz", np.zeros((5, 6, 7), np.int16)))
    shifted = np.diag([0.8, 0.9, 2.5, 1.0])
    shifted[:3, 3] = [10.0, -20.0, 32.5]  # one slice off in z
    mask = make.nifti(tmp / "ct_mask.nii.gz", np.zeros((5, 6, 7), np.uint8), shifted)
    return mask, lambda p: read_mask(p, like=image)


def multiframe_mask(tmp: Path, make) -> tuple[Path, Reader]:
    return make.us_cine(tmp / "cine.dcm", np.zeros((3, 4, 5), np.uint8)), read_mask


def unreadable_file_simulated(tmp: Path, make) -> tuple[Path, Reader]:
    path = make.png(tmp / "locked.png", make.rgb())
    real_access = os.access

    def reader(p: Path) -> object:
        mp = pytest.MonkeyPatch()
        mp.setattr(os, "access", lambda q, mode, **kw: False if Path(q) == p else real_access(q, mode, **kw))
        try:
            return read_image(p)
        finally:
            mp.undo()

    return path, reader


def unreadable_folder_simulated(tmp: Path, make) -> tuple[Path, Reader]:
    folder = make.ct_series(tmp / "locked_series", 3)
    real_access = os.access

    def reader(p: Path) -> object:
        mp = pytest.MonkeyPatch()
        mp.setattr(os, "access", lambda q, mode, **kw: False if Path(q) == p else real_access(q, mode, **kw))
        try:
            return read_image(p)
        finally:
            mp.undo()

    return folder, reader


def unreadable_folder_listing(tmp: Path, make) -> tuple[Path, Reader]:
    """os.access says yes (as for root) but listing fails: the OS error is still reported cleanly."""
    folder = make.ct_series(tmp / "denied", 3)
    real_scandir = os.scandir

    def deny(p: object) -> object:
        if Path(str(p)) == folder:
            raise PermissionError(13, "Permission denied", str(p))
        return real_scandir(p)  # type: ignore[arg-type]

    def reader(p: Path) -> object:
        mp = pytest.MonkeyPatch()
        mp.setattr(os, "scandir", deny)
        try:
            return read_image(p)
        finally:
            mp.undo()

    return folder, reader


def unsupported_extension(tmp: Path, make) -> tuple[Path, Reader]:
    path = tmp / "scan.xyz"
    path.write_bytes(b"\x01\x02\x03\x04" * 100)
    return path, _img


def gzip_not_nifti_name(tmp: Path, make) -> tuple[Path, Reader]:
    path = tmp / "volume.gz"
    path.write_bytes(gzip.compress(b"hello"))
    return path, _img


BAD: dict[str, Bad] = {
    "truncated_jpeg": Bad(truncated_jpeg, "truncated JPEG"),
    "jpeg_without_eoi": Bad(jpeg_without_eoi, "truncated JPEG"),
    "truncated_png": Bad(truncated_png, "truncated PNG"),
    "zero_byte_file": Bad(zero_bytes, "file is empty (0 bytes)"),
    "text_named_png": Bad(text_named_png, "not a PNG image: the content is text"),
    "binary_named_png": Bad(binary_named_png, "not a PNG image: the content is unrecognised binary data"),
    "text_named_nii_gz": Bad(text_named_nifti, "not a NIfTI file: the content is text"),
    "truncated_nii_gz": Bad(truncated_nifti, "NIfTI"),
    "nifti_4d": Bad(nifti_4d, "4-D NIfTI (4x5x6x3 voxels) is not supported"),
    "dicom_without_pixel_data": Bad(dicom_without_pixels, "no pixel data: it is a RT Structure Set Storage"),
    "dicom_undecodable_syntax": Bad(
        dicom_compressed,
        "compressed transfer syntax 'JPEG-LS Lossless Image Compression' (1.2.840.10008.1.2.4.80)",
    ),
    "dicom_truncated_pixels": Bad(dicom_truncated_pixels, "cannot decode pixel data"),
    "dicom_truncated_header": Bad(
        dicom_truncated_header,
        "no pixel data although it is a CT Image Storage object: the file is truncated",
    ),
    "dicom_malformed_rescale": Bad(dicom_malformed_rescale, "malformed DICOM data: RescaleSlope is not a number"),
    "series_missing_slice": Bad(series_missing_slice, "missing slice(s): gap of 5.000 mm between IMG0003.dcm"),
    "series_duplicate_slice": Bad(series_duplicate_slice, "duplicate slice position: IMG0002"),
    "two_series_one_folder": Bad(two_series, "the folder holds 2 image series"),
    "sheared_series": Bad(sheared_series, "not stacked along their normal"),
    "irregular_spacing": Bad(irregular_series, "irregular slice spacing"),
    "zero_pixel_spacing": Bad(zero_spacing_series, "no usable PixelSpacing (it holds 0.0, 0.0; two positive numbers"),
    "localizer_in_series": Bad(mixed_orientation, "slices differ in ImageOrientationPatient"),
    "corrupt_file_in_series": Bad(corrupt_file_in_series, "IMG0001.dcm: not a DICOM file"),
    "truncated_slice_in_series": Bad(truncated_last_slice, "IMG0003.dcm: DICOM file has no pixel data although"),
    "folder_with_only_rtstruct": Bad(only_rtstruct_folder, "only non-image objects (1 RT Structure Set Storage)"),
    "directory_where_file_expected": Bad(folder_without_dicom, "no DICOM image files in the folder"),
    "nonexistent_path": Bad(nonexistent, "no such file or directory"),
    "mask_size_differs": Bad(mask_wrong_size, "mask is 20x16 pixels but its image is 24x16"),
    "mask_geometry_differs": Bad(mask_volume_wrong_geometry, "mask geometry differs from its image: origin"),
    "multiframe_as_mask": Bad(multiframe_mask, "a mask must be one image, this file has 3 frames"),
    "unreadable_file": Bad(unreadable_file_simulated, "permission denied: the file is not readable"),
    "unreadable_folder": Bad(unreadable_folder_simulated, "permission denied: the folder is not readable"),
    "folder_listing_denied": Bad(unreadable_folder_listing, "permission denied: the folder cannot be listed"),
    "unsupported_extension": Bad(unsupported_extension, "unsupported file type .xyz"),
    "gzip_without_nii_name": Bad(gzip_not_nifti_name, "unsupported file type .gz holding gzip-compressed data"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_reported(name: str, tmp_path: Path, make, caplog: pytest.LogCaptureFixture) -> None:
    case = BAD[name]
    path, reader = case.build(tmp_path, make)
    with caplog.at_level(logging.DEBUG), pytest.raises(ImageReadError) as info:
        reader(path)
    message = str(info.value)
    assert case.reason in message, message
    # The message names the file (or, for a series, the folder) in which the problem lies.
    assert str(path) in message, message
    assert isinstance(info.value, InputError)
    assert info.value.reason in message
    # Every DICOM built here carries a patient name, ID and birth date: none reaches the message, its cause or a log.
    chained = " ".join(str(e) for e in (info.value.__cause__, info.value.__context__) if e is not None)
    for value in make.phi:
        for text in (message, chained, caplog.text):
            assert value not in text, f"patient identifier {value!r} leaked: {text}"


# ------------------------------------------------------------------------------------- inputs that read


def test_one_pixel_images(tmp_path: Path, make) -> None:
    gray = read_image(make.png(tmp_path / "g.png", np.array([[7]], np.uint8)))
    assert gray.pixels.shape == (1, 1) and gray.pixels.dtype == np.uint8 and gray.pixels[0, 0] == 7
    rgb = read_image(make.png(tmp_path / "c.png", np.array([[[1, 2, 3]]], np.uint8)))
    assert rgb.pixels.shape == (1, 1, 3) and rgb.pixels.tolist() == [[[1, 2, 3]]]
    jpg = read_image(make.jpeg(tmp_path / "j.jpg", np.full((1, 1, 3), 200, np.uint8)))
    assert jpg.pixels.shape == (1, 1, 3)


def test_16bit_tiff_keeps_values(tmp_path: Path, make) -> None:
    values = (np.arange(30, dtype=np.uint16).reshape(5, 6) * 2000 + 7).astype(np.uint16)
    rec = read_image(make.png(tmp_path / "scan16.tif", values))
    assert rec.pixels.dtype == np.uint16 and rec.original_dtype == "uint16"
    assert rec.source_format == "tiff"
    np.testing.assert_array_equal(rec.pixels, values)


def test_16bit_png_keeps_values(tmp_path: Path, make) -> None:
    values = np.array([[0, 1, 65535], [300, 40000, 12]], np.uint16)
    rec = read_image(make.png(tmp_path / "scan16.png", values))
    assert rec.pixels.dtype == np.uint16
    np.testing.assert_array_equal(rec.pixels, values)


def test_16bit_colour_png_is_not_reduced_to_8_bits(tmp_path: Path) -> None:
    import cv2

    rgb = np.random.default_rng(3).integers(0, 65535, (4, 5, 3), dtype=np.uint16)
    path = tmp_path / "colour16.png"
    assert cv2.imwrite(str(path), rgb[:, :, ::-1])  # OpenCV writes BGR
    rec = read_image(path)
    assert rec.pixels.dtype == np.uint16 and rec.pixels.shape == (4, 5, 3)
    np.testing.assert_array_equal(rec.pixels, rgb)


def test_rgba_png_drops_alpha(tmp_path: Path, make) -> None:
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 0  # fully transparent
    rgba[0, 0] = (250, 5, 6, 255)
    rec = read_image(make.png(tmp_path / "rgba.png", rgba))
    assert rec.pixels.shape == (3, 4, 3) and rec.pixels.dtype == np.uint8
    assert rec.pixels[0, 0].tolist() == [250, 5, 6]
    assert rec.pixels[1, 1].tolist() == [10, 20, 30]


def test_palette_png_expands_to_rgb(tmp_path: Path) -> None:
    index = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    img = Image.new("P", (3, 2))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    img.frombytes(index.tobytes())
    path = tmp_path / "palette.png"
    img.save(path)
    assert Image.open(path).mode == "P"
    rec = read_image(path)
    assert rec.pixels.shape == (2, 3, 3)
    expected = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)[index]
    np.testing.assert_array_equal(rec.pixels, expected)


def test_palette_png_with_transparency(tmp_path: Path) -> None:
    index = np.array([[0, 1]], np.uint8)
    img = Image.new("P", (2, 1))
    img.putpalette([9, 8, 7, 1, 2, 3] + [0] * (256 * 3 - 6))
    img.frombytes(index.tobytes())
    path = tmp_path / "palette_t.png"
    img.save(path, transparency=0)
    rec = read_image(path)
    assert rec.pixels.tolist() == [[[9, 8, 7], [1, 2, 3]]]


def test_all_zero_mask_is_valid(tmp_path: Path, make) -> None:
    image = read_image(make.png(tmp_path / "img.png", make.rgb(16, 24)))
    mask = read_mask(make.png(tmp_path / "img_mask.png", np.zeros((16, 24), np.uint8)), like=image)
    assert mask.dtype == np.bool_ and mask.shape == (16, 24) and not mask.any()


def test_non_ascii_file_name(tmp_path: Path, make) -> None:
    rec = read_image(make.png(tmp_path / "läsion_ü.png", make.rgb(5, 6)))
    assert rec.pixels.shape == (5, 6, 3) and rec.stem == "läsion_ü"
    vol = read_image(make.nifti(tmp_path / "tümor_ß.nii.gz", np.ones((3, 4, 5), np.int16)))
    assert vol.pixels.shape == (5, 4, 3)
    dcm = read_image(make.ct_slice(tmp_path / "schädel" / "ü.dcm"))
    assert dcm.pixels.shape == (4, 5)


def test_content_wins_over_extension(tmp_path: Path, make) -> None:
    png_as_jpg = make.png(tmp_path / "really_png.jpg", make.rgb(4, 4), format="PNG")
    assert read_image(png_as_jpg).source_format == "png"
    dicom_as_png = make.ct_slice(tmp_path / "really_dicom.png")
    assert read_image(dicom_as_png).source_format == "dicom"
    bare = make.ct_slice(tmp_path / "IM000001")  # no extension, Part 10 file
    assert read_image(bare).pixels.shape == (4, 5)


def test_unreadable_directory_chmod(tmp_path: Path, make) -> None:
    folder = make.ct_series(tmp_path / "series", 3)
    folder.chmod(0)
    try:
        if os.access(folder, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop reading (simulated in the corpus instead)")
        with pytest.raises(ImageReadError, match="permission denied"):
            read_image(folder)
    finally:
        folder.chmod(0o755)


def test_unreadable_file_chmod(tmp_path: Path, make) -> None:
    path = make.png(tmp_path / "locked.png", make.rgb())
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop reading (simulated in the corpus instead)")
        with pytest.raises(ImageReadError, match="permission denied"):
            read_image(path)
    finally:
        path.chmod(0o644)

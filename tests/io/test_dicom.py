"""DICOM files and series built with pydicom: pixel conventions, geometry, and privacy of error messages."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import MRImageStorage, RLELossless

from radvlsm.errors import ImageReadError
from radvlsm.io import Modality, read_image


def test_ct_rescale_to_hounsfield_units(tmp_path: Path, make) -> None:
    stored = np.array([[0, 1000, 1024], [2000, 3071, 24]], np.int16)
    rec = read_image(make.ct_slice(tmp_path / "ct.dcm", stored, slope=1.0, intercept=-1024.0))
    assert rec.modality is Modality.CT
    assert rec.pixels.dtype == np.float32 and rec.original_dtype == "int16"
    np.testing.assert_array_equal(rec.pixels, stored.astype(np.float32) - 1024)
    assert rec.pixel_spacing_mm == (0.5, 0.75)
    assert not rec.is_volume and rec.frames == 1 and rec.source_format == "dicom"


def test_ct_rescale_with_slope(tmp_path: Path, make) -> None:
    stored = np.array([[0, 10], [20, 4095]], np.uint16)
    rec = read_image(make.ct_slice(tmp_path / "ct.dcm", stored, slope=0.5, intercept=-1000.0))
    np.testing.assert_allclose(rec.pixels, stored * 0.5 - 1000.0)
    assert rec.original_dtype == "uint16"


def test_ct_without_rescale_tags_is_still_float_hu(tmp_path: Path, make, caplog) -> None:
    stored = np.array([[-1000, 0], [40, 1000]], np.int16)
    with caplog.at_level(logging.WARNING):
        rec = read_image(make.ct_slice(tmp_path / "ct.dcm", stored, slope=None, intercept=None))
    np.testing.assert_array_equal(rec.pixels, stored.astype(np.float32))
    assert "without RescaleSlope/Intercept" in caplog.text


def test_mr_keeps_stored_dtype_unless_rescaled(tmp_path: Path, make) -> None:
    stored = np.array([[1, 2], [3, 4]], np.uint16)
    plain = read_image(
        make.ct_slice(tmp_path / "mr.dcm", stored, sop_class=MRImageStorage, modality="MR", slope=None, intercept=None)
    )
    assert plain.modality is Modality.MR and plain.pixels.dtype == np.uint16
    np.testing.assert_array_equal(plain.pixels, stored)
    scaled = read_image(
        make.ct_slice(tmp_path / "mr2.dcm", stored, sop_class=MRImageStorage, modality="MR", slope=2.5, intercept=1.0)
    )
    assert scaled.pixels.dtype == np.float32
    np.testing.assert_allclose(scaled.pixels, stored * 2.5 + 1.0)


def test_monochrome1_is_inverted(tmp_path: Path, make) -> None:
    stored = np.array([[0, 100], [4000, 4095]], np.uint16)  # 12 bits stored
    rec = read_image(make.xray(tmp_path / "dx.dcm", stored, photometric="MONOCHROME1", bits=12))
    assert rec.modality is Modality.DX and rec.pixels.dtype == np.uint16
    np.testing.assert_array_equal(rec.pixels, 4095 - stored)
    same = read_image(make.xray(tmp_path / "dx2.dcm", stored, photometric="MONOCHROME2", bits=12))
    np.testing.assert_array_equal(same.pixels, stored)


def test_monochrome1_ct_keeps_hounsfield_units(tmp_path: Path, make) -> None:
    stored = np.array([[0, 1024], [2048, 24]], np.int16)
    rec = read_image(make.ct_slice(tmp_path / "ct_m1.dcm", stored, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(rec.pixels, stored.astype(np.float32) - 1024)


def test_rgb_and_ybr_come_back_as_rgb(tmp_path: Path, make) -> None:
    from pydicom.pixels import convert_color_space

    rgb = make.rgb(8, 10)
    plain = make.dataset(rgb, modality="OT", photometric="RGB", slope=None, intercept=None)
    rec = read_image(make.save(plain, tmp_path / "rgb.dcm"))
    assert rec.pixels.shape == (8, 10, 3) and rec.pixels.dtype == np.uint8 and rec.is_rgb
    np.testing.assert_array_equal(rec.pixels, rgb)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    coded = make.dataset(ybr, modality="OT", photometric="YBR_FULL", slope=None, intercept=None)
    rec = read_image(make.save(coded, tmp_path / "ybr.dcm"))
    assert np.abs(rec.pixels.astype(int) - rgb).max() <= 2


def test_multiframe_ultrasound_keeps_frames(tmp_path: Path, make) -> None:
    frames = np.random.default_rng(1).integers(0, 255, (3, 6, 7), dtype=np.uint8)
    rec = read_image(make.us_cine(tmp_path / "cine.dcm", frames))
    assert rec.frames == 3 and rec.is_multiframe and not rec.is_volume
    assert rec.pixels.shape == (3, 6, 7) and rec.size_hw == (6, 7)
    np.testing.assert_array_equal(rec.pixels, frames)
    assert rec.modality is Modality.US
    # Calibrated ultrasound region: 0.025 cm per row, 0.02 cm per column.
    assert rec.pixel_spacing_mm == pytest.approx((0.25, 0.2))


def test_rle_compressed_dicom_is_decoded(tmp_path: Path, make) -> None:
    stored = np.arange(20, dtype=np.int16).reshape(4, 5) * 7
    ds = make.dataset(stored)
    ds.compress(RLELossless)
    rec = read_image(make.save(ds, tmp_path / "rle.dcm"))
    np.testing.assert_array_equal(rec.pixels, stored.astype(np.float32) - 1024)


def test_dicom_without_preamble(tmp_path: Path, make) -> None:
    ds = make.dataset(np.arange(6, dtype=np.int16).reshape(2, 3))
    del ds.file_meta
    path = tmp_path / "legacy.dcm"
    pydicom.dcmwrite(path, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert path.read_bytes()[128:132] != b"DICM"
    rec = read_image(path)
    np.testing.assert_array_equal(rec.pixels, np.arange(6).reshape(2, 3) - 1024.0)


# ------------------------------------------------------------------------------------------------ series


def test_series_is_sorted_along_the_normal(tmp_path: Path, make) -> None:
    folder = make.ct_series(tmp_path / "series", 6, spacing=2.5)
    rec = read_image(folder)
    assert rec.is_volume and rec.path == folder and rec.source_format == "dicom-series"
    assert rec.pixels.shape == (6, 4, 5) and rec.pixels.dtype == np.float32
    # Slice k stores 100 * k + ramp, rescaled by -1024.
    np.testing.assert_array_equal(rec.pixels[:, 0, 0], 100 * np.arange(6) - 1024.0)
    g = rec.geometry
    assert g is not None
    assert g.spacing == pytest.approx((0.75, 0.5, 2.5))  # (column, row, slice) spacing
    assert g.origin == pytest.approx((-50.0, 20.0, -100.0))
    assert g.direction == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert rec.pixel_spacing_mm == (0.5, 0.75)
    assert rec.size_hw == (4, 5)


def test_series_sorted_by_position_not_by_file_name(tmp_path: Path, make) -> None:
    # File k lies at z = -k * 2: the file names run against the slice normal.
    positions = [(0.0, 0.0, -2.0 * k) for k in range(5)]
    rec = read_image(make.ct_series(tmp_path / "rev", 5, positions=positions))
    np.testing.assert_array_equal(rec.pixels[:, 0, 0], 100 * np.arange(4, -1, -1) - 1024.0)
    assert rec.geometry is not None and rec.geometry.origin == pytest.approx((0.0, 0.0, -8.0))


def test_oblique_series_geometry_maps_voxels_to_positions(tmp_path: Path, make) -> None:
    a = np.deg2rad(20)
    orientation = (np.cos(a), np.sin(a), 0.0, 0.0, 0.0, -1.0)  # an oblique coronal-ish plane
    folder = make.ct_series(tmp_path / "oblique", 5, spacing=3.0, orientation=orientation)
    rec = read_image(folder)
    g = rec.geometry
    assert g is not None
    d = g.direction_matrix()
    np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(d[:, 0], orientation[:3], atol=1e-6)
    np.testing.assert_allclose(d[:, 1], orientation[3:], atol=1e-6)
    for k in range(5):
        ds = pydicom.dcmread(folder / f"IMG{k:04d}.dcm")
        ipp = np.asarray([float(v) for v in ds.ImagePositionPatient])
        np.testing.assert_allclose(g.index_to_physical(np.array([0, 0, k])), ipp, atol=1e-4)
        assert rec.pixels[k, 0, 0] == 100 * k - 1024
    np.testing.assert_allclose(g.physical_to_index(g.index_to_physical([1.0, 2.0, 3.0])), [1, 2, 3], atol=1e-9)


def test_series_skips_rtstruct_and_non_dicom_files(tmp_path: Path, make) -> None:
    folder = make.ct_series(tmp_path / "with_rs", 4)
    make.rtstruct(folder / "RS.dcm")
    (folder / "README.txt").write_text("exported by PACS", encoding="utf-8")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "DICOMDIR").write_bytes(b"\x00" * 200)
    rec = read_image(folder)
    assert rec.pixels.shape == (4, 4, 5)


def test_single_slice_series(tmp_path: Path, make) -> None:
    rec = read_image(make.ct_series(tmp_path / "one", 1))
    assert rec.pixels.shape == (1, 4, 5)
    assert rec.geometry is not None and rec.geometry.spacing[2] == pytest.approx(2.5)  # SliceThickness


def test_mixed_series_error_lists_the_series(tmp_path: Path, make) -> None:
    folder = make.ct_series(tmp_path / "mixed", 3, series_number=4, prefix="A")
    make.ct_series(folder, 2, series_number=9, prefix="B")
    with pytest.raises(ImageReadError) as info:
        read_image(folder)
    msg = str(info.value)
    assert msg.startswith(f"{folder}: the folder holds 2 image series")
    assert "series 4 (CT, 3 files" in msg and "series 9 (CT, 2 files" in msg


def test_missing_slice_error_names_neighbours(tmp_path: Path, make) -> None:
    folder = make.ct_series(tmp_path / "gap", 10, spacing=1.25, skip=[5, 6])
    with pytest.raises(ImageReadError) as info:
        read_image(folder)
    msg = str(info.value)
    assert "IMG0004.dcm" in msg and "IMG0007.dcm" in msg and "about 2 slice(s) missing" in msg


def test_first_or_last_slice_missing_is_not_detectable_but_geometry_stays_true(tmp_path: Path, make) -> None:
    """A slice missing at either end leaves a regular stack: the volume is shorter, its origin is the
    first slice present (no guessing of what was there)."""
    rec = read_image(make.ct_series(tmp_path / "short", 5, skip=[0]))
    assert rec.pixels.shape[0] == 4
    assert rec.geometry is not None and rec.geometry.origin == pytest.approx((-50.0, 20.0, -97.5))


# ------------------------------------------------------------------------------------------------ privacy


def _phi_free(text: str, make) -> None:
    for value in make.phi:
        assert value not in text, f"patient identifier {value!r} leaked: {text}"


def test_patient_identifiers_never_reach_messages_or_logs(tmp_path: Path, make, caplog) -> None:
    builders = [
        lambda: make.rtstruct(tmp_path / "rs.dcm"),
        lambda: make.compressed(tmp_path / "c.dcm"),
        lambda: make.ct_series(tmp_path / "gap", 5, skip=[2]),
        lambda: make.ct_series(make.ct_series(tmp_path / "two", 2, prefix="A"), 2, prefix="B"),
    ]
    messages = []
    with caplog.at_level(logging.DEBUG):
        for build in builders:
            with pytest.raises(ImageReadError) as info:
                read_image(build())
            messages.append(str(info.value))
        read_image(make.ct_series(tmp_path / "ok", 3))  # a successful read logs too
    for text in [*messages, caplog.text]:
        _phi_free(text, make)


def test_malformed_patient_elements_do_not_leak_through_warnings(tmp_path: Path, make, caplog) -> None:
    ds = make.dataset(np.zeros((2, 2), np.int16))
    path = tmp_path / "odd.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.PatientBirthDate = "17.08.1942 " + make.phi[0]  # invalid DA: pydicom would quote it in a warning
        ds.PatientName = make.phi[0] + "\\" + make.phi[1]
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    caplog.clear()  # pydicom itself logged the invalid value while writing the test file
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may escape as a warning either
        read_image(path)
    _phi_free(caplog.text, make)


def test_scrubber_redacts_names_and_their_components(make) -> None:
    from radvlsm.io.dicom import _Scrubber

    ds = make.dataset(None)
    scrub = _Scrubber()
    scrub.add_from(ds)
    text = scrub(f"bad value '{make.phi[0]}' for {make.phi[1]} born {make.phi[2]}; Hannelore again")
    _phi_free(text, make)
    assert text.count("<redacted>") == 4


def test_signed_monochrome1_is_inverted(tmp_path: Path, make) -> None:
    stored = np.array([[-2048, -1], [0, 2047]], np.int16)  # 12 bits stored, signed
    rec = read_image(make.xray(tmp_path / "dx_signed.dcm", stored, photometric="MONOCHROME1", bits=12))
    np.testing.assert_array_equal(rec.pixels, -1 - stored)


def test_enhanced_multiframe_ct_uses_functional_groups(tmp_path: Path, make) -> None:
    from pydicom.dataset import Dataset
    from pydicom.uid import EnhancedCTImageStorage

    frames = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    ds = make.dataset(
        frames,
        sop_class=EnhancedCTImageStorage,
        slope=None,
        intercept=None,
        position=None,
        orientation=None,
        pixel_spacing=None,
    )
    transform, measures, shared = Dataset(), Dataset(), Dataset()
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = "2", "-1000", "HU"
    measures.PixelSpacing, measures.SliceThickness = ["0.6", "0.7"], "1.0"
    shared.PixelValueTransformationSequence = [transform]
    shared.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    rec = read_image(make.save(ds, tmp_path / "enhanced.dcm"))
    assert rec.frames == 2 and rec.pixels.shape == (2, 3, 4) and rec.pixels.dtype == np.float32
    np.testing.assert_array_equal(rec.pixels, frames * 2.0 - 1000.0)
    assert rec.pixel_spacing_mm == (0.6, 0.7)


def test_folder_with_one_multiframe_file(tmp_path: Path, make) -> None:
    frames = np.zeros((4, 3, 5), np.uint8)
    make.us_cine(tmp_path / "cine" / "US0001.dcm", frames)
    rec = read_image(tmp_path / "cine")
    assert rec.frames == 4 and rec.path.name == "US0001.dcm" and not rec.is_volume
    make.ct_slice(tmp_path / "cine" / "CT0001.dcm", series_uid=rec.series_uid)
    with pytest.raises(ImageReadError, match="mixes multi-frame"):
        read_image(tmp_path / "cine")

"""CT windows and the display/model-input RGB conversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radvlsm.errors import InputError
from radvlsm.io import PRESETS, Modality, Window, apply_window, get_window, read_image, to_display_rgb
from radvlsm.io.record import ImageRecord


def test_presets_have_the_usual_values() -> None:
    expected = {
        "lung": (1500, -600),
        "mediastinum": (350, 50),
        "soft_tissue": (400, 40),
        "liver": (150, 30),
        "bone": (1800, 400),
        "brain": (80, 40),
    }
    assert {name: (w.width, w.level) for name, w in PRESETS.items()} == expected


def test_get_window_accepts_names_pairs_and_windows() -> None:
    assert get_window("Soft-Tissue") is PRESETS["soft_tissue"]
    assert get_window(" LUNG ") is PRESETS["lung"]
    assert get_window((400, 40)) == Window(400, 40)
    w = Window(100, 0, "custom")
    assert get_window(w) is w
    with pytest.raises(InputError, match="unknown CT window 'abdomen'; presets: lung"):
        get_window("abdomen")
    with pytest.raises(InputError, match="width must be >= 1"):
        get_window((0, 40))
    with pytest.raises(InputError, match="preset name or a"):
        get_window((1, 2, 3))  # type: ignore[arg-type]


def test_lung_window_mapping() -> None:
    hu = np.array([-3000, -1351, -1350, -600, 149, 150, 3000, np.nan], np.float32)
    out = apply_window(hu, "lung")
    assert out.dtype == np.uint8 and out.shape == hu.shape
    assert out.tolist() == [0, 0, 0, 128, 255, 255, 255, 0]


def test_window_follows_dicom_linear_function() -> None:
    w = Window(400, 40)
    x = np.linspace(-300, 300, 601)
    expected = np.clip(np.rint(((x - (w.level - 0.5)) / (w.width - 1) + 0.5) * 255), 0, 255)
    np.testing.assert_array_equal(apply_window(x, w), expected)
    assert w.lower == pytest.approx(-160) and w.upper == pytest.approx(239)
    assert str(PRESETS["bone"]) == "bone (W1800/L400)"


def test_uint8_passthrough() -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = to_display_rgb(gray)
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)
    rgb = np.random.default_rng(0).integers(0, 255, (3, 4, 3), dtype=np.uint8)
    out = to_display_rgb(rgb)
    np.testing.assert_array_equal(out, rgb)
    assert out is not rgb and out.flags.writeable and out.flags.c_contiguous
    rgba = np.dstack([rgb, np.zeros((3, 4), np.uint8)])
    np.testing.assert_array_equal(to_display_rgb(rgba), rgb)


def test_16bit_is_rescaled_robustly() -> None:
    arr = np.linspace(1000, 2000, 1000).reshape(25, 40).astype(np.uint16)
    arr[0, 0] = 65535  # one hot pixel must not squash the rest
    out = to_display_rgb(arr, percentiles=(1, 99))
    assert out.dtype == np.uint8 and out.shape == (25, 40, 3)
    assert out[..., 0].min() == 0 and out[..., 0].max() == 255
    assert 100 < out[12, 20, 0] < 160  # the middle value lands mid-grey


def test_float_constant_and_nan() -> None:
    assert not to_display_rgb(np.full((2, 2), 3.5)).any()
    arr = np.array([[0.0, np.nan], [1.0, 0.5]])
    out = to_display_rgb(arr, percentiles=(0, 100))
    assert out[0, 1, 0] == 0 and out[1, 0, 0] == 255 and out[1, 1, 0] == 128


def test_bool_maps_to_0_255() -> None:
    out = to_display_rgb(np.array([[True, False]]))
    assert out[..., 0].tolist() == [[255, 0]]


def test_ct_record_windowed(tmp_path: Path, make) -> None:
    stored = np.array([[-376, 424], [1024, 4095]], np.int16)  # HU -1400, -600, 0, 3071
    rec = read_image(make.ct_slice(tmp_path / "ct.dcm", stored))
    out = to_display_rgb(rec, window="lung")
    assert out[..., 0].tolist() == [[0, 128], [230, 255]]
    assert np.array_equal(out[..., 0], out[..., 2])


def test_volume_needs_an_index(tmp_path: Path, make) -> None:
    rec = read_image(make.ct_series(tmp_path / "s", 3))
    with pytest.raises(ValueError, match="needs the slice/frame index"):
        to_display_rgb(rec, "soft_tissue")
    with pytest.raises(ValueError, match="outside the 3 slices"):
        to_display_rgb(rec, "soft_tissue", index=3)
    assert to_display_rgb(rec, "soft_tissue", index=1).shape == (4, 5, 3)


def test_window_on_colour_is_refused() -> None:
    rec = ImageRecord(path=Path("x.png"), pixels=np.zeros((2, 2, 3), np.uint8), modality=Modality.OT)
    with pytest.raises(ValueError, match="single-channel"):
        to_display_rgb(rec, "lung")


def test_unsupported_shape() -> None:
    with pytest.raises(ValueError, match="expected an"):
        to_display_rgb(np.zeros((2, 2, 2), np.uint8))

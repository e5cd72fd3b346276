"""RTSTRUCT reading and rasterisation: synthetic structure sets on synthetic series (geometry, even-odd holes, every
error naming the file, no patient identifier in any message or log), and the IBSI phantom's GTV against its NIfTI
mask (skipped without the shared datasets)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from radvlsm.errors import ImageReadError
from radvlsm.io import (
    is_rtstruct,
    rasterise_roi,
    read_image,
    read_mask,
    read_structure_set,
    write_nifti_mask,
)
from radvlsm.io.rtstruct import fill_even_odd

# make.ct_series: axial slices, origin (-50, 20, -100) mm, rows 0.5 mm apart along y, columns 0.75 mm along x,
# slices 2.5 mm apart along z. Voxel (x, y, k) is centred at:
ORIGIN = np.array([-50.0, 20.0, -100.0])
STEP = np.array([0.75, 0.5, 2.5])
SHAPE = (20, 24)  # rows, columns
SLICES = 5


def mm(xy: list[tuple[float, float]], k: float) -> np.ndarray:
    """Contour vertices given in voxel coordinates (x = column, y = row) on slice ``k``, as patient mm."""
    pts = np.array([(x, y, k) for x, y in xy], dtype=float)
    return ORIGIN + pts * STEP


def rect(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


@pytest.fixture
def series(tmp_path: Path, make) -> Path:
    return make.ct_series(tmp_path / "series", SLICES, shape=SHAPE)


def _read(series: Path):
    return read_image(series)


# ------------------------------------------------------------------------------------------ rasterising


def test_square_lands_on_its_voxels(series: Path, tmp_path: Path, make) -> None:
    rs = make.structure_set(tmp_path / "rs.dcm", series, {"GTV": [mm(rect(1.5, 2.5, 9.5, 11.5), 2)]})
    image = _read(series)
    roi = rasterise_roi(rs, image, "GTV")
    expected = np.zeros((SLICES, *SHAPE), bool)
    expected[2, 3:12, 2:10] = True
    np.testing.assert_array_equal(roi.mask, expected)
    assert roi.geometry == image.geometry and roi.series_uid == image.series_uid
    assert roi.roi_name == "GTV" and roi.n_contours == 1 and not roi.mask.flags.writeable


def test_inner_contour_is_a_hole_and_an_island_inside_it_is_kept(series: Path, tmp_path: Path, make) -> None:
    outer, hole, island = rect(0.5, 0.5, 20.5, 16.5), rect(4.5, 4.5, 14.5, 12.5), rect(7.5, 7.5, 9.5, 9.5)
    rs = make.structure_set(tmp_path / "rs.dcm", series, {"ring": [mm(outer, 1), mm(hole, 1), mm(island, 1)]})
    mask = rasterise_roi(rs, _read(series)).mask[1]
    expected = np.zeros(SHAPE, bool)
    expected[1:17, 1:21] = True
    expected[5:13, 5:15] = False
    expected[8:10, 8:10] = True
    np.testing.assert_array_equal(mask, expected)


def test_keyhole_contour_equals_outer_and_inner_contours(series: Path, tmp_path: Path, make) -> None:
    # One polygon: around the outside, in along a cut at y = 8.5, around the hole the other way, and back out.
    keyhole = [(0.5, 0.5), (20.5, 0.5), (20.5, 16.5), (0.5, 16.5), (0.5, 8.5), (4.5, 8.5), (4.5, 12.5),
               (14.5, 12.5), (14.5, 4.5), (4.5, 4.5), (4.5, 8.5), (0.5, 8.5)]
    two = make.structure_set(tmp_path / "two.dcm", series,
                             {"r": [mm(rect(0.5, 0.5, 20.5, 16.5), 3), mm(rect(4.5, 4.5, 14.5, 12.5), 3)]})
    one = make.structure_set(tmp_path / "one.dcm", series, {"r": [mm(keyhole, 3)]})
    image = _read(series)
    np.testing.assert_array_equal(rasterise_roi(one, image).mask, rasterise_roi(two, image).mask)
    assert rasterise_roi(one, image).mask.sum() == 16 * 20 - 8 * 10


def test_contours_on_several_slices_and_rois_by_name(series: Path, tmp_path: Path, make) -> None:
    rois = {
        "Lung": [mm(rect(0.5, 0.5, 3.5, 3.5), k) for k in (0, 1, 4)],
        "GTV": [mm(rect(5.5, 5.5, 7.5, 6.5), 2)],
    }
    rs = make.structure_set(tmp_path / "rs.dcm", series, rois)
    assert read_structure_set(rs).roi_names == ("Lung", "GTV")
    image = _read(series)
    lung = rasterise_roi(rs, image, "Lung")
    assert lung.n_contours == 3
    assert lung.mask.sum(axis=(1, 2)).tolist() == [9, 9, 0, 0, 9]
    assert rasterise_roi(rs, image, "GTV").mask.sum() == 2


def test_oblique_series(tmp_path: Path, make) -> None:
    # Rows and columns rotated 30 degrees about z, then tilted: contours follow the series' own axes.
    a, b = np.deg2rad(30), np.deg2rad(20)
    row = np.array([np.cos(a), np.sin(a), 0.0])
    col = np.array([-np.sin(a) * np.cos(b), np.cos(a) * np.cos(b), np.sin(b)])
    normal = np.cross(row, col)
    folder = make.ct_series(tmp_path / "oblique", SLICES, shape=SHAPE, orientation=(*row, *col))
    origin = np.array([-50.0, 20.0, -100.0])

    def to_mm(xy: list[tuple[float, float]], k: int) -> np.ndarray:
        return np.array([origin + x * 0.75 * row + y * 0.5 * col + k * 2.5 * normal for x, y in xy])

    rs = make.structure_set(tmp_path / "rs.dcm", folder, {"GTV": [to_mm(rect(1.5, 2.5, 9.5, 11.5), 3)]},
                            link_slices=False)
    mask = rasterise_roi(rs, read_image(folder)).mask
    expected = np.zeros((SLICES, *SHAPE), bool)
    expected[3, 3:12, 2:10] = True
    np.testing.assert_array_equal(mask, expected)


def test_boundary_rule_left_and_top_edges_in_right_and_bottom_out() -> None:
    # Vertices on voxel centres: a centre on a left/top edge is inside, on a right/bottom edge outside, so that two
    # polygons sharing an edge never both claim its voxels.
    left = fill_even_odd([np.array(rect(2, 2, 5, 6), float)], (10, 10))
    right = fill_even_odd([np.array(rect(5, 2, 8, 6), float)], (10, 10))
    assert left.sum() == 3 * 4 and right.sum() == 3 * 4
    assert not (left & right).any()
    assert left[2, 2] and not left[2, 5] and not left[6, 2]


def test_even_odd_for_a_self_intersecting_polygon() -> None:
    # A pentagram: the centre pentagon is crossed twice, so even-odd leaves it empty.
    angles = np.pi / 2 + np.arange(5) * 4 * np.pi / 5
    star = np.stack([50 + 40 * np.cos(angles), 50 + 40 * np.sin(angles)], axis=1)
    mask = fill_even_odd([star], (100, 100))
    assert not mask[50, 50]  # centre: two windings
    assert mask[int(50 + 30 * np.sin(np.pi / 2)), 50]  # inside one tip


def test_read_mask_rasterises_an_rtstruct(series: Path, tmp_path: Path, make) -> None:
    rs = make.structure_set(tmp_path / "rs.dcm", series, {"GTV": [mm(rect(1.5, 2.5, 9.5, 11.5), 2)]})
    image = _read(series)
    assert is_rtstruct(rs) and not is_rtstruct(series / "IMG0000.dcm") and not is_rtstruct(series)
    mask = read_mask(rs, like=image, roi="GTV")
    assert mask.shape == image.pixels.shape and mask.sum() == 8 * 9
    with pytest.raises(ImageReadError, match="needs the DICOM series it was drawn on"):
        read_mask(rs)


def test_roi_mask_record_round_trips_through_nifti(series: Path, tmp_path: Path, make) -> None:
    rs = make.structure_set(tmp_path / "rs.dcm", series, {"GTV": [mm(rect(1.5, 2.5, 9.5, 11.5), 2)]})
    image = _read(series)
    roi = rasterise_roi(rs, image)
    record = roi.to_record()
    assert record.is_volume and record.pixels.dtype == np.uint8 and record.source_format == "rtstruct"
    assert image.geometry is not None
    back = read_mask(write_nifti_mask(tmp_path / "gtv.nii.gz", roi.mask, image.geometry), like=image)
    np.testing.assert_array_equal(back, roi.mask)


# --------------------------------------------------------------------------------------------------- errors


def _error(rs: Path, image, roi: str | None = None) -> str:
    with pytest.raises(ImageReadError) as info:
        rasterise_roi(rs, image, roi)
    assert info.value.path == rs, "the error names the RTSTRUCT file"
    assert str(rs) in str(info.value)
    return str(info.value)


def test_rtstruct_of_another_series(series: Path, tmp_path: Path, make) -> None:
    contour = [mm(rect(1.5, 2.5, 9.5, 11.5), 2)]
    by_series = make.structure_set(tmp_path / "a.dcm", series, {"GTV": contour}, series_uid="1.2.3.4.5")
    assert "RTSTRUCT of another series: it references series 1.2.3.4.5" in _error(by_series, _read(series))
    other = make.ct_series(tmp_path / "other", SLICES, shape=SHAPE)
    by_slices = make.structure_set(tmp_path / "b.dcm", other, {"GTV": contour}, series_uid=_read(series).series_uid)
    assert "none of the 5 slices it references is a slice of series" in _error(by_slices, _read(series))


def test_missing_roi_lists_the_names(series: Path, tmp_path: Path, make) -> None:
    rois = {"GTV": [mm(rect(1.5, 2.5, 9.5, 11.5), 2)], "Lung": [mm(rect(0.5, 0.5, 3.5, 3.5), 1)]}
    rs = make.structure_set(tmp_path / "rs.dcm", series, rois)
    image = _read(series)
    assert "no ROI named 'Liver' in the RTSTRUCT; it has: 'GTV', 'Lung'" in _error(rs, image, "Liver")
    assert "(did you mean 'GTV'?)" in _error(rs, image, "gtv")
    assert "the RTSTRUCT has 2 ROIs: choose one by name (it has: 'GTV', 'Lung')" in _error(rs, image)


@pytest.mark.parametrize(
    ("points", "reason"),
    [
        (mm(rect(1.5, 2.5, 9.5, 11.5), 1.5), "contour off the grid: 1.250 mm from the nearest slice plane"),
        (mm(rect(1.5, 2.5, 9.5, 11.5), 7), "contour off the grid: at slice position 7.00, outside the series' 5"),
        (mm(rect(1.5, 2.5, 30.0, 11.5), 2), "contour off the grid: it reaches outside the 24x20 image in-plane"),
        (np.vstack([mm([(1.5, 2.5), (9.5, 2.5)], 1), mm([(9.5, 11.5)], 3)]), "not in one slice plane"),
    ],
    ids=["between-slices", "beyond-the-slices", "outside-in-plane", "not-planar"],
)
def test_contour_off_the_grid(series: Path, tmp_path: Path, make, points: np.ndarray, reason: str) -> None:
    rs = make.structure_set(tmp_path / "rs.dcm", series, {"GTV": [points]}, link_slices=False)
    message = _error(rs, _read(series), "GTV")
    assert reason in message and "ROI 'GTV', contour 1" in message


def test_contour_whose_slice_uid_disagrees_with_its_position(series: Path, tmp_path: Path, make) -> None:
    image = _read(series)
    assert image.instance_uids is not None
    rs = make.structure_set(tmp_path / "rs.dcm", series, {"GTV": [mm(rect(1.5, 2.5, 9.5, 11.5), 2)]},
                            slice_of={0: image.instance_uids[3]})
    assert "the contour names slice 3 of the series but lies on slice 2" in _error(rs, image)


def test_roi_without_closed_contours(series: Path, tmp_path: Path, make) -> None:
    image = _read(series)
    empty = make.structure_set(tmp_path / "empty.dcm", series, {"GTV": []})
    assert "ROI 'GTV' has no closed planar contours: nothing to rasterise" in _error(empty, image)
    points = make.structure_set(tmp_path / "points.dcm", series, {"marker": [mm([(3.0, 3.0)], 2)]},
                                geometric_type="POINT")
    assert "has no closed planar contours (only POINT contours)" in _error(points, image)


def test_malformed_contour_data(series: Path, tmp_path: Path, make) -> None:
    import pydicom

    rs = make.structure_set(tmp_path / "rs.dcm", series, {"GTV": [mm(rect(1.5, 2.5, 9.5, 11.5), 2)]})
    ds = pydicom.dcmread(rs)
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    contour.ContourData = contour.ContourData[:-1]  # 11 numbers: not (x, y, z) triplets
    ds.save_as(rs)
    assert "ROI 'GTV', contour 1: ContourData must hold finite (x, y, z) triplets, got 11 values" in _error(
        rs, _read(series)
    )


def test_not_an_rtstruct_and_not_a_series(series: Path, tmp_path: Path, make) -> None:
    image = _read(series)
    assert "not an RT Structure Set (RTSTRUCT): the DICOM file is a CT object" in _error(series / "IMG0001.dcm", image)
    rs = make.structure_set(tmp_path / "rs.dcm", series, {"GTV": [mm(rect(1.5, 2.5, 9.5, 11.5), 2)]})
    nifti = read_image(make.nifti(tmp_path / "v.nii.gz", np.zeros((24, 20, 5), np.int16)))
    assert "is not a DICOM series (no SeriesInstanceUID" in _error(rs, nifti)
    assert "is a 2-D image" in _error(rs, read_image(series / "IMG0001.dcm"))


def test_no_patient_identifier_in_any_rtstruct_message_or_log(
    series: Path, tmp_path: Path, make, caplog: pytest.LogCaptureFixture
) -> None:
    image = _read(series)
    good = mm(rect(1.5, 2.5, 9.5, 11.5), 2)
    cases = [
        (make.structure_set(tmp_path / "1.dcm", series, {"Schmidt lesion": [good]}), "Liver"),
        (make.structure_set(tmp_path / "2.dcm", series, {"Schmidt lesion": [good], "b": [good]}), None),
        (make.structure_set(tmp_path / "3.dcm", series, {"Schmidt lesion": [mm(rect(1, 1, 40, 2), 2)]}), None),
        (make.structure_set(tmp_path / "4.dcm", series, {"Hannelore": []}), None),
        (make.structure_set(tmp_path / "5.dcm", series, {"GTV": [good]}, series_uid="1.2.3"), None),
    ]
    texts = []
    with caplog.at_level(logging.DEBUG):
        for rs, roi in cases:
            texts.append(_error(rs, image, roi))
        ok = make.structure_set(tmp_path / "ok.dcm", series, {"Schmidt lesion": [good]})
        rasterise_roi(ok, image)
        texts.append(repr(read_structure_set(ok)))
    assert "'<redacted> lesion'" in texts[0]
    for text in [*texts, caplog.text]:
        for value in make.phi:
            assert value not in text, f"patient identifier {value!r} leaked: {text}"


# ------------------------------------------------------------------------------------------------ real data


@pytest.mark.shared_data
def test_ibsi_rtstruct_equals_the_nifti_mask(ibsi_phantom_root: Path) -> None:
    series = read_image(ibsi_phantom_root / "dicom" / "image")
    rs = next((ibsi_phantom_root / "dicom" / "rtstruct").glob("*.dcm"))
    info = read_structure_set(rs)
    assert info.roi_names == ("GTV-1",) and info.series_uids == (series.series_uid,)
    roi = rasterise_roi(rs, series, "GTV-1")
    nifti = read_image(ibsi_phantom_root / "nifti" / "mask.nii.gz")
    assert roi.n_contours == 26
    # Voxel for voxel: not one voxel differs (125256 voxels, the NIfTI mask's count).
    np.testing.assert_array_equal(roi.mask, nifti.pixels != 0)
    assert int(roi.mask.sum()) == 125256
    # Same grid: the NIfTI stores its geometry in float32, hence the tolerance on the origin.
    assert roi.geometry is not None and nifti.geometry is not None
    np.testing.assert_allclose(roi.geometry.spacing, nifti.geometry.spacing, rtol=1e-6)
    np.testing.assert_allclose(roi.geometry.origin, nifti.geometry.origin, atol=1e-4)
    np.testing.assert_array_equal(roi.geometry.direction, nifti.geometry.direction)
    np.testing.assert_array_equal(read_mask(rs, like=series, roi="GTV-1"), roi.mask)

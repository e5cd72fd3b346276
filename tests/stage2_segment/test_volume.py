"""3-D nodule segmentation: scanner mm → voxels on real LIDC VOIs, the zoomed crops, the points CSV, and a
segmented volume keeping the volume's shape and geometry."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813
import torch

from radvlsm.errors import ConfigError, InputError
from radvlsm.io import ImageRecord, Modality, VolumeGeometry, read_image, read_mask, write_nifti_mask
from radvlsm.stage2_segment.train import TrainingDomain
from radvlsm.stage2_segment.volume import (
    CropFrame,
    NodulePoint,
    VolumeConfig,
    VolumeSegmenter,
    VoxelBox,
    crop_frame,
    crop_mask,
    crop_slice,
    keep_components_in_core,
    nodule_slice_crops,
    physical_to_voxel,
    point_to_box,
    point_voxel,
    read_points_csv,
    section_boxes,
    segment_nodules,
    uncrop_mask,
)

#: A VOI whose direction flips x and y (most LIDC VOIs have the identity).
FLIPPED_CASE = "LIDC-IDRI-0262_R_1"


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """One torch thread: slice-by-slice decoding is small work, which extra threads slow down on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _labels(lidc_root: Path) -> list[dict[str, str]]:
    with (lidc_root / "labels.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _point(row: dict[str, str]) -> NodulePoint:
    return NodulePoint(float(row["coordX"]), float(row["coordY"]), float(row["coordZ"]), float(row["diameter_mm"]))


def test_lidc_centres_land_in_their_nodules(lidc_root: Path) -> None:
    """LIDC's coordX/Y/Z (scanner mm), mapped through each VOI's origin, direction and spacing, fall inside the
    nodule mask for nearly every case, and the mapping is ITK's."""
    rows = _labels(lidc_root)[::16]
    inside = 0
    directions = set()
    for row in rows:
        vol = read_image(lidc_root / row["image"], modality=Modality.CT)
        mask = read_mask(lidc_root / row["mask"], like=vol)
        assert vol.geometry is not None
        directions.add(vol.geometry.direction)
        p = _point(row)
        itk = sitk.ReadImage(str(lidc_root / row["image"]))
        np.testing.assert_allclose(physical_to_voxel(p.xyz, vol.geometry),
                                   itk.TransformPhysicalPointToContinuousIndex(tuple(p.xyz)), atol=1e-6)
        x, y, z = point_voxel(p, vol.geometry)
        if 0 <= z < mask.shape[0] and 0 <= y < mask.shape[1] and 0 <= x < mask.shape[2]:
            inside += bool(mask[z, y, x])
    assert inside >= 0.9 * len(rows), f"{inside}/{len(rows)} centres inside their nodule"
    assert len(directions) >= 1


def test_flipped_direction_maps_through_the_direction(lidc_root: Path) -> None:
    vol = read_image(lidc_root / "images" / f"{FLIPPED_CASE}.nii.gz", modality=Modality.CT)
    assert vol.geometry is not None
    if vol.geometry.direction[0] > 0:
        pytest.skip(f"{FLIPPED_CASE} is no longer flipped in this copy of the data")
    row = next(r for r in _labels(lidc_root) if r["case_id"] == FLIPPED_CASE)
    mask = read_mask(lidc_root / row["mask"], like=vol)
    x, y, z = point_voxel(_point(row), vol.geometry)
    assert mask[z, y, x]
    # ignoring the direction (origin + index * spacing) would put it elsewhere
    naive = (np.array([float(row["coordX"]), float(row["coordY"]), float(row["coordZ"])])
             - np.array(vol.geometry.origin)) / np.array(vol.geometry.spacing)
    assert not np.allclose(naive, physical_to_voxel(_point(row).xyz, vol.geometry), atol=1.0)


def test_point_box_is_the_sphere_box() -> None:
    geo = VolumeGeometry(spacing=(0.5, 0.8, 2.5), origin=(10.0, -20.0, -100.0), direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))
    centre = np.array([5.0, 4.0, 6.0])  # voxel indices (x, y, z)
    mm = geo.index_to_physical(centre)
    box = point_to_box(NodulePoint(*mm, diameter_mm=10.0), geo)
    np.testing.assert_allclose(box.center, centre + 0.5, atol=1e-9)
    np.testing.assert_allclose([box.x1 - box.x0, box.y1 - box.y0, box.z1 - box.z0], [20.0, 12.5, 4.0])


def test_voxel_box_and_ellipsoid() -> None:
    mask = np.zeros((6, 20, 30), bool)
    mask[1:4, 5:9, 10:20] = True
    box = VoxelBox.from_mask(mask)
    assert box == VoxelBox(10, 5, 1, 20, 9, 4)
    assert list(box.slices(6)) == [1, 2, 3]
    ell = box.ellipsoid(mask.shape)
    assert ell.any() and not (ell & ~mask).any()
    assert VoxelBox.from_mask(np.zeros((2, 3, 3))) is None
    with pytest.raises(InputError):
        VoxelBox(1, 1, 1, 1, 2, 2)


def test_section_boxes_narrow_towards_the_ends() -> None:
    box = VoxelBox(10, 20, 0, 30, 30, 5)
    secs = section_boxes(box, range(5))
    widths = [b[2] - b[0] for b in secs]
    assert widths[2] == pytest.approx(20.0) and widths[0] == pytest.approx(widths[4])
    assert widths[0] < widths[1] < widths[2]
    assert widths[0] == pytest.approx(20 * np.sqrt(1 - 0.8**2))
    np.testing.assert_allclose([(b[0] + b[2]) / 2 for b in secs], 20.0)
    assert section_boxes(box, [0], min_section=0.9)[0][2] - section_boxes(box, [0], 0.9)[0][0] == pytest.approx(18.0)
    with pytest.raises(ConfigError, match="slice_prompts"):
        VolumeConfig(slice_prompts="sideways")


def test_crop_round_trip() -> None:
    hw = (44, 50)
    mask = np.zeros(hw, bool)
    mask[15:25, 20:28] = True
    frame = crop_frame(np.array([20.0, 15.0, 28.0, 25.0]), 256)
    assert frame.side == pytest.approx(25.0) and isinstance(frame, CropFrame)
    np.testing.assert_allclose(frame.box_to_crop([20.0, 15.0, 28.0, 25.0]),
                               np.array([20 - 11.5, 15 - 7.5, 28 - 11.5, 25 - 7.5]) * 256 / 25, atol=1e-9)
    np.testing.assert_allclose(frame.box_from_crop(frame.box_to_crop([1.0, 2.0, 3.0, 4.0])), [1, 2, 3, 4], atol=1e-9)
    cm = crop_mask(mask, frame)
    assert cm.shape == (256, 256)
    np.testing.assert_array_equal(uncrop_mask(cm, frame, hw), mask)
    hu = np.full(hw, -800.0, np.float32)
    hu[mask] = 40.0
    rgb = crop_slice(hu, frame)
    assert rgb.shape == (256, 256, 3) and rgb.dtype == np.uint8
    assert rgb[cm.astype(bool)].mean() > rgb[~cm.astype(bool)].mean() + 50


def test_nodule_slice_crops_on_lidc(lidc_root: Path) -> None:
    row = _labels(lidc_root)[0]
    vol = read_image(lidc_root / row["image"], modality=Modality.CT)
    mask = read_mask(lidc_root / row["mask"], like=vol)
    crops = nodule_slice_crops(vol.pixels, mask, row["case_id"], 128, np.random.default_rng(0))
    assert len(crops.ids) == int(mask.any(axis=(1, 2)).sum())
    assert crops.images.shape == (len(crops.ids), 128, 128, 3) and crops.masks.shape == (len(crops.ids), 128, 128)
    assert all(m.any() for m in crops.masks)
    assert TrainingDomain("ct") is TrainingDomain.CT


def test_keep_components_in_core() -> None:
    mask = np.zeros((5, 30, 30), bool)
    mask[1:4, 10:20, 10:20] = True
    mask[2, 1:3, 1:3] = True  # a stray blob far from the prompt's centre
    out = keep_components_in_core(mask, VoxelBox(9, 9, 0, 21, 21, 5))
    assert out[2, 15, 15] and not out[2, 1, 1]


@pytest.mark.usefixtures("one_thread")
def test_segmented_volume_keeps_shape_and_geometry(lidc_root: Path) -> None:
    from radvlsm.stage2_segment.build import load_segmenter
    from radvlsm.stage2_segment.predictor import SegmenterPredictor

    row = _labels(lidc_root)[0]
    vol = read_image(lidc_root / row["image"], modality=Modality.CT)
    mask = read_mask(lidc_root / row["mask"], like=vol)
    seg = VolumeSegmenter(SegmenterPredictor(load_segmenter("ct")))
    res = seg.segment_point(vol, _point(row))
    assert res.mask.shape == vol.pixels.shape and res.mask.dtype == bool
    assert res.geometry == vol.geometry
    assert res.status == "ok" and res.mask.any()
    inter = (res.mask & mask).sum()
    assert 2 * inter / (res.mask.sum() + mask.sum()) > 0.8
    pbox = seg.point_box(vol, _point(row))
    assert res.prompt == pbox
    sphere = point_to_box(_point(row), vol.geometry)
    assert pbox.x1 - pbox.x0 == pytest.approx((sphere.x1 - sphere.x0) * seg.config.point_extent[0])
    for mode in ("ellipsoid", "propagate", "box"):
        seg.config = VolumeConfig(slice_prompts=mode)
        box_res = seg.segment_box(vol, VoxelBox.from_mask(mask))
        assert box_res.mask.shape == vol.pixels.shape and box_res.status == "ok"
        assert {s.z for s in box_res.slices} <= set(range(vol.pixels.shape[0]))


@pytest.mark.usefixtures("one_thread")
def test_bad_volume_inputs(lidc_root: Path) -> None:
    from radvlsm.stage2_segment.build import load_segmenter
    from radvlsm.stage2_segment.predictor import SegmenterPredictor

    seg = VolumeSegmenter(SegmenterPredictor(load_segmenter("default")))
    flat = ImageRecord(path=Path("slice.png"), pixels=np.zeros((20, 20), np.uint8))
    with pytest.raises(InputError, match=r"slice\.png.*CT volume"):
        seg.segment_box(flat, VoxelBox(1, 1, 0, 5, 5, 1))
    vol = read_image(lidc_root / "images" / f"{_labels(lidc_root)[0]['case_id']}.nii.gz", modality=Modality.CT)
    with pytest.raises(InputError, match="outside the volume"):
        seg.segment_box(vol, VoxelBox(500, 500, 0, 510, 510, 1))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("x,y\n1,2\n", r"missing \['z'\]"),
        ("x,y,z\n1,2,abc\n", r"line 2: z 'abc' is not a number"),
        ("x,y,z,diameter_mm\n1,2,3,-4\n", "diameter_mm must be positive"),
        ("x,y,z\n1,2,nan\n", "not finite"),
        ("x,y,z\n", "no rows"),
        ("", "missing"),
    ],
)
def test_bad_points_csv_names_the_file_and_reason(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "nodules.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=reason) as exc:
        read_points_csv(path)
    assert exc.value.path == path and str(path) in str(exc.value)


def test_points_csv(tmp_path: Path) -> None:
    path = tmp_path / "nodules.csv"
    path.write_text("X, Y, Z ,diameter_mm,note\n56.2,86.3,-115.9,23.4,a\n-1,2,3,,b\n", encoding="utf-8")
    pts = read_points_csv(path)
    assert pts == (NodulePoint(56.2, 86.3, -115.9, 23.4), NodulePoint(-1.0, 2.0, 3.0, None))
    with pytest.raises(InputError, match="not found"):
        read_points_csv(tmp_path / "absent.csv")


@pytest.mark.usefixtures("one_thread")
def test_points_csv_to_nifti_masks_in_the_volume_geometry(lidc_root: Path, tmp_path: Path) -> None:
    from radvlsm.stage2_segment.build import load_segmenter
    from radvlsm.stage2_segment.predictor import SegmenterPredictor

    row = _labels(lidc_root)[1]
    vol = read_image(lidc_root / row["image"], modality=Modality.CT)
    csv_path = tmp_path / "nodules.csv"
    csv_path.write_text(f"x,y,z,diameter_mm\n{row['coordX']},{row['coordY']},{row['coordZ']},{row['diameter_mm']}\n"
                        "9999,9999,9999,5\n", encoding="utf-8")
    seg = VolumeSegmenter(SegmenterPredictor(load_segmenter("default")))
    points = read_points_csv(csv_path)
    with pytest.raises(InputError, match=r"nodule 2 at \(9999, 9999, 9999\) mm: .*outside the volume") as exc:
        segment_nodules(vol, points, seg)
    assert exc.value.path == vol.path
    assert "VoxelBox" not in str(exc.value) and re.search(r"its box \(voxels x [-\d.]+\.\.[-\d.]+, y ", str(exc.value))
    [res] = segment_nodules(vol, points[:1], seg)
    out = write_nifti_mask(tmp_path / "mask.nii.gz", res.mask, res.geometry)
    back = read_mask(out, like=vol)  # read_mask checks shape and geometry against the volume
    np.testing.assert_array_equal(back, res.mask)

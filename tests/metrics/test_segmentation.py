"""Dice, IoU, HD95 and ASSD against an independent SimpleITK computation.

Reference (SimpleITK only, no radvlsm code):

* Dice, IoU: ``LabelOverlapMeasuresImageFilter`` (``GetDiceCoefficient``, ``GetJaccardCoefficient``).
* Surface distances: each mask is padded by one background pixel (``ConstantPad``; radvlsm counts the
  outside of the array as background), its surface is ``LabelContour(fullyConnected=False)`` (face-connected),
  and the distance from every surface pixel of one mask to the other mask's surface is read from
  ``Abs(SignedMaurerDistanceMap(<other mask's LabelContour>, useImageSpacing=True))``. Note: the Maurer map of
  the *mask itself* measures to ITK's fully-connected contour, a different surface; that is why the map is
  taken of the contour image.
* HD95 = max of the two directed 95th percentiles (numpy), ASSD = mean of the union of both sets.
* Plain Hausdorff (percentile 100) against ``HausdorffDistanceImageFilter`` (which uses the full masks; equal
  for the nested PH2 pairs used here).

Eroded-by-3-px protocol: ``cv2.erode(mask_u8, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))``, once,
with OpenCV's default border (the image edge does not erode).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813 (the library's customary alias)

from radvlsm.metrics.segmentation import (
    SegmentationScores,
    assd,
    dice,
    hausdorff_distance,
    hd95,
    iou,
    mask_boundary,
    score_masks,
    surface_distances,
)

ERODE_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
N_PH2 = 20


def erode3(mask: np.ndarray) -> np.ndarray:
    return cv2.erode(mask.astype(np.uint8), ERODE_KERNEL) > 0


def _img(mask: np.ndarray, spacing: tuple[float, ...] | None) -> sitk.Image:
    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    if spacing is not None:
        img.SetSpacing([float(s) for s in reversed(spacing)])  # SimpleITK spacing is (x, y[, z])
    return img


def sitk_reference(pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, ...] | None) -> dict[str, float]:
    """Dice, IoU, HD95, ASSD, HD (max) of ``pred`` against ``gt``, by SimpleITK only."""
    ov = sitk.LabelOverlapMeasuresImageFilter()
    ov.Execute(_img(gt, spacing), _img(pred, spacing))
    hd_filter = sitk.HausdorffDistanceImageFilter()
    hd_filter.Execute(_img(gt, spacing), _img(pred, spacing))
    pad = [1] * pred.ndim
    contours = []
    dist_maps = []
    for m in (pred, gt):
        padded = sitk.ConstantPad(_img(m, spacing), pad, pad, 0)
        contour = sitk.LabelContour(padded, fullyConnected=False)
        contours.append(sitk.GetArrayFromImage(contour).astype(bool))
        dmap = sitk.SignedMaurerDistanceMap(
            contour, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
        )
        dist_maps.append(np.abs(sitk.GetArrayFromImage(dmap)).astype(np.float64))
    d_pg = dist_maps[1][contours[0]]
    d_gp = dist_maps[0][contours[1]]
    return {
        "dice": ov.GetDiceCoefficient(),
        "iou": ov.GetJaccardCoefficient(),
        "hd95": max(float(np.percentile(d_pg, 95)), float(np.percentile(d_gp, 95))),
        "assd": float(np.concatenate([d_pg, d_gp]).mean()),
        "hd": hd_filter.GetHausdorffDistance(),
    }


def _check(
    pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, ...] | None, check_hd: bool = False
) -> tuple[float, float]:
    """Assert radvlsm's scores equal SimpleITK's; return (radvlsm Dice, SimpleITK Dice)."""
    ref = sitk_reference(pred, gt, spacing)
    s = score_masks(pred, gt, spacing)
    assert s.dice == pytest.approx(ref["dice"], abs=1e-12)
    assert s.iou == pytest.approx(ref["iou"], abs=1e-12)
    # SimpleITK's distance maps are float32: 1e-4 (px or mm) is well above their rounding.
    assert s.hd95 == pytest.approx(ref["hd95"], abs=1e-4)
    assert s.assd == pytest.approx(ref["assd"], abs=1e-4)
    if check_hd:
        assert hausdorff_distance(pred, gt, spacing) == pytest.approx(ref["hd"], abs=1e-4)
    return s.dice, ref["dice"]


@pytest.fixture(scope="module")
def ph2_masks(ph2_root: Path) -> list[np.ndarray]:
    paths = sorted((ph2_root / "masks").glob("*.png"))[:N_PH2]
    assert len(paths) == N_PH2
    return [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 0 for p in paths]


@pytest.mark.shared_data
@pytest.mark.parametrize("spacing", [None, (0.5, 0.8)])
def test_ph2_eroded_matches_simpleitk(
    ph2_masks: list[np.ndarray], spacing: tuple[float, float] | None
) -> None:
    """The first 20 PH2 masks (sorted by name) against themselves eroded by 3 px."""
    dices = np.array([_check(erode3(gt), gt, spacing, check_hd=True) for gt in ph2_masks])
    ours, ref = dices.mean(axis=0)
    assert ours == pytest.approx(ref, abs=1e-12)
    assert 0.9 < ours < 1.0


def _ellipse(shape: tuple[int, ...], center: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii, strict=True)) <= 1.0


def _blob(shape: tuple[int, ...], seed: int, sigma: float = 4.0, level: float = 0.3) -> np.ndarray:
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    return field > level * field.std()


def _pairs_2d() -> list[tuple[np.ndarray, np.ndarray]]:
    shape = (60, 80)
    a = _ellipse(shape, (30, 40), (20, 30))
    b = _ellipse(shape, (34, 45), (15, 33))
    rect = np.zeros(shape, bool)
    rect[5:50, 0:35] = True  # touches the image edge
    tri = np.tril(np.ones(shape, bool), k=10)
    return [(b, a), (rect, a), (tri, rect), (_blob(shape, 1), _blob(shape, 2)), (erode3(a), a)]


@pytest.mark.parametrize("spacing", [None, (0.7, 1.3), (2.0, 0.25)])
def test_synthetic_2d_matches_simpleitk(spacing: tuple[float, float] | None) -> None:
    for pred, gt in _pairs_2d():
        _check(pred, gt, spacing)
        _check(gt, pred, spacing)


@pytest.mark.parametrize("spacing", [None, (2.5, 0.8, 0.6)])
def test_3d_matches_simpleitk(spacing: tuple[float, float, float] | None) -> None:
    shape = (16, 30, 34)
    a = _ellipse(shape, (8, 15, 17), (6, 11, 13))
    b = _ellipse(shape, (9, 13, 19), (5, 12, 10))
    for pred, gt in [(b, a), (_blob(shape, 3, sigma=3.0), _blob(shape, 4, sigma=3.0)), (a, a)]:
        _check(pred, gt, spacing)


def test_known_distances() -> None:
    gt = np.zeros((5, 8), bool)
    pred = np.zeros((5, 8), bool)
    gt[2, 1] = True
    pred[2, 4] = True  # 3 columns away
    s = score_masks(pred, gt)
    assert (s.dice, s.iou, s.hd95, s.assd, s.unit) == (0.0, 0.0, 3.0, 3.0, "px")
    s = score_masks(pred, gt, spacing=(10.0, 2.0))  # spacing in array order: rows 10 mm, columns 2 mm
    assert (s.hd95, s.assd, s.unit) == (6.0, 6.0, "mm")
    assert s.pred_area == s.gt_area == 20.0


def test_hd95_is_max_of_directed_percentiles() -> None:
    # gt: a long bar; pred: a short piece of it. Directed pred→gt distances are small, gt→pred large.
    gt = np.zeros((20, 100), bool)
    gt[8:12, 5:95] = True
    pred = np.zeros_like(gt)
    pred[8:12, 5:30] = True
    d_pg, d_gp = surface_distances(pred, gt)
    expected = max(np.percentile(d_pg, 95), np.percentile(d_gp, 95))
    union = np.percentile(np.concatenate([d_pg, d_gp]), 95)
    assert hd95(pred, gt) == pytest.approx(expected)
    assert hd95(pred, gt) != pytest.approx(union)  # the other common definition gives another number here
    assert assd(pred, gt) == pytest.approx(np.concatenate([d_pg, d_gp]).mean())
    assert hd95(pred, gt) == hd95(gt, pred)  # symmetric


def test_boundary_is_face_connected_and_edge_pixels_count() -> None:
    m = np.ones((4, 5), bool)
    b = mask_boundary(m)
    assert b[0].all() and b[-1].all() and b[:, 0].all() and b[:, -1].all()
    assert not b[1:-1, 1:-1].any()
    # A mask filling the whole image still has a surface: distances are defined.
    assert score_masks(m, m).hd95 == 0.0


@pytest.mark.parametrize("shape", [(10, 12), (4, 10, 12)])
def test_both_empty(shape: tuple[int, ...]) -> None:
    z = np.zeros(shape, np.uint8)
    s = score_masks(z, z)
    assert (s.dice, s.iou, s.hd95, s.assd, s.pred_area, s.gt_area) == (1.0, 1.0, 0.0, 0.0, 0.0, 0.0)
    assert (dice(z, z), iou(z, z), hd95(z, z), assd(z, z)) == (1.0, 1.0, 0.0, 0.0)


@pytest.mark.parametrize("shape", [(10, 12), (4, 10, 12)])
def test_one_empty_gives_nan_without_warning(shape: tuple[int, ...]) -> None:
    z = np.zeros(shape, bool)
    m = np.zeros(shape, bool)
    m[(slice(1, 3),) * len(shape)] = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for pred, gt in ((m, z), (z, m)):
            s = score_masks(pred, gt, spacing=(1.0,) * len(shape))
            assert s.dice == 0.0 and s.iou == 0.0
            assert math.isnan(s.hd95) and math.isnan(s.assd)
            assert math.isnan(hd95(pred, gt)) and math.isnan(assd(pred, gt))
            d1, d2 = surface_distances(pred, gt)
            assert d1.size == 0 and d2.size == 0


def test_shape_mismatch_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match=r"shape mismatch.*\(10, 12\).*\(10, 13\)"):
        score_masks(np.zeros((10, 12)), np.zeros((10, 13)))
    for fn in (dice, iou, hd95, assd):
        with pytest.raises(ValueError, match="shape mismatch"):
            fn(np.zeros((3, 3)), np.zeros((3, 3, 1)))


def test_invalid_spacing() -> None:
    m = np.ones((3, 3), bool)
    with pytest.raises(ValueError, match="one spacing per"):
        score_masks(m, m, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        score_masks(m, m, spacing=(1.0, 0.0))
    with pytest.raises(ValueError, match="positive"):
        hd95(m, m, spacing=(1.0, float("nan")))


def test_scores_dataclass() -> None:
    gt = _ellipse((30, 30), (15, 15), (8, 8))
    s = score_masks(gt.astype(np.uint8) * 255, gt, spacing=(0.5, 0.5))
    assert isinstance(s, SegmentationScores)
    assert s.dice == 1.0 and s.hd95 == 0.0 and s.unit == "mm"
    assert s.pred_area == pytest.approx(gt.sum() * 0.25)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.dice = 0.5  # type: ignore[misc]

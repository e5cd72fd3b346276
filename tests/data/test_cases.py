"""Dataset readers on the shared layouts and on a user folder of the same layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radvlsm.data.boxes import box_iou, clip_box, jitter_box, mask_to_box
from radvlsm.data.cases import read_dataset
from radvlsm.errors import RadvlsmError
from radvlsm.io import read_mask


def test_ph2_cases_have_images_masks_and_diagnoses(ph2_root: Path) -> None:
    ds = read_dataset(ph2_root, "ph2")
    assert len(ds) >= 100
    assert {c.diagnosis for c in ds.cases} == {"common_nevus", "atypical_nevus", "melanoma"}
    case = ds.cases[0]
    assert case.image_path.is_file() and case.mask_path is not None and case.mask_path.is_file()
    assert read_mask(case.mask_path).any()
    assert list(ds.subset({case.case_id}).cases) == [case]


def test_kvasir_cases(kvasir_root: Path) -> None:
    ds = read_dataset(kvasir_root, "kvasir-seg")
    assert len(ds) >= 900
    assert all(c.mask_path is not None for c in ds.cases[:20])


def test_user_folder_same_layout(tmp_path: Path) -> None:
    import cv2

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    img = np.zeros((20, 30, 3), np.uint8)
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 8:20] = 255
    cv2.imwrite(str(tmp_path / "images" / "a.png"), img)
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), mask)
    cv2.imwrite(str(tmp_path / "images" / "b.png"), img)  # no mask
    (tmp_path / "labels.csv").write_text("case_id,diagnosis\na,benign\n")
    strict = read_dataset(tmp_path)  # images without a mask are listed, not made into cases
    assert [c.case_id for c in strict.cases] == ["a"] and [p.name for p in strict.unpaired] == ["b.png"]
    with pytest.raises(RadvlsmError, match="no images/ subfolder"):
        read_dataset(tmp_path / "masks")
    ds = read_dataset(tmp_path, require_masks=False)
    by_id = ds.by_id()
    assert set(by_id) == {"a", "b"} and by_id["a"].diagnosis == "benign" and by_id["b"].mask_path is None


def test_box_helpers() -> None:
    m = np.zeros((20, 30), bool)
    m[5:10, 8:20] = True
    box = mask_to_box(m)
    np.testing.assert_array_equal(box, [8, 5, 20, 10])  # XYXY edges, x1/y1 exclusive
    assert mask_to_box(np.zeros((4, 4), bool)) is None
    rng = np.random.default_rng(0)
    for _ in range(50):
        j = jitter_box(box, 0.2, rng, m.shape)
        assert 0 <= j[0] < j[2] <= 30 and 0 <= j[1] < j[3] <= 20
        assert box_iou(j, box) > 0.3
    np.testing.assert_array_equal(clip_box(np.array([-5.0, -5, 50, 50]), m.shape), [0, 0, 30, 20])


def test_gt_boxes_csv_reads_back_as_box_prompts(tmp_path: Path) -> None:
    import numpy as np

    from radvlsm.data.boxes import mask_to_box
    from radvlsm.data.cases import read_dataset, write_gt_boxes_csv
    from radvlsm.io import read_mask
    from radvlsm.pipeline.prompts import read_boxes_csv

    samples = read_dataset(Path(__file__).resolve().parents[2] / "data" / "samples")
    path = write_gt_boxes_csv(samples.cases, tmp_path / "boxes.csv")
    boxes = read_boxes_csv(path)
    with_lesion = [c for c in samples.cases if read_mask(c.mask_path).any()]
    assert set(boxes.by_case) == {c.case_id for c in with_lesion}
    c = with_lesion[0]
    row = boxes.by_case[c.case_id][0]
    np.testing.assert_allclose(row.box, mask_to_box(read_mask(c.mask_path)))

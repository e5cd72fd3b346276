"""Bad boxes get clear errors that name the boxes file and the line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radvlsm.errors import InputError
from radvlsm.pipeline.prompts import check_boxes_in_image, read_boxes_csv


def _csv(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "boxes.csv"
    p.write_text(text, encoding="utf-8")
    return p


def test_reads_candidates_grouped_by_case(tmp_path: Path) -> None:
    p = _csv(tmp_path, "image,x0,y0,x1,y1,score\nIMD002.jpg,1,2,30,40,0.9\nIMD002,5,5,20,20,0.5\nb.png,0,0,9,9,\n")
    prompts = read_boxes_csv(p)
    assert set(prompts.by_case) == {"IMD002", "b"}
    assert [r.score for r in prompts.for_case("IMD002")] == [0.9, 0.5]
    assert prompts.for_case("b")[0].score == 1.0
    assert prompts.for_case("IMD002")[1].line == 3


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("image,x0,y0,x1\na,1,2,3\n", "missing column(s) y1"),
        ("image,x0,y0,x1,y1\na,10,2,5,9\n", "line 2: box (10, 2, 5, 9) has no area"),
        ("image,x0,y0,x1,y1\na,1,2,30,40\na,5,7,5,9\n", "line 3: box (5, 7, 5, 9) has no area"),
        ("image,x0,y0,x1,y1\na,1,two,3,4\n", "line 2: coordinates and score must be numbers"),
        ("image,x0,y0,x1,y1\na,1,2,nan,4\n", "line 2: coordinates and score must be finite"),
        ("image,x0,y0,x1,y1,score\na,1,2,3,4,1.5\n", "line 2: score 1.5 outside [0, 1]"),
        ("image,x0,y0,x1,y1\n,1,2,3,4\n", "line 2: empty image name"),
        ("image,x0,y0,x1,y1\n", "boxes file has no rows"),
    ],
)
def test_bad_rows(tmp_path: Path, text: str, reason: str) -> None:
    p = _csv(tmp_path, text)
    with pytest.raises(InputError) as err:
        read_boxes_csv(p)
    assert str(err.value).startswith(f"{p}: ")
    assert reason in str(err.value)


def test_box_outside_the_image_is_an_error_and_overhang_is_clipped(tmp_path: Path) -> None:
    p = _csv(tmp_path, "image,x0,y0,x1,y1\na,800,10,900,50\na,-5,-5,50,600\n")
    rows = read_boxes_csv(p).for_case("a")
    with pytest.raises(InputError, match=r"line 2: box \(800, 10, 900, 50\) lies outside the 765x572 image a"):
        check_boxes_in_image(rows, (572, 765), p)
    np.testing.assert_allclose(check_boxes_in_image(rows[1:], (572, 765), p), [[0, 0, 50, 572]])

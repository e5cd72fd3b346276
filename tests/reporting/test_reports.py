"""Report files: escaping of input strings, self-contained HTML, the index, errors, reruns."""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from radvlsm.errors import InputError
from radvlsm.io import write_png_image, write_png_mask
from radvlsm.reporting.batch import ReportJob, ReportSettings, collect_jobs, run_reports, valid_case_id
from radvlsm.reporting.records import Diagnosis, ReportRecord

XSS_NAME = "<img src=x onerror=alert(1)>"


def _case(folder: Path, name: str, disc, to_rgb, radius: int = 40) -> tuple[Path, Path]:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    m = disc((120, 160), radius)
    rgb = np.empty((120, 160, 3), np.uint8)
    rgb[:] = to_rgb((72.0, 14.0, 20.0))
    rgb[m] = to_rgb((38.0, 22.0, 22.0))
    img = write_png_image(folder / "images" / f"{name}.png", rgb)
    msk = write_png_mask(folder / "masks" / f"{name}.png", m)
    return img, msk


def _no_raw_markup(html: str) -> None:
    assert "<img src=x" not in html and "<script>alert" not in html
    assert "onerror=alert" not in html.replace("&lt;img src=x onerror=alert(1)&gt;", "")


def test_input_strings_are_escaped_everywhere(tmp_path: Path, disc, to_rgb) -> None:
    # A file named like an HTML tag, and a path that spells <script>alert(1)</script>.png across a folder.
    img1, msk1 = _case(tmp_path, XSS_NAME, disc, to_rgb)
    odd = tmp_path / "<script>alert(1)<"
    odd.mkdir()
    img2 = odd / "script>.png"
    img2.write_bytes(img1.read_bytes())
    msk2 = tmp_path / "masks" / "script>.png"
    msk2.write_bytes(msk1.read_bytes())
    assert "<script>alert(1)</script>.png" in str(img2)
    dx = Diagnosis("<b>melanoma</b>", (("<b>melanoma</b>", 0.9), ("nevus", 0.1)), 0.9)
    out = tmp_path / "out"
    jobs = [ReportJob(XSS_NAME, img1, msk1), ReportJob("script>", img2, msk2)]
    summary = run_reports(jobs, out, settings=ReportSettings(modality="dermoscopy"),
                          diagnoses={XSS_NAME: dx, "script>": dx})
    assert summary.written == 2 and not summary.failed
    for cid in (XSS_NAME, "script>"):
        page = (out / "reports" / f"{cid}.html").read_text(encoding="utf-8")
        _no_raw_markup(page)
        assert "<b>melanoma" not in page and "&lt;b&gt;melanoma&lt;/b&gt;" in page
        assert "<script" not in page  # a case page has no script at all
        md = (out / "reports" / f"{cid}.md").read_text(encoding="utf-8")
        assert "<b>" not in md and "<img" not in md and "<script>" not in md
    page1 = (out / "reports" / f"{XSS_NAME}.html").read_text(encoding="utf-8")
    assert "&lt;img src=x onerror=alert(1)&gt;" in page1
    page2 = (out / "reports" / "script>.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in page2
    index = (out / "index.html").read_text(encoding="utf-8")
    _no_raw_markup(index)
    assert index.count("<script") == 1  # only the page's own sorting script
    assert "reports/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.html" in index
    # The JSON keeps the strings as they are (it is data, not markup).
    rec = json.loads((out / "reports" / f"{XSS_NAME}.json").read_text(encoding="utf-8"))
    assert rec["findings"]["case_id"] == XSS_NAME


def test_html_is_self_contained_with_the_overlay_embedded(tmp_path: Path, disc, to_rgb) -> None:
    img, msk = _case(tmp_path, "c1", disc, to_rgb)
    out = tmp_path / "out"
    run_reports([ReportJob("c1", img, msk)], out, settings=ReportSettings(modality="dermoscopy"))
    page = (out / "reports" / "c1.html").read_text(encoding="utf-8")
    srcs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    png = base64.b64decode(srcs[0].split(",", 1)[1])
    assert png.startswith(b"\x89PNG")
    assert "default-src 'none'" in page
    assert "http://" not in page and "https://" not in page
    assert "No diagnosis was run for this case." in page
    assert "Not measured" in page and "dermoscopic structures" in page
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "http://" not in index and "https://" not in index
    assert "script-src 'sha256-" in index
    assert "data:image/jpeg;base64," in index


def test_index_sorts_by_malignant_probability(tmp_path: Path, disc, to_rgb) -> None:
    jobs, dx = [], {}
    for cid, p in (("low", 0.1), ("high", 0.9), ("mid", 0.5)):
        img, msk = _case(tmp_path, cid, disc, to_rgb)
        jobs.append(ReportJob(cid, img, msk))
        dx[cid] = Diagnosis("melanoma" if p > 0.5 else "nevus", (("melanoma", p), ("nevus", 1 - p)), p)
    img, msk = _case(tmp_path, "none", disc, to_rgb)
    jobs.append(ReportJob("none", img, msk))
    out = tmp_path / "out"
    run_reports(jobs, out, diagnoses=dx)
    index = (out / "index.html").read_text(encoding="utf-8")
    order = re.findall(r'<td data-v="([a-z]+)"><a href="reports/', index)
    assert order == ["high", "mid", "low", "none"]
    assert 'data-v="0.9000"' in index and "no diagnosis was run" in index
    assert "sortBy" in index and "data-num=\"1\"" in index


def test_bad_case_is_listed_and_the_batch_goes_on_then_reruns_skip(tmp_path: Path, disc, to_rgb) -> None:
    good_img, good_msk = _case(tmp_path, "good", disc, to_rgb)
    bad_img = tmp_path / "images" / "bad.png"
    bad_img.write_text("not an image", encoding="utf-8")
    small_msk = write_png_mask(tmp_path / "masks" / "wrong.png", np.ones((10, 10), bool))
    jobs = [ReportJob("bad", bad_img, good_msk), ReportJob("good", good_img, good_msk),
            ReportJob("wrong", good_img, small_msk)]
    out = tmp_path / "out"
    s1 = run_reports(jobs, out)
    assert (s1.written, s1.skipped, len(s1.failed)) == (1, 0, 2)
    with (out / "errors.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [Path(r["input"]).name for r in rows] == ["bad.png", "good.png"]
    assert "not a PNG" in rows[0]["reason"] and "mask is 10x10" in rows[1]["reason"]
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "Cases without a report" in index
    before = (out / "reports" / "good.json").stat().st_mtime_ns
    s2 = run_reports(jobs[1:2], out)
    assert (s2.written, s2.skipped) == (0, 1)
    assert (out / "reports" / "good.json").stat().st_mtime_ns == before
    s3 = run_reports(jobs[1:2], out, settings=ReportSettings(overwrite=True))
    assert (s3.written, s3.skipped) == (1, 0)
    assert not list((out / "reports").glob(".*.tmp*"))  # atomic writes leave no temporaries


def test_collect_jobs_needs_masks_for_images(tmp_path: Path, disc, to_rgb) -> None:
    _case(tmp_path, "c1", disc, to_rgb)
    with pytest.raises(InputError, match="radvlsm segment"):
        collect_jobs([tmp_path / "images"])
    got = collect_jobs([tmp_path / "images"], tmp_path / "masks")
    assert [j.case_id for j in got.jobs] == ["c1"]


def test_case_ids_that_would_escape_the_folder_are_refused() -> None:
    assert valid_case_id("../../etc/x") is not None
    assert valid_case_id("..") is not None
    assert valid_case_id("IMD002") is None


def test_empty_mask_still_gets_a_report(tmp_path: Path, disc, to_rgb) -> None:
    img, _ = _case(tmp_path, "c1", disc, to_rgb)
    msk = write_png_mask(tmp_path / "masks" / "empty.png", np.zeros((120, 160), bool))
    out = tmp_path / "out"
    run_reports([ReportJob("c1", img, msk)], out, settings=ReportSettings(modality="dermoscopy"))
    rec = ReportRecord.from_json((out / "reports" / "c1.json").read_text(encoding="utf-8"))
    assert rec.findings.lesion is None
    assert "No lesion was found" in (out / "reports" / "c1.html").read_text(encoding="utf-8")

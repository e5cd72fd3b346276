"""``radvlsm report`` end to end on PH2 cases (CliRunner; output holds stdout and stderr)."""

from __future__ import annotations

import csv
import json
import shutil
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from radvlsm.cli.app import app
from radvlsm.io import read_mask, write_png_image, write_png_mask
from radvlsm.pipeline.outputs import CaseRecord, OutputFolder

pytestmark = pytest.mark.shared_data

CASES = ("IMD002", "IMD003")
KEY = "sk-cli-test-0a1b2c3d4e5f-SECRET"


def _run(*args: str, env: dict[str, str] | None = None, root: tuple[str, ...] = ()) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*root, "report", *args], env=env)
    return result.exit_code, result.output


def _squeeze(text: str) -> str:
    return "".join(text.split())


@pytest.fixture
def images_and_masks(ph2_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for c in CASES:
        shutil.copy(ph2_root / "images" / f"{c}.jpg", images)
        shutil.copy(ph2_root / "masks" / f"{c}.png", masks)
    return images, masks


@pytest.fixture
def segment_folder(images_and_masks: tuple[Path, Path], tmp_path: Path) -> Path:
    """A ``segment``-style output folder built from PH2's expert masks, with a diagnoses.csv."""
    images, masks = images_and_masks
    seg = OutputFolder(tmp_path / "seg").create()
    for i, cid in enumerate(CASES):
        mask = read_mask(masks / f"{cid}.png")
        write_png_mask(seg.mask_path(cid), mask)
        write_png_image(seg.overlay_path(cid), (mask * 255).astype("uint8"))
        seg.write_record(CaseRecord(
            case_id=cid, input=str(images / f"{cid}.jpg"), image_size=mask.shape, status="ok",
            reliability=0.8 + 0.1 * i, area_px=int(mask.sum()), bbox=(0, 0, 10, 10), candidates=(),
            mask=f"masks/{cid}.png", overlay=f"overlays/{cid}.png", model="default", prompt="pigmented lesion",
        ))
    # A record whose input image has gone: listed in errors.csv, the batch goes on.
    write_png_mask(seg.mask_path("GONE"), read_mask(masks / "IMD002.png"))
    seg.write_record(CaseRecord(
        case_id="GONE", input=str(tmp_path / "nowhere" / "GONE.jpg"), image_size=(560, 768), status="ok",
        reliability=0.5, area_px=1, bbox=None, candidates=(), mask="masks/GONE.png", overlay="overlays/GONE.png",
        model="default",
    ))
    seg.write_errors_csv([("x.png", "segment's own error")])
    (seg.root / "diagnoses.csv").write_text(
        "case_id,label,p_common_nevus,p_atypical_nevus,p_melanoma,malignant_probability,mask,reliability\n"
        "IMD002,atypical_nevus,0.2,0.5,0.3,0.3,masks/IMD002.png,0.8\n"
        "IMD003,melanoma,0.05,0.1,0.85,0.85,masks/IMD003.png,0.9\n",
        encoding="utf-8",
    )
    return seg.root


def test_images_with_masks(images_and_masks: tuple[Path, Path], tmp_path: Path) -> None:
    images, masks = images_and_masks
    out = tmp_path / "out"
    code, output = _run(str(images), "--masks", str(masks), "-o", str(out), "--modality", "dermoscopy")
    assert code == 0, output
    for c in CASES:
        for ext in ("json", "md", "html"):
            assert (out / "reports" / f"{c}.{ext}").is_file()
        rec = json.loads((out / "reports" / f"{c}.json").read_text(encoding="utf-8"))
        f = rec["findings"]
        assert f["modality"] == "dermoscopy" and f["diagnosis"] is None
        assert f["lesion"]["unit"] == "px" and f["lesion"]["count"] >= 1
        assert f["lesion"]["asymmetry"]["score"] in (0, 1, 2)
        assert f["colours"]["present"]
        assert rec["llm"]["status"] == "not_configured"
        assert "no diagnosis was run" in (out / "reports" / f"{c}.html").read_text(encoding="utf-8")
    assert (out / "index.html").is_file()
    assert "2case(s)reported" in _squeeze(output)
    code, output = _run(str(images), "--masks", str(masks), "-o", str(out), "--modality", "dermoscopy")
    assert code == 0 and "0case(s)reported,2alreadydone" in _squeeze(output)


def test_segment_folder_with_diagnoses(segment_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = _run(str(segment_folder), "-o", str(out), "--modality", "dermoscopy")
    assert code == 0, output
    rec = json.loads((out / "reports" / "IMD003.json").read_text(encoding="utf-8"))
    f = rec["findings"]
    assert f["diagnosis"]["label"] == "melanoma" and f["diagnosis"]["malignant_probability"] == 0.85
    assert f["segmentation"]["reliability"] == 0.9 and f["segmentation"]["prompt"] == "pigmented lesion"
    assert "probability of malignancy is 85%" in rec["template_text"]
    assert "reliability estimate is 0.90" in rec["template_text"]
    with (out / "errors.csv").open(newline="", encoding="utf-8") as fh:
        errors = list(csv.DictReader(fh))
    assert len(errors) == 1 and "GONE.jpg" in errors[0]["input"] and "not found" in errors[0]["reason"]
    index = (out / "index.html").read_text(encoding="utf-8")
    assert index.index("reports/IMD003.html") < index.index("reports/IMD002.html")  # 85% before 30%
    assert "2case(s)reported" in _squeeze(output) and "1failed" in _squeeze(output)
    # Reporting into the segment folder itself keeps segment's errors.csv.
    code, output = _run(str(segment_folder), "-o", str(segment_folder), "--modality", "dermoscopy")
    assert code == 0, output
    assert "segment's own error" in (segment_folder / "errors.csv").read_text(encoding="utf-8")
    assert (segment_folder / "report_errors.csv").is_file()


def test_images_without_masks_is_a_clear_error(images_and_masks: tuple[Path, Path], tmp_path: Path) -> None:
    images, _ = images_and_masks
    code, output = _run(str(images), "-o", str(tmp_path / "out"))
    assert code == 2
    flat = _squeeze(output)
    assert "radvlsmsegment" in flat and "--masks" in flat


def test_bad_options(images_and_masks: tuple[Path, Path], tmp_path: Path) -> None:
    images, masks = images_and_masks
    code, output = _run(str(images), "--masks", str(masks), "-o", str(tmp_path / "o"), "--modality", "xray")
    assert code == 2 and "--modality" in output
    code, output = _run(str(images), "--masks", str(masks), "-o", str(tmp_path / "o"), "--llm-model", "m")
    assert code == 2 and "URL" in output
    for value in ("1e-12", "inf", "1e12"):
        code, output = _run(str(images), "--masks", str(masks), "-o", str(tmp_path / "o"), "--pixel-spacing", value)
        assert code == 2 and "--pixel-spacing" in output, value


def test_api_key_from_the_environment_is_never_logged_or_written(images_and_masks: tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    images, masks = images_and_masks
    with socket.socket() as s:  # a closed port: every call fails fast
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"RADVLSM_LLM_URL": f"http://127.0.0.1:{port}/v1?api_key={KEY}", "RADVLSM_LLM_MODEL": "m",
           "RADVLSM_LLM_API_KEY": KEY}
    out = tmp_path / "out"
    code, output = _run(str(images), "--masks", str(masks), "-o", str(out), "--llm-timeout", "2", env=env,
                        root=("-v",))
    assert code == 0, output
    assert KEY not in output and KEY not in _squeeze(output)
    rec = json.loads((out / "reports" / "IMD002.json").read_text(encoding="utf-8"))
    assert rec["llm"]["status"] == "failed" and rec["prose"] is None
    for f in out.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f

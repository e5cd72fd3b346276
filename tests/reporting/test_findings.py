"""compute_findings: the modality switch, units, volumes, empty masks; JSON round trip of the records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from radvlsm.errors import InputError
from radvlsm.io import Modality
from radvlsm.reporting.findings import compute_findings
from radvlsm.reporting.records import (
    SCHEMA_VERSION,
    CaseFindings,
    Diagnosis,
    LlmOutcome,
    ReportRecord,
    SegmentationInfo,
    from_dict,
)
from radvlsm.reporting.text import findings_text


def _names(f: CaseFindings) -> str:
    return " | ".join(nm.finding for nm in f.not_measured)


def test_known_area_in_mm_with_spacing(record) -> None:
    m = np.zeros((100, 120), bool)
    m[10:50, 20:100] = True  # 40 x 80 px = 3200 px
    f = compute_findings(record(np.zeros((100, 120), np.uint8), spacing=(0.1, 0.1)), m, case_id="c",
                         modality="other")
    assert f.lesion is not None
    assert f.lesion.unit == "mm"
    assert f.lesion.area == pytest.approx(32.0)
    assert f.lesion.longest_diameter == pytest.approx(np.hypot(8.0, 4.0), abs=0.01)
    assert "sizes in millimetres" not in _names(f)
    assert "mm²" in findings_text(f)


def test_pixels_when_spacing_unknown_and_the_report_says_so(record) -> None:
    m = np.zeros((100, 120), bool)
    m[10:50, 20:100] = True
    f = compute_findings(record(np.zeros((100, 120), np.uint8)), m, case_id="c", modality="other")
    assert f.lesion.unit == "px"
    assert f.lesion.area == 3200
    assert "sizes in millimetres" in _names(f)
    text = findings_text(f)
    assert "3200 px²" in text and "pixel spacing is unknown" in text
    # The --pixel-spacing option turns pixels into millimetres.
    f2 = compute_findings(record(np.zeros((100, 120), np.uint8)), m, case_id="c", modality="other",
                          pixel_spacing_mm=0.5)
    assert (f2.lesion.unit, f2.lesion.area) == ("mm", 800.0)


def test_modality_switch(record, disc, to_rgb) -> None:
    m = disc((120, 160), 40)
    rgb = np.empty((120, 160, 3), np.uint8)
    rgb[:] = to_rgb((72.0, 14.0, 20.0))
    rgb[m] = to_rgb((38.0, 22.0, 22.0))
    derm = compute_findings(record(rgb), m, case_id="d", modality="dermoscopy")
    assert derm.colours is not None and derm.colours.present == ("dark-brown",)
    assert derm.lesion.asymmetry is not None and derm.lesion.asymmetry.score == 0
    assert derm.ultrasound is None and derm.ct is None
    assert "dermoscopic structures" in _names(derm)

    us = compute_findings(record(rgb[..., 0].copy(), modality=Modality.US), m, case_id="u")  # auto → ultrasound
    assert us.modality == "ultrasound"
    assert us.ultrasound is not None and us.colours is None and us.lesion.asymmetry is None
    assert "asymmetry and dermoscopic colours" in _names(us)
    assert "echo pattern" in _names(us)

    other = compute_findings(record(rgb), m, case_id="o")  # plain file, auto
    assert other.modality == "other"
    assert other.colours is None and other.ultrasound is None and other.ct is None
    assert "--modality" in " ".join(nm.reason for nm in other.not_measured)

    gray = compute_findings(record(rgb[..., 1].copy()), m, case_id="g", modality="dermoscopy")
    assert gray.colours is None and "no colour channels" in " ".join(nm.reason for nm in gray.not_measured)

    with pytest.raises(InputError, match="unknown modality"):
        compute_findings(record(rgb), m, case_id="x", modality="xray")


def test_ct_volume_findings(volume) -> None:
    hu = np.full((12, 40, 40), -850.0)
    zz, yy, xx = np.mgrid[:12, :40, :40]
    # Ellipsoid nodule, radius 5 slices (1.25 mm) by 10 px (0.7 mm) → about 14 mm across in-plane.
    ball = ((zz - 6) / 4.0) ** 2 + ((yy - 20) / 10.0) ** 2 + ((xx - 20) / 10.0) ** 2 <= 1
    hu[ball] = 30.0
    f = compute_findings(volume(hu), ball, case_id="n1", modality="auto")
    assert f.modality == "ct"
    assert f.lesion.count == 1 and f.lesion.unit == "mm" and f.lesion.slice_index == 6
    assert f.lesion.longest_diameter == pytest.approx(21 * 0.7, abs=0.8)
    assert f.ct is not None and f.ct.mean_hu == 30.0
    assert f.ct.volume_mm3 == pytest.approx(ball.sum() * 0.7 * 0.7 * 1.25, rel=1e-3)
    assert f.ct.size_category == ">8 mm"
    assert f.pixel_spacing_mm == (1.25, 0.7, 0.7)
    text = findings_text(f)
    assert "HU" in text and "Fleischner" in text and "mm³" in text


def test_eight_bit_ct_picture_has_no_hu(record) -> None:
    m = np.zeros((50, 50), bool)
    m[10:20, 10:20] = True
    f = compute_findings(record(np.zeros((50, 50), np.uint8), spacing=(0.5, 0.5)), m, case_id="c", modality="ct")
    assert f.ct is None
    assert "attenuation (HU)" in _names(f)


def test_empty_mask_says_nothing_was_measured(record) -> None:
    f = compute_findings(record(np.zeros((50, 50), np.uint8)), np.zeros((50, 50), bool), case_id="e",
                         modality="ultrasound")
    assert f.lesion is None and f.ultrasound is None
    assert "all lesion findings" in _names(f)
    assert "No lesion was found" in findings_text(f)


def test_mask_shape_mismatch(record) -> None:
    with pytest.raises(InputError, match="does not match"):
        compute_findings(record(np.zeros((50, 50), np.uint8)), np.zeros((40, 50), bool), case_id="e")


def test_report_record_json_round_trip_is_stable(record, disc, to_rgb) -> None:
    m = disc((120, 160), 40)
    rgb = np.empty((120, 160, 3), np.uint8)
    rgb[:] = to_rgb((72.0, 14.0, 20.0))
    rgb[m] = to_rgb((63.0, 18.0, 29.0))
    dx = Diagnosis("melanoma", (("melanoma", 0.8), ("nevus", 0.2)), 0.8, model="xgb")
    seg = SegmentationInfo("records/a.json", "ok", 0.91, "default", "pigmented lesion")
    f = compute_findings(record(rgb), m, case_id="a", modality="dermoscopy", segmentation=seg, diagnosis=dx)
    rec = ReportRecord(SCHEMA_VERSION, f, findings_text(f), None, LlmOutcome("not_configured"))
    text = rec.to_json()
    back = ReportRecord.from_json(text)
    assert back == rec
    assert back.to_json() == text
    raw = json.loads(text)
    assert raw["schema_version"] == SCHEMA_VERSION
    assert list(raw) == ["schema_version", "findings", "template_text", "prose", "llm", "generated_by"]
    assert raw["findings"]["diagnosis"]["malignant_probability"] == 0.8
    assert raw["findings"]["segmentation"]["reliability"] == 0.91
    with pytest.raises(ValueError, match="schema version"):
        ReportRecord.from_json(text.replace(f'"schema_version": "{SCHEMA_VERSION}"', '"schema_version": "9.0"'))
    with pytest.raises(ValueError):
        ReportRecord.from_json("[1, 2]")
    with pytest.raises((ValueError, KeyError)):
        from_dict(Diagnosis, {"label": "x"})

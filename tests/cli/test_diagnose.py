"""``radvlsm diagnose`` end to end on the sample images with their boxes, with a head trained here on a few
PH2 cases (CliRunner; output holds stdout and stderr)."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from radvlsm.cli.app import app
from radvlsm.errors import ConfigError
from radvlsm.fusion.head import DiagnosisHead, HeadConfig

pytestmark = pytest.mark.shared_data

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
#: A segmenter spec for these tests other than the embedded default (e.g. a training run's folder).
SEGMENTER_ENV = "RADVLSM_TEST_SEGMENTER"
COLUMNS = ["case_id", "label", "p_common_nevus", "p_atypical_nevus", "p_melanoma", "malignant_probability", "mask",
           "reliability", "status"]


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["diagnose", *args])
    return result.exit_code, result.output


def _squeeze(text: str) -> str:
    return "".join(text.split())


@pytest.fixture(scope="module")
def segmenter_spec() -> str:
    """The trained segmenter: the embedded default, or ``$RADVLSM_TEST_SEGMENTER``."""
    from radvlsm.stage2_segment.build import load_segmenter

    spec = os.environ.get(SEGMENTER_ENV, "default")
    try:
        load_segmenter(spec)
    except ConfigError as exc:
        pytest.skip(f"no trained segmenter ({exc}); set {SEGMENTER_ENV} to a model folder")
    return spec


@pytest.fixture(scope="module")
def head_dir(ph2_root: Path, segmenter_spec: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A diagnosis head trained by the recipe on 12 PH2 cases with the test segmenter."""
    import torch

    from radvlsm.data.cases import read_labels
    from radvlsm.data.splits import ph2_folds
    from radvlsm.fusion.train import PH2_CLASSES, DiagnoserConfig, train_diagnoser
    from radvlsm.stage2_segment.build import load_segmenter

    torch.set_num_threads(1)
    folds = ph2_folds().assignment
    labels = read_labels(ph2_root / "labels.csv")
    cases: list[str] = []  # two cases per class from each of folds 0 and 1
    for fold in ("0", "1"):
        for cls in PH2_CLASSES:
            cases += sorted(c for c, f in folds.items() if f == fold and labels[c]["diagnosis"] == cls)[:2]
    cfg = DiagnoserConfig(head=HeadConfig(k_best=8, n_estimators=15, calibration_folds=2, threads=1), n_boot=50,
                          cases=tuple(cases), ablations=(("fused", ("radiomics", "visual", "colour")),))
    report = train_diagnoser(ph2_root.parent, tmp_path_factory.mktemp("head"), load_segmenter(segmenter_spec), cfg,
                             segmenter_name=segmenter_spec)
    return report.final_dir


def test_diagnose_samples_from_boxes(head_dir: Path, segmenter_spec: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = _run(str(SAMPLES / "images"), "-o", str(out), "--boxes", str(SAMPLES / "boxes.csv"),
                        "--head", str(head_dir), "--model", segmenter_spec, "--threads", "1")
    assert code == 0, output
    with (out / "diagnoses.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == COLUMNS
        rows = {r["case_id"]: r for r in reader}
    images = sorted(p.stem for p in (SAMPLES / "images").iterdir())
    assert sorted(rows) == images  # every input has a row, PH2 or not
    for cid in ("cju0rx1idathl0835detmsp84", "bus_0007-l"):  # a polyp and a breast ultrasound image
        assert cid in rows
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert {"IMD009", "IMD019", "IMD061"} <= {r["case_id"] for r in ok}
    for r in rows.values():
        if r["status"] != "ok":
            assert r["label"] == "" and r["p_melanoma"] == ""  # never a guess without a lesion
            continue
        probs = [float(r[c]) for c in COLUMNS[2:5]]
        assert r["label"] in ("common_nevus", "atypical_nevus", "melanoma")
        assert sum(probs) == pytest.approx(1.0, abs=2e-3)
        assert float(r["malignant_probability"]) == pytest.approx(float(r["p_melanoma"]), abs=1e-4)
        assert (out / r["mask"]).is_file()
    assert (out / "results.csv").is_file() and (out / "records" / "IMD009.json").is_file()
    assert '"diagnosis": {' in (out / "records" / "IMD009.json").read_text()


def test_diagnose_refuses_bad_options(tmp_path: Path) -> None:
    images, out = str(SAMPLES / "images"), str(tmp_path / "out")
    code, output = _run(images, "-o", out, "--boxes", str(SAMPLES / "boxes.csv"), "--prompt", "lesion")
    assert code == 2 and "either--boxesor--prompt" in _squeeze(output)
    code, output = _run(images, "-o", out, "--top-k", "0")
    assert code == 2 and "--top-k" in output
    code, output = _run(images, "-o", out, "--prompt", "   ")
    assert code == 2 and "empty" in output
    code, output = _run(images, "--boxes", str(SAMPLES / "boxes.csv"))
    assert code == 2 and "--out" in output
    assert not (tmp_path / "out").exists()


def test_diagnose_names_a_missing_head(segmenter_spec: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-head"
    code, output = _run(str(SAMPLES / "images"), "-o", str(tmp_path / "out"), "--boxes",
                        str(SAMPLES / "boxes.csv"), "--model", segmenter_spec, "--head", str(missing))
    assert code == 2 and "head.json" in output and str(missing.name) in output


def test_diagnose_refuses_a_head_of_another_segmenter(head_dir: Path, tmp_path: Path) -> None:
    from radvlsm.stage2_segment.build import build_from_config, save_segmenter
    from radvlsm.stage2_segment.config import SegmenterConfig

    small = SegmenterConfig(image_size=64, embed_dim=32, encoder_channels=(8, 16, 16, 32), encoder_blocks=(1, 1, 1),
                            decoder_mlp_dim=64, decoder_heads=4)
    other = save_segmenter(build_from_config(small), tmp_path / "small-segmenter")
    code, output = _run(str(SAMPLES / "images"), "-o", str(tmp_path / "out"), "--boxes",
                        str(SAMPLES / "boxes.csv"), "--model", str(other), "--head", str(head_dir))
    assert DiagnosisHead.load(head_dir).segmenter_fingerprint  # the recipe records its segmenter
    assert code == 2 and "segmenterwithfingerprint" in _squeeze(output)
    # a head that records no segmenter (older heads): still refused when its visual features cannot fit
    unrecorded = tmp_path / "unrecorded-head"
    shutil.copytree(head_dir, unrecorded)
    meta = json.loads((unrecorded / "head.json").read_text(encoding="utf-8"))
    meta["segmenter_fingerprint"] = ""
    (unrecorded / "head.json").write_text(json.dumps(meta), encoding="utf-8")
    code, output = _run(str(SAMPLES / "images"), "-o", str(tmp_path / "out"), "--boxes",
                        str(SAMPLES / "boxes.csv"), "--model", str(other), "--head", str(unrecorded))
    assert any(n.startswith("visual_") for n in DiagnosisHead.load(head_dir).feature_names)
    assert code == 2 and "readsvisualfeaturesupto" in _squeeze(output) and "gives64" in _squeeze(output)


def test_a_shipped_head_is_refused_with_another_segmenter(tmp_path: Path) -> None:
    """The ultrasound head's features are of the ultrasound segmenter: with the default one it would label skin
    lesions from features it never saw; it records its segmenter, and diagnose refuses the pair before any work."""
    for args in (("--head", "ultrasound"), ("--model", "default", "--head", "ct")):
        code, output = _run(str(SAMPLES / "images"), "-o", str(tmp_path / "out"), "--boxes",
                            str(SAMPLES / "boxes.csv"), "--modality", "dermoscopy", *args)
        assert code == 2 and "trainedonthemasksandvisualfeaturesofthesegmenterwithfingerprint" in _squeeze(output)
    assert not (tmp_path / "out" / "records").exists() or not any((tmp_path / "out" / "records").iterdir())


def test_default_head_diagnoses_skin_only(tmp_path: Path) -> None:
    """The shipped heads: the PH2 head labels the dermoscopy samples and leaves the polyps unlabelled; the grey
    ultrasound samples go to the ultrasound models and head (benign / malignant)."""
    from radvlsm.fusion.predictor import EMBEDDED_HEADS
    from radvlsm.stage1_localize.build import EMBEDDED_LOCALIZERS

    for name in ("default", "ultrasound"):
        if not (EMBEDDED_HEADS[name] / "head.json").is_file() or not (
                EMBEDDED_LOCALIZERS[name] / "model.safetensors").is_file():
            pytest.skip(f"the embedded {name} head or localizer is missing")
    out = tmp_path / "out"
    code, output = _run(str(SAMPLES / "images"), "-o", str(out), "--boxes", str(SAMPLES / "boxes.csv"))
    assert code == 0, output
    with (out / "diagnoses.csv").open(newline="") as fh:
        rows = {r["case_id"]: r for r in csv.DictReader(fh)}
    with (SAMPLES / "labels.csv").open(newline="") as fh:
        truth = {r["case_id"]: r for r in csv.DictReader(fh)}
    for cid, t in truth.items():
        if t["dataset"] == "ph2":
            # (the head was fitted on every PH2 case, these included: its correctness is measured by the
            # cross-validation of radvlsm train diagnoser, not here)
            r = rows[cid]
            assert r["status"] == "ok" and r["label"] in ("common_nevus", "atypical_nevus", "melanoma"), cid
            total = sum(float(r[f"p_{c}"]) for c in ("common_nevus", "atypical_nevus", "melanoma"))
            assert abs(total - 1) < 1e-3 and float(r["malignant_probability"]) == float(r["p_melanoma"])
        elif t["dataset"] == "bus-bra":  # the ultrasound head: benign or malignant, or nothing if not a mass
            r = rows[cid]
            if r["status"] == "ok":
                assert r["label"] in ("benign", "malignant") and r["p_melanoma"] == "", cid
                assert float(r["p_benign"]) + float(r["p_malignant"]) == pytest.approx(1.0, abs=2e-3)
            else:
                assert r["label"] == "" and r["status"] in ("out_of_domain", "not_found"), cid
        else:  # polyps: a mask, but no dermoscopy label
            assert rows[cid]["label"] == "" and rows[cid]["status"] in ("out_of_domain", "not_found"), cid
    assert sum(r["status"] == "out_of_domain" for r in rows.values()) >= 2
    # a rerun does nothing: out_of_domain cases count as done
    code, output = _run(str(SAMPLES / "images"), "-o", str(out), "--boxes", str(SAMPLES / "boxes.csv"))
    assert code == 0 and "8alreadydone" in _squeeze(output)


def test_ct_samples_of_the_readme(tmp_path: Path) -> None:
    """The README's CT command on ``data/samples/ct``: both nodules segmented (Dice against the experts' masks)
    and given a diagnosis, one row per nodule."""
    from radvlsm.fusion.predictor import EMBEDDED_HEADS
    from radvlsm.io import read_image, read_mask
    from radvlsm.metrics.segmentation import dice

    if not (EMBEDDED_HEADS["ct"] / "head.json").is_file():
        pytest.skip("the embedded CT diagnosis head is not shipped")
    ct = SAMPLES / "ct"
    out = tmp_path / "ct"
    code, output = _run(str(ct / "images"), "-o", str(out), "--points", str(ct / "points.csv"))
    assert code == 0, output
    with (out / "diagnoses.csv").open(newline="") as fh:
        rows = {r["case_id"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"LIDC-IDRI-0043_R_2_n1", "LIDC-IDRI-0043_R_3_n1"}
    assert all(r["status"] == "ok" and r["label"] in ("benign", "malignant") for r in rows.values())
    for case in ("LIDC-IDRI-0043_R_2", "LIDC-IDRI-0043_R_3"):
        vol = read_image(ct / "images" / f"{case}.nii.gz")
        assert dice(read_mask(out / "masks" / f"{case}.nii.gz", like=vol),
                    read_mask(ct / "masks" / f"{case}.nii.gz", like=vol)) > 0.75, case

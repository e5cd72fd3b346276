"""``radvlsm diagnose --executor ray`` on a real local Ray (2 CPUs, 2 worker actors) with the embedded models, on
the six colour sample images and their boxes: the same diagnoses.csv as the local executor, every study exactly
once when a worker actor is killed mid-run, and a rerun of a finished job does no work."""

from __future__ import annotations

import csv
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from radvlsm.cli.app import app
from radvlsm.cli.segment import ModelChoice, PipelineSpec
from radvlsm.fusion.predictor import DEFAULT_HEAD_DIR
from radvlsm.pipeline.executor import ACTOR_PREFIX, RayOptions, absolute_items, run_ray
from radvlsm.pipeline.inputs import discover_inputs
from radvlsm.pipeline.prompts import read_boxes_csv
from radvlsm.pipeline.segment import BoxFilePrompts, write_summaries
from radvlsm.stage1_localize.build import DEFAULT_WEIGHTS_DIR as LOCALIZER_DIR
from radvlsm.stage2_segment.build import DEFAULT_WEIGHTS_DIR as SEGMENTER_DIR

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
CASES = ("IMD009", "IMD019", "IMD061", "cju0rx1idathl0835detmsp84", "cju0s690hkp960855tjuaqvv0",
         "cju15l5ubz9yh0855b3ivdpse")  # colour images: the default models; the PH2 head diagnoses three


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A local Ray of 2 CPUs for the module; the command joins it instead of starting its own."""
    for d in (SEGMENTER_DIR, LOCALIZER_DIR):
        if not (d / "model.safetensors").is_file():
            pytest.skip(f"an embedded default model is not in {d}")
    if not (DEFAULT_HEAD_DIR / "head.json").is_file():
        pytest.skip(f"the embedded default diagnosis head is not in {DEFAULT_HEAD_DIR}")
    ray = pytest.importorskip("ray", reason="the Ray executor needs pip install 'radvlsm[ray]'")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    images = folder / "images"
    images.mkdir()
    for case in CASES:
        shutil.copy(SAMPLES / "images" / f"{case}.jpg", images)
    boxes = folder / "boxes.csv"
    lines = (SAMPLES / "boxes.csv").read_text().splitlines()
    boxes.write_text("\n".join([lines[0], *(r for r in lines[1:] if r.split(".")[0] in CASES)]) + "\n")
    return images, boxes


def _diagnose(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["diagnose", "--batch-size", "2", "--threads", "1", *args])
    return result.exit_code, " ".join(result.output.split())  # rich wraps long lines


@pytest.fixture(scope="module")
def local_out(inputs: tuple[Path, Path], ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    images, boxes = inputs
    out = tmp_path_factory.mktemp("local") / "out"
    code, output = _diagnose(str(images), "-o", str(out), "--boxes", str(boxes))
    assert code == 0, output
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def ray_run(inputs: tuple[Path, Path], ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[Path, tuple[str, ...], str]:
    """The Ray executor's output folder, the arguments and the command's output."""
    images, boxes = inputs
    out = tmp_path_factory.mktemp("ray") / "out"
    args = (str(images), "-o", str(out), "--boxes", str(boxes), "--executor", "ray", "--workers", "2")
    code, output = _diagnose(*args)
    assert code == 0, output
    return out, args, output


def test_ray_gives_the_local_diagnoses(ray_run: tuple[Path, tuple[str, ...], str], local_out: Path) -> None:
    out, _, output = ray_run
    assert "2 Ray worker(s)" in output and "6 image(s) segmented" in output
    assert (out / "diagnoses.csv").read_text() == (local_out / "diagnoses.csv").read_text()
    local = _rows(local_out / "diagnoses.csv")
    assert [r["case_id"] for r in local] == sorted(CASES)
    assert sum(r["status"] == "ok" for r in local) == 3  # PH2's; the polyps are out_of_domain
    drop_input = [{k: v for k, v in r.items() if k != "input"} for r in _rows(out / "results.csv")]
    assert drop_input == [{k: v for k, v in r.items() if k != "input"} for r in _rows(local_out / "results.csv")]
    assert _rows(out / "errors.csv") == []


def test_a_rerun_of_a_finished_job_does_no_work(ray_run: tuple[Path, tuple[str, ...], str]) -> None:
    out, args, _ = ray_run
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.parent != out}
    code, output = _diagnose(*args)
    assert code == 0, output
    assert "6 image(s) already done" in output and "0 image(s) segmented" in output
    assert "Ray worker" not in output  # nothing to do: no worker started, no model loaded
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.parent != out} == stamps


def test_a_killed_worker_still_gives_every_study_once(inputs: tuple[Path, Path], local_out: Path, ray_cluster: Any,
                                                       tmp_path: Path) -> None:
    images, boxes = inputs
    out = tmp_path / "out"
    items, _ = discover_inputs([images])
    spec = PipelineSpec(None, ModelChoice(), BoxFilePrompts(read_boxes_csv(boxes)), None, None, "cpu", 2, True,
                        out, threads=1)
    killed: list[str] = []
    progress: list[int] = []

    def kill_a_worker(n: int) -> None:
        """After the first batch: SIGKILL the first worker, which still holds at least one batch."""
        progress.append(n)
        if not killed:
            name = sorted(a for a in ray_cluster.util.list_named_actors() if a.startswith(ACTOR_PREFIX))[0]
            pid = ray_cluster.get(ray_cluster.get_actor(name).pid.remote())
            os.kill(pid, signal.SIGKILL)
            killed.append(name)

    totals = run_ray(spec, absolute_items(items), batch_size=2, options=RayOptions(workers=2),
                     on_progress=kill_a_worker)
    assert killed and totals.workers_lost == 1
    assert sum(progress) == len(CASES)
    # every study once: written by a live worker, or finished by the killed one before it died (found done)
    assert len(totals.written) == len(set(totals.written))
    assert not set(totals.written) & set(totals.found_done)
    assert sorted((*totals.written, *totals.found_done)) == sorted(CASES)
    assert not totals.problems
    assert sorted(p.stem for p in (out / "records").glob("*.json")) == sorted(CASES)
    assert not list(out.rglob(".*.tmp*"))  # no half-written file
    write_summaries(out, totals.problems, diagnose=True)
    assert (out / "diagnoses.csv").read_text() == (local_out / "diagnoses.csv").read_text()
    assert not [a for a in ray_cluster.util.list_named_actors() if a.startswith(ACTOR_PREFIX)]  # all stopped


def test_ray_option_errors(inputs: tuple[Path, Path], ray_cluster: Any, tmp_path: Path) -> None:
    images, boxes = inputs
    base = (str(images), "-o", str(tmp_path / "out"), "--boxes", str(boxes))
    code, output = _diagnose(*base, "--workers", "2")
    assert code == 2 and "--workers" in output and "only with --executor ray" in output
    code, output = _diagnose(*base, "--executor", "spark")
    assert code == 2 and "'spark' is not one of local, ray" in output
    code, output = _diagnose(*base, "--executor", "ray", "--workers", "3")
    assert code == 2 and "--workers 3" in output and "2 CPU(s)" in output and "at most 2" in output


def test_ct_studies_on_ray_give_the_local_diagnoses(ray_cluster: Any, lidc_root: Path, ibsi_phantom_root: Path,
                                                     tmp_path: Path) -> None:
    """CT studies (NIfTI volumes and a DICOM series, nodules from --points) through the Ray workers: the same
    per-nodule diagnoses, lesions and DICOM SEG as in this process."""
    from radvlsm.fusion.predictor import EMBEDDED_HEADS
    from radvlsm.stage2_segment.build import EMBEDDED_MODELS

    if "ct" not in EMBEDDED_HEADS or not (EMBEDDED_HEADS["ct"] / "head.json").is_file():
        pytest.skip("the embedded CT diagnosis head is not shipped")
    if not (EMBEDDED_MODELS["ct"] / "model.safetensors").is_file():
        pytest.skip("the embedded CT segmenter is not shipped")
    studies = tmp_path / "studies"
    studies.mkdir()
    with (lidc_root / "labels.csv").open(newline="") as fh:
        rows = [r for _, r in zip(range(2), csv.DictReader(fh), strict=False)]
    lines = ["study,x,y,z,diameter_mm", "image,-74.48,16.33,-18.74,90"]
    for r in rows:
        shutil.copy(lidc_root / r["image"], studies / f"{r['case_id']}.nii.gz")
        lines.append(f"{r['case_id']},{r['coordX']},{r['coordY']},{r['coordZ']},{r['diameter_mm']}")
    shutil.copytree(ibsi_phantom_root / "dicom" / "image", studies / "phantom" / "image")
    points = tmp_path / "points.csv"
    points.write_text("\n".join(lines) + "\n", encoding="utf-8")
    outs = {}
    for kind in ("local", "ray"):
        out = tmp_path / kind
        extra = ("--executor", "ray", "--workers", "2") if kind == "ray" else ()
        code, output = _diagnose(str(studies), "-o", str(out), "--points", str(points), *extra)
        assert code == 0, output
        outs[kind] = out
    local, ray = outs["local"], outs["ray"]
    assert (ray / "diagnoses.csv").read_text() == (local / "diagnoses.csv").read_text()
    assert (ray / "lesions.csv").read_text() == (local / "lesions.csv").read_text()
    assert sorted(r["case_id"] for r in _rows(local / "diagnoses.csv")) == sorted(
        [f"{r['case_id']}_n1" for r in rows] + ["image_n1"])
    assert all(r["label"] in ("benign", "malignant") for r in _rows(local / "diagnoses.csv"))
    assert (ray / "seg" / "image.dcm").is_file() and _rows(ray / "errors.csv") == []

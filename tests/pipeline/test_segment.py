"""The per-study work both executors share (StudyWork), on the sample images with their boxes: what is done is
left alone (a retried batch), a cine is done only when its first frame's record is written (last), bad inputs
are listed and the batch goes on, and the CSVs come from the records on disk."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from radvlsm.pipeline.inputs import InputItem, discover_inputs
from radvlsm.pipeline.outputs import CaseRecord, OutputFolder
from radvlsm.pipeline.prompts import read_boxes_csv
from radvlsm.pipeline.segment import (
    BoxFilePrompts,
    StudyWork,
    forget_studies,
    plan_studies,
    run_segment,
    study_done,
)
from radvlsm.stage2_segment.build import DEFAULT_WEIGHTS_DIR, load_segmenter
from radvlsm.stage2_segment.predictor import SegmenterPredictor

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
COLOUR = ("IMD009", "IMD019", "cju0rx1idathl0835detmsp84")


@pytest.fixture(scope="module")
def predictor() -> SegmenterPredictor:
    if not (DEFAULT_WEIGHTS_DIR / "model.safetensors").is_file():
        pytest.skip(f"the embedded default segmenter is not in {DEFAULT_WEIGHTS_DIR}")
    import torch

    torch.set_num_threads(2)
    return SegmenterPredictor(load_segmenter("default"))


@pytest.fixture(scope="module")
def prompts() -> BoxFilePrompts:
    return BoxFilePrompts(read_boxes_csv(SAMPLES / "boxes.csv"))


def _items(*cases: str) -> list[InputItem]:
    return [InputItem(c, SAMPLES / "images" / f"{c}.jpg") for c in cases]


def _work(out: Path, predictor: SegmenterPredictor, prompts: BoxFilePrompts) -> StudyWork:
    return StudyWork(out, predictor, prompts, model_name="default")


def test_a_retried_batch_does_only_what_is_missing(tmp_path: Path, predictor: SegmenterPredictor,
                                                    prompts: BoxFilePrompts) -> None:
    work = _work(tmp_path / "out", predictor, prompts)
    first = work.process(_items(COLOUR[0]))  # a worker that died after the first study of its batch
    assert first.written == (COLOUR[0],) and first.studies == 1
    record = work.out.record_path(COLOUR[0])
    stamp = record.stat().st_mtime_ns
    again = work.process(_items(*COLOUR))  # the whole batch, retried elsewhere
    assert again.studies == 3
    assert again.found_done == (COLOUR[0],)
    assert again.written == COLOUR[1:]
    assert record.stat().st_mtime_ns == stamp  # written once
    assert sorted(p.stem for p in work.out.records.glob("*.json")) == sorted(COLOUR)
    assert not list(work.out.root.rglob(".*.tmp*"))  # atomic writes leave no temporary file


def test_bad_inputs_are_listed_and_the_batch_goes_on(tmp_path: Path, predictor: SegmenterPredictor,
                                                      prompts: BoxFilePrompts) -> None:
    truncated = tmp_path / "IMD061.jpg"
    data = (SAMPLES / "images" / "IMD061.jpg").read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    nobox = tmp_path / "nobox.png"
    shutil.copy(SAMPLES / "images" / "IMD019.jpg", tmp_path / "nobox.jpg")
    cv2.imwrite(str(nobox), cv2.imread(str(tmp_path / "nobox.jpg")))
    items = [*_items("IMD009"), InputItem("IMD061", truncated), InputItem("nobox", nobox)]
    outcome = _work(tmp_path / "out", predictor, prompts).process(items)
    assert outcome.written == ("IMD009",)
    reasons = {p.path.name: p.reason for p in outcome.problems}
    assert set(reasons) == {"IMD061.jpg", "nobox.png"}
    assert "truncated" in reasons["IMD061.jpg"].lower()
    assert "no box for this image" in reasons["nobox.png"] and "boxes.csv" in reasons["nobox.png"]


def test_a_cine_is_done_when_its_first_frame_is(tmp_path: Path, predictor: SegmenterPredictor,
                                                us_cine: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    img = cv2.imread(str(SAMPLES / "images" / "bus_0009-l.jpg"), cv2.IMREAD_GRAYSCALE)
    cine = us_cine(tmp_path / "cine.dcm", np.stack([img, np.roll(img, 2, axis=1), np.roll(img, 4, axis=1)]))
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("image,x0,y0,x1,y1\ncine,16,29,126,107\n")
    order: list[str] = []
    write_record = OutputFolder.write_record

    def spy(self: OutputFolder, record: CaseRecord) -> None:
        order.append(record.case_id)
        write_record(self, record)

    monkeypatch.setattr(OutputFolder, "write_record", spy)
    work = StudyWork(tmp_path / "out", predictor, BoxFilePrompts(read_boxes_csv(boxes)), model_name="default")
    outcome = work.process([InputItem("cine", cine)])
    assert sorted(outcome.written) == ["cine_f0000", "cine_f0001", "cine_f0002"]
    assert order == ["cine_f0001", "cine_f0002", "cine_f0000"]  # the first frame marks the study done: last
    assert study_done(work.out, "cine", diagnose=False)
    work.out.record_path("cine_f0000").unlink()  # killed before the last record: the cine is redone
    assert not study_done(work.out, "cine", diagnose=False)
    assert plan_studies(work.out.root, [InputItem("cine", cine)], diagnose=False, overwrite=False)[0]


def test_overwrite_forgets_the_records_of_the_studies_only(tmp_path: Path, predictor: SegmenterPredictor,
                                                          prompts: BoxFilePrompts) -> None:
    out = tmp_path / "out"
    work = _work(out, predictor, prompts)
    work.process(_items(*COLOUR[:2]))
    folder = OutputFolder(out)
    for name in ("IMD009_f0000", "IMD009_f0012", "IMD009_final"):  # frames of IMD009, and another case
        shutil.copy(folder.record_path("IMD009"), folder.record_path(name))
    todo, done = plan_studies(out, _items(*COLOUR), diagnose=False, overwrite=False)
    assert [it.case_id for it in todo] == [COLOUR[2]] and [it.case_id for it in done] == list(COLOUR[:2])
    todo, done = plan_studies(out, _items(*COLOUR), diagnose=False, overwrite=True)
    assert len(todo) == 3 and not done and folder.record_path("IMD009").is_file()  # planning only reads
    forget_studies(out, _items("IMD009"))
    assert sorted(p.stem for p in folder.records.glob("*.json")) == ["IMD009_final", "IMD019"]
    assert folder.mask_path("IMD009").is_file()  # the mask stays until it is rewritten


def test_diagnose_redoes_studies_segmented_without_a_diagnosis(tmp_path: Path, predictor: SegmenterPredictor,
                                                               prompts: BoxFilePrompts) -> None:
    work = _work(tmp_path / "out", predictor, prompts)
    work.process(_items("IMD009"))
    assert study_done(work.out, "IMD009", diagnose=False)
    assert not study_done(work.out, "IMD009", diagnose=True)


def test_run_segment_assembles_the_csvs_and_a_rerun_does_nothing(tmp_path: Path, predictor: SegmenterPredictor,
                                                                 prompts: BoxFilePrompts) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for case in COLOUR:
        shutil.copy(SAMPLES / "images" / f"{case}.jpg", images)
    items, _ = discover_inputs([images])
    out = tmp_path / "out"
    seen: list[int] = []
    summary = run_segment(items, out, predictor, prompts, model_name="default", batch_size=2,
                          on_progress=seen.append)
    assert summary.written == 3 and summary.skipped == 0 and not summary.failed and sum(seen) == 3
    with (out / "results.csv").open(newline="") as fh:
        assert sorted(r["image"] for r in csv.DictReader(fh)) == sorted(COLOUR)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "records").iterdir()}
    summary = run_segment(items, out, predictor, prompts, model_name="default", batch_size=2)
    assert summary.written == 0 and summary.skipped == 3
    assert {p.name: p.stat().st_mtime_ns for p in (out / "records").iterdir()} == stamps


def test_the_diagnosis_gate_asks_for_the_trained_boundary_not_the_lesion_threshold() -> None:
    """A localizer whose ``itm_threshold`` is raised (to leave images without a lesion unprompted) still admits
    to the head every image that matches the head's kind of lesion at the trained boundary."""
    import dataclasses

    from radvlsm.fusion.predictor import Diagnoser, load_head
    from radvlsm.io import read_image, to_display_rgb
    from radvlsm.pipeline.segment import DiagnosisStep
    from radvlsm.stage1_localize.build import load_localizer
    from radvlsm.stage1_localize.config import TRAINED_ITM_THRESHOLD
    from radvlsm.stage1_localize.predictor import LocalizerPredictor
    from radvlsm.stage1_localize.text import TextEncoder

    images = sorted((SAMPLES / "images").glob("bus_*.jpg"))
    assert len(images) == 2
    seg = SegmenterPredictor(load_segmenter("ultrasound"))
    seg.set_images([to_display_rgb(read_image(p)) for p in images])
    strict = load_localizer("ultrasound")
    strict.config = dataclasses.replace(strict.config, itm_threshold=0.99)
    gate = LocalizerPredictor(strict, TextEncoder())
    found = gate.locate_on(seg, "breast mass", 1)
    itm = [r.itm_probability for r in found]
    assert not all(r.found for r in found)  # one of the two breast masses falls below the strict threshold ...
    step = DiagnosisStep(Diagnoser(load_head("ultrasound")), "ultrasound", gate, "breast mass")
    assert step.admits(seg) == [p >= TRAINED_ITM_THRESHOLD for p in itm] == [True, True]  # ... the gate takes both

"""The executors' bookkeeping: both cut the same batches, the local executor runs StudyWork over them, and a
batch whose Ray worker keeps dying is split and, study by study, given up with a reason (the Ray executor on a
real cluster is in tests/cli/test_diagnose_ray.py)."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest

from radvlsm.errors import ConfigError
from radvlsm.pipeline.executor import (
    RunTotals,
    _Batch,
    _check_reachable,
    _requeue,
    absolute_items,
    batches,
    run_local,
)
from radvlsm.pipeline.inputs import InputItem, discover_inputs
from radvlsm.pipeline.prompts import read_boxes_csv
from radvlsm.pipeline.segment import BatchOutcome, BoxFilePrompts, StudyWork
from radvlsm.stage2_segment.build import DEFAULT_WEIGHTS_DIR, load_segmenter
from radvlsm.stage2_segment.predictor import SegmenterPredictor

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"


def _sample_items() -> list[InputItem]:
    items, problems = discover_inputs([SAMPLES / "images"])
    assert not problems
    return items


def test_batches_are_cut_in_order() -> None:
    items = _sample_items()
    cut = batches(items, 3)
    assert [len(b) for b in cut] == [3, 3, 2]
    assert [it for b in cut for it in b] == items
    assert batches([], 4) == []
    with pytest.raises(ValueError, match="batch_size"):
        batches(items, 0)


def test_paths_for_workers_are_absolute() -> None:
    rel = [InputItem("IMD009", Path("data/samples/images/IMD009.jpg"))]
    [item] = absolute_items(rel)
    assert item.path.is_absolute() and item.case_id == "IMD009" and item.path.name == "IMD009.jpg"


def test_totals_add_outcomes() -> None:
    totals = RunTotals().add(BatchOutcome(2, ("a",), ("b",))).add(BatchOutcome(1, ("c",)))
    assert totals.written == ("a", "c") and totals.found_done == ("b",) and totals.workers_lost == 0


def test_a_batch_that_keeps_killing_workers_is_split_then_given_up() -> None:
    items = _sample_items()[:3]
    queue: deque[_Batch] = deque()
    progress: list[int] = []
    totals = _requeue(_Batch(tuple(items)), queue, RunTotals(), progress.append, max_attempts=2)
    assert [b.attempt for b in queue] == [1]  # retried whole first
    totals = _requeue(queue.popleft(), queue, totals, progress.append, max_attempts=2)
    assert [b.items for b in queue] == [(it,) for it in items]  # then study by study
    assert all(b.attempt == 0 for b in queue)
    totals = _requeue(queue.popleft(), queue, totals, progress.append, max_attempts=2)
    assert queue[0].items == (items[0],) and queue[0].attempt == 1
    totals = _requeue(queue.popleft(), queue, totals, progress.append, max_attempts=2)
    [problem] = totals.problems
    assert problem.path == items[0].path and "worker died 2 times" in problem.reason
    assert progress == [1]  # the given-up study counts as finished for the progress bar
    assert [b.items[0] for b in queue] == items[1:]


def test_local_executor_runs_every_batch(tmp_path: Path) -> None:
    if not (DEFAULT_WEIGHTS_DIR / "model.safetensors").is_file():
        pytest.skip(f"the embedded default segmenter is not in {DEFAULT_WEIGHTS_DIR}")
    items = [it for it in _sample_items() if not it.case_id.startswith("bus_")]
    work = StudyWork(tmp_path / "out", SegmenterPredictor(load_segmenter("default")),
                     BoxFilePrompts(read_boxes_csv(SAMPLES / "boxes.csv")), model_name="default")
    seen: list[int] = []
    totals = run_local(work, items, batch_size=4, on_progress=seen.append)
    assert sorted(totals.written) == sorted(it.case_id for it in items)
    assert sorted(seen) == [2, 4] and not totals.problems and not totals.found_done


@pytest.mark.parametrize(
    ("address", "reason"),
    [("127.0.0.1:1", "no Ray head node answers there"), ("headnode", "expected auto or HOST:PORT"),
     (":6379", "expected auto or HOST:PORT")],
)
def test_a_ray_address_without_a_head_node_fails_fast(address: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        _check_reachable(address, timeout_s=2)
    assert f"--ray-address {address!r}" in str(err.value) or f"--ray-address {address}" in str(err.value)
    assert reason in str(err.value)

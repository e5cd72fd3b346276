"""Throughput of ``radvlsm diagnose``: the local executor against the Ray executor with 1 and 2 workers, on this
machine, one run each.

The first N PH2 images (name order) with boxes from the experts' masks, the embedded default models (segmenter,
localizer as the domain gate, PH2 head), batches of ``--batch`` studies, each configuration on a fresh OUT:

* local: this process, ``--threads`` T torch threads (timed first and again last: other jobs on a shared machine
  come and go, and the ratios are taken to the mean of the two);
* Ray, 1 worker: a local Ray of T CPUs, one worker actor with T threads;
* Ray, 2 workers: the same Ray, two worker actors with T/2 threads each.

Reported per configuration: studies/s in the steady state (from the first batch given to the workers, models
loaded, to the last study written: what a long job sees) and end to end (with Ray's start and the models'
loading), the ratio to local, the cost of one study in core-seconds of wall time (CPUs x steady seconds /
studies) and in CPU seconds (user + system of the processes doing the work: the cost without the waiting that
other jobs on the machine cause), from which the README estimates a cluster's throughput. The diagnoses.csv of
each Ray run is compared with local's (rows that differ, labels that differ, largest probability difference).

    python benchmarks/diagnose_executors.py [--studies 64] [--batch 8] [--threads 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch

from radvlsm.cli.segment import ModelChoice, PipelineSpec
from radvlsm.data.cases import read_dataset, write_gt_boxes_csv
from radvlsm.data.paths import shared_datasets_root
from radvlsm.pipeline.executor import ACTOR_PREFIX, RayOptions, absolute_items, import_ray, run_local, run_ray
from radvlsm.pipeline.inputs import InputItem
from radvlsm.pipeline.prompts import read_boxes_csv
from radvlsm.pipeline.segment import BoxFilePrompts, write_summaries


def _inputs(n: int, tmp: Path) -> tuple[list[InputItem], Path]:
    ph2 = read_dataset(shared_datasets_root() / "ph2")
    cases = sorted(ph2.cases, key=lambda c: c.case_id)[:n]
    if len(cases) < n:
        raise SystemExit(f"PH2 has {len(cases)} cases, fewer than --studies {n}")
    boxes = write_gt_boxes_csv(cases, tmp / "boxes.csv")
    return absolute_items([InputItem(c.case_id, c.image_path) for c in cases]), boxes


def _spec(boxes: Path, out: Path, batch: int, threads: int) -> PipelineSpec:
    return PipelineSpec(None, ModelChoice(), BoxFilePrompts(read_boxes_csv(boxes)), None, None, "cpu", batch, True,
                        out, threads)


def time_local(items: list[InputItem], boxes: Path, out: Path, batch: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    work = _spec(boxes, out, batch, threads).build()
    t1, cpu1 = time.perf_counter(), _self_cpu_s()
    totals = run_local(work, items, batch_size=batch)
    t2, cpu2 = time.perf_counter(), _self_cpu_s()
    write_summaries(out, totals.problems, diagnose=True)
    return _result("local", 1, threads, len(totals.written), t2 - t1, t2 - t0, cpu2 - cpu1, len(totals.problems))


def _self_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far (/proc; the workers run on this machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_ray(items: list[InputItem], boxes: Path, out: Path, batch: int, threads: int, workers: int) -> dict:
    ray = import_ray()
    per_worker = max(1, threads // workers)
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=threads, include_dashboard=False, logging_level=logging.WARNING)
    ready: list[float] = []
    pids: list[int] = []
    cpu_at_ready: list[float] = []
    cpu_now: dict[int, float] = {}

    def on_ready() -> None:  # the workers are idle, models loaded: note their pids and CPU time so far
        ready.append(time.perf_counter())
        names = [a for a in ray.util.list_named_actors() if a.startswith(ACTOR_PREFIX)]
        pids.extend(ray.get([ray.get_actor(n).pid.remote() for n in names]))
        cpu_at_ready.append(sum(_proc_cpu_s(p) for p in pids))

    def on_progress(_: int) -> None:  # after each batch: the workers' CPU time (the last sample is the total)
        for p in pids:
            cpu_now[p] = _proc_cpu_s(p)

    try:
        totals = run_ray(_spec(boxes, out, batch, per_worker), items, batch_size=batch,
                         options=RayOptions(workers=workers, cpus_per_worker=per_worker), on_ready=on_ready,
                         on_progress=on_progress)
        t2 = time.perf_counter()
    finally:
        ray.shutdown()
    write_summaries(out, totals.problems, diagnose=True)
    return _result(f"ray, {workers} worker(s)", workers, per_worker, len(totals.written), t2 - ready[0], t2 - t0,
                   sum(cpu_now.values()) - cpu_at_ready[0], len(totals.problems))


def _result(name: str, workers: int, threads: int, n: int, steady: float, total: float, cpu: float,
            failed: int) -> dict:
    return {"executor": name, "workers": workers, "threads_per_worker": threads, "studies": n, "failed": failed,
            "steady_s": round(steady, 2), "end_to_end_s": round(total, 2),
            "steady_studies_per_s": round(n / steady, 3), "end_to_end_studies_per_s": round(n / total, 3),
            "core_s_per_study": round(workers * threads * steady / n, 3), "cpu_s_per_study": round(cpu / n, 3)}


def _compare(path: Path, local: Path) -> dict:
    """How the diagnoses differ from local's: rows, and the largest probability difference (torch's reductions
    depend on the number of threads, so 1-thread workers may differ from 2-thread local in the last digit)."""

    def read(p: Path) -> dict[str, dict[str, str]]:
        with p.open(newline="") as fh:
            return {r["case_id"]: r for r in csv.DictReader(fh)}

    a, b = read(path), read(local)
    if a.keys() != b.keys():
        return {"rows_differing_from_local": "different cases"}
    differ = [c for c in a if a[c] != b[c]]
    deltas = [abs(float(a[c][k]) - float(b[c][k])) for c in differ for k in a[c]
              if k.startswith("p_") and a[c][k] and b[c][k]]
    return {"rows_differing_from_local": len(differ), "labels_differing_from_local":
            sum(a[c]["label"] != b[c]["label"] for c in a), "max_abs_probability_difference": max(deltas, default=0.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2, help="CPUs for each configuration (this machine: 2)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        items, boxes = _inputs(args.studies, tmp)
        runs = [time_local(items, boxes, tmp / "local", args.batch, args.threads)]
        torch.set_num_threads(1)  # this process only waits while Ray runs
        for workers in (1, 2):
            out = tmp / f"ray{workers}"
            runs.append(time_ray(items, boxes, out, args.batch, args.threads, workers))
            runs[-1].update(_compare(out / "diagnoses.csv", tmp / "local" / "diagnoses.csv"))
        # local again, last: the other jobs on the machine come and go, so local is timed before and after Ray
        runs.append(time_local(items, boxes, tmp / "local_again", args.batch, args.threads))
        runs[-1]["executor"] = "local, again"
    base = (runs[0]["steady_studies_per_s"] + runs[-1]["steady_studies_per_s"]) / 2
    base_e2e = (runs[0]["end_to_end_studies_per_s"] + runs[-1]["end_to_end_studies_per_s"]) / 2
    for r in runs:
        r["steady_ratio_to_local"] = round(r["steady_studies_per_s"] / base, 3)
        r["end_to_end_ratio_to_local"] = round(r["end_to_end_studies_per_s"] / base_e2e, 3)
    import ray

    res = {"studies": args.studies, "batch": args.batch, "cpus": args.threads, "torch": torch.__version__,
           "ray": ray.__version__, "cpu": platform.processor() or platform.machine(), "runs": runs}
    print(json.dumps(res, indent=2))
    print()
    print(f"| {args.studies} PH2 studies, {args.threads} CPUs | steady studies/s | ratio | end to end studies/s "
          "| ratio | core-s / study (wall) | CPU-s / study |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in runs:
        print(f"| {r['executor']} ({r['threads_per_worker']} thread(s) each) | {r['steady_studies_per_s']:.2f} | "
              f"{r['steady_ratio_to_local']:.2f} | {r['end_to_end_studies_per_s']:.2f} | "
              f"{r['end_to_end_ratio_to_local']:.2f} | {r['core_s_per_study']:.2f} | {r['cpu_s_per_study']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()

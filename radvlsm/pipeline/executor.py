"""Executors: who runs :class:`~radvlsm.pipeline.segment.StudyWork` on which batches of studies.

* :func:`run_local` — this process: one :class:`StudyWork`, two threads (one reads a batch while the other runs
  the models on the previous one).
* :func:`run_ray` — a Ray cluster (``ray start`` on each node, or a local Ray started here): a pool of
  long-lived worker actors, each building its own :class:`StudyWork` once from a small frozen spec
  (:class:`WorkSpec`: model names and options, never pickled models) and then taking batches of studies fed
  by the driver, at most ``in_flight`` at a time each (one reading while one computes).

The executors only distribute: the per-study work, and the writing of each case's files under OUT, is
:meth:`StudyWork.process`, the same for both. Exactly-once comes from there: a case's files are written
atomically, its record last, and a worker skips the studies whose record exists; so a batch retried after its
worker died (on another worker) does only what the dead one had not finished, and a rerun after the whole
job was killed does only what is missing. The CSVs are assembled from the records at the end, by the driver.

Why actors fed by the driver and not Ray Data's ``map_batches`` with an actor pool: the unit of work is a
handful of file paths (workers read the images from shared storage and write their outputs there), so Ray
Data's block format and streaming executor add a dependency (pyarrow, pandas) and start-up time but carry
nothing; and the driver must know which batch a dead worker held, to give it to another worker, count
attempts and, if one study keeps killing workers, isolate it and list it in ``errors.csv`` — which is explicit
with actors and ``ray.wait``, and hidden inside Ray Data's retry policy with ``map_batches``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from radvlsm.errors import ConfigError, RadvlsmError
from radvlsm.pipeline.inputs import InputItem, InputProblem

if TYPE_CHECKING:
    from radvlsm.pipeline.segment import BatchOutcome, Work

log = logging.getLogger(__name__)

#: Name prefix of the worker actors (``ray.util.list_named_actors()`` finds them).
ACTOR_PREFIX = "radvlsm-study-worker-"
RAY_MISSING = "--executor ray needs Ray, which is not installed: pip install 'radvlsm[ray]'"


class WorkSpec(Protocol):
    """What a worker rebuilds its pipeline from: small, frozen, picklable (model names, options, box prompts),
    never the loaded models."""

    def build(self) -> Work: ...


@dataclass(frozen=True)
class RunTotals:
    """What an executor did with the studies it was given.

    Attributes:
        written: case ids written (one per frame for a multi-frame input).
        found_done: studies a worker found done and left alone (in a batch retried after a worker died).
        problems: studies that failed, with the reason.
        workers_lost: worker processes that died during the run (each one's batches went to another worker).
    """

    written: tuple[str, ...] = ()
    found_done: tuple[str, ...] = ()
    problems: tuple[InputProblem, ...] = ()
    workers_lost: int = 0

    def add(self, outcome: BatchOutcome) -> RunTotals:
        return replace(self, written=self.written + outcome.written,
                       found_done=self.found_done + outcome.found_done,
                       problems=self.problems + outcome.problems)


def batches(items: Sequence[InputItem], batch_size: int) -> list[list[InputItem]]:
    """``items`` in consecutive batches of ``batch_size`` (the last one shorter): both executors cut the same."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]


def run_local(
    work: Work, items: Sequence[InputItem], *, batch_size: int,
    on_progress: Callable[[int], None] | None = None,
) -> RunTotals:
    """Run ``work`` over ``items`` in this process, batch by batch; ``on_progress(n)`` after each batch with its
    number of studies."""
    totals = RunTotals()
    todo = batches(items, batch_size)
    if not todo:
        return totals
    # two threads: StudyWork reads outside its model lock, so one batch is read while the other is computed
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="radvlsm-study") as pool:
        futures = [pool.submit(work.process, b) for b in todo]
        try:
            for fut in as_completed(futures):
                outcome = fut.result()
                totals = totals.add(outcome)
                if on_progress:
                    on_progress(outcome.studies)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return totals


# ------------------------------------------------------------------------------------------------------ Ray


@dataclass(frozen=True)
class RayOptions:
    """How to run on Ray.

    Attributes:
        address: ``None`` starts a local Ray on this machine (or uses the one this process already joined);
            ``"auto"`` joins the cluster ``ray start`` runs on this machine; ``HOST:PORT`` joins that head node.
        workers: worker actors (default: as many as the cluster's CPUs allow, at ``cpus_per_worker`` each, and
            no more than there are batches).
        cpus_per_worker: CPUs each worker reserves; it runs its models on that many threads.
        gpus_per_worker: GPUs each worker reserves (``--device cuda``).
        in_flight: batches given to a worker at a time (2: it reads one while it computes the other).
        max_attempts: a batch whose worker died this often is split into single studies; a single study whose
            worker died this often is listed in ``errors.csv``.
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    in_flight: int = 2
    max_attempts: int = 3


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`ConfigError` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(RAY_MISSING) from exc
    return ray


@contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """Ray, connected: to the cluster at ``address`` (``auto``: the one ``ray start`` runs here), or a local Ray
    started for this run and stopped after it (``None``). A process already connected keeps its connection."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    if address is not None and address != "auto":
        _check_reachable(address)
    try:
        if address is None:
            log.info("starting a local Ray on this machine")
            # "local": a new instance even where `ray start` runs a cluster (that one is --ray-address auto)
            ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
        else:
            ray.init(address=address, logging_level=logging.WARNING)
    except ray.exceptions.AuthenticationError as exc:
        raise ConfigError(f"--ray-address {address}: the cluster refused this process's token; set RAY_AUTH_MODE=token "
                          "and RAY_AUTH_TOKEN to the head node's `ray get-auth-token`") from exc
    except ConnectionError as exc:
        raise ConfigError(f"--ray-address {address}: cannot connect to a Ray cluster there ({exc}); if the cluster "
                          "uses token authentication, set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to the head node's "
                          "`ray get-auth-token`") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast, with the reason, when nothing listens at ``HOST:PORT`` (Ray itself retries for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--ray-address {address!r}: expected auto or HOST:PORT (the head node's, e.g. "
                          "10.0.0.1:6379)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"--ray-address {address}: no Ray head node answers there ({exc.strerror or exc}); start one "
                          "with `ray start --head --port PORT`") from exc


class StudyActor:
    """A Ray worker: builds the pipeline once from ``spec``, then processes the batches it is given."""

    def __init__(self, spec: WorkSpec) -> None:
        self.error: str | None = None
        self.work: Work | None = None
        try:
            self.work = spec.build()
        except RadvlsmError as exc:  # reported by ready(): a wrong model name is the user's, not a crash
            self.error = str(exc)

    def ready(self) -> str | None:
        """``None`` once the models are loaded, or why they could not be."""
        return self.error

    def pid(self) -> int:
        return os.getpid()

    def process(self, items: list[InputItem]) -> BatchOutcome:
        if self.work is None:
            raise ConfigError(self.error or "the worker has no pipeline")
        return self.work.process(items)


@dataclass(frozen=True)
class _Batch:
    items: tuple[InputItem, ...]
    attempt: int = 0


class _Pool:
    """The driver's side of the worker actors: starts them, replaces the dead, tracks what each one holds."""

    def __init__(self, ray: Any, spec: WorkSpec, n: int, options: RayOptions) -> None:
        self.ray = ray
        self.spec_ref = ray.put(spec)
        self.options = options
        self.remote = ray.remote(StudyActor)
        self.run_id = uuid.uuid4().hex[:8]
        self.started = 0
        self.actors: list[Any] = [self._start() for _ in range(n)]
        self.generation = [0] * n
        self.held = [0] * n

    def _start(self) -> Any:
        self.started += 1
        o = self.options
        return self.remote.options(
            name=f"{ACTOR_PREFIX}{self.run_id}-{self.started}", num_cpus=o.cpus_per_worker,
            num_gpus=o.gpus_per_worker, max_concurrency=max(1, o.in_flight), max_restarts=0, max_task_retries=0,
        ).remote(self.spec_ref)

    def wait_ready(self) -> None:
        """Wait for every worker's models; a :class:`ConfigError` if they cannot be loaded."""
        try:
            errors = self.ray.get([a.ready.remote() for a in self.actors])
        except self.ray.exceptions.RayActorError as exc:
            raise RadvlsmError(f"a Ray worker could not start: {exc}") from exc
        for err in errors:
            if err is not None:
                raise ConfigError(err)

    def replace(self, slot: int) -> None:
        """Give ``slot`` a fresh worker (the old one died); it loads its models while its first batch waits."""
        old = self.actors[slot]
        try:
            self.ray.kill(old, no_restart=True)
        except (ValueError, self.ray.exceptions.RayError) as exc:
            log.debug("killing the lost worker: %s", exc)
        self.actors[slot] = self._start()
        self.generation[slot] += 1
        self.held[slot] = 0

    def close(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a, no_restart=True)
            except (ValueError, self.ray.exceptions.RayError) as exc:
                log.debug("stopping a worker: %s", exc)


def _workers_for(ray: Any, options: RayOptions, n_batches: int) -> int:
    cpus = float(ray.cluster_resources().get("CPU", 0))
    gpus = float(ray.cluster_resources().get("GPU", 0))
    if options.gpus_per_worker and gpus < options.gpus_per_worker:
        raise ConfigError(f"--device cuda: the Ray cluster has no GPU ({gpus:g} GPUs)")
    fit = int(cpus // options.cpus_per_worker) if options.cpus_per_worker else n_batches
    if options.gpus_per_worker:
        fit = min(fit, int(gpus // options.gpus_per_worker))
    if options.workers is None:
        return max(1, min(fit, n_batches))
    if options.workers > fit:
        raise ConfigError(f"--workers {options.workers}: each worker takes {options.cpus_per_worker:g} CPU(s)"
                          f"{f' and {options.gpus_per_worker:g} GPU(s)' if options.gpus_per_worker else ''}, and the "
                          f"Ray cluster has {cpus:g} CPU(s){f' and {gpus:g} GPU(s)' if options.gpus_per_worker else ''}"
                          f": at most {fit} worker(s)")
    return max(1, min(options.workers, n_batches))


def run_ray(
    spec: WorkSpec, items: Sequence[InputItem], *, batch_size: int, options: RayOptions,
    on_progress: Callable[[int], None] | None = None, on_ready: Callable[[], None] | None = None,
) -> RunTotals:
    """Run the work ``spec`` builds over ``items`` on Ray worker actors (call inside :func:`ray_session`).

    Batches are cut as :func:`run_local` cuts them and fed to the workers as they finish earlier ones. A batch
    whose worker dies goes back to the queue and on to another worker (a new one replaces the dead); it does
    only what the dead one left undone. ``on_progress(n)`` is called, in this process, with each finished
    batch's number of studies, ``on_ready()`` once every worker has loaded its models (before any batch).
    Item paths must be absolute and readable by every worker (shared storage).
    """
    ray = import_ray()
    todo = batches(items, batch_size)
    totals = RunTotals()
    if not todo:
        return totals
    n = _workers_for(ray, options, len(todo))
    log.info("%d Ray worker(s), %g CPU(s) each, %d batch(es) of up to %d studies", n, options.cpus_per_worker,
             len(todo), batch_size)
    pool = _Pool(ray, spec, n, options)
    max_losses = 4 * n + 2 * options.max_attempts
    try:
        t0 = time.perf_counter()
        pool.wait_ready()
        log.info("workers ready in %.1f s (models loaded)", time.perf_counter() - t0)
        if on_ready:
            on_ready()
        queue: deque[_Batch] = deque(_Batch(tuple(b)) for b in todo)
        running: dict[Any, tuple[int, int, _Batch]] = {}  # object ref -> (slot, generation, batch)
        while queue or running:
            for slot in range(n):
                while queue and pool.held[slot] < options.in_flight:
                    batch = queue.popleft()
                    ref = pool.actors[slot].process.remote(list(batch.items))
                    running[ref] = (slot, pool.generation[slot], batch)
                    pool.held[slot] += 1
            [ref], _ = ray.wait(list(running), num_returns=1)
            slot, gen, batch = running.pop(ref)
            try:
                outcome = ray.get(ref)
            except ray.exceptions.RayActorError as exc:  # died, or unreachable (ActorUnavailableError)
                if gen == pool.generation[slot]:  # the first of its batches to report the death
                    totals = replace(totals, workers_lost=totals.workers_lost + 1)
                    if totals.workers_lost > max_losses:
                        raise RadvlsmError(f"{totals.workers_lost} Ray workers died; stopping (what is done is "
                                           "in OUT: a rerun does the rest)") from exc
                    log.warning("a Ray worker died (%s); its batches go to a new worker",
                                type(exc).__name__)
                    pool.replace(slot)
                totals = _requeue(batch, queue, totals, on_progress, options.max_attempts)
                continue
            if gen == pool.generation[slot]:
                pool.held[slot] -= 1
            totals = totals.add(outcome)
            if on_progress:
                on_progress(outcome.studies)
    finally:
        pool.close()
    return totals


def _requeue(batch: _Batch, queue: deque[_Batch], totals: RunTotals, on_progress: Callable[[int], None] | None,
             max_attempts: int) -> RunTotals:
    """Put a batch whose worker died back in the queue; one that keeps killing workers is split, and a single
    study that does is given up (``errors.csv``)."""
    again = replace(batch, attempt=batch.attempt + 1)
    if again.attempt < max_attempts:
        queue.appendleft(again)
    elif len(batch.items) > 1:
        queue.extendleft(_Batch((it,)) for it in reversed(batch.items))
    else:
        it = batch.items[0]
        log.warning("%s: %d Ray workers died on it; given up", it.path, again.attempt)
        totals = replace(totals, problems=(*totals.problems, InputProblem(
            it.path, f"the worker died {again.attempt} times while on this study (out of memory, or a crash "
            "in a library?); the rest of the job went on")))
        if on_progress:
            on_progress(1)
    return totals


def absolute_items(items: Sequence[InputItem]) -> list[InputItem]:
    """``items`` with absolute paths: a Ray worker does not run in the driver's folder."""
    return [replace(it, path=Path(it.path).absolute()) for it in items]

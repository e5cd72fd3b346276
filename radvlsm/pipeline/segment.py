"""The batch behind ``radvlsm segment`` and ``diagnose``: read, prompt, segment, diagnose and write, batch by batch.

:class:`StudyWork` is the per-study work; the executors (:mod:`radvlsm.pipeline.executor`: in this process, or on
Ray workers) only distribute batches of studies to it. :func:`plan_studies` says what is left to do,
:func:`write_summaries` assembles the CSVs from the records on disk at the end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from radvlsm.errors import RadvlsmError
from radvlsm.fusion.diagnosis import Diagnosis
from radvlsm.fusion.predictor import Diagnoser
from radvlsm.io import read_image, to_display_rgb, write_png_image, write_png_mask
from radvlsm.pipeline.inputs import InputItem, InputProblem, frame_case_id
from radvlsm.pipeline.outputs import (
    CandidateRecord,
    CaseRecord,
    OutputFolder,
    relative,
    round_diagnosis,
    round_floats,
)
from radvlsm.pipeline.overlay import draw_overlay
from radvlsm.pipeline.prompts import BoxPrompts, check_boxes_in_image
from radvlsm.stage1_localize.config import TRAINED_ITM_THRESHOLD
from radvlsm.stage1_localize.predictor import LocalizerPredictor
from radvlsm.stage2_segment.predictor import SegmentationResult, SegmenterPredictor

log = logging.getLogger(__name__)

MIN_SIDE = 16


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """An input read and converted to ``(H, W, 3)`` uint8 RGB; for a frame of a multi-frame input, ``item``
    names the frame's case and ``input_case`` the input's."""

    item: InputItem
    rgb: np.ndarray
    spacing_mm: tuple[float, float] | None = None
    input_case: str = ""

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])


@dataclass(frozen=True, eq=False)
class Candidates:
    """Box candidates of one image: ``boxes (K, 4)`` XYXY original pixels, ``scores (K,)`` in [0, 1]."""

    boxes: np.ndarray
    scores: np.ndarray


class PromptSource(Protocol):
    """Where box candidates come from: a boxes file, or the stage-1 localizer.

    Called after the predictor has embedded the batch, so a localizer can reuse the image features.
    Returns, per image, its candidates (``None`` when the source has nothing for it: status
    ``not_found``) or the problem that stops it.
    """

    description: str

    def candidates(
        self, batch: Sequence[LoadedImage], predictor: SegmenterPredictor
    ) -> list[Candidates | InputProblem | None]: ...


@dataclass(frozen=True)
class BoxFilePrompts:
    """Prompts from ``--boxes boxes.csv``."""

    boxes: BoxPrompts
    description: str = "boxes"

    def candidates(
        self, batch: Sequence[LoadedImage], predictor: SegmenterPredictor
    ) -> list[Candidates | InputProblem | None]:
        out: list[Candidates | InputProblem | None] = []
        for im in batch:
            rows = self.boxes.for_case(im.item.case_id)
            if not rows and im.input_case:  # a frame of a cine: the input's boxes serve every frame
                rows = self.boxes.for_case(im.input_case)
            if not rows:
                out.append(InputProblem(im.item.path, f"no box for this image in {self.boxes.source}"))
                continue
            try:
                boxes = check_boxes_in_image(rows, im.hw, self.boxes.source)
            except RadvlsmError as exc:
                out.append(InputProblem(im.item.path, str(exc)))
                continue
            out.append(Candidates(boxes, np.array([r.score for r in rows], dtype=np.float32)))
        return out


#: The mirrorings of ``segment --tta`` (names of ``SegmenterPredictor``'s ``FLIPS``).
TTA_FLIPS: tuple[str, ...] = ("hflip", "vflip")


@dataclass(frozen=True, eq=False)
class LocalizerPrompts:
    """Prompts from a text phrase: the stage-1 localizer reads the features the segmenter predictor just
    computed for the batch (one image encoder pass serves both stages) and gives up to ``top_k`` ranked boxes
    per image; an image where the phrase matches nothing gets none (status ``not_found``, empty mask). With
    ``flips`` the mirrored images are encoded too and their relevance maps averaged (test-time augmentation)."""

    localizer: LocalizerPredictor
    prompt: str
    top_k: int | None = None
    description: str = "prompt"
    #: test-time mirrorings of the model input (names of ``SegmenterPredictor``'s ``FLIPS``) whose relevance
    #: maps are averaged with the image's own; each costs one more encoder pass
    flips: tuple[str, ...] = ()

    def candidates(
        self, batch: Sequence[LoadedImage], predictor: SegmenterPredictor
    ) -> list[Candidates | InputProblem | None]:
        flipped = predictor.encode_mirrored([x.rgb for x in batch], self.flips)
        found = self.localizer.locate_on(predictor, self.prompt, self.top_k, flipped=flipped)
        return [Candidates(r.boxes, r.scores.astype(np.float32)) if r.found else None for r in found]


@dataclass(frozen=True)
class SegmentSummary:
    written: int
    skipped: int
    failed: tuple[InputProblem, ...]
    seconds: float
    out_dir: Path

    @property
    def images_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else float("nan")


def load_input(item: InputItem) -> list[LoadedImage] | InputProblem:
    """Read one input as RGB images, or say why it cannot be segmented.

    A 2-D image gives one; a multi-frame input (an ultrasound cine in one DICOM file, a multi-page TIFF) gives
    one per frame, each its own case (:func:`frame_case_id`).
    """
    try:
        rec = read_image(item.path)
        if rec.is_volume:
            return InputProblem(item.path, "is a 3-D volume; radvlsm segment works on 2-D images")
        if rec.is_multiframe:
            frames = [(InputItem(frame_case_id(item.case_id, k), item.path), to_display_rgb(rec, index=k))
                      for k in range(rec.frames)]
        else:
            frames = [(item, to_display_rgb(rec))]
    except (RadvlsmError, ValueError) as exc:
        return InputProblem(item.path, str(exc).removeprefix(f"{item.path}: "))
    h, w = frames[0][1].shape[:2]
    if min(h, w) < MIN_SIDE:
        return InputProblem(item.path, f"image is {w}x{h} pixels; too small to segment (need {MIN_SIDE}x{MIN_SIDE})")
    return [LoadedImage(it, rgb, rec.pixel_spacing_mm, item.case_id) for it, rgb in frames]


def _load_batch(items: Sequence[InputItem]) -> list[LoadedImage | InputProblem]:
    out: list[LoadedImage | InputProblem] = []
    for it in items:
        got = load_input(it)
        out += got if isinstance(got, list) else [got]
    return out


@dataclass(frozen=True)
class DiagnosisStep:
    """The optional diagnosis of each segmented lesion (``radvlsm diagnose``).

    With a ``gate``, only images that the stage-1 localizer's image–text matching says show the head's kind
    of lesion (``gate_prompt``, e.g. "skin lesion" for the PH2 head) are diagnosed; the others keep their
    mask and get no label (``diagnosis_status`` ``out_of_domain``): a dermoscopy head has nothing to say
    about a polyp. The gate asks for the matching head's trained boundary
    (:data:`~radvlsm.stage1_localize.config.TRAINED_ITM_THRESHOLD`), at which other domains' phrases are
    rejected, and not for the localizer's own ``itm_threshold``: that one may be raised to leave images
    without a lesion unprompted (ultrasound), which is not the gate's question when the user gives the box.
    """

    diagnoser: Diagnoser
    model: str
    gate: LocalizerPredictor | None = None
    gate_prompt: str = ""

    def admits(self, predictor: SegmenterPredictor) -> list[bool]:
        """Per image held by ``predictor``: may the head diagnose it?"""
        if self.gate is None or not self.gate_prompt:
            return [True] * len(predictor.image_sizes)
        return [r.itm_probability >= TRAINED_ITM_THRESHOLD
                for r in self.gate.locate_on(predictor, self.gate_prompt, 1)]

    def run(self, im: LoadedImage, result: SegmentationResult) -> Diagnosis:
        return round_diagnosis(self.diagnoser.diagnose(im.rgb, result.mask, result.embedding, im.spacing_mm),
                               self.model)


def _write_case(
    out: OutputFolder, im: LoadedImage, cands: Candidates | None, result: SegmentationResult | None, model: str,
    prompt: str | None, diagnosis: Diagnosis | None = None, diagnosis_status: str | None = None,
) -> CaseRecord:
    """Write one case's mask and overlay (atomically) and return its record, not yet written: the record marks
    the case done, so it goes last (:meth:`StudyWork.process`)."""
    cid = im.item.case_id
    mask = result.mask if result is not None else np.zeros(im.hw, dtype=bool)
    write_png_mask(out.mask_path(cid), mask)
    boxes = cands.boxes if cands is not None else np.zeros((0, 4))
    weights = [c.weight for c in result.candidates] if result is not None else []
    write_png_image(out.overlay_path(cid), draw_overlay(im.rgb, mask, boxes.tolist(), weights),
                    compress_level=1)  # overlays are for eyes; fast beats small
    candidates = tuple(
        CandidateRecord(round_floats(c.box, 2), round(c.score, 5), round(c.predicted_iou, 5),
                        None if c.presence is None else round(c.presence, 5), round(c.reliability, 5),
                        round(c.weight, 5))
        for c in (result.candidates if result is not None else ())
    )
    status = result.status if result is not None else "not_found"
    return CaseRecord(
        case_id=cid, input=str(im.item.path), image_size=im.hw, status=status,
        reliability=round(result.reliability, 5) if result is not None else 0.0,
        area_px=int(mask.sum()), bbox=result.bbox if result is not None else None, candidates=candidates,
        mask=relative(out.mask_path(cid), out.root), overlay=relative(out.overlay_path(cid), out.root),
        model=model, prompt=prompt,
        embedding=round_floats(result.embedding, 5) if result is not None and status == "ok" else (),
        diagnosis=diagnosis, diagnosis_status=diagnosis_status,
    )


def study_done(out: OutputFolder, case_id: str, *, diagnose: bool) -> bool:
    """Whether the study (one input) ``case_id`` is done in ``out``: its record and mask exist (for a multi-frame
    input, those of its first frame, which is written after all its other frames). ``diagnose`` redoes studies
    a plain ``segment`` run left without a diagnosis."""
    rec = out.read_record(case_id)
    if rec is None:
        rec = out.read_record(frame_case_id(case_id, 0))
    if rec is None or not (out.root / rec.mask).is_file():
        return False
    return not diagnose or rec.diagnosis_status is not None or rec.status != "ok"


@dataclass(frozen=True)
class BatchOutcome:
    """What :meth:`StudyWork.process` did with one batch of studies.

    Attributes:
        studies: the studies (inputs) of the batch, whatever became of them.
        written: the case ids written (a multi-frame input writes one per frame).
        found_done: studies found already done in OUT and left alone (a batch retried after a worker died
            mid-batch finds what that worker finished).
        problems: the studies (or frames) that failed, with the reason.
    """

    studies: int
    written: tuple[str, ...] = ()
    found_done: tuple[str, ...] = ()
    problems: tuple[InputProblem, ...] = ()


class Work(Protocol):
    """What an executor runs on batches of studies: :class:`StudyWork` (2-D images) or
    :class:`radvlsm.pipeline.volume.VolumeStudyWork` (CT volumes)."""

    def process(self, items: Sequence[InputItem]) -> BatchOutcome: ...


class StudyWork:
    """The per-study work of ``segment`` and ``diagnose``, the one code path every executor runs.

    :meth:`process` takes a batch of studies: leaves those already done in OUT, reads the others, embeds them in
    one image-encoder pass, asks ``prompts`` for the box candidates, decodes all candidates of the batch in one
    batched pass, diagnoses each lesion found (with ``diagnosis``) and writes each case's mask, overlay and
    record under OUT, each file atomically and the record last: a case is either done, whole, or not at all,
    and doing it again rewrites the same files. A study that fails is returned with its reason; the batch goes on.

    The local executor runs it in-process, a Ray worker holds one built from a spec; the summary CSVs are
    assembled from the records on disk at the end (:func:`write_summaries`), never by a worker. Thread-safe:
    reading happens outside a lock, the models inside, so two threads calling :meth:`process` overlap one
    batch's reading with another's model work.
    """

    def __init__(
        self, out_dir: Path, predictor: SegmenterPredictor, prompts: PromptSource, *, model_name: str,
        prompt_text: str | None = None, diagnosis: DiagnosisStep | None = None,
    ) -> None:
        self.out = OutputFolder(out_dir).create()
        self.predictor = predictor
        self.prompts = prompts
        self.model_name = model_name
        self.prompt_text = prompt_text
        self.diagnosis = diagnosis
        self._lock = threading.Lock()

    def process(self, items: Sequence[InputItem]) -> BatchOutcome:
        """Do the studies of ``items`` that are not done yet (see the class)."""
        todo, found_done = plan_studies(self.out.root, items, diagnose=self.diagnosis is not None, overwrite=False)
        loaded = _load_batch(todo)
        problems = [x for x in loaded if isinstance(x, InputProblem)]
        ok = [x for x in loaded if isinstance(x, LoadedImage)]
        written: list[str] = []
        if ok:
            with self._lock:
                written = self._run(ok, problems)
        return BatchOutcome(len(items), tuple(written), tuple(it.case_id for it in found_done), tuple(problems))

    def _run(self, ok: list[LoadedImage], failed: list[InputProblem]) -> list[str]:
        predictor, diagnosis = self.predictor, self.diagnosis
        predictor.set_images([x.rgb for x in ok])
        cands = self.prompts.candidates(ok, predictor)
        seg_idx = [i for i, c in enumerate(cands) if isinstance(c, Candidates)]
        results: dict[int, SegmentationResult] = {}
        if seg_idx:
            sets = predictor.decode_candidates(
                [cands[i].boxes for i in seg_idx],  # type: ignore[union-attr]
                [cands[i].scores for i in seg_idx],  # type: ignore[union-attr]
                image_index=seg_idx,
            )
            results = {i: predictor.aggregate(s) for i, s in zip(seg_idx, sets, strict=True)}
        admitted = diagnosis.admits(predictor) if diagnosis is not None else [True] * len(ok)
        written: list[str] = []
        first_frames: list[CaseRecord] = []  # a multi-frame input's first frame marks it done: written last
        for i, im in enumerate(ok):
            c = cands[i]
            if isinstance(c, InputProblem):
                failed.append(c)
                continue
            res = results.get(i)
            diag, diag_status = None, None
            if diagnosis is not None and res is not None and res.status == "ok":
                if not admitted[i]:
                    diag_status = "out_of_domain"
                else:
                    try:
                        diag, diag_status = diagnosis.run(im, res), "ok"
                    except (RadvlsmError, ValueError) as exc:
                        failed.append(InputProblem(im.item.path, f"diagnosis failed: {exc}"))
                        continue
            try:
                rec = _write_case(self.out, im, c, res, self.model_name, self.prompt_text, diag, diag_status)
                if im.input_case and rec.case_id == frame_case_id(im.input_case, 0):
                    first_frames.append(rec)
                else:
                    self.out.write_record(rec)
                written.append(rec.case_id)
            except OSError as exc:
                failed.append(InputProblem(im.item.path, f"cannot write outputs ({exc})"))
        for rec in first_frames:
            try:
                self.out.write_record(rec)
            except OSError as exc:
                written.remove(rec.case_id)
                failed.append(InputProblem(Path(rec.input), f"cannot write outputs ({exc})"))
        return written


def plan_studies(
    out_dir: Path, items: Sequence[InputItem], *, diagnose: bool, overwrite: bool
) -> tuple[list[InputItem], list[InputItem]]:
    """Split ``items`` into the studies to do and those already done in ``out_dir`` (:func:`study_done`); with
    ``overwrite`` all are to do (then :func:`forget_studies` them once the models are loaded). Reads only."""
    if overwrite:
        return list(items), []
    out = OutputFolder(out_dir)
    todo, done = [], []
    for it in items:
        (done if study_done(out, it.case_id, diagnose=diagnose) else todo).append(it)
    return todo, done


def forget_studies(out_dir: Path, items: Sequence[InputItem]) -> None:
    """Remove the records of ``items`` (``--overwrite``), so that they are not done any more: a worker retrying a
    batch, or a rerun after this run was killed, then redoes exactly what this run has not finished. Masks and
    overlays stay until they are rewritten."""
    out = OutputFolder(out_dir)
    for it in items:
        out.forget(it.case_id)


def write_summaries(out_dir: Path, problems: Iterable[InputProblem], *, diagnose: bool) -> None:
    """Assemble ``results.csv`` (and ``diagnoses.csv`` with ``diagnose``) from every record in ``out_dir``, once,
    at the end of a run, and write ``errors.csv`` from ``problems``.

    ``boxes.csv`` holds the boxes stage 1 proposed: it is written from the images segmented from a text prompt,
    and removed when none is (a rerun with ``--boxes --overwrite`` replaced them all).
    """
    out = OutputFolder(out_dir).create()
    records = out.read_records()
    out.write_results_csv(records)
    if any(r.lesions for r in records):
        out.write_lesions_csv(records)
    if diagnose:
        out.write_diagnoses_csv(records)
    prompted = [r for r in records if r.prompt is not None and not r.is_volume]
    if prompted:
        out.write_boxes_csv(prompted)
    else:
        (out.root / "boxes.csv").unlink(missing_ok=True)
    out.write_errors_csv((str(p.path), p.reason) for p in problems)


def run_segment(
    items: Sequence[InputItem],
    out_dir: Path,
    predictor: SegmenterPredictor,
    prompts: PromptSource,
    *,
    model_name: str,
    prompt_text: str | None = None,
    batch_size: int = 8,
    overwrite: bool = False,
    problems: Sequence[InputProblem] = (),
    on_progress: Callable[[int], None] | None = None,
    diagnosis: DiagnosisStep | None = None,
) -> SegmentSummary:
    """Segment ``items`` into ``out_dir``, in this process (the local executor over :class:`StudyWork`).

    Images already done (their record exists) are skipped unless ``overwrite``. Images are read one batch
    ahead; each batch is embedded once and all its box candidates are decoded in one batched pass. With
    ``diagnosis``, every lesion found is diagnosed too and ``diagnoses.csv`` is written (a lesion that is not
    found gets no diagnosis). A failing input is recorded in ``errors.csv`` (with ``problems``) and the batch
    goes on. ``on_progress(n)`` is called with the number of images finished (written, skipped or failed)
    after each batch. The CSVs are assembled from the records at the end.
    """
    from radvlsm.pipeline.executor import run_local

    t0 = time.perf_counter()
    todo, done = plan_studies(out_dir, items, diagnose=diagnosis is not None, overwrite=overwrite)
    if done:
        log.info("%d image(s) already done in %s (use --overwrite to redo them)", len(done), out_dir)
        if on_progress:
            on_progress(len(done))
    if overwrite:
        forget_studies(out_dir, todo)
    work = StudyWork(out_dir, predictor, prompts, model_name=model_name, prompt_text=prompt_text,
                     diagnosis=diagnosis)
    totals = run_local(work, todo, batch_size=batch_size, on_progress=on_progress)
    failed = (*problems, *totals.problems)
    write_summaries(out_dir, failed, diagnose=diagnosis is not None)
    return SegmentSummary(len(totals.written), len(done) + len(totals.found_done), failed,
                          time.perf_counter() - t0, out_dir)

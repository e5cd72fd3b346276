"""Held-out evaluation of text-prompted localization and of the fully automatic pipeline.

For every case and every prompt asked of it, one :class:`PromptRow`: whether stage 1 found the prompt, whether
one of its top-1 / top-5 boxes hits the lesion (IoU ≥ 0.5 with the box of the whole ground-truth mask, the box
the localizer is trained to find), and the Dice of the automatic mask (stage 1 → stage 2 → aggregation, at the
original image resolution; 0 when nothing is found in an image that has a lesion), beside the baseline that
needs no segmenter: the ellipse inscribed in stage 1's top-ranked box.

Prompt kinds:

- ``trained``: phrases the localizer was trained on (the default prompt and the domain's phrases);
- ``paraphrase``: phrasings never used in training (:data:`~radvlsm.stage1_localize.phrases.DOMAIN_HELD_OUT`
  and :data:`~radvlsm.stage1_localize.phrases.GENERIC_HELD_OUT`);
- ``negative``: phrases of other domains (train and held-out), which must be rejected (``found`` false);
- ``normal``: the trained phrases and paraphrases asked of an image without a lesion (an empty ground-truth
  mask, e.g. a BUSI normal breast): they must be rejected too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from radvlsm.data.boxes import mask_to_box
from radvlsm.data.cases import LesionCase
from radvlsm.io import read_image, read_mask, to_display_rgb
from radvlsm.metrics.detection import box_iou_matrix
from radvlsm.metrics.segmentation import dice
from radvlsm.stage1_localize import phrases as ph
from radvlsm.stage1_localize.phrases import prompt_sets
from radvlsm.stage1_localize.predictor import LocalizerPredictor
from radvlsm.stage2_segment.baselines import ellipse_in_box
from radvlsm.stage2_segment.predictor import SegmenterPredictor

KINDS = ("trained", "paraphrase", "negative", "normal")
#: Kinds whose prompts must find nothing.
REJECT_KINDS = ("negative", "normal")


@dataclass(frozen=True)
class PromptRow:
    """One prompt asked of one case."""

    case_id: str
    dataset: str
    prompt: str
    kind: str
    found: bool
    hit_at_1: bool
    hit_at_5: bool
    dice: float
    ellipse_dice: float


def evaluate_prompts(
    segmenter: SegmenterPredictor,
    localizer: LocalizerPredictor,
    cases: Sequence[LesionCase],
    dataset: str,
    prompts: Mapping[str, Sequence[str]] | None = None,
    top_k: int = 5,
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
    flips: Sequence[str] = (),
) -> list[PromptRow]:
    """Rows for every case of ``cases`` (one dataset) and every prompt (default:
    :func:`~radvlsm.stage1_localize.phrases.prompt_sets` of the dataset's domain). Each image batch is embedded
    once (and once per test-time mirroring in ``flips``, see :meth:`LocalizerPredictor.locate`); every prompt
    reuses those features."""
    sets = prompts or prompt_sets(ph.domain_of(dataset))
    asks = [(kind, p) for kind in KINDS for p in sets.get(kind, ())]
    rows: list[PromptRow] = []
    for start in range(0, len(cases), batch_size):
        chunk = cases[start : start + batch_size]
        rgbs = [to_display_rgb(read_image(c.image_path)) for c in chunk]
        gts = [read_mask(c.mask_path) for c in chunk]
        segmenter.set_images(rgbs)
        flipped = segmenter.encode_mirrored(rgbs, flips)
        for kind, prompt in asks:
            found = localizer.locate_on(segmenter, prompt, top_k, flipped=flipped)
            idx = [i for i, r in enumerate(found) if r.found]
            results = {}
            if kind != "negative" and idx:
                cand = segmenter.decode_candidates([found[i].boxes for i in idx], [found[i].scores for i in idx],
                                                   image_index=idx)
                results = {i: segmenter.aggregate(s) for i, s in zip(idx, cand, strict=True)}
            for i, (case, gt, r) in enumerate(zip(chunk, gts, found, strict=True)):
                box = mask_to_box(gt)
                row_kind = "normal" if box is None and kind != "negative" else kind
                ious = (box_iou_matrix(r.boxes, box[None])[:, 0] if r.found and box is not None
                        else np.zeros(0))
                res = results.get(i)
                mask = res.mask if res is not None else np.zeros(gt.shape, dtype=bool)
                ell = (ellipse_in_box(r.boxes[0], gt.shape) if r.found and kind != "negative"
                       else np.zeros(gt.shape, dtype=bool))
                scored = row_kind not in REJECT_KINDS
                rows.append(PromptRow(
                    case_id=case.case_id, dataset=dataset, prompt=prompt, kind=row_kind, found=bool(r.found),
                    hit_at_1=bool((ious[:1] >= 0.5).any()), hit_at_5=bool((ious[:5] >= 0.5).any()),
                    dice=float(dice(mask, gt)) if scored else float("nan"),
                    ellipse_dice=float(dice(ell, gt)) if scored else float("nan"),
                ))
        if on_batch:
            on_batch(len(chunk))
    return rows


@dataclass(frozen=True)
class PromptSummary:
    """Means over the rows of one dataset and prompt kind (``dice`` / recalls are NaN for negatives and
    normals, ``rejected`` is NaN for positives)."""

    dataset: str
    kind: str
    n: int
    recall_at_1: float
    recall_at_5: float
    found: float
    rejected: float
    dice: float
    ellipse_dice: float


def summarize_prompts(rows: Sequence[PromptRow]) -> list[PromptSummary]:
    out = []
    for dataset in dict.fromkeys(r.dataset for r in rows):
        for kind in KINDS:
            sel = [r for r in rows if r.dataset == dataset and r.kind == kind]
            if not sel:
                continue
            neg = kind in REJECT_KINDS
            nan = float("nan")
            out.append(PromptSummary(
                dataset=dataset, kind=kind, n=len(sel),
                recall_at_1=nan if neg else float(np.mean([r.hit_at_1 for r in sel])),
                recall_at_5=nan if neg else float(np.mean([r.hit_at_5 for r in sel])),
                found=float(np.mean([r.found for r in sel])),
                rejected=float(np.mean([not r.found for r in sel])) if neg else nan,
                dice=nan if neg else float(np.mean([r.dice for r in sel])),
                ellipse_dice=nan if neg else float(np.mean([r.ellipse_dice for r in sel])),
            ))
    return out


def per_prompt_dice(rows: Sequence[PromptRow]) -> dict[tuple[str, str, str], float]:
    """Mean automatic Dice per (dataset, kind, prompt) of the positive prompts."""
    groups: dict[tuple[str, str, str], list[float]] = {}
    for r in rows:
        if r.kind not in REJECT_KINDS:
            groups.setdefault((r.dataset, r.kind, r.prompt), []).append(r.dice)
    return {k: float(np.mean(v)) for k, v in groups.items()}

"""Held-out evaluation of box-prompted segmentation under fixed, seeded prompt protocols.

Protocols (boxes from each case's ground-truth mask):

- ``exact``: the tight box;
- ``jitter10``: each edge moved by up to ±10% of the box's size;
- ``noisy``: 3–5 candidates, each jittered by up to ±20%, and with probability 1/2 one of them replaced by a
  wrong box (the box shifted by 60–100% of its size in a random direction); scores U(0.5, 1) for the
  jittered candidates and U(0.3, 0.9) for the wrong one. Scored for every aggregation method.

Baselines for ``exact`` and ``jitter10``: the ellipse inscribed in the box and GrabCut started from it.
Dice is computed at the original image resolution.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from radvlsm.data.boxes import clip_box, jitter_box, mask_to_box
from radvlsm.data.cases import LesionCase
from radvlsm.io import read_image, read_mask, to_display_rgb
from radvlsm.metrics.segmentation import dice
from radvlsm.stage2_segment.baselines import ellipse_in_box, grabcut_from_box
from radvlsm.stage2_segment.predictor import SegmenterPredictor

log = logging.getLogger(__name__)

METHODS = ("reliability", "best_iou", "mean")


@dataclass(frozen=True)
class ProtocolCase:
    """One case's prompts under one protocol: ``boxes (K, 4)``, ``scores (K,)``."""

    boxes: np.ndarray
    scores: np.ndarray


def protocol_prompts(protocol: str, gt: np.ndarray, rng: np.random.Generator) -> ProtocolCase:
    hw = gt.shape
    box = mask_to_box(gt)
    if box is None:
        raise ValueError("protocol prompts need a non-empty mask")
    if protocol == "exact":
        return ProtocolCase(box[None], np.ones(1, np.float32))
    if protocol == "jitter10":
        return ProtocolCase(jitter_box(box, 0.10, rng, hw)[None], np.ones(1, np.float32))
    if protocol == "noisy":
        k = int(rng.integers(3, 6))
        boxes = [jitter_box(box, 0.20, rng, hw) for _ in range(k)]
        scores = list(rng.uniform(0.5, 1.0, size=k))
        if rng.random() < 0.5:
            ang = rng.uniform(0, 2 * np.pi)
            mag = rng.uniform(0.6, 1.0)
            bw, bh = box[2] - box[0], box[3] - box[1]
            shift = np.array([np.cos(ang) * bw, np.sin(ang) * bh, np.cos(ang) * bw, np.sin(ang) * bh]) * mag
            boxes[-1] = clip_box(box + shift, hw, min_size=4.0)
            scores[-1] = float(rng.uniform(0.3, 0.9))
        return ProtocolCase(np.stack(boxes), np.asarray(scores, np.float32))
    raise ValueError(f"unknown protocol {protocol!r}")


@dataclass(frozen=True)
class EvalRow:
    case_id: str
    protocol: str
    method: str
    dice: float


def evaluate_cases(
    predictor: SegmenterPredictor,
    cases: Sequence[LesionCase],
    protocols: Sequence[str] = ("exact", "jitter10", "noisy"),
    baselines: bool = True,
    seed: int = 2026,
    batch_size: int = 8,
    on_case: Callable[[], None] | None = None,
) -> list[EvalRow]:
    """Dice of every case under every protocol (and method / baseline). Prompts are drawn from a generator
    seeded by ``(seed, case index, protocol index)``, so every model sees the same boxes."""
    rows: list[EvalRow] = []
    for start in range(0, len(cases), batch_size):
        chunk = cases[start : start + batch_size]
        rgbs = [to_display_rgb(read_image(c.image_path)) for c in chunk]
        gts = [read_mask(c.mask_path) for c in chunk]
        predictor.set_images(rgbs)
        for pi, protocol in enumerate(protocols):
            prompts = [
                protocol_prompts(protocol, g, np.random.default_rng([seed, start + i, pi])) for i, g in enumerate(gts)
            ]
            sets = predictor.decode_candidates([p.boxes for p in prompts], [p.scores for p in prompts])
            methods = METHODS if protocol == "noisy" else ("reliability",)
            for m in methods:
                cfg = replace(predictor.aggregation, method=m)  # type: ignore[arg-type]
                for case, s, g in zip(chunk, sets, gts, strict=True):
                    res = predictor.aggregate(s, cfg)
                    rows.append(EvalRow(case.case_id, protocol, m if protocol == "noisy" else "model",
                                        dice(res.mask, g)))
            if baselines and protocol in ("exact", "jitter10"):
                for case, p, g, rgb in zip(chunk, prompts, gts, rgbs, strict=True):
                    ell = ellipse_in_box(p.boxes[0], g.shape)
                    rows.append(EvalRow(case.case_id, protocol, "ellipse", dice(ell, g)))
                    rows.append(EvalRow(case.case_id, protocol, "grabcut", dice(grabcut_from_box(rgb, p.boxes[0]), g)))
        if on_case:
            for _ in chunk:
                on_case()
    return rows


def summarize(rows: Sequence[EvalRow]) -> dict[tuple[str, str], tuple[float, int]]:
    """Mean Dice and count per (protocol, method)."""
    groups: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        groups.setdefault((r.protocol, r.method), []).append(r.dice)
    return {k: (float(np.mean(v)), len(v)) for k, v in groups.items()}

"""Multi-candidate aggregation: K box candidates of one image → one mask and one reliability.

Each candidate's reliability is what the network says of it: predicted IoU times the probability that its
box holds a lesion (when the model has a presence head), times its input score raised to ``score_power``.
Candidates the presence head rejects (< ``presence_threshold``) are dropped unless all are. The rest are
weighted by ``(reliability × consensus)^sharpness``, where consensus is a candidate's mean soft IoU with the
other candidates (a wrong box disagrees with the others), and their probability maps are averaged with
those weights. The image's reliability is the weighted mean reliability of its candidates.

Before fusion each candidate's map is cut to its box grown by ``box_margin`` of the box's width and height on
every side (:func:`box_window`): a box prompt says where the lesion is, and a mask that spills far outside it
(the dark rim of a dermoscope's field of view taken for the lesion, say) is the network's error, not a lesion.
The margin (0.2, chosen on Kvasir-SEG val and PH2 folds 1-4: it never lowered Dice there, 0.05 and 0.1 cut
into the noisy protocol's ±20% boxes) leaves room for boxes that are off; ``None`` cuts nothing.

A model folder may carry its own settings in ``aggregation.json`` (:data:`AGGREGATION_FILE`, written by the
training recipe, which chooses the presence threshold on its validation images): they travel with the weights
and replace these defaults wherever the model is used.

``best_iou`` (keep the candidate with the highest predicted IoU) and ``mean`` (plain average) are the two
baselines this is measured against (``benchmarks/segmenter_accuracy.py``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch

from radvlsm.errors import ConfigError
from radvlsm.jsonconfig import check_keys, read_json_object

Method = Literal["reliability", "best_iou", "mean"]
METHODS = ("reliability", "best_iou", "mean")
#: The file in a model folder holding that model's aggregation settings.
AGGREGATION_FILE = "aggregation.json"


@dataclass(frozen=True)
class AggregationConfig:
    method: Method = "reliability"
    sharpness: float = 4.0
    score_power: float = 1.0
    presence_threshold: float = 0.5
    box_margin: float | None = 0.2

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: Path | None = None) -> AggregationConfig:
        """Parse and check; unknown keys, a wrong method or out-of-range values raise :class:`ConfigError`."""
        raw = check_keys(read_json_object(text, source, "aggregation settings"), cls, source, "aggregation")
        cfg = cls(**raw)
        if cfg.method not in METHODS:
            raise ConfigError(f"{source}: method must be one of {METHODS}, not {cfg.method!r}")
        if not 0.0 <= cfg.presence_threshold <= 1.0 or (cfg.box_margin is not None and cfg.box_margin < 0):
            raise ConfigError(f"{source}: presence_threshold must lie in [0, 1] and box_margin be >= 0")
        return cfg


def box_window(boxes: torch.Tensor, hw: tuple[int, int], frame: float, margin: float) -> torch.Tensor:
    """``(K, h, w)`` 0/1 windows: each XYXY box ``(K, 4)`` (pixels of a ``frame × frame`` model input) grown by
    ``margin × (box width, box height)`` on every side, rasterised on an ``h × w`` grid over that frame (a cell
    is inside when its centre is)."""
    h, w = hw
    b = boxes.float()
    bw, bh = (b[:, 2] - b[:, 0]).clamp_min(0), (b[:, 3] - b[:, 1]).clamp_min(0)
    x0, x1 = (b[:, 0] - margin * bw) * w / frame, (b[:, 2] + margin * bw) * w / frame
    y0, y1 = (b[:, 1] - margin * bh) * h / frame, (b[:, 3] + margin * bh) * h / frame
    xs = torch.arange(w, dtype=torch.float32) + 0.5
    ys = torch.arange(h, dtype=torch.float32) + 0.5
    inx = (xs[None] >= x0[:, None]) & (xs[None] <= x1[:, None])
    iny = (ys[None] >= y0[:, None]) & (ys[None] <= y1[:, None])
    return (iny[:, :, None] & inx[:, None, :]).float()


@dataclass(frozen=True)
class Aggregate:
    """``probability (h, w)`` fused map; ``weights (K,)`` summing to 1; ``reliability (K,)`` per candidate;
    ``image_reliability`` in [0, 1]; ``lesion_present`` False when every candidate was rejected."""

    probability: torch.Tensor
    weights: torch.Tensor
    reliability: torch.Tensor
    image_reliability: float
    lesion_present: bool


def soft_iou_matrix(probs: torch.Tensor) -> torch.Tensor:
    """``(K, h, w)`` probability maps → ``(K, K)`` soft IoU (sum of min over sum of max)."""
    flat = probs.flatten(1)
    k = flat.shape[0]
    inter = torch.minimum(flat.unsqueeze(1), flat.unsqueeze(0)).sum(-1)
    union = torch.maximum(flat.unsqueeze(1), flat.unsqueeze(0)).sum(-1)
    return torch.where(union > 0, inter / union.clamp_min(1e-6), torch.ones(k, k, dtype=flat.dtype))


def aggregate(
    probs: torch.Tensor,
    predicted_iou: torch.Tensor,
    presence: torch.Tensor | None,
    scores: torch.Tensor,
    cfg: AggregationConfig = AggregationConfig(),
) -> Aggregate:
    """Fuse the ``K`` candidates of one image.

    Args:
        probs: ``(K, h, w)`` mask probabilities. predicted_iou: ``(K,)``. presence: ``(K,)`` probabilities
            or ``None``. scores: ``(K,)`` input scores in [0, 1] (1 when the user gave none).
    """
    k = probs.shape[0]
    iou = predicted_iou.clamp(0, 1)
    pres = presence if presence is not None else torch.ones_like(iou)
    rel = iou * pres * scores.clamp(0, 1) ** cfg.score_power
    keep = pres >= cfg.presence_threshold
    lesion_present = bool(keep.any())
    if not lesion_present:
        keep = torch.ones_like(keep)
    if cfg.method == "mean":
        w = keep.float()
    elif cfg.method == "best_iou":
        w = torch.zeros(k)
        w[int(torch.argmax(torch.where(keep, iou, torch.full_like(iou, -1.0))))] = 1.0
    else:
        sim = soft_iou_matrix(probs)
        cons = (sim.sum(1) - 1) / (k - 1) if k > 1 else torch.ones(1)
        w = (rel * cons).clamp_min(1e-6) ** cfg.sharpness * keep.float()
    w = w / w.sum()
    fused = (w.view(k, 1, 1) * probs).sum(0)
    return Aggregate(fused, w, rel, float((w * rel).sum()), lesion_present)

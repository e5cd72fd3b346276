"""Embed images once, answer any number of box prompts on them (the segmenter's inference API)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from radvlsm.stage2_segment.aggregation import AggregationConfig, aggregate, box_window
from radvlsm.stage2_segment.modeling import ImageFeatures, LesionSegmenter
from radvlsm.stage2_segment.transforms import ResizeTransform

#: Prompts (of any images) decoded together. Measured on 2 CPU threads with the default (8 images x 32 boxes):
#: passes of 24 prompts take 0.32 s, 256 at once 0.99 s (the per-prompt maps outgrow the caches), one at a time
#: 0.95 s. On a GPU a larger pass may pay; ``SegmenterPredictor(max_prompts_per_pass=...)`` sets it.
PROMPTS_PER_PASS = 24


@dataclass(frozen=True)
class CandidateResult:
    """One box candidate's outcome. ``box`` is XYXY in pixels of the original image."""

    box: tuple[float, float, float, float]
    score: float
    predicted_iou: float
    presence: float | None
    reliability: float
    weight: float


@dataclass(frozen=True, eq=False)
class SegmentationResult:
    """The fused segmentation of one image.

    Attributes:
        mask: ``(H, W)`` bool, the original image's size.
        reliability: the image-level reliability in [0, 1] (see :mod:`.aggregation`).
        status: ``ok``, or ``not_found`` when no candidate holds a lesion (the mask is then empty).
        candidates: per-candidate outcomes, in input order.
        embedding: ``(2D,)`` float32 lesion-aware visual features (weighted over candidates).
    """

    mask: np.ndarray
    reliability: float
    status: str
    candidates: tuple[CandidateResult, ...]
    embedding: np.ndarray

    @property
    def area_px(self) -> int:
        return int(self.mask.sum())

    @property
    def bbox(self) -> tuple[int, int, int, int] | None:
        """XYXY edge box of the mask (``x1``/``y1`` exclusive), ``None`` when empty."""
        ys = np.flatnonzero(self.mask.any(axis=1))
        if ys.size == 0:
            return None
        xs = np.flatnonzero(self.mask.any(axis=0))
        return int(xs[0]), int(ys[0]), int(xs[-1] + 1), int(ys[-1] + 1)


@dataclass(frozen=True, eq=False)
class CandidateSet:
    """Raw decoder outputs for the ``K`` candidates of one image (before aggregation).

    ``probs (K, h, w)`` in the model-input frame; ``boxes (K, 4)`` original pixels; ``iou``, ``scores``,
    ``presence`` ``(K,)``; ``embeddings (K, 2D)``.
    """

    image_hw: tuple[int, int]
    boxes: np.ndarray
    scores: torch.Tensor
    probs: torch.Tensor
    iou: torch.Tensor
    presence: torch.Tensor | None
    embeddings: torch.Tensor


#: Mirrorings of the model input that :meth:`SegmenterPredictor.encode` knows: name → the axis of an
#: ``(..., H, W)`` tensor (or ``(H, W)`` map, counted from the end) that it reverses.
FLIPS: dict[str, int] = {"hflip": -1, "vflip": -2}


class SegmenterPredictor:
    """Segments images from box prompts with a :class:`LesionSegmenter`.

    ``set_images`` embeds a batch of images once; ``predict`` then decodes the box candidates of all of them
    in one batched pass, and can be called again with other boxes at the cost of the decoder only.

    Boxes are XYXY in pixels of each original image.
    """

    def __init__(
        self,
        model: LesionSegmenter,
        device: str | torch.device = "cpu",
        aggregation: AggregationConfig | None = None,
        encoder_batch: int = 16,
        max_prompts_per_pass: int = PROMPTS_PER_PASS,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        # the caller's settings, else the model's own (aggregation.json beside its weights), else the defaults
        self.aggregation = aggregation or model.aggregation or AggregationConfig()
        self.transform = ResizeTransform(model.config.image_size, model.config.resize_mode)
        self.encoder_batch = encoder_batch
        self.max_prompts_per_pass = max_prompts_per_pass
        self._features: ImageFeatures | None = None
        self._sizes: list[tuple[int, int]] = []

    @property
    def image_sizes(self) -> list[tuple[int, int]]:
        return list(self._sizes)

    @property
    def features(self) -> ImageFeatures | None:
        """The image features of the batch of the last :meth:`set_images` (``None`` before)."""
        return self._features

    @torch.inference_mode()
    def set_images(self, images: Sequence[np.ndarray]) -> None:
        """Embed ``(H, W, 3)`` uint8 RGB images (any sizes); replaces the previous batch."""
        if not images:
            raise ValueError("set_images needs at least one image")
        self._sizes = [(int(im.shape[0]), int(im.shape[1])) for im in images]
        self._features = self.encode(images)

    @torch.inference_mode()
    def encode(self, images: Sequence[np.ndarray], flip: str | None = None) -> ImageFeatures:
        """The features of ``(H, W, 3)`` uint8 RGB images, without keeping them (``set_images`` keeps them).

        Args:
            images: any sizes; each is resized by :attr:`transform` to the model input.
            flip: ``"hflip"`` or ``"vflip"`` mirrors the resized model input (so the features are those of the
                mirrored model frame, whatever the resize mode), ``None`` keeps it.
        """
        return self._embed(self._model_inputs(images), flip)

    @torch.inference_mode()
    def encode_mirrored(self, images: Sequence[np.ndarray], flips: Sequence[str]) -> dict[str, ImageFeatures]:
        """:meth:`encode` of the same images under each of ``flips`` (the images are resized once)."""
        if not flips:
            return {}
        inputs = self._model_inputs(images)
        return {f: self._embed(inputs, f) for f in flips}

    def _model_inputs(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The images resized to the model input, ``(n, S, S, 3)`` uint8 per chunk of :attr:`encoder_batch`."""
        return [np.stack([self.transform.apply_image(im) for im in images[start : start + self.encoder_batch]])
                for start in range(0, len(images), self.encoder_batch)]

    def _embed(self, inputs: Sequence[np.ndarray], flip: str | None) -> ImageFeatures:
        if flip is not None and flip not in FLIPS:
            raise ValueError(f"unknown flip {flip!r}; use one of {sorted(FLIPS)}")
        chunks = []
        for batch in inputs:
            x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float()
            if flip is not None:
                x = x.flip(FLIPS[flip])
            chunks.append(self.model.embed(x))
        if len(chunks) == 1:
            return chunks[0]
        hires = None
        if chunks[0].hires is not None:
            hires = (torch.cat([c.hires[0] for c in chunks]), torch.cat([c.hires[1] for c in chunks]))
        stride8 = torch.cat([c.stride8 for c in chunks]) if chunks[0].stride8 is not None else None
        return ImageFeatures(torch.cat([c.embedding for c in chunks]), hires, stride8)

    @torch.inference_mode()
    def decode_candidates(
        self,
        boxes: Sequence[np.ndarray],
        scores: Sequence[np.ndarray | None] | None = None,
        image_index: Sequence[int] | None = None,
    ) -> list[CandidateSet]:
        """Decode every box of every image in batched passes of ``max_prompts_per_pass`` prompts across images.

        Args:
            boxes: one ``(K_i, 4)`` array per image, XYXY original pixels, ``K_i ≥ 1``.
            scores: optional ``(K_i,)`` scores in [0, 1] per image.
            image_index: which of the images set by :meth:`set_images` each entry of ``boxes`` belongs to
                (default: all of them, in order).
        """
        if self._features is None:
            raise RuntimeError("call set_images before decode_candidates")
        images = list(range(len(self._sizes))) if image_index is None else [int(i) for i in image_index]
        if len(boxes) != len(images):
            raise ValueError(f"got boxes for {len(boxes)} images, but {len(images)} are meant")
        model_boxes, index, counts = [], [], []
        for i, b in zip(images, boxes, strict=True):
            hw = self._sizes[i]
            b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
            if len(b) == 0:
                raise ValueError(f"image {i} has no box")
            model_boxes.append(self.transform.apply_boxes(b, hw))
            index += [i] * len(b)
            counts.append(len(b))
        all_boxes = torch.from_numpy(np.concatenate(model_boxes)).float().to(self.device)
        all_index = torch.tensor(index, dtype=torch.long, device=self.device)
        outs = [
            self.model.decode(self._features, all_boxes[s : s + self.max_prompts_per_pass],
                              all_index[s : s + self.max_prompts_per_pass])
            for s in range(0, len(index), self.max_prompts_per_pass)
        ]
        probs = torch.sigmoid(torch.cat([o.mask_logits for o in outs])).float().cpu()
        iou = torch.cat([o.iou for o in outs]).float().cpu()
        presence = None
        if outs[0].presence_logit is not None:
            presence = torch.sigmoid(torch.cat([o.presence_logit for o in outs])).float().cpu()
        emb = torch.cat([o.embedding for o in outs]).float().cpu()
        results, start = [], 0
        for i, (img, k) in enumerate(zip(images, counts, strict=True)):
            sl = slice(start, start + k)
            s = None if scores is None or scores[i] is None else np.asarray(scores[i], dtype=np.float32)
            results.append(CandidateSet(
                image_hw=self._sizes[img],
                boxes=np.asarray(boxes[i], dtype=np.float64).reshape(-1, 4),
                scores=torch.ones(k) if s is None else torch.from_numpy(s.reshape(k)),
                probs=probs[sl], iou=iou[sl], presence=None if presence is None else presence[sl],
                embeddings=emb[sl],
            ))
            start += k
        return results

    def aggregate(self, cands: CandidateSet, cfg: AggregationConfig | None = None) -> SegmentationResult:
        """Fuse one image's candidates and map the mask back to the original image."""
        cfg = cfg or self.aggregation
        probs = cands.probs
        if cfg.box_margin is not None:
            model_boxes = torch.from_numpy(self.transform.apply_boxes(cands.boxes, cands.image_hw))
            probs = probs * box_window(model_boxes, tuple(probs.shape[-2:]), self.transform.size, cfg.box_margin)
        agg = aggregate(probs, cands.iou, cands.presence, cands.scores, cfg)
        if agg.lesion_present:
            prob = self.transform.maps_to_original(agg.probability.unsqueeze(0), cands.image_hw)[0]
            mask = (prob >= 0.5).numpy()
        else:
            mask = np.zeros(cands.image_hw, dtype=bool)
        status = "ok" if agg.lesion_present and mask.any() else "not_found"
        candidates = tuple(
            CandidateResult(
                box=tuple(float(v) for v in cands.boxes[k]),  # type: ignore[arg-type]
                score=float(cands.scores[k]),
                predicted_iou=float(cands.iou[k]),
                presence=None if cands.presence is None else float(cands.presence[k]),
                reliability=float(agg.reliability[k]),
                weight=float(agg.weights[k]),
            )
            for k in range(len(cands.boxes))
        )
        embedding = (agg.weights.unsqueeze(1) * cands.embeddings).sum(0).numpy().astype(np.float32)
        return SegmentationResult(mask, agg.image_reliability if status == "ok" else 0.0, status, candidates,
                                  embedding)

    def predict(
        self, boxes: Sequence[np.ndarray], scores: Sequence[np.ndarray | None] | None = None
    ) -> list[SegmentationResult]:
        """Segment every image set by :meth:`set_images` from its box candidates."""
        return [self.aggregate(c) for c in self.decode_candidates(boxes, scores)]

"""Text prompt → ranked box candidates, on the image features the segmenter already computed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from radvlsm.errors import InputError
from radvlsm.stage1_localize.boxes import BoxParams, extract_boxes, to_original
from radvlsm.stage1_localize.modeling import TextPromptedLocalizer
from radvlsm.stage1_localize.phrases import DEFAULT_PROMPT
from radvlsm.stage1_localize.text import PhraseEncoder
from radvlsm.stage2_segment.modeling import ImageFeatures
from radvlsm.stage2_segment.predictor import FLIPS, SegmenterPredictor
from radvlsm.stage2_segment.transforms import ResizeTransform


@dataclass(frozen=True, eq=False)
class LocalizationResult:
    """Where the prompt was found in one image.

    Attributes:
        prompt: the text prompt.
        boxes: ``(K, 4)`` float64 XYXY in pixels of the original image (edges, ``x1``/``y1`` exclusive), best
            first; ``K = 0`` when not found.
        scores: ``(K,)`` float64 in [0, 1] (see :mod:`radvlsm.stage1_localize.boxes` for the formula).
        itm_probability: the image–text matching probability of the prompt on the image.
        relevance: ``(R, R)`` float32 relevance probabilities over the model input frame.
        found: ``False`` when nothing matches the prompt (then there are no boxes).
    """

    prompt: str
    boxes: np.ndarray
    scores: np.ndarray
    itm_probability: float
    relevance: np.ndarray
    found: bool

    @property
    def status(self) -> str:
        return "ok" if self.found else "not_found"


class LocalizerPredictor:
    """Localizes text prompts with a :class:`TextPromptedLocalizer` and a frozen sentence encoder.

    It never runs an image encoder: it reads the ``ImageFeatures`` the segmenter computed (``SegmenterPredictor
    .set_images``), so one encoder pass serves the localizer and the segmenter.
    """

    def __init__(self, localizer: TextPromptedLocalizer, text_encoder: PhraseEncoder,
                 device: str | torch.device = "cpu", max_pairs_per_pass: int = 256) -> None:
        self.device = torch.device(device)
        self.model = localizer.to(self.device).eval()
        self.text_encoder = text_encoder
        self.max_pairs_per_pass = max_pairs_per_pass

    @torch.inference_mode()
    def locate(
        self,
        features: ImageFeatures,
        image_sizes: Sequence[tuple[int, int]],
        transform: ResizeTransform,
        prompt: str = DEFAULT_PROMPT,
        top_k: int | None = None,
        image_index: Sequence[int] | None = None,
        flipped: Mapping[str, ImageFeatures] | None = None,
    ) -> list[LocalizationResult]:
        """Localize ``prompt`` in every image of ``features`` (or those listed by ``image_index``).

        Args:
            features: the segmenter's features of ``B`` images (``SegmenterPredictor`` keeps them).
            image_sizes: ``(H, W)`` of each of the ``B`` original images.
            transform: the segmenter's original ↔ model-frame transform.
            prompt: free text ("melanoma", "polyp" …).
            top_k: candidates per image (default: the config's ``top_k``, 5).
            image_index: which of the ``B`` images to answer for (default: all, in order).
            flipped: test-time augmentation: features of the same images with the model input mirrored
                (``SegmenterPredictor.encode_mirrored(images, flips)``, keyed by the flip's name in
                :data:`~radvlsm.stage2_segment.predictor.FLIPS`); the relevance maps and matching probabilities
                of every view are averaged (each map mirrored back) before the boxes are drawn.

        Raises:
            InputError: an empty prompt. ConfigError: features of another kind of segmenter.
        """
        text = " ".join(str(prompt).split())
        if not text:
            raise InputError(None, "the localization prompt is empty")
        b = features.batch_size
        if len(image_sizes) != b:
            raise ValueError(f"features hold {b} images but {len(image_sizes)} sizes were given")
        images = list(range(b)) if image_index is None else [int(i) for i in image_index]
        if not images:
            return []
        vec = self.text_encoder.encode([text]).to(self.device)
        params = BoxParams.from_config(self.model.config, top_k)
        itm, rel = self._maps(features, images, vec)
        if flipped:
            for name, feats in flipped.items():
                if name not in FLIPS or feats.batch_size != b:
                    raise ValueError(f"flipped features {name!r}: need one of {sorted(FLIPS)} for all {b} images")
                itm_f, rel_f = self._maps(feats, images, vec)
                itm = itm + itm_f
                rel = rel + np.flip(rel_f, axis=FLIPS[name])
            itm, rel = itm / (1 + len(flipped)), rel / (1 + len(flipped))
        cfg = self.model.config
        results = []
        for k, i in enumerate(images):
            mb = extract_boxes(rel[k], float(itm[k]), params, frame_size=cfg.image_size)
            hw = (int(image_sizes[i][0]), int(image_sizes[i][1]))
            results.append(LocalizationResult(
                prompt=text, boxes=to_original(mb.boxes, hw, transform), scores=mb.scores,
                itm_probability=float(itm[k]), relevance=rel[k], found=mb.found,
            ))
        return results

    def _maps(self, features: ImageFeatures, images: Sequence[int],
              vec: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Matching probabilities ``(n,)`` and relevance maps ``(n, R, R)`` of the sentence vector ``vec (1, d)``
        on the listed images of ``features``."""
        hires4 = features.hires[0] if features.hires is not None else None
        cfg = self.model.config
        stride8 = features.stride8 if cfg.branch_in_dim > 0 else None  # the model checks the shapes
        itm_all, rel_all = [], []
        for s in range(0, len(images), self.max_pairs_per_pass):
            idx = torch.tensor(images[s : s + self.max_pairs_per_pass], dtype=torch.long, device=self.device)
            out = self.model(features.embedding.to(self.device), None if hires4 is None else hires4.to(self.device),
                             vec.expand(len(idx), -1), idx, with_itc=False,
                             stride8=None if stride8 is None else stride8.to(self.device))
            itm_all.append(torch.sigmoid(out.itm_logits).float().cpu())
            rel_all.append(torch.sigmoid(out.relevance_logits).float().cpu())
        return torch.cat(itm_all).numpy(), torch.cat(rel_all).numpy()

    def locate_on(self, segmenter: SegmenterPredictor, prompt: str = DEFAULT_PROMPT, top_k: int | None = None,
                  flipped: Mapping[str, ImageFeatures] | None = None) -> list[LocalizationResult]:
        """:meth:`locate` on the images a :class:`SegmenterPredictor` holds (after its ``set_images``)."""
        features = segmenter.features
        if features is None:
            raise RuntimeError("call the segmenter predictor's set_images before locating prompts on its images")
        return self.locate(features, segmenter.image_sizes, segmenter.transform, prompt, top_k, flipped=flipped)

"""Training recipe of the text-prompted localizer (``radvlsm train localizer``).

The segmenter is frozen: its image encoder runs ONCE per training image and augmentation (identity, horizontal
flip, vertical flip, 90° rotation of the input image, mask transformed alike; the command's defaults add 270°
rotation and transposition, and 4 context blocks in the model), and the features (embedding and
stride-4 ``hires4``) are kept as float16 tensors in memory (and in ``OUT/feature_cache.pt``, reused by
``--resume`` when the segmenter and the data are the same). Epochs then cost only the Q-Former and its heads.
With ``image_branch`` the stride-8 features are cached too, and the localizer's own copy of the segmenter's last
stage and neck (:class:`~radvlsm.stage1_localize.modeling.ImageBranch`) trains on them; the segmenter stays frozen.

Data, by ``domain`` (that of the segmenter): PH2 folds other than :data:`~radvlsm.data.splits.PH2_HOLDOUT_FOLD`
(repeated ``ph2_repeat`` times) and Kvasir-SEG ``train``, validation on PH2's hold-out fold and Kvasir-SEG ``val``;
or, for ultrasound, BUSI ``train`` (its normal images included: there every phrase is a negative) and BUS-BRA's
training folds, validation on BUSI ``val``. Validation is monitoring only: the exported model is the last epoch's.

Each training image is asked one positive phrase and ``negatives_per_image`` negative phrases (the rule of
:mod:`radvlsm.stage1_localize.phrases`: generic and own-domain phrases positive, other domains' negative).
Sentence vectors come from the frozen text encoder, once per distinct phrase, with small Gaussian noise added
in training (``text_noise``) so that the projections stay smooth between phrasings.

Losses (after BLIP-2's first stage, plus dense grounding):

- ITC: InfoNCE between the images' unimodal query features and the batch's phrases (positives and negatives),
  in both directions, with multiple positives: the numerator sums over every phrase positive for the image
  (every same-domain or generic phrase of the batch), so that same-domain phrases are never pushed away;
- ITM: binary cross-entropy on the multimodal pass, label 1 for positives, 0 for other-domain phrases;
- grounding: binary cross-entropy on the ``R × R`` relevance map against the mask's area fraction per cell
  (positives) or zeros (negatives), plus soft Dice on the positives.

After training, when the validation images include images without a lesion (ultrasound: BUSI's normal images),
the matching threshold is set to the least that rejects ``normal_rejection`` of them (:func:`choose_itm_threshold`).

Outputs: ``OUT/checkpoint.pt`` after every epoch (tensors and plain values only, loadable with
``torch.load(weights_only=True)``), ``OUT/train.log`` (one JSON line per epoch), ``OUT/train_config.json``,
``OUT/itm_threshold.json`` (the threshold's choice, when one was made), ``OUT/final/`` (``model.safetensors`` +
``config.json``, see :func:`~radvlsm.stage1_localize.build.save_localizer`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.nn import functional as F

from radvlsm.data.boxes import mask_to_box
from radvlsm.data.cases import read_dataset
from radvlsm.data.splits import BUSBRA_HOLDOUT_FOLD, busbra_folds, busi_split
from radvlsm.errors import ConfigError
from radvlsm.metrics.detection import recall_at_k
from radvlsm.stage1_localize import phrases as ph
from radvlsm.stage1_localize.boxes import BoxParams, extract_boxes
from radvlsm.stage1_localize.build import (
    bind_to_segmenter,
    init_image_branch,
    init_qformer_from_blip2,
    localizer_config_from_blip2,
    save_localizer,
    segmenter_fingerprint,
    with_image_branch,
)
from radvlsm.stage1_localize.config import TRAINED_ITM_THRESHOLD, LocalizerConfig
from radvlsm.stage1_localize.modeling import TextPromptedLocalizer
from radvlsm.stage1_localize.text import PhraseEncoder, TextEncoder
from radvlsm.stage2_segment.modeling import LesionSegmenter
from radvlsm.stage2_segment.train import (
    CachedSet,
    TrainingDomain,
    cache_cases,
    lesion_cases,
    save_checkpoint,
    shared_training_data,
    warmup_cosine,
)

log = logging.getLogger(__name__)

AUGMENTATIONS: Mapping[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda a: a,
    "hflip": lambda a: a[:, ::-1],
    "vflip": lambda a: a[::-1],
    "rot90": lambda a: np.rot90(a, 1),
    "rot270": lambda a: np.rot90(a, 3),
    "transpose": lambda a: np.swapaxes(a, 0, 1),
}


@dataclass(frozen=True)
class LocalizerTrainConfig:
    """Hyper-parameters of one localizer training run (saved as ``OUT/train_config.json``).

    ``init_qformer``: an HF BLIP-2 folder whose Q-Former initialises ours (its Q-Former settings then replace
    the model's); empty = random initialisation.
    ``image_branch``: give the localizer its own copy of the segmenter's last encoder stage and neck (on the
    stride-8 features, see :class:`~radvlsm.stage1_localize.modeling.ImageBranch`), trained at ``branch_lr_scale``
    times the learning rate.
    ``normal_rejection``: when the validation images hold images without a lesion (BUSI's normal images), the
    trained model's matching threshold is the least at which at least this share of them is rejected
    (:func:`choose_itm_threshold`); ``None`` keeps ``model.itm_threshold``.
    """

    epochs: int = 30
    batch_size: int = 32
    negatives_per_image: int = 2
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    augmentations: tuple[str, ...] = ("identity", "hflip", "vflip", "rot90")
    generic_phrase_prob: float = 0.25
    label_phrase_prob: float = 0.3
    text_noise: float = 0.02
    ph2_repeat: int = 3
    normal_repeat: int = 4
    domain: TrainingDomain = TrainingDomain.DERMOSCOPY_COLONOSCOPY
    loss_itc: float = 0.5
    loss_itm: float = 1.0
    loss_bce: float = 1.0
    loss_dice: float = 1.0
    seed: int = 2026
    threads: int = 2
    feature_batch: int = 16
    cache_features_on_disk: bool = True
    init_qformer: str = ""
    image_branch: bool = False
    branch_lr_scale: float = 0.3
    normal_rejection: float | None = 0.95
    model: LocalizerConfig = field(default_factory=LocalizerConfig)


@dataclass(frozen=True)
class LocalizerData:
    """Training and validation images (resized to the segmenter's input) and label rows by case id.

    ``train`` holds ``(set, times drawn per epoch)`` pairs; an image whose mask is empty (a BUSI normal) is a
    "no lesion" image: every phrase asked of it is a negative.
    """

    train: tuple[tuple[CachedSet, int], ...]
    val: CachedSet
    labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


def localizer_training_data(datasets_root: Path, size: int,
                            domain: TrainingDomain = TrainingDomain.DERMOSCOPY_COLONOSCOPY,
                            ph2_repeat: int = 3, normal_repeat: int = 4) -> LocalizerData:
    """The splits of record of ``domain`` (those of the segmenter) plus the datasets' ``labels.csv`` rows.

    Ultrasound adds BUSI's normal images of the same parts (drawn ``normal_repeat`` times per epoch, so that
    "no lesion" is seen often enough to be learnt).
    """
    if domain is TrainingDomain.ULTRASOUND:
        busi = read_dataset(datasets_root / "busi", "busi")
        bra = read_dataset(datasets_root / "bus-bra", "bus-bra")
        split = busi_split()
        folds = busbra_folds({c.case_id: c.labels for c in bra.cases})
        part = busi.subset(split.ids("train")).cases
        normals = tuple(c for c in part if (c.diagnosis or "").lower() == "normal")
        train = (
            (cache_cases(lesion_cases(part), "busi", size), 2),
            (cache_cases(normals, "busi", size), normal_repeat),
            (cache_cases(bra.subset(folds.ids_except(str(BUSBRA_HOLDOUT_FOLD))).cases, "bus-bra", size), 1),
        )
        val = cache_cases(busi.subset(split.ids("val")).cases, "busi", size)
        labels = {c.case_id: dict(c.labels) for c in busi.cases + bra.cases}
        return LocalizerData(train, val, labels)
    ph2_train, kv_train, val = shared_training_data(datasets_root, size)
    labels = {c.case_id: dict(c.labels) for c in read_dataset(datasets_root / "ph2", "ph2").cases}
    return LocalizerData(((ph2_train, ph2_repeat), (kv_train, 1)), val, labels)


# ------------------------------------------------------------------------------------------ features


@dataclass(frozen=True, eq=False)
class FeatureCache:
    """Frozen-segmenter features of ``N`` images under ``A`` augmentations.

    Attributes:
        embedding: ``(N, A, D, g, g)`` float16.
        hires4: ``(N, A, D/8, 4g, 4g)`` float16, or ``None``.
        stride8: ``(N, A, C, 2g, 2g)`` float16 stride-8 features (kept for localizers with an image branch), or
            ``None``.
        masks: ``(N, A, R, R)`` uint8, 255 × the mask's area fraction per map cell.
        boxes: ``(N, A, 4)`` float32 ground-truth box of the whole mask, XYXY model-input pixels.
    """

    case_ids: tuple[str, ...]
    source: tuple[str, ...]
    augmentations: tuple[str, ...]
    embedding: torch.Tensor
    hires4: torch.Tensor | None
    masks: torch.Tensor
    boxes: torch.Tensor
    stride8: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.case_ids)

    @property
    def identity_index(self) -> int:
        """Index of the unaugmented view along ``A`` (the first view when there is none)."""
        return self.augmentations.index("identity") if "identity" in self.augmentations else 0

    def features(self, items: torch.Tensor, views: torch.Tensor | int
                 ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(embedding, hires4, stride8)`` of ``items`` under ``views`` (one per item, or one for all), float32."""
        def take(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[items, views].float()

        return self.embedding[items, views].float(), take(self.hires4), take(self.stride8)

    def has_lesion(self, item: int) -> bool:
        """Whether image ``item`` holds a lesion (its identity-view mask is not empty)."""
        return bool(self.masks[item, self.identity_index].any())


def compute_feature_cache(
    segmenter: LesionSegmenter,
    data: CachedSet,
    augmentations: Sequence[str],
    map_size: int,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
    with_stride8: bool = False,
) -> FeatureCache:
    """Run the frozen image encoder once per image and augmentation; see :class:`FeatureCache`."""
    unknown = [a for a in augmentations if a not in AUGMENTATIONS]
    if unknown:
        raise ConfigError(f"unknown augmentations {unknown}; known: {sorted(AUGMENTATIONS)}")
    segmenter.eval()
    n, A = len(data.case_ids), len(augmentations)
    embs, hires, masks, boxes, s8 = [], [], [], [], []
    items = [(i, a) for i in range(n) for a in range(A)]
    with torch.inference_mode():
        for s in range(0, len(items), batch_size):
            chunk = items[s : s + batch_size]
            imgs = np.stack([np.ascontiguousarray(AUGMENTATIONS[augmentations[a]](data.images[i])) for i, a in chunk])
            feats = segmenter.embed(torch.from_numpy(imgs).permute(0, 3, 1, 2).float().to(segmenter.device))
            embs.append(feats.embedding.half().cpu())
            if feats.hires is not None:
                hires.append(feats.hires[0].half().cpu())
            if with_stride8:
                if feats.stride8 is None:
                    raise ConfigError("this segmenter gives no stride-8 features (an image branch needs them)")
                s8.append(feats.stride8.half().cpu())
            for i, a in chunk:
                m = np.ascontiguousarray(AUGMENTATIONS[augmentations[a]](data.masks[i])).astype(np.float32)
                small = cv2.resize(m, (map_size, map_size), interpolation=cv2.INTER_AREA)
                masks.append(torch.from_numpy(np.round(np.clip(small, 0, 1) * 255).astype(np.uint8)))
                box = mask_to_box(m)
                boxes.append(torch.zeros(4) if box is None else torch.from_numpy(box).float())
            if progress is not None:
                progress(len(chunk))
    emb = torch.cat(embs).view(n, A, *embs[0].shape[1:])
    hi = torch.cat(hires).view(n, A, *hires[0].shape[1:]) if hires else None
    return FeatureCache(
        case_ids=tuple(data.case_ids), source=tuple(data.source), augmentations=tuple(augmentations),
        embedding=emb, hires4=hi, masks=torch.stack(masks).view(n, A, map_size, map_size),
        boxes=torch.stack(boxes).view(n, A, 4),
        stride8=torch.cat(s8).view(n, A, *s8[0].shape[1:]) if s8 else None,
    )


def _cache_to_state(c: FeatureCache) -> dict:
    state: dict = {"case_ids": list(c.case_ids), "source": list(c.source), "augmentations": list(c.augmentations),
                   "embedding": c.embedding, "masks": c.masks, "boxes": c.boxes}
    if c.hires4 is not None:
        state["hires4"] = c.hires4
    if c.stride8 is not None:
        state["stride8"] = c.stride8
    return state


def _cache_from_state(s: Mapping) -> FeatureCache:
    return FeatureCache(tuple(s["case_ids"]), tuple(s["source"]), tuple(s["augmentations"]), s["embedding"],
                        s.get("hires4"), s["masks"], s["boxes"], s.get("stride8"))


def _cached_features(
    path: Path | None, fingerprint: str, segmenter: LesionSegmenter, sets: Mapping[str, tuple[CachedSet, tuple]],
    map_size: int, batch_size: int, console: Console | None, with_stride8: bool = False,
) -> dict[str, FeatureCache]:
    """Features of every set, from ``path`` when it was made by the same segmenter on the same cases."""
    if path is not None and path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:  # truncated/foreign
            log.warning("%s: unreadable feature cache (%s); recomputing", path, exc)
            state = {}
        ok = state.get("fingerprint") == fingerprint and state.get("map_size") == map_size and all(
            name in state and tuple(state[name]["case_ids"]) == tuple(data.case_ids)
            and tuple(state[name]["augmentations"]) == tuple(augs)
            and (not with_stride8 or "stride8" in state[name])
            for name, (data, augs) in sets.items()
        )
        if ok:
            log.info("features read from %s", path)
            return {name: _cache_from_state(state[name]) for name in sets}
        log.info("%s was made for other data or another segmenter; recomputing", path)
    total = sum(len(d.case_ids) * len(a) for d, a in sets.values())
    t0 = time.perf_counter()
    progress = Progress(TextColumn("[bold]caching segmenter features"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=console)
    out = {}
    with progress:
        task = progress.add_task("features", total=total)
        for name, (data, augs) in sets.items():
            out[name] = compute_feature_cache(segmenter, data, augs, map_size, batch_size,
                                              lambda k: progress.update(task, advance=k), with_stride8)
    log.info("computed %d image features in %.0f s", total, time.perf_counter() - t0)
    if path is not None:
        state = {"fingerprint": fingerprint, "map_size": map_size, **{k: _cache_to_state(v) for k, v in out.items()}}
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
    return out


# ------------------------------------------------------------------------------------------ phrases


@dataclass(frozen=True)
class PhraseTable:
    """The phrase vocabulary as indices: ``vectors (V, text_dim)``, ``positive (num_domains, V)`` bool."""

    phrases: tuple[str, ...]
    vectors: torch.Tensor
    positive: torch.Tensor
    domain_index: Mapping[str, int]
    generic: tuple[int, ...]
    domain_specific: Mapping[str, tuple[int, ...]]
    negatives_by_domain: Mapping[str, Mapping[str, tuple[int, ...]]]

    def index(self, phrase: str) -> int:
        return self.phrases.index(phrase)


def build_phrase_table(encoder: PhraseEncoder) -> PhraseTable:
    """Encode the train and held-out vocabularies once (held-out phrases only ever serve validation)."""
    vocab = tuple(dict.fromkeys(ph.train_vocabulary() + ph.held_out_vocabulary()))
    vectors = encoder.encode(list(vocab)).float()
    pos = torch.zeros(len(ph.DOMAINS), len(vocab), dtype=torch.bool)
    for d, dom in enumerate(ph.DOMAINS):
        for v, p in enumerate(vocab):
            pos[d, v] = bool(ph.is_positive(p, dom))
    idx = {p: i for i, p in enumerate(vocab)}
    spec = {d: tuple(idx[p] for p in ph.domain_train_phrases(d)) for d in ph.DOMAINS}
    negs = {d: {o: tuple(idx[p] for p in ph.domain_train_phrases(o) if p not in ph.phrase_pools(d).positive)
                for o in ph.DOMAINS if o != d} for d in ph.DOMAINS}
    return PhraseTable(vocab, vectors, pos, {d: i for i, d in enumerate(ph.DOMAINS)},
                       tuple(idx[p] for p in ph.GENERIC_TRAIN), spec, negs)


@dataclass(frozen=True)
class PairBatch:
    """One training batch: ``B`` images and ``N = B·(1 + negatives)`` (image, phrase) pairs.

    ``embedding (B,D,g,g)``, ``hires4 (B,D/8,4g,4g)`` or ``None``, ``stride8 (B,C,2g,2g)`` or ``None``,
    ``domains (B,)`` long, ``phrase (N,)`` long vocabulary indices, ``image_index (N,)``, ``match (N,)`` float
    {0,1}, ``targets (N,R,R)`` float in [0,1], ``lesion (B,)`` bool: the image holds a lesion (else every phrase
    asked of it is a negative).
    """

    embedding: torch.Tensor
    hires4: torch.Tensor | None
    domains: torch.Tensor
    lesion: torch.Tensor
    phrase: torch.Tensor
    image_index: torch.Tensor
    match: torch.Tensor
    targets: torch.Tensor
    stride8: torch.Tensor | None = None


def _sample_positive(rng: np.random.Generator, table: PhraseTable, domain: str, own: Sequence[int],
                     cfg: LocalizerTrainConfig) -> int:
    u = rng.random()
    if own and u < cfg.label_phrase_prob:
        return int(own[rng.integers(len(own))])
    if u < cfg.label_phrase_prob + cfg.generic_phrase_prob or not table.domain_specific[domain]:
        return int(table.generic[rng.integers(len(table.generic))])
    pool = table.domain_specific[domain]
    return int(pool[rng.integers(len(pool))])


def _sample_negative(rng: np.random.Generator, table: PhraseTable, domain: str) -> int:
    by_domain = [v for v in table.negatives_by_domain[domain].values() if v]
    pool = by_domain[rng.integers(len(by_domain))]
    return int(pool[rng.integers(len(pool))])


def make_pair_batch(
    cache: FeatureCache, items: np.ndarray, rng: np.random.Generator, table: PhraseTable,
    own_phrases: Sequence[tuple[int, ...]], cfg: LocalizerTrainConfig,
) -> PairBatch:
    """Pairs for the cached items ``items (B,)`` (one random augmentation each)."""
    A = len(cache.augmentations)
    aug = rng.integers(A, size=len(items))
    it = torch.from_numpy(np.asarray(items, dtype=np.int64))
    ag = torch.from_numpy(aug.astype(np.int64))
    emb, hires, s8 = cache.features(it, ag)
    masks = cache.masks[it, ag].float() / 255.0
    phrase, index, match, targets, domains = [], [], [], [], []
    lesion = masks.flatten(1).amax(1) > 0
    zeros = torch.zeros_like(masks[0])
    for b, i in enumerate(items):
        dom = ph.domain_of(cache.source[int(i)])
        domains.append(table.domain_index[dom])
        phrase.append(_sample_positive(rng, table, dom, own_phrases[int(i)], cfg))
        index.append(b)
        match.append(1.0 if bool(lesion[b]) else 0.0)
        targets.append(masks[b])
        for _ in range(cfg.negatives_per_image):
            phrase.append(_sample_negative(rng, table, dom))
            index.append(b)
            match.append(0.0)
            targets.append(zeros)
    return PairBatch(emb, hires, torch.tensor(domains), lesion, torch.tensor(phrase), torch.tensor(index),
                     torch.tensor(match), torch.stack(targets), s8)


# ------------------------------------------------------------------------------------------ losses


@dataclass(frozen=True)
class LossTerms:
    total: torch.Tensor
    itc: float
    itm: float
    bce: float
    dice: float


def _multi_positive_nce(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Mean over rows with at least one positive and one negative of ``-log Σ_pos softmax(row)``."""
    valid = positive.any(1) & (~positive).any(1)
    if not bool(valid.any()):
        return logits.sum() * 0.0
    num = torch.logsumexp(logits.masked_fill(~positive, float("-inf")), dim=1)
    den = torch.logsumexp(logits, dim=1)
    return (den - num)[valid].mean()


def localizer_loss(model: TextPromptedLocalizer, batch: PairBatch, table: PhraseTable,
                   cfg: LocalizerTrainConfig, text: torch.Tensor) -> LossTerms:
    """The ITC + ITM + grounding loss of one batch (``text (N, text_dim)`` the pairs' sentence vectors)."""
    out = model(batch.embedding, batch.hires4, text, batch.image_index, with_itc=True, stride8=batch.stride8)
    assert out.image_itc is not None and out.text_itc is not None  # asked for with_itc
    sim = model.similarity(out.image_itc, out.text_itc)  # (B, N)
    # (B, N): phrase n positive for image b (never for an image without a lesion)
    pos = table.positive[batch.domains][:, batch.phrase] & batch.lesion[:, None]
    itc = 0.5 * (_multi_positive_nce(sim, pos) + _multi_positive_nce(sim.t(), pos.t()))
    itm = F.binary_cross_entropy_with_logits(out.itm_logits, batch.match)
    logits = out.relevance_logits
    bce = F.binary_cross_entropy_with_logits(logits, batch.targets)
    sel = batch.match > 0.5
    p = torch.sigmoid(logits[sel]).flatten(1)
    t = batch.targets[sel].flatten(1)
    dice = (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean() if bool(sel.any()) else logits.sum() * 0
    total = cfg.loss_itc * itc + cfg.loss_itm * itm + cfg.loss_bce * bce + cfg.loss_dice * dice
    return LossTerms(total, float(itc.detach()), float(itm.detach()), float(bce.detach()), float(dice.detach()))


# ------------------------------------------------------------------------------------------ validation


def _val_prompts(domain: str, k: int) -> dict[str, str]:
    """Prompts asked of the ``k``-th validation image of ``domain``: the default, the domain's main train
    phrase, a held-out paraphrase, and a negative (another domain's train or held-out phrase, in turn)."""
    held = ph.DOMAIN_HELD_OUT[domain]
    others = [d for d in (ph.DERMOSCOPY, ph.COLONOSCOPY) if d != domain] or [ph.DERMOSCOPY]
    neg_pool = [p for d in others for p in ph.DOMAIN_TRAIN[d] + ph.DOMAIN_HELD_OUT[d]]
    return {
        "default": ph.DEFAULT_PROMPT,
        "domain": ph.DOMAIN_TRAIN[domain][0],
        "heldout": held[k % len(held)],
        "negative": neg_pool[k % len(neg_pool)],
    }


@torch.no_grad()
def _val_outputs(model: TextPromptedLocalizer, cache: FeatureCache, encoder: PhraseEncoder,
                 asks: Sequence[tuple[int, str, str]], batch_size: int = 64
                 ) -> Iterator[tuple[int, str, np.ndarray, float]]:
    """For each ``(image, kind, prompt)`` of ``asks``: ``(image, kind, relevance probability map, matching
    probability)`` on the identity features of ``cache``."""
    model.eval()
    a0 = cache.identity_index
    vecs = encoder.encode([p for _, _, p in asks]).float()
    for s in range(0, len(asks), batch_size):
        chunk = asks[s : s + batch_size]
        imgs = sorted({i for i, _, _ in chunk})
        local = {i: j for j, i in enumerate(imgs)}
        it = torch.tensor(imgs)
        emb, hires, s8 = cache.features(it, a0)
        out = model(emb, hires, vecs[s : s + len(chunk)], torch.tensor([local[i] for i, _, _ in chunk]),
                    with_itc=False, stride8=s8)
        itm = torch.sigmoid(out.itm_logits).numpy()
        prob = torch.sigmoid(out.relevance_logits).numpy()
        for j, (i, kind, _) in enumerate(chunk):
            yield i, kind, prob[j], float(itm[j])


def validate_localizer(model: TextPromptedLocalizer, cache: FeatureCache, encoder: PhraseEncoder,
                       batch_size: int = 64) -> dict[str, float]:
    """Box recall@1/@5 (IoU ≥ 0.5, whole-mask box) per dataset and prompt kind, relevance-map Dice (0.5) and
    the rejection rate of cross-domain negative prompts, on the identity features of ``cache``."""
    params = BoxParams.from_config(model.config, top_k=5)
    a0 = cache.identity_index
    counters: dict[str, int] = {}
    asks: list[tuple[int, str, str]] = []  # (image, kind, prompt)
    for i, src in enumerate(cache.source):
        dom = ph.domain_of(src)
        k = counters.get(dom, 0)
        counters[dom] = k + 1
        asks += [(i, kind, p) for kind, p in _val_prompts(dom, k).items()]
    found: dict[tuple[str, str], list] = {}
    for i, kind, prob, itm in _val_outputs(model, cache, encoder, asks, batch_size):
        mb = extract_boxes(prob, itm, params, frame_size=model.config.image_size)
        gt = cache.boxes[i, a0].numpy().astype(np.float64)
        target = cache.masks[i, a0].numpy() >= 128
        if kind != "negative" and not cache.has_lesion(i):
            kind = f"normal-{kind}"  # an image without a lesion: every prompt should find nothing
        pred = prob >= 0.5
        denom = pred.sum() + target.sum()
        dice = 1.0 if denom == 0 else 2 * np.logical_and(pred, target).sum() / denom
        found.setdefault((cache.source[i], kind), []).append((mb, gt, dice))
    rec: dict[str, float] = {}
    for (src, kind), rows in sorted(found.items()):
        key = f"{src}_{kind}"
        if kind == "negative" or kind.startswith("normal-"):
            rec[f"{key}_rejected"] = float(np.mean([not mb.found for mb, _, _ in rows]))
            continue
        cands = [mb.boxes for mb, _, _ in rows]
        gts = [gt for _, gt, _ in rows]
        rec[f"{key}_r1"] = float(recall_at_k(cands, gts, 1))
        rec[f"{key}_r5"] = float(recall_at_k(cands, gts, 5))
        rec[f"{key}_found"] = float(np.mean([mb.found for mb, _, _ in rows]))
        rec[f"{key}_map_dice"] = float(np.mean([d for _, _, d in rows]))
    return rec


#: Where the recipe records its choice of the matching threshold (in the run folder).
THRESHOLD_FILE = "itm_threshold.json"
#: Matching thresholds :func:`choose_itm_threshold` may choose from (never below the boundary the ITM loss trains
#: for, :data:`~radvlsm.stage1_localize.config.TRAINED_ITM_THRESHOLD`).
ITM_THRESHOLD_GRID = (TRAINED_ITM_THRESHOLD, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


@dataclass(frozen=True)
class ThresholdChoice:
    """What :func:`choose_itm_threshold` found: the chosen threshold (``None``: the validation images hold no
    lesion-free image, nothing to choose on) and, per threshold of the grid, the share of the (lesion-free
    image, phrase) pairs rejected."""

    threshold: float | None
    rejected: tuple[tuple[float, float], ...] = ()
    n_pairs: int = 0


def choose_itm_threshold(model: TextPromptedLocalizer, cache: FeatureCache, encoder: PhraseEncoder,
                         target: float, grid: Sequence[float] = ITM_THRESHOLD_GRID) -> ThresholdChoice:
    """The least matching threshold of ``grid`` at which at least ``target`` of the validation images without a
    lesion (BUSI's normal images) come out "not found", the phrases the benchmark asks asked of each (the trained
    and paraphrase sets of :func:`~radvlsm.stage1_localize.phrases.prompt_sets`); the largest of the grid when
    none reaches it.

    A prompt counts as found at threshold ``t`` when its matching probability reaches ``t`` and the relevance map
    gives boxes (:func:`~radvlsm.stage1_localize.boxes.extract_boxes` with the model's other settings).
    """
    if not 0.0 < target <= 1.0:
        raise ConfigError(f"the normal-image rejection target must lie in (0, 1], got {target}")
    asks = [(i, "normal", p) for i, src in enumerate(cache.source) if not cache.has_lesion(i)
            for kind, phrases in ph.prompt_sets(ph.domain_of(src)).items() if kind != "negative" for p in phrases]
    if not asks:
        return ThresholdChoice(None)
    params = dataclasses.replace(BoxParams.from_config(model.config, top_k=5), itm_threshold=0.0)
    pairs = [(itm, extract_boxes(prob, itm, params, frame_size=model.config.image_size).found)
             for _, _, prob, itm in _val_outputs(model, cache, encoder, asks)]
    rejected = tuple((t, float(np.mean([not (found and itm >= t) for itm, found in pairs]))) for t in grid)
    chosen = next((t for t, r in rejected if r >= target), grid[-1])
    return ThresholdChoice(chosen, rejected, len(pairs))


# ------------------------------------------------------------------------------------------ training


def _lr_lambda(cfg: LocalizerTrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    return warmup_cosine(max(1, cfg.warmup_epochs * steps_per_epoch), cfg.epochs * steps_per_epoch)


def _concat_caches(caches: Sequence[FeatureCache]) -> FeatureCache:
    return FeatureCache(
        sum((c.case_ids for c in caches), ()), sum((c.source for c in caches), ()), caches[0].augmentations,
        torch.cat([c.embedding for c in caches]),
        None if caches[0].hires4 is None else torch.cat([c.hires4 for c in caches]),  # type: ignore[misc]
        torch.cat([c.masks for c in caches]), torch.cat([c.boxes for c in caches]),
        None if caches[0].stride8 is None else torch.cat([c.stride8 for c in caches]),  # type: ignore[misc]
    )


def _plain(x: object) -> object:
    """Numpy scalars → Python floats/ints (checkpoints hold plain values only)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def train_localizer(
    segmenter: LesionSegmenter,
    datasets_root: Path,
    out_dir: Path,
    cfg: LocalizerTrainConfig = LocalizerTrainConfig(),
    resume: bool = False,
    console: Console | None = None,
    data: LocalizerData | None = None,
    text_encoder: PhraseEncoder | None = None,
    segmenter_name: str = "",
) -> TextPromptedLocalizer:
    """Train (or resume) a localizer on the frozen ``segmenter``'s features; writes ``OUT/final/``.

    Args:
        segmenter: the segmenter whose image encoder the localizer will share (frozen here).
        datasets_root: the shared datasets folder (``ph2/``, ``kvasir-seg/``); unused when ``data`` is given.
        out_dir: checkpoints, logs, feature cache and ``final/``.
        cfg: hyper-parameters; its ``model``'s image-side fields are replaced by the segmenter's.
        resume: continue from ``OUT/checkpoint.pt`` when present.
        console: a rich console for the progress bars.
        data: replaces the shared datasets (tests pass small sets).
        text_encoder: the frozen sentence encoder (default: bundled MiniLM-L6).
        segmenter_name: recorded in the localizer's config (e.g. the ``--model`` spec of the segmenter).

    Returns:
        The trained localizer (eval mode).
    """
    torch.set_num_threads(cfg.threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    segmenter = segmenter.eval().requires_grad_(False)
    model_cfg = bind_to_segmenter(cfg.model, segmenter, segmenter_name)
    if cfg.image_branch:
        model_cfg = with_image_branch(model_cfg, segmenter)
    if cfg.init_qformer:
        model_cfg = localizer_config_from_blip2(cfg.init_qformer, base=model_cfg)
    cfg = dataclasses.replace(cfg, model=model_cfg)
    (out_dir / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n", encoding="utf-8")

    t0 = time.perf_counter()
    data = data or localizer_training_data(datasets_root, model_cfg.image_size, cfg.domain, cfg.ph2_repeat,
                                           cfg.normal_repeat)
    encoder = text_encoder or TextEncoder()
    table = build_phrase_table(encoder)
    fingerprint = model_cfg.segmenter_fingerprint or segmenter_fingerprint(segmenter)
    sets: dict[str, tuple[CachedSet, tuple]] = {
        f"train{k}": (part, tuple(cfg.augmentations)) for k, (part, _) in enumerate(data.train)
    }
    feats = _cached_features(
        out_dir / "feature_cache.pt" if cfg.cache_features_on_disk else None, fingerprint, segmenter,
        {**sets, "val": (data.val, ("identity",))}, model_cfg.map_size, cfg.feature_batch, console,
        with_stride8=model_cfg.branch_in_dim > 0,
    )
    parts = [feats.pop(f"train{k}") for k in range(len(data.train))]
    train = _concat_caches(parts)
    val = feats["val"]
    # small sets (PH2, BUSI's normals) are drawn several times per epoch
    starts = np.cumsum([0] + [len(p) for p in parts])
    pool = np.concatenate([np.tile(np.arange(starts[k], starts[k + 1]), times)
                           for k, (_, times) in enumerate(data.train)])
    own = [tuple(table.index(p) for p in ph.label_phrases(src, data.labels.get(cid)))
           for cid, src in zip(train.case_ids, train.source, strict=True)]
    log.info("localizer: %d training items (%s), %d validation images; ready in %.0f s", len(pool),
             ", ".join(f"{len(p)} {p.source[0] if p.source else '?'} x{t}" for p, (_, t) in zip(parts, data.train,
                                                                                                strict=True)),
             len(val), time.perf_counter() - t0)

    torch.manual_seed(cfg.seed)
    model = TextPromptedLocalizer(model_cfg)
    if cfg.init_qformer:
        n = init_qformer_from_blip2(model, cfg.init_qformer)
        log.info("Q-Former initialised from %s (%d tensors)", cfg.init_qformer, n)
    init_image_branch(model, segmenter)
    branch = set(model.image_branch.parameters()) if model.image_branch is not None else set()
    groups = [{"params": [p for p in model.parameters() if p not in branch], "lr": cfg.lr}]
    if branch:
        groups.append({"params": list(model.image_branch.parameters()), "lr": cfg.lr * cfg.branch_lr_scale})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    bs = min(cfg.batch_size, len(pool))
    steps = max(1, len(pool) // bs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, steps))
    start_epoch, history = 0, []
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        saved = LocalizerConfig.from_json(state["config"], ckpt_path)
        if saved != model_cfg:
            raise ConfigError(f"{ckpt_path}: the checkpoint was trained with another model config or segmenter; "
                              "start afresh in another folder")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        log.info("resumed from %s after epoch %d", ckpt_path, start_epoch)

    progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn(), console=console)
    with progress, (out_dir / "train.log").open("a") as logf:
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            torch.manual_seed(cfg.seed + epoch)
            rng = np.random.default_rng([cfg.seed, epoch])
            order = pool[rng.permutation(len(pool))[: steps * bs]].reshape(steps, bs)
            task = progress.add_task("train", total=steps, epoch=epoch + 1, loss=float("nan"))
            te = time.perf_counter()
            sums = np.zeros(5)
            for s in range(steps):
                batch = make_pair_batch(train, order[s], rng, table, own, cfg)
                text = table.vectors[batch.phrase]
                if cfg.text_noise > 0:
                    text = F.normalize(text + cfg.text_noise * torch.randn_like(text), dim=-1)
                terms = localizer_loss(model, batch, table, cfg, text)
                opt.zero_grad(set_to_none=True)
                terms.total.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                sums += [float(terms.total.detach()), terms.itc, terms.itm, terms.bce, terms.dice]
                progress.update(task, advance=1, loss=sums[0] / (s + 1))
            progress.remove_task(task)
            train_s = time.perf_counter() - te
            tv = time.perf_counter()
            val_rec = validate_localizer(model, val, encoder)
            means = (sums / steps).tolist()
            rec: dict = {"epoch": epoch + 1, "loss": means[0], "itc": means[1], "itm": means[2], "bce": means[3],
                   "dice": means[4], "lr": float(sched.get_last_lr()[0]),
                   "temperature": float(torch.exp(-model.logit_scale.detach())), "train_s": train_s,
                   "val_s": time.perf_counter() - tv, **{f"val_{k}": v for k, v in val_rec.items()}}
            rec = _plain(rec)  # type: ignore[assignment]
            history.append(rec)
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            log.info("epoch %d/%d  loss %.4f  %s  (%.0f s)", epoch + 1, cfg.epochs, rec["loss"],
                     "  ".join(f"{k} {v:.3f}" for k, v in val_rec.items() if k.endswith(("_r5", "_rejected"))),
                     train_s)
            save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                         "scheduler": sched.state_dict(), "epoch": epoch + 1, "history": history,
                                         "config": model_cfg.to_json()})
    model.eval()
    if cfg.normal_rejection is not None:
        choice = choose_itm_threshold(model, val, encoder, cfg.normal_rejection)
        if choice.threshold is not None:
            model.config = dataclasses.replace(model.config, itm_threshold=choice.threshold)
            log.info("matching threshold %.2f: the least that rejects >= %.0f%% of the %d (normal image, phrase) "
                     "validation pairs (rejected per threshold: %s)", choice.threshold, 100 * cfg.normal_rejection,
                     choice.n_pairs, ", ".join(f"{t:.2f} {r:.3f}" for t, r in choice.rejected))
            (out_dir / THRESHOLD_FILE).write_text(json.dumps(
                {"itm_threshold": choice.threshold, "normal_rejection": cfg.normal_rejection,
                 "pairs": choice.n_pairs, "rejected": {f"{t:.2f}": r for t, r in choice.rejected}}, indent=1) + "\n",
                encoding="utf-8")
    save_localizer(model, out_dir / "final")
    return model

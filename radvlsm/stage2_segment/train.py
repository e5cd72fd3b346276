"""Training recipe of the box-prompted segmenter (``radvlsm train segmenter``).

Data, by :class:`TrainingDomain` (the training parts of the splits of record, :mod:`radvlsm.data.splits`):

- ``dermoscopy-colonoscopy`` (the embedded default): PH2 folds other than the hold-out fold (twice per epoch)
  and Kvasir-SEG ``train``; validation on PH2's hold-out fold and Kvasir-SEG ``val``;
- ``ultrasound``: BUSI ``train`` and BUS-BRA folds other than its hold-out fold (lesion images only; BUSI's
  normal images teach the localizer, not the box-prompted segmenter); validation on BUSI ``val``.
- ``ct``: the axial slices holding nodule voxels of LIDC ``train`` nodules, as zoomed crops around the nodule
  (:mod:`radvlsm.stage2_segment.volume`); validation on LIDC ``val``.

Validation Dice is computed each epoch for monitoring only: the exported model is the last epoch's, chosen by no
validation figure; only the aggregation's presence threshold and box margin are chosen on the validation
images (:func:`choose_aggregation`, written to ``final/aggregation.json``). ``init_from`` starts from an
existing model's weights (fine-tuning) instead of at random.

Prompts: for every image, ``candidates`` boxes drawn MedSAM-style from the ground-truth box with random
edge jitter of increasing size, and with probability ``negative_prob`` one box that holds no lesion (its
target is an empty mask and its presence label 0), so the aggregation and presence heads learn what a
wrong candidate looks like.

Checkpoints: ``OUT/checkpoint.pt`` after every epoch (model, optimiser, schedule, epoch, history; tensors and
plain values only, loadable with ``weights_only=True``); ``--resume`` continues from it. ``OUT/train.log``
gets one line per epoch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from radvlsm.data.boxes import jitter_box, mask_to_box, negative_box
from radvlsm.data.cases import LesionCase, read_dataset
from radvlsm.data.splits import (
    BUSBRA_HOLDOUT_FOLD,
    PH2_HOLDOUT_FOLD,
    busbra_folds,
    busi_split,
    kvasir_split,
    lidc_split,
    ph2_folds,
)
from radvlsm.errors import ConfigError
from radvlsm.io import read_image, read_mask, to_display_rgb
from radvlsm.stage2_segment.aggregation import AGGREGATION_FILE, AggregationConfig
from radvlsm.stage2_segment.build import build_from_config, save_segmenter
from radvlsm.stage2_segment.config import SegmenterConfig
from radvlsm.stage2_segment.losses import LossWeights, segmenter_loss
from radvlsm.stage2_segment.modeling import LesionSegmenter

log = logging.getLogger(__name__)


class TrainingDomain(str, Enum):
    """Which shared datasets a segmenter (and its localizer) trains on."""

    DERMOSCOPY_COLONOSCOPY = "dermoscopy-colonoscopy"
    ULTRASOUND = "ultrasound"
    CT = "ct"


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (saved as ``OUT/train_config.json``).

    ``init_from``: a segmenter spec (``default``, a model folder) whose weights start the run; empty = random.
    ``upright``: the images have a fixed up (ultrasound: skin at the top), so no vertical flips or 90° turns.
    """

    epochs: int = 80
    batch_size: int = 16
    candidates: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 2
    jitter: tuple[float, ...] = (0.05, 0.15, 0.3, 0.2)
    exact_box_prob: float = 0.25
    negative_prob: float = 0.3
    ph2_repeat: int = 2
    domain: TrainingDomain = TrainingDomain.DERMOSCOPY_COLONOSCOPY
    init_from: str = ""
    upright: bool = False
    seed: int = 2026
    threads: int = 2
    loss: LossWeights = field(default_factory=LossWeights)
    model: SegmenterConfig = field(default_factory=SegmenterConfig)


@dataclass(frozen=True)
class CachedSet:
    """Images and masks resized to the model input, held in memory.

    ``images (N, S, S, 3)`` uint8, ``masks (N, S, S)`` uint8 {0, 1}, ``source`` the dataset name per image.
    """

    case_ids: tuple[str, ...]
    source: tuple[str, ...]
    images: np.ndarray
    masks: np.ndarray


def cache_cases(cases: Sequence[LesionCase], source: str, size: int) -> CachedSet:
    """Read and resize (stretch, area interpolation) every case; masks are thresholded after resizing."""
    imgs = np.zeros((len(cases), size, size, 3), np.uint8)
    msks = np.zeros((len(cases), size, size), np.uint8)
    for i, case in enumerate(cases):
        rgb = to_display_rgb(read_image(case.image_path))
        imgs[i] = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
        m = read_mask(case.mask_path).astype(np.float32)
        msks[i] = cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA) >= 0.5
    return CachedSet(tuple(c.case_id for c in cases), (source,) * len(cases), imgs, msks)


def concat_sets(sets: Sequence[CachedSet]) -> CachedSet:
    return CachedSet(
        sum((s.case_ids for s in sets), ()),
        sum((s.source for s in sets), ()),
        np.concatenate([s.images for s in sets]),
        np.concatenate([s.masks for s in sets]),
    )


@dataclass(frozen=True)
class TrainingSets:
    """The training images as ``(set, times drawn per epoch)`` pairs, and the validation images."""

    parts: tuple[tuple[CachedSet, int], ...]
    val: CachedSet

    def train(self) -> CachedSet:
        return concat_sets([s for s, k in self.parts for _ in range(k)])

    def describe(self) -> str:
        return ", ".join(f"{len(s.case_ids)} {s.source[0] if s.source else '?'}" + (f" x{k}" if k > 1 else "")
                         for s, k in self.parts)


def lesion_cases(cases: Sequence[LesionCase]) -> tuple[LesionCase, ...]:
    """The cases whose label is not ``normal`` (an image without a lesion has no box to prompt)."""
    return tuple(c for c in cases if (c.diagnosis or "").lower() != "normal")


def ultrasound_training_data(datasets_root: Path, size: int) -> TrainingSets:
    """BUSI train + BUS-BRA folds other than the hold-out (lesions only); validation BUSI val."""
    busi = read_dataset(datasets_root / "busi", "busi")
    bra = read_dataset(datasets_root / "bus-bra", "bus-bra")
    split = busi_split()
    folds = busbra_folds({c.case_id: c.labels for c in bra.cases})
    busi_train = cache_cases(lesion_cases(busi.subset(split.ids("train")).cases), "busi", size)
    bra_train = cache_cases(bra.subset(folds.ids_except(str(BUSBRA_HOLDOUT_FOLD))).cases, "bus-bra", size)
    val = cache_cases(lesion_cases(busi.subset(split.ids("val")).cases), "busi", size)
    return TrainingSets(((busi_train, 2), (bra_train, 1)), val)


def _ct_crops(cases: Sequence[LesionCase], size: int, seed: int | None) -> CachedSet:
    """Every nodule-holding axial slice of ``cases`` (CT volumes, HU) as ``size``² crops; with ``seed``, half the
    crops are centred on the nodule's 3-D box instead of the slice's own box."""
    from radvlsm.io import Modality
    from radvlsm.stage2_segment.volume import nodule_slice_crops

    ids: list[str] = []
    imgs, msks = [], []
    for case in cases:
        rng = None if seed is None else np.random.default_rng([seed, len(ids)])
        vol = read_image(case.image_path, modality=Modality.CT)
        crops = nodule_slice_crops(vol.pixels, read_mask(case.mask_path, like=vol), case.case_id, size, rng)
        ids += crops.ids
        imgs.append(crops.images)
        msks.append(crops.masks)
    return CachedSet(tuple(ids), ("lidc",) * len(ids), np.concatenate(imgs), np.concatenate(msks))


def ct_training_data(datasets_root: Path, size: int, seed: int = 2026) -> TrainingSets:
    """LIDC nodules ``train``, every axial slice holding nodule voxels as a zoomed crop around a prompt box (the
    slice's mask box or the nodule's 3-D box, :func:`radvlsm.stage2_segment.volume.nodule_slice_crops`);
    validation LIDC ``val`` (crops around each slice's own box)."""
    lidc = read_dataset(datasets_root / "lidc-nodules", "lidc-nodules")
    split = lidc_split()
    train = _ct_crops(lidc.subset(split.ids("train")).cases, size, seed)
    val = _ct_crops(lidc.subset(split.ids("val")).cases, size, None)
    return TrainingSets(((train, 1),), val)


def training_sets(datasets_root: Path, cfg: TrainConfig) -> TrainingSets:
    """The training and validation images of ``cfg.domain``."""
    size = cfg.model.image_size
    if cfg.domain is TrainingDomain.ULTRASOUND:
        return ultrasound_training_data(datasets_root, size)
    if cfg.domain is TrainingDomain.CT:
        return ct_training_data(datasets_root, size, cfg.seed)
    ph2_train, kv_train, val = shared_training_data(datasets_root, size)
    return TrainingSets(((ph2_train, cfg.ph2_repeat), (kv_train, 1)), val)


def shared_training_data(datasets_root: Path, size: int) -> tuple[CachedSet, CachedSet, CachedSet]:
    """(PH2 train folds, Kvasir-SEG train, validation = PH2 hold-out fold + Kvasir-SEG val)."""
    ph2 = read_dataset(datasets_root / "ph2", "ph2")
    kv = read_dataset(datasets_root / "kvasir-seg", "kvasir-seg")
    folds, ksplit = ph2_folds(), kvasir_split()
    hold = str(PH2_HOLDOUT_FOLD)
    ph2_train = cache_cases(ph2.subset(folds.ids_except(hold)).cases, "ph2", size)
    kv_train = cache_cases(kv.subset(ksplit.ids("train")).cases, "kvasir-seg", size)
    val = concat_sets([
        cache_cases(ph2.subset(folds.ids(hold)).cases, "ph2", size),
        cache_cases(kv.subset(ksplit.ids("val")).cases, "kvasir-seg", size),
    ])
    return ph2_train, kv_train, val


def augmentation(seed: int, upright: bool = False) -> A.Compose:
    turns = [] if upright else [A.VerticalFlip(p=0.5), A.RandomRotate90(p=0.5)]
    return A.Compose([
        A.HorizontalFlip(p=0.5),
        *turns,
        A.Affine(
            scale=(0.75, 1.25), translate_percent=(-0.1, 0.1), rotate=(-30, 30),
            border_mode=cv2.BORDER_REFLECT_101, p=0.7,
        ),
        A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.04, p=0.8),
        A.GaussianBlur(blur_limit=(3, 5), p=0.1),
        A.GaussNoise(std_range=(0.01, 0.05), p=0.1),
    ], seed=seed)


@dataclass(frozen=True)
class PromptBatch:
    """One training batch: ``images (B,3,S,S)`` float 0..255, ``boxes (N,4)`` model-input XYXY,
    ``image_index (N,)``, ``targets (N,S,S)`` {0,1}, ``present (N,)`` {0,1}."""

    images: torch.Tensor
    boxes: torch.Tensor
    image_index: torch.Tensor
    targets: torch.Tensor
    present: torch.Tensor


def sample_prompts(
    mask: np.ndarray, rng: np.random.Generator, cfg: TrainConfig
) -> tuple[list[np.ndarray], list[bool]]:
    """``cfg.candidates`` boxes for one (augmented) mask and whether each holds the lesion."""
    hw = mask.shape
    gt = mask_to_box(mask)
    assert gt is not None  # callers never pass an empty mask (internal invariant, not user input)
    boxes, present = [], []
    for k in range(cfg.candidates):
        if k == cfg.candidates - 1 and rng.random() < cfg.negative_prob:
            neg = negative_box(mask, rng)
            if neg is not None:
                boxes.append(neg)
                present.append(False)
                continue
        if k == 0 and rng.random() < cfg.exact_box_prob:
            boxes.append(gt.copy())
        else:
            boxes.append(jitter_box(gt, cfg.jitter[k % len(cfg.jitter)], rng, hw))
        present.append(True)
    return boxes, present


def make_batch(data: CachedSet, idx: Sequence[int], rng: np.random.Generator, cfg: TrainConfig,
               aug: A.Compose) -> PromptBatch:
    images, boxes, index, targets, present = [], [], [], [], []
    for b, i in enumerate(idx):
        img, m = data.images[i], data.masks[i]
        out = aug(image=img, mask=m)
        if out["mask"].any():
            img, m = out["image"], out["mask"]
        bxs, pres = sample_prompts(m, rng, cfg)
        images.append(img)
        for box, p in zip(bxs, pres, strict=True):
            boxes.append(box)
            index.append(b)
            targets.append(m if p else np.zeros_like(m))
            present.append(p)
    return PromptBatch(
        images=torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float(),
        boxes=torch.from_numpy(np.stack(boxes)).float(),
        image_index=torch.tensor(index, dtype=torch.long),
        targets=torch.from_numpy(np.stack(targets)).float(),
        present=torch.tensor(present, dtype=torch.float32),
    )


@torch.no_grad()
def validate(model: LesionSegmenter, data: CachedSet, batch_size: int = 32) -> dict[str, float]:
    """Mean Dice per source with exact ground-truth boxes, at model-input resolution."""
    model.eval()
    dices: dict[str, list[float]] = {}
    for start in range(0, len(data.case_ids), batch_size):
        sl = slice(start, start + batch_size)
        masks = data.masks[sl]
        boxes = np.stack([mask_to_box(m) for m in masks])
        imgs = torch.from_numpy(data.images[sl]).permute(0, 3, 1, 2).float()
        out = model(imgs, torch.from_numpy(boxes).float(), torch.arange(len(masks)))
        logits = torch.nn.functional.interpolate(out.mask_logits.unsqueeze(1), masks.shape[-2:], mode="bilinear",
                                                 align_corners=False)[:, 0]
        pred = (logits > 0).numpy()
        for p, g, src in zip(pred, masks.astype(bool), data.source[sl], strict=True):
            inter = np.logical_and(p, g).sum()
            denom = p.sum() + g.sum()
            dices.setdefault(src, []).append(1.0 if denom == 0 else 2 * inter / denom)
    return {k: float(np.mean(v)) for k, v in dices.items()}


#: Presence thresholds and box margins :func:`choose_aggregation` tries; a tie goes to the higher threshold (it
#: rejects more) and then to the wider margin (it cuts less).
PRESENCE_THRESHOLDS = (0.5, 0.3, 0.2, 0.1, 0.0)
BOX_MARGINS = (0.2, 0.1, 0.05, 0.0)
#: Prompt protocols the choice is made on (:func:`radvlsm.stage2_segment.evaluate.protocol_prompts`).
CHOICE_PROTOCOLS = ("exact", "jitter10", "noisy")


def choose_aggregation(
    model: LesionSegmenter, val: CachedSet, thresholds: Sequence[float] = PRESENCE_THRESHOLDS,
    margins: Sequence[float] = BOX_MARGINS, batch_size: int = 16, seed: int = 2026,
) -> tuple[AggregationConfig, dict[tuple[float, float], float]]:
    """The presence threshold and box margin of the aggregation that give the best mean Dice on the validation
    images, prompted as the benchmark does (:data:`CHOICE_PROTOCOLS`: the exact ground-truth box, one jittered
    by up to ±10%, and 3–5 noisy candidates like the localizer's; seeded). A box a user draws holds a lesion: a
    presence head that doubts it there should not blank the mask, and how far a mask may spill past its box
    depends on the modality. Returns the chosen settings and the mean Dice of every pair
    ``(threshold, margin)``."""
    from radvlsm.stage2_segment.evaluate import protocol_prompts
    from radvlsm.stage2_segment.predictor import SegmenterPredictor

    predictor = SegmenterPredictor(model, aggregation=AggregationConfig())
    grid = [(t, m) for t in thresholds for m in margins]
    dices: dict[tuple[float, float], list[float]] = {g: [] for g in grid}
    rng = np.random.default_rng(seed)
    for start in range(0, len(val.case_ids), batch_size):
        masks = val.masks[start : start + batch_size]
        keep = [i for i, m in enumerate(masks) if m.any()]
        if not keep:
            continue
        predictor.set_images([val.images[start + i] for i in keep])
        for protocol in CHOICE_PROTOCOLS:
            prompts = [protocol_prompts(protocol, masks[i].astype(bool), rng) for i in keep]
            cands = predictor.decode_candidates([p.boxes for p in prompts], [p.scores for p in prompts])
            for c, i in zip(cands, keep, strict=True):
                gt = masks[i].astype(bool)
                for t, m in grid:
                    cfg = dataclasses.replace(predictor.aggregation, presence_threshold=t, box_margin=m)
                    pred = predictor.aggregate(c, cfg).mask
                    denom = pred.sum() + gt.sum()
                    dices[(t, m)].append(1.0 if denom == 0 else 2 * float(np.logical_and(pred, gt).sum()) / denom)
    means = {g: float(np.mean(v)) for g, v in dices.items() if v}
    best = max(means, key=lambda g: (round(means[g], 4), g[0], g[1]))
    return AggregationConfig(presence_threshold=best[0], box_margin=best[1]), means


def write_aggregation(model: LesionSegmenter, val: CachedSet, out_dir: Path) -> AggregationConfig:
    """Choose the aggregation settings on ``val`` and write ``OUT/aggregation.json`` beside the weights."""
    cfg, means = choose_aggregation(model, val)
    log.info("aggregation chosen on %d validation images: presence threshold %.2f, box margin %.2f (mean Dice %.4f;"
             " defaults 0.5 / 0.2: %.4f)", len(val.case_ids), cfg.presence_threshold, cfg.box_margin,
             means[(cfg.presence_threshold, cfg.box_margin)], means.get((0.5, 0.2), float("nan")))
    (out_dir / AGGREGATION_FILE).write_text(cfg.to_json() + "\n", encoding="utf-8")
    return cfg


def warmup_cosine(warm: int, total: int) -> Callable[[int], float]:
    """Learning-rate factor per optimiser step: linear warm-up over ``warm`` steps, then cosine down to 1% at
    step ``total`` (for ``LambdaLR``; the localizer's recipe uses it too)."""

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm)))) * 0.99 + 0.01

    return f


def _lr_lambda(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    return warmup_cosine(cfg.warmup_epochs * steps_per_epoch, cfg.epochs * steps_per_epoch)


def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save`` to a temporary file, then rename: a killed run never leaves half a checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def train_segmenter(
    datasets_root: Path,
    out_dir: Path,
    cfg: TrainConfig = TrainConfig(),
    resume: bool = False,
    console: Console | None = None,
    data: TrainingSets | None = None,
) -> LesionSegmenter:
    """Train (or resume) a segmenter; returns the trained model and writes ``OUT/final/`` (safetensors + config).

    ``data`` replaces the shared datasets (tests pass small sets).
    """
    torch.set_num_threads(cfg.threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    (out_dir / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n", encoding="utf-8")
    t0 = time.perf_counter()
    sets = data or training_sets(datasets_root, cfg)
    train, val = sets.train(), sets.val
    log.info("training on %d images (%s), validating on %d; cached in %.0f s",
             len(train.case_ids), sets.describe(), len(val.case_ids), time.perf_counter() - t0)

    torch.manual_seed(cfg.seed)
    model = build_from_config(cfg.model)
    if cfg.init_from and not (resume and ckpt_path.is_file()):
        from radvlsm.stage2_segment.build import load_segmenter

        start = load_segmenter(cfg.init_from)
        # the box prior only switches an input on (SAM's mask prompt, whose weights every model has)
        if dataclasses.replace(start.config, box_prior=cfg.model.box_prior) != cfg.model:
            raise ConfigError(f"{cfg.init_from}: its model config differs from this run's; fine-tune with its own")
        model.load_state_dict(start.state_dict())
        log.info("starting from the weights of %s", cfg.init_from)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = len(train.case_ids) // cfg.batch_size
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, steps))
    start_epoch, history = 0, []
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        log.info("resumed from %s after epoch %d", ckpt_path, start_epoch)

    aug = augmentation(cfg.seed + start_epoch, cfg.upright)
    progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn(), console=console)
    with progress, ThreadPoolExecutor(max_workers=1) as pool, (out_dir / "train.log").open("a") as logf:
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            rng = np.random.default_rng([cfg.seed, epoch])
            order = rng.permutation(len(train.case_ids))[: steps * cfg.batch_size].reshape(steps, cfg.batch_size)
            task = progress.add_task("train", total=steps, epoch=epoch + 1, loss=float("nan"))
            te = time.perf_counter()
            sums = np.zeros(5)
            nxt = pool.submit(make_batch, train, order[0], rng, cfg, aug)
            for s in range(steps):
                batch = nxt.result()
                if s + 1 < steps:
                    nxt = pool.submit(make_batch, train, order[s + 1], rng, cfg, aug)
                out = model(batch.images, batch.boxes, batch.image_index)
                terms = segmenter_loss(out.mask_logits, out.iou, out.presence_logit, out.boundary_logits,
                                       batch.targets, batch.present, cfg.loss)
                opt.zero_grad(set_to_none=True)
                terms.total.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                sums += [float(terms.total.detach()), terms.mask, terms.iou, terms.boundary, terms.presence]
                progress.update(task, advance=1, loss=sums[0] / (s + 1))
            progress.remove_task(task)
            train_s = time.perf_counter() - te
            val_dice = validate(model, val)
            means = (sums / steps).tolist()
            rec = {"epoch": epoch + 1, "loss": means[0], "mask": means[1], "iou": means[2], "boundary": means[3],
                   "presence": means[4], "lr": float(sched.get_last_lr()[0]),
                   "images_per_s": steps * cfg.batch_size / train_s,
                   **{f"val_dice_{k}": float(v) for k, v in val_dice.items()}}
            history.append(rec)
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            log.info("epoch %d/%d  loss %.4f  val Dice %s  (%.1f img/s)", epoch + 1, cfg.epochs, rec["loss"],
                     ", ".join(f"{k} {v:.4f}" for k, v in val_dice.items()), rec["images_per_s"])
            save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                         "scheduler": sched.state_dict(), "epoch": epoch + 1, "history": history})
    model.eval()
    save_segmenter(model, out_dir / "final")
    model.aggregation = write_aggregation(model, val, out_dir / "final")
    return model

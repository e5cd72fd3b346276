"""A 2-epoch smoke training on small synthetic sets: runs, checkpoints, resumes, exports."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from radvlsm.data.cases import read_dataset
from radvlsm.data.splits import busi_split
from radvlsm.errors import ConfigError
from radvlsm.stage1_localize import phrases as ph
from radvlsm.stage1_localize.build import load_localizer
from radvlsm.stage1_localize.config import LocalizerConfig
from radvlsm.stage1_localize.text import TextEncoder
from radvlsm.stage1_localize.train import (
    ITM_THRESHOLD_GRID,
    THRESHOLD_FILE,
    LocalizerTrainConfig,
    build_phrase_table,
    choose_itm_threshold,
    compute_feature_cache,
    localizer_training_data,
    make_pair_batch,
    train_localizer,
)
from radvlsm.stage2_segment.build import load_segmenter
from radvlsm.stage2_segment.train import CachedSet, TrainingDomain, cache_cases


def test_feature_cache_and_pairs(small_compact, synthetic_data, hashing_encoder) -> None:
    cache = compute_feature_cache(small_compact, synthetic_data.train[0][0], ("identity", "hflip"), map_size=16)
    assert cache.embedding.shape == (8, 2, 32, 4, 4) and cache.embedding.dtype == torch.float16
    assert cache.hires4 is not None and cache.hires4.shape == (8, 2, 4, 16, 16)
    assert cache.masks.shape == (8, 2, 16, 16) and cache.masks.dtype == torch.uint8
    # the flipped mask is the identity mask flipped
    torch.testing.assert_close(cache.masks[0, 1], cache.masks[0, 0].flip(-1))
    table = build_phrase_table(hashing_encoder)
    assert set(ph.held_out_vocabulary()) <= set(table.phrases)
    cfg = LocalizerTrainConfig(negatives_per_image=2)
    own = [() for _ in range(8)]
    batch = make_pair_batch(cache, np.arange(4), np.random.default_rng(0), table, own, cfg)
    assert batch.phrase.shape == (12,) and batch.targets.shape == (12, 16, 16)
    held = {table.index(p) for p in ph.held_out_vocabulary()}
    assert not held & set(batch.phrase.tolist())  # held-out paraphrases are never trained on
    for n in range(12):
        positive = bool(table.positive[batch.domains[batch.image_index[n]], batch.phrase[n]])
        assert positive == bool(batch.match[n])
        assert (batch.targets[n].sum() > 0) == positive


def test_an_image_without_lesion_makes_only_negative_pairs(small_compact, synthetic_data, hashing_encoder) -> None:
    part = synthetic_data.train[0][0]
    normal = CachedSet(("normal_0",), ("busi",), part.images[:1], np.zeros_like(part.masks[:1]))
    cache = compute_feature_cache(small_compact, normal, ("identity",), map_size=16)
    table = build_phrase_table(hashing_encoder)
    batch = make_pair_batch(cache, np.zeros(1, np.int64), np.random.default_rng(0), table, [()],
                            LocalizerTrainConfig(negatives_per_image=2))
    assert not bool(batch.lesion[0]) and not batch.match.any() and not batch.targets.any()
    # its first phrase is one of its own domain's or a generic one: a negative only because nothing is there
    assert bool(table.positive[table.domain_index[ph.BREAST_ULTRASOUND], batch.phrase[0]])


def test_smoke_training_checkpoints_resumes_and_exports(tmp_path: Path, small_compact, synthetic_data,
                                                       hashing_encoder) -> None:
    model_cfg = LocalizerConfig(qformer_hidden=32, qformer_layers=2, qformer_heads=2, qformer_intermediate=64,
                                encoder_hidden_size=32, num_query_tokens=4, embed_dim=32, hires_key_dim=8)
    cfg = LocalizerTrainConfig(epochs=1, batch_size=8, model=model_cfg, augmentations=("identity", "hflip"))
    out = tmp_path / "run"
    train_localizer(small_compact, tmp_path / "no-datasets", out, cfg, data=synthetic_data,
                    text_encoder=hashing_encoder, segmenter_name="small")
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1 and len(ckpt["history"]) == 1
    assert (out / "feature_cache.pt").is_file()
    # resume to 2 epochs: the feature cache is reused (no encoder pass), training continues from epoch 1
    calls = []
    original = small_compact.embed
    small_compact.embed = lambda x: calls.append(1) or original(x)  # type: ignore[method-assign]
    try:
        model = train_localizer(small_compact, tmp_path / "no-datasets", out, dataclasses.replace(cfg, epochs=2),
                                resume=True, data=synthetic_data, text_encoder=hashing_encoder,
                                segmenter_name="small")
    finally:
        del small_compact.embed
    assert not calls
    lines = [json.loads(x) for x in (out / "train.log").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    for key in ("loss", "itc", "itm", "bce", "dice", "val_ph2_default_r5", "val_kvasir-seg_negative_rejected"):
        assert np.isfinite(lines[-1][key]), key
    assert torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)["epoch"] == 2
    loaded = load_localizer(out / "final")
    assert loaded.config.segmenter_name == "small" and loaded.config.image_dim == 32
    assert loaded.config.itm_threshold == 0.5 and not (out / THRESHOLD_FILE).exists()  # no normal image in val
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)


def test_ultrasound_data_draw_the_normal_images_as_often_as_asked(datasets_root: Path) -> None:
    """BUSI train's lesion images twice, its normal images ``normal_repeat`` times (with empty masks), BUS-BRA's
    training folds once; validation on BUSI val, normal images included."""
    if not (datasets_root / "busi").is_dir() or not (datasets_root / "bus-bra").is_dir():
        pytest.skip(f"BUSI and BUS-BRA are not both in {datasets_root}")
    data = localizer_training_data(datasets_root, 32, TrainingDomain.ULTRASOUND, normal_repeat=7)
    (lesions, t_les), (normals, t_norm), (bra, t_bra) = data.train
    assert (t_les, t_norm, t_bra) == (2, 7, 1)
    assert normals.case_ids and all(cid.startswith("normal") for cid in normals.case_ids)
    assert not normals.masks.any() and all(m.any() for m in lesions.masks)
    assert set(bra.source) == {"bus-bra"} and not set(data.val.case_ids) & set(lesions.case_ids + normals.case_ids)


def test_the_matching_threshold_is_chosen_on_the_validation_normal_images(busi_root: Path) -> None:
    """On real BUSI `val` images with the shipped ultrasound models: the share of (normal image, phrase) pairs
    rejected grows with the threshold, and the least threshold reaching the target is chosen."""
    split = busi_split()
    cases = read_dataset(busi_root).subset(split.ids("val")).cases
    normals = [c for c in cases if c.diagnosis == "normal"][:4]
    lesions = [c for c in cases if c.diagnosis != "normal"][:2]
    part = cache_cases(normals + lesions, "busi", 256)
    model = load_localizer("ultrasound")
    cache = compute_feature_cache(load_segmenter("ultrasound"), part, ("identity",), map_size=model.config.map_size)
    encoder = TextEncoder()
    choice = choose_itm_threshold(model, cache, encoder, 0.9)
    n_phrases = sum(len(v) for k, v in ph.prompt_sets(ph.BREAST_ULTRASOUND).items() if k != "negative")
    assert choice.n_pairs == 4 * n_phrases
    rates = [r for _, r in choice.rejected]
    assert [t for t, _ in choice.rejected] == list(ITM_THRESHOLD_GRID)
    assert all(a <= b for a, b in itertools.pairwise(rates))
    assert choice.threshold == next((t for t, r in choice.rejected if r >= 0.9), ITM_THRESHOLD_GRID[-1])
    assert rates[0] > 0.5  # the shipped model rejects most normal images at the trained threshold already
    assert choose_itm_threshold(model, cache, encoder, rates[0]).threshold == 0.5
    lesion_only = compute_feature_cache(load_segmenter("ultrasound"), cache_cases(lesions, "busi", 256),
                                        ("identity",), map_size=model.config.map_size)
    assert choose_itm_threshold(model, lesion_only, encoder, 0.9).threshold is None
    with pytest.raises(ConfigError, match="rejection target"):
        choose_itm_threshold(model, cache, encoder, 1.5)


def test_training_sets_the_threshold_when_the_validation_images_hold_normal_images(
        tmp_path: Path, small_compact, synthetic_data, hashing_encoder) -> None:
    val = synthetic_data.val
    normal = CachedSet((*val.case_ids, "normal_0"), (*val.source, "busi"),
                       np.concatenate([val.images, val.images[:1]]),
                       np.concatenate([val.masks, np.zeros_like(val.masks[:1])]))
    data = dataclasses.replace(synthetic_data, val=normal)
    model_cfg = LocalizerConfig(qformer_hidden=32, qformer_layers=1, qformer_heads=2, qformer_intermediate=64,
                                encoder_hidden_size=32, num_query_tokens=4, embed_dim=32, hires_key_dim=8)
    cfg = LocalizerTrainConfig(epochs=1, batch_size=8, model=model_cfg, augmentations=("identity",),
                               normal_rejection=1.0)
    out = tmp_path / "run"
    model = train_localizer(small_compact, tmp_path / "no-datasets", out, cfg, data=data,
                            text_encoder=hashing_encoder, segmenter_name="small")
    chosen = json.loads((out / THRESHOLD_FILE).read_text())
    assert chosen["itm_threshold"] in ITM_THRESHOLD_GRID and chosen["normal_rejection"] == 1.0
    assert model.config.itm_threshold == chosen["itm_threshold"]
    assert load_localizer(out / "final").config.itm_threshold == chosen["itm_threshold"]

"""A 2-epoch smoke training on small synthetic sets: runs, checkpoints, resumes, exports."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from radvlsm.stage1_localize import phrases as ph
from radvlsm.stage1_localize.build import load_localizer
from radvlsm.stage1_localize.config import LocalizerConfig
from radvlsm.stage1_localize.train import (
    LocalizerTrainConfig,
    build_phrase_table,
    compute_feature_cache,
    localizer_training_data,
    make_pair_batch,
    train_localizer,
)
from radvlsm.stage2_segment.train import CachedSet, TrainingDomain


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

"""The localizer's own image branch: it starts as an exact copy of the segmenter's last stage and neck, keeps
the segmenter's batch-norm statistics, trains without touching the segmenter, round-trips through its files
and is fed the stride-8 features by the predictor."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from radvlsm.errors import ConfigError
from radvlsm.stage1_localize.build import (
    bind_to_segmenter,
    init_image_branch,
    load_localizer,
    save_localizer,
    with_image_branch,
)
from radvlsm.stage1_localize.config import LocalizerConfig
from radvlsm.stage1_localize.modeling import TextPromptedLocalizer
from radvlsm.stage1_localize.predictor import LocalizerPredictor
from radvlsm.stage1_localize.train import LocalizerTrainConfig, compute_feature_cache, train_localizer
from radvlsm.stage2_segment.predictor import SegmenterPredictor


def _branch_model(small_compact, tiny_config: LocalizerConfig) -> TextPromptedLocalizer:
    cfg = with_image_branch(bind_to_segmenter(tiny_config, small_compact, "small"), small_compact)
    torch.manual_seed(0)
    model = TextPromptedLocalizer(cfg)
    init_image_branch(model, small_compact)
    return model


def test_branch_config_follows_the_segmenter(small_compact, tiny_config) -> None:
    cfg = with_image_branch(tiny_config, small_compact)
    sc = small_compact.config
    assert (cfg.branch_in_dim, cfg.branch_channels, cfg.branch_blocks) == (
        sc.encoder_channels[2], sc.encoder_channels[3], sc.encoder_blocks[2])
    vit = SimpleNamespace(config=dataclasses.replace(sc, encoder="vit_b", name="sam"))
    with pytest.raises(ConfigError, match="compact"):
        with_image_branch(tiny_config, vit)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="branch_channels"):
        dataclasses.replace(tiny_config, branch_in_dim=16).validate()


def test_branch_starts_as_the_segmenters_last_stage(small_compact, tiny_config) -> None:
    model = _branch_model(small_compact, tiny_config)
    x = torch.rand(2, 3, 64, 64) * 255
    with torch.no_grad():
        feats = small_compact.embed(x)
        assert feats.stride8 is not None and feats.stride8.shape == (2, 16, 8, 8)
        assert model.image_branch is not None
        torch.testing.assert_close(model.image_branch(feats.stride8), feats.embedding)
    model.train()
    bns = [m for m in model.image_branch.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)  # the segmenter's statistics are kept
    assert model.qformer.training


def test_branch_needs_stride8_features(small_compact, tiny_config) -> None:
    model = _branch_model(small_compact, tiny_config).eval()
    emb, hires, text = torch.randn(1, 32, 4, 4), torch.randn(1, 4, 16, 16), torch.randn(1, 384)
    with pytest.raises(ConfigError, match="stride-8"):
        model(emb, hires, text, torch.tensor([0]), with_itc=False)
    with pytest.raises(ConfigError, match="stride-8"):
        model(emb, hires, text, torch.tensor([0]), with_itc=False, stride8=torch.randn(1, 16, 4, 4))


def test_branch_round_trip_and_predictor(tmp_path: Path, small_compact, tiny_config, hashing_encoder) -> None:
    model = _branch_model(small_compact, tiny_config).eval()
    with torch.no_grad():
        for p in model.image_branch.parameters():  # type: ignore[union-attr]
            p.add_(torch.randn_like(p) * 0.05)  # no longer the segmenter's copy: the saved weights must be read
    save_localizer(model, tmp_path / "loc")
    loaded = load_localizer(tmp_path / "loc")
    assert loaded.config.branch_in_dim == 16 and loaded.image_branch is not None
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (48, 80, 3), dtype=np.uint8) for _ in range(3)]
    seg = SegmenterPredictor(small_compact, encoder_batch=2)  # two chunks: stride8 is concatenated too
    seg.set_images(images)
    feats = seg.features
    assert feats.stride8 is not None and feats.stride8.shape == (3, 16, 8, 8)
    vec = hashing_encoder.encode(["polyp"]).expand(3, -1)
    with torch.no_grad():
        want = model(feats.embedding, feats.hires[0], vec, torch.arange(3), with_itc=False, stride8=feats.stride8)
    found = LocalizerPredictor(loaded, hashing_encoder).locate_on(seg, "polyp")
    assert len(found) == 3
    for k, r in enumerate(found):
        np.testing.assert_allclose(r.relevance, torch.sigmoid(want.relevance_logits[k]).numpy(), atol=1e-5)


def test_training_moves_the_branch_not_the_segmenter(tmp_path: Path, small_compact, synthetic_data,
                                                      hashing_encoder) -> None:
    cache = compute_feature_cache(small_compact, synthetic_data.val, ("identity",), map_size=16, with_stride8=True)
    assert cache.stride8 is not None and cache.stride8.shape == (len(synthetic_data.val.case_ids), 1, 16, 8, 8)
    before = {k: v.clone() for k, v in small_compact.state_dict().items()}
    model_cfg = LocalizerConfig(qformer_hidden=32, qformer_layers=2, qformer_heads=2, qformer_intermediate=64,
                                encoder_hidden_size=32, num_query_tokens=4, embed_dim=32, hires_key_dim=8)
    cfg = LocalizerTrainConfig(epochs=1, batch_size=8, model=model_cfg, augmentations=("identity",),
                               image_branch=True, cache_features_on_disk=False)
    model = train_localizer(small_compact, tmp_path / "no-datasets", tmp_path / "run", cfg, data=synthetic_data,
                            text_encoder=hashing_encoder, segmenter_name="small")
    for k, v in small_compact.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert model.image_branch is not None
    moved = [not torch.equal(model.image_branch.stage.state_dict()[k], before[f"image_encoder.stage16.{k}"])
             for k in model.image_branch.stage.state_dict() if "running" not in k and "num_batches" not in k]
    assert any(moved)
    # the batch-norm statistics stayed the segmenter's
    for k, v in model.image_branch.stage.state_dict().items():
        if "running" in k:
            torch.testing.assert_close(v, before[f"image_encoder.stage16.{k}"])

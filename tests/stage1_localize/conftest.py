"""Fixtures for stage-1 tests: a small random compact segmenter, a tiny localizer config, a hashing phrase
encoder (deterministic random vectors, no model download) and small synthetic training sets."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from radvlsm.stage1_localize.config import LocalizerConfig
from radvlsm.stage1_localize.train import LocalizerData
from radvlsm.stage2_segment.build import build_from_config
from radvlsm.stage2_segment.config import SegmenterConfig
from radvlsm.stage2_segment.modeling import LesionSegmenter
from radvlsm.stage2_segment.train import CachedSet


class HashingEncoder:
    """Phrase → fixed random unit vector (seeded by the phrase's hash): a stand-in for MiniLM in fast tests."""

    dim = 384

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def encode(self, phrases) -> torch.Tensor:
        self.calls.append(tuple(phrases))
        out = []
        for p in phrases:
            seed = int.from_bytes(hashlib.sha256(p.encode()).digest()[:8], "little")
            out.append(torch.randn(self.dim, generator=torch.Generator().manual_seed(seed)))
        if not out:
            return torch.zeros(0, self.dim)
        return F.normalize(torch.stack(out), dim=-1)


@pytest.fixture(scope="session")
def small_compact() -> LesionSegmenter:
    """A compact segmenter with random weights at 64-px input (fast): 32-channel 4x4 embedding, 16x16 hires4."""
    torch.manual_seed(0)
    cfg = SegmenterConfig(image_size=64, embed_dim=32, encoder_channels=(8, 16, 16, 32), encoder_blocks=(1, 1, 1),
                          decoder_mlp_dim=64, decoder_heads=4)
    model = build_from_config(cfg).eval()
    with torch.no_grad():
        for p in model.mask_decoder.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


@pytest.fixture()
def tiny_config() -> LocalizerConfig:
    """A tiny localizer for ``small_compact`` features."""
    return LocalizerConfig(image_dim=32, image_grid=4, image_size=64, hires_dim=4, qformer_hidden=32, qformer_layers=2,
                           qformer_heads=2, qformer_intermediate=64, encoder_hidden_size=32, num_query_tokens=4,
                           embed_dim=32, hires_key_dim=8, qformer_dropout=0.0)


@pytest.fixture()
def hashing_encoder() -> HashingEncoder:
    return HashingEncoder()


def _synthetic(n: int, source: str, seed: int, size: int = 64) -> CachedSet:
    """Images with one bright ellipse lesion (skin-like: brown on beige; colon-like: pink on red)."""
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, size, size, 3), np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    bg, fg = ((200, 170, 140), (90, 60, 40)) if source == "ph2" else ((150, 40, 40), (230, 150, 150))
    for i in range(n):
        cy, cx = rng.uniform(0.3, 0.7, 2) * size
        ry, rx = rng.uniform(0.1, 0.25, 2) * size
        m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        img = np.empty((size, size, 3))
        img[:] = bg
        img[m] = fg
        imgs[i] = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
        masks[i] = m
    return CachedSet(tuple(f"{source}_{seed}_{i}" for i in range(n)), (source,) * n, imgs, masks)


@pytest.fixture(scope="session")
def synthetic_data() -> LocalizerData:
    ph2 = _synthetic(8, "ph2", 1)
    kv = _synthetic(8, "kvasir-seg", 2)
    v1, v2 = _synthetic(3, "ph2", 3), _synthetic(3, "kvasir-seg", 4)
    val = CachedSet(v1.case_ids + v2.case_ids, v1.source + v2.source, np.concatenate([v1.images, v2.images]),
                    np.concatenate([v1.masks, v2.masks]))
    labels = {cid: {"diagnosis": "melanoma", "blue_whitish_veil": "P", "colors": "black;dark-brown"}
              for cid in ph2.case_ids[:4]}
    return LocalizerData(((ph2, 3), (kv, 1)), val, labels)

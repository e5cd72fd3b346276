"""Fixtures for stage-2 tests: a tiny official-layout SAM checkpoint and a small random compact model."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from radvlsm.stage2_segment.build import build_from_config
from radvlsm.stage2_segment.config import SegmenterConfig
from radvlsm.stage2_segment.modeling import LesionSegmenter


def tiny_sam(seed: int = 0) -> Sam:
    """A ``segment_anything.Sam`` with SAM's layout at toy size: 64-px input, 4x4 embedding, 32 channels."""
    torch.manual_seed(seed)
    dim = 32
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=2, embed_dim=48, img_size=64, mlp_ratio=2, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=2, patch_size=16, qkv_bias=True, use_rel_pos=True, global_attn_indexes=(1,),
            window_size=2, out_chans=dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim, image_embedding_size=(4, 4), input_image_size=(64, 64), mask_in_chans=16
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=64, num_heads=8),
            transformer_dim=dim, iou_head_depth=3, iou_head_hidden_dim=dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    # Random weights everywhere, including parameters SAM initialises to zero, so that a mis-loaded tensor shows.
    with torch.no_grad():
        for p in sam.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return sam.eval()


@pytest.fixture(scope="session")
def tiny_sam_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Sam]:
    sam = tiny_sam()
    path = tmp_path_factory.mktemp("sam") / "sam_vit_tiny.pth"
    torch.save(sam.state_dict(), path)
    return path, sam


@pytest.fixture(scope="session")
def small_compact() -> LesionSegmenter:
    """A compact segmenter with random weights at 64-px input (fast)."""
    torch.manual_seed(0)
    cfg = SegmenterConfig(image_size=64, embed_dim=32, encoder_channels=(8, 16, 16, 32), encoder_blocks=(1, 1, 1),
                          decoder_mlp_dim=64, decoder_heads=4)
    model = build_from_config(cfg).eval()
    with torch.no_grad():
        for p in model.mask_decoder.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model

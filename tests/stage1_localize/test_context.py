"""The relevance map's context blocks: residual, shape-keeping, and with dilations 1, 2, 4 a cell sees the
whole grid; a localizer with them keeps its pairs independent and round-trips through its files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from radvlsm.stage1_localize.build import load_localizer, save_localizer
from radvlsm.stage1_localize.config import LocalizerConfig
from radvlsm.stage1_localize.modeling import MapContextBlock, TextPromptedLocalizer


def _spatial_only(block: MapContextBlock) -> MapContextBlock:
    """The block without its normalisation (whose statistics are global): what its convolutions reach."""
    block.norm = nn.Identity()  # type: ignore[assignment]
    return block


def test_dilated_blocks_see_the_whole_grid() -> None:
    torch.manual_seed(0)
    one = _spatial_only(MapContextBlock(8, dilation=1)).eval()
    stack = nn.Sequential(*(_spatial_only(MapContextBlock(8, dilation=2**i)) for i in range(3))).eval()
    x = torch.randn(1, 8, 8, 8)
    far = x.clone()
    far[0, :, 0, 0] += 5.0
    with torch.no_grad():
        assert one(x).shape == stack(x).shape == x.shape
        # a 3×3 block leaves the opposite corner alone; dilations 1, 2, 4 reach it (7 cells away)
        torch.testing.assert_close(one(far)[0, :, 7, 7], one(x)[0, :, 7, 7])
        assert (stack(far)[0, :, 7, 7] - stack(x)[0, :, 7, 7]).abs().max() > 1e-4


def test_block_is_residual() -> None:
    block = MapContextBlock(4)
    with torch.no_grad():
        block.mix[-1].weight.zero_()
        block.mix[-1].bias.zero_()
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(block(x), x)


def test_localizer_with_context(tmp_path: Path, tiny_config: LocalizerConfig) -> None:
    cfg = dataclasses.replace(tiny_config, map_context_blocks=2)
    torch.manual_seed(0)
    model = TextPromptedLocalizer(cfg).eval()
    assert model.map_context is not None and len(model.map_context) == 2
    emb, hires, text = torch.randn(3, 32, 4, 4), torch.randn(3, 4, 16, 16), torch.randn(4, 384)
    idx = torch.tensor([0, 1, 2, 2])
    with torch.no_grad():
        out = model(emb, hires, text, idx, with_itc=False)
        alone = model(emb, hires, text[3:], torch.tensor([2]), with_itc=False)
    assert out.relevance_logits.shape == (4, 16, 16)
    torch.testing.assert_close(alone.relevance_logits[0], out.relevance_logits[3], atol=1e-5, rtol=1e-5)
    save_localizer(model, tmp_path / "loc")
    loaded = load_localizer(tmp_path / "loc")
    assert loaded.config.map_context_blocks == 2
    with torch.no_grad():
        torch.testing.assert_close(loaded(emb, hires, text, idx, with_itc=False).relevance_logits,
                                   out.relevance_logits)

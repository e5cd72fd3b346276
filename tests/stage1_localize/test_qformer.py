"""The Q-Former wraps transformers' Blip2QFormerModel: with ``query_length = Q`` only the queries cross-attend
to the image; the text sees the image only through the queries' self-attention."""

from __future__ import annotations

import dataclasses

import torch

from radvlsm.stage1_localize.config import LocalizerConfig
from radvlsm.stage1_localize.modeling import PromptQFormer, TextPromptedLocalizer


def _qformer(layers: int, seed: int = 0) -> PromptQFormer:
    torch.manual_seed(seed)
    cfg = LocalizerConfig(qformer_hidden=32, qformer_layers=layers, qformer_heads=2, qformer_intermediate=64,
                          num_query_tokens=4, encoder_hidden_size=24, qformer_dropout=0.0)
    return PromptQFormer(cfg).eval()


def test_only_queries_cross_attend() -> None:
    q = _qformer(layers=1)
    img = torch.randn(2, 10, 24)
    other = img + torch.randn_like(img)
    txt = torch.randn(2, 3, 32)
    with torch.no_grad():
        q_a, t_a = q(img, txt)
        q_b, t_b = q(other, txt)
    assert q_a.shape == (2, 4, 32) and t_a is not None and t_a.shape == (2, 3, 32)
    assert not torch.allclose(q_a, q_b, atol=1e-5)  # the queries see the image
    torch.testing.assert_close(t_a, t_b)  # one layer: the text never does (no cross-attention at text positions)


def test_text_sees_image_through_queries_from_the_second_layer() -> None:
    q = _qformer(layers=2)
    img = torch.randn(2, 10, 24)
    txt = torch.randn(2, 3, 32)
    with torch.no_grad():
        _, t_a = q(img, txt)
        _, t_b = q(img + torch.randn_like(img), txt)
    assert t_a is not None and t_b is not None
    assert not torch.allclose(t_a, t_b, atol=1e-6)


def test_query_length_is_what_restricts_cross_attention() -> None:
    """Control: if every position were a 'query' (query_length = Q + T) the text would see the image directly."""
    q = _qformer(layers=1)
    img = torch.randn(2, 10, 24)
    txt = torch.randn(2, 3, 32)
    x = torch.cat([q.query_tokens.expand(2, -1, -1), txt], 1)
    with torch.no_grad():
        a = q.qformer(query_embeds=x, query_length=7, encoder_hidden_states=img).last_hidden_state[:, 4:]
        b = q.qformer(query_embeds=x, query_length=7, encoder_hidden_states=img * 2 + 1).last_hidden_state[:, 4:]
    assert not torch.allclose(a, b, atol=1e-5)


def test_recorded_cross_attention_has_query_rows_only() -> None:
    q = _qformer(layers=2)
    q.qformer.set_attn_implementation("eager")
    img = torch.randn(2, 10, 24)
    x = torch.cat([q.query_tokens.expand(2, -1, -1), torch.randn(2, 3, 32)], 1)
    with torch.no_grad():
        out = q.qformer(query_embeds=x, query_length=4, encoder_hidden_states=img, output_attentions=True)
    assert len(out.cross_attentions) == 2
    for att in out.cross_attentions:
        assert att.shape == (2, 2, 4, 10)  # (batch, heads, Q queries only, image tokens)
    assert out.attentions[0].shape == (2, 2, 7, 7)  # self-attention over queries + text


def test_localizer_shapes_and_unimodal_itc(tiny_config: LocalizerConfig) -> None:
    torch.manual_seed(0)
    model = TextPromptedLocalizer(tiny_config).eval()
    emb, hires = torch.randn(3, 32, 4, 4), torch.randn(3, 4, 16, 16)
    text = torch.randn(5, 384)
    idx = torch.tensor([0, 0, 1, 2, 2])
    with torch.no_grad():
        out = model(emb, hires, text, idx)
    assert out.itm_logits.shape == (5,)
    assert out.relevance_logits.shape == (5, 16, 16)
    assert out.image_itc is not None and out.image_itc.shape == (3, 4, 32)
    assert out.text_itc is not None and out.text_itc.shape == (5, 32)
    torch.testing.assert_close(out.image_itc.norm(dim=-1), torch.ones(3, 4))
    assert model.similarity(out.image_itc, out.text_itc).shape == (3, 5)
    # pairs are independent: asking image 1 alone gives the same answer
    with torch.no_grad():
        alone = model(emb, hires, text[2:3], torch.tensor([1]), with_itc=False)
    torch.testing.assert_close(alone.relevance_logits[0], out.relevance_logits[2], atol=1e-5, rtol=1e-5)
    # without stride-4 features the map stays on the embedding grid
    coarse = TextPromptedLocalizer(dataclasses.replace(tiny_config, hires_dim=0)).eval()
    with torch.no_grad():
        assert coarse(emb, None, text, idx).relevance_logits.shape == (5, 4, 4)

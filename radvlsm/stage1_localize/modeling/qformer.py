"""The Q-Former: learned query tokens around ``transformers``' BLIP-2 ``Blip2QFormerModel``.

How ``query_length`` works in ``Blip2QFormerLayer.forward`` (transformers 5.x, checked in its source): every
layer runs self-attention over the whole input sequence (queries and text share it); then only the first
``query_length`` positions go through the cross-attention to ``encoder_hidden_states`` (the image tokens) and
the query feed-forward (``intermediate_query`` / ``output_query``); the remaining (text) positions skip the
cross-attention and use the text feed-forward (``intermediate`` / ``output``), which exists only when the
config sets ``use_qformer_text_input=True``. So with ``query_embeds = cat([queries, text])`` and
``query_length = Q`` the queries see the image directly and the text sees it only through the queries (from
the second layer on): BLIP-2's multimodal (ITM) pass. With the queries alone it is BLIP-2's unimodal image
pass (ITC).

State dict keys are those of BLIP-2 checkpoints in Hugging Face format: ``qformer.*`` and ``query_tokens``.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Blip2QFormerConfig, Blip2QFormerModel

from radvlsm.stage1_localize.config import LocalizerConfig


def qformer_config(cfg: LocalizerConfig) -> Blip2QFormerConfig:
    """The ``Blip2QFormerConfig`` of a localizer config (text feed-forward on: text shares the Q-Former)."""
    return Blip2QFormerConfig(
        hidden_size=cfg.qformer_hidden,
        num_hidden_layers=cfg.qformer_layers,
        num_attention_heads=cfg.qformer_heads,
        intermediate_size=cfg.qformer_intermediate,
        hidden_act=cfg.qformer_hidden_act,
        hidden_dropout_prob=cfg.qformer_dropout,
        attention_probs_dropout_prob=cfg.qformer_dropout,
        layer_norm_eps=cfg.qformer_layer_norm_eps,
        cross_attention_frequency=cfg.cross_attention_frequency,
        encoder_hidden_size=cfg.encoder_hidden_size,
        use_qformer_text_input=True,
    )


class PromptQFormer(nn.Module):
    """``Q`` learned queries that cross-attend to image tokens, optionally sharing self-attention with text.

    Attributes:
        query_tokens: ``(1, Q, H)`` learned queries.
        qformer: the ``Blip2QFormerModel``.
    """

    def __init__(self, cfg: LocalizerConfig) -> None:
        super().__init__()
        self.num_queries = cfg.num_query_tokens
        self.qformer = Blip2QFormerModel(qformer_config(cfg))
        self.query_tokens = nn.Parameter(torch.randn(1, cfg.num_query_tokens, cfg.qformer_hidden) * 0.02)

    @property
    def hidden_size(self) -> int:
        return int(self.query_tokens.shape[-1])

    def forward(
        self, image_tokens: torch.Tensor, text_tokens: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the Q-Former.

        Args:
            image_tokens: ``(N, L, E)`` image tokens (``E = encoder_hidden_size``), the cross-attention's keys
                and values.
            text_tokens: ``(N, T, H)`` text tokens, or ``None`` for the unimodal image pass.

        Returns:
            ``(query_out (N, Q, H), text_out (N, T, H) or None)``.
        """
        n = image_tokens.shape[0]
        queries = self.query_tokens.expand(n, -1, -1)
        x = queries if text_tokens is None else torch.cat([queries, text_tokens.to(queries.dtype)], dim=1)
        out = self.qformer(query_embeds=x, query_length=self.num_queries, encoder_hidden_states=image_tokens)
        hidden = out.last_hidden_state
        q = self.num_queries
        return hidden[:, :q], (None if text_tokens is None else hidden[:, q:])

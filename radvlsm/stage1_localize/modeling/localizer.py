"""The text-prompted localizer: image features of the (frozen) segmenter + a sentence vector → relevance map.

Shapes: ``B`` images, ``N`` (image, phrase) pairs (``image_index (N,)`` says which image each pair asks),
``D`` the segmenter's embedding channels, ``g`` its embedding grid (``S/16``), ``L = g²`` image tokens,
``E`` the Q-Former's image-token width, ``H`` its hidden width, ``Q`` queries, ``T`` text tokens, ``P`` the
shared embedding width. Maps are over the model input frame (``S × S`` pixels), ``R × R`` cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from radvlsm.errors import ConfigError
from radvlsm.stage1_localize.config import LocalizerConfig
from radvlsm.stage1_localize.modeling.branch import ImageBranch
from radvlsm.stage1_localize.modeling.context import MapContextBlock
from radvlsm.stage1_localize.modeling.qformer import PromptQFormer


@dataclass(frozen=True, eq=False)
class LocalizerOutput:
    """What one forward pass computed.

    Attributes:
        itm_logits: ``(N,)`` image–text matching logits of the pairs.
        relevance_logits: ``(N, R, R)`` text-conditioned relevance map logits over the model input frame
            (``R = map_size``: 64 with the segmenter's stride-4 features, else ``g``).
        image_itc: ``(B, Q, P)`` unit ITC features of the unimodal query outputs, or ``None``.
        text_itc: ``(N, P)`` unit ITC features of the pairs' phrases, or ``None``.
    """

    itm_logits: torch.Tensor
    relevance_logits: torch.Tensor
    image_itc: torch.Tensor | None = None
    text_itc: torch.Tensor | None = None


def _check_feature_map(x: torch.Tensor | None, want: tuple[int, int, int], what: str) -> None:
    """Raise :class:`ConfigError` (``what``, the shape wanted and the one given) unless ``x`` is ``(B, *want)``."""
    if x is None or tuple(x.shape[1:]) != want:
        got = None if x is None else tuple(x.shape)
        raise ConfigError(f"{what}: (B, {want[0]}, {want[1]}, {want[2]}) wanted, got {got}")


class TextPromptedLocalizer(nn.Module):
    """BLIP-2-style Q-Former localizer on a segmenter's image features.

    - Image tokens: the segmenter embedding ``(B, D, g, g)`` (or, with ``branch_in_dim > 0``, the output of the
      localizer's own :class:`ImageBranch` on the segmenter's stride-8 features) → LayerNorm → linear ``D→E``
      + learned 2-D position embedding, flattened to ``(B, L, E)``.
    - Text: the frozen sentence vector ``(N, 384)`` → linear to ``T`` tokens of width ``H``.
    - ITC: unimodal query outputs → linear ``H→P``; text tokens' mean → linear ``H→P``; similarity = max over
      queries of the cosine, times a learned inverse temperature (``logit_scale``, clamped to ≤ 100).
    - ITM: the multimodal pass (queries + text tokens, ``query_length = Q``), mean over query outputs → logit.
    - Relevance map: a conditioned vector ``c = MLP([mean text_out; mean query_out])`` (width ``P``) dotted with
      per-cell keys of the image grid (1×1 conv → GELU → 3×3 conv on the image tokens) gives ``g × g``
      logits. With ``map_context_blocks > 0`` the keys are first modulated by the prompt (FiLM: scale and
      shift from ``c``) and passed through that many :class:`MapContextBlock` (dilations 1, 2, 4, …), so
      each cell is scored with the whole grid in view. With stride-4 features the logits are upsampled
      (bilinear) to ``4g × 4g`` and a second dot product of ``W c`` with keys of ``hires4`` (3×3 conv → GELU
      → 1×1 conv) adds the fine detail, plus a learned bias.
    """

    def __init__(self, config: LocalizerConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        c = config
        E, H, P = c.encoder_hidden_size, c.qformer_hidden, c.embed_dim
        self.image_branch: ImageBranch | None = (
            ImageBranch(c.branch_in_dim, c.branch_channels, c.branch_blocks, c.image_dim) if c.branch_in_dim > 0
            else None
        )
        self.image_norm = nn.LayerNorm(c.image_dim)
        self.image_in = nn.Linear(c.image_dim, E)
        self.pos_embed = nn.Parameter(torch.randn(1, E, c.image_grid, c.image_grid) * 0.02)
        self.qformer = PromptQFormer(c)
        self.text_in = nn.Linear(c.text_dim, c.text_tokens * H)
        self.itc_image = nn.Linear(H, P)
        self.itc_text = nn.Linear(H, P)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.itm_head = nn.Linear(H, 1)
        self.map_query = nn.Sequential(nn.LayerNorm(2 * H), nn.Linear(2 * H, P), nn.GELU(), nn.Linear(P, P))
        self.map_key = nn.Sequential(nn.Conv2d(E, P, 1), nn.GELU(), nn.Conv2d(P, P, 3, padding=1))
        self.map_bias = nn.Parameter(torch.zeros(1))
        if c.map_context_blocks > 0:
            self.map_film: nn.Module | None = nn.Linear(P, 2 * P)
            nn.init.zeros_(self.map_film.weight)
            nn.init.zeros_(self.map_film.bias)
            self.map_context: nn.Module | None = nn.Sequential(
                *(MapContextBlock(P, dilation=2**i) for i in range(c.map_context_blocks))
            )
        else:
            self.map_film = None
            self.map_context = None
        if c.hires_dim > 0:
            Ph = c.hires_key_dim
            self.hires_key: nn.Module | None = nn.Sequential(
                nn.Conv2d(c.hires_dim, Ph, 3, padding=1), nn.GELU(), nn.Conv2d(Ph, Ph, 1)
            )
            self.hires_query: nn.Module | None = nn.Linear(P, Ph)
        else:
            self.hires_key = None
            self.hires_query = None

    # ------------------------------------------------------------------------------------------ parts

    def check_features(self, embedding: torch.Tensor, hires4: torch.Tensor | None,
                       stride8: torch.Tensor | None = None) -> None:
        """Raise :class:`ConfigError` when the features do not come from a segmenter like the one trained on."""
        c = self.config
        if c.branch_in_dim > 0:
            _check_feature_map(stride8, (c.branch_in_dim, 2 * c.image_grid, 2 * c.image_grid),
                               "the localizer's image branch expects stride-8 segmenter features (a compact encoder's)")
        if embedding.ndim != 4 or tuple(embedding.shape[1:]) != (c.image_dim, c.image_grid, c.image_grid):
            raise ConfigError(
                f"the localizer expects segmenter embeddings of shape (B, {c.image_dim}, {c.image_grid}, "
                f"{c.image_grid}) (it was trained on {c.segmenter_name or 'another segmenter'}), "
                f"got {tuple(embedding.shape)}"
            )
        if c.hires_dim > 0:
            _check_feature_map(hires4, (c.hires_dim, 4 * c.image_grid, 4 * c.image_grid),
                               "the localizer expects stride-4 segmenter features")

    def image_tokens(self, embedding: torch.Tensor) -> torch.Tensor:
        """``(B, D, g, g)`` → ``(B, E, g, g)`` image tokens on their grid (flatten for the Q-Former)."""
        x = self.image_in(self.image_norm(embedding.float().permute(0, 2, 3, 1)))
        return x.permute(0, 3, 1, 2) + self.pos_embed

    def text_tokens(self, text: torch.Tensor) -> torch.Tensor:
        """``(N, text_dim)`` sentence vectors → ``(N, T, H)`` text tokens."""
        return self.text_in(text.float()).view(text.shape[0], self.config.text_tokens, self.config.qformer_hidden)

    def image_itc(self, grid_tokens: torch.Tensor) -> torch.Tensor:
        """Unimodal pass: ``(B, E, g, g)`` tokens → ``(B, Q, P)`` unit ITC features."""
        query_out, _ = self.qformer(grid_tokens.flatten(2).transpose(1, 2))
        return F.normalize(self.itc_image(query_out), dim=-1)

    def text_itc(self, text_tokens: torch.Tensor) -> torch.Tensor:
        """``(N, T, H)`` → ``(N, P)`` unit ITC features."""
        return F.normalize(self.itc_text(text_tokens.mean(1)), dim=-1)

    def similarity(self, image_itc: torch.Tensor, text_itc: torch.Tensor) -> torch.Tensor:
        """``(B, Q, P)`` × ``(M, P)`` → ``(B, M)`` ITC logits: max over queries of the cosine, scaled."""
        sim = torch.einsum("bqp,mp->bmq", image_itc, text_itc).amax(-1)
        return sim * self.logit_scale.exp().clamp(max=100.0)

    def match(
        self,
        grid_tokens: torch.Tensor,
        hires4: torch.Tensor | None,
        text_tokens: torch.Tensor,
        image_index: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Multimodal pass for ``N`` pairs → ``(itm_logits (N,), relevance_logits (N, R, R))``."""
        tokens = grid_tokens[image_index]  # (N, E, g, g)
        query_out, text_out = self.qformer(tokens.flatten(2).transpose(1, 2), text_tokens)
        assert text_out is not None  # text was given
        itm = self.itm_head(query_out.mean(1)).squeeze(-1)
        cond = self.map_query(torch.cat([text_out.mean(1), query_out.mean(1)], dim=-1))  # (N, P)
        keys = self.map_key(grid_tokens)[image_index]  # (N, P, g, g)
        P = keys.shape[1]
        if self.map_film is not None and self.map_context is not None:
            scale, shift = self.map_film(cond).chunk(2, dim=-1)  # (N, P) each
            keys = self.map_context(keys * (1 + scale[:, :, None, None]) + shift[:, :, None, None])
        logits = torch.einsum("npxy,np->nxy", keys, cond) / math.sqrt(P)
        if self.hires_key is not None and self.hires_query is not None:
            assert hires4 is not None  # checked by check_features
            side = hires4.shape[-1]
            logits = F.interpolate(logits.unsqueeze(1), (side, side), mode="bilinear", align_corners=False)[:, 0]
            hk = self.hires_key(hires4.float())  # (B, Ph, 4g, 4g)
            hq = self.hires_query(cond)  # (N, Ph)
            logits = logits + torch.einsum("npxy,np->nxy", hk[image_index], hq) / math.sqrt(hk.shape[1])
        return itm, logits + self.map_bias

    # ------------------------------------------------------------------------------------------ forward

    def forward(
        self,
        embedding: torch.Tensor,
        hires4: torch.Tensor | None,
        text: torch.Tensor,
        image_index: torch.Tensor,
        with_itc: bool = True,
        stride8: torch.Tensor | None = None,
    ) -> LocalizerOutput:
        """Localize ``N`` phrases on ``B`` images.

        Args:
            embedding: ``(B, D, g, g)`` segmenter embedding (``ImageFeatures.embedding``).
            hires4: ``(B, D/8, 4g, 4g)`` segmenter stride-4 features (``ImageFeatures.hires[0]``), or ``None``
                when the config has ``hires_dim = 0``.
            text: ``(N, text_dim)`` sentence vectors of the phrases.
            image_index: ``(N,)`` long, the image each phrase is asked of.
            with_itc: also compute the ITC features (training); inference needs only ITM and the map.
            stride8: ``(B, C, 2g, 2g)`` segmenter stride-8 features (``ImageFeatures.stride8``), read instead of
                ``embedding`` when the config has an image branch (``branch_in_dim > 0``), else ignored.
        """
        self.check_features(embedding, hires4, stride8)
        if self.image_branch is not None:
            assert stride8 is not None  # checked by check_features
            embedding = self.image_branch(stride8)
        grid = self.image_tokens(embedding)
        ttok = self.text_tokens(text)
        itm, rel = self.match(grid, hires4 if self.config.hires_dim > 0 else None, ttok, image_index)
        if not with_itc:
            return LocalizerOutput(itm_logits=itm, relevance_logits=rel)
        return LocalizerOutput(itm_logits=itm, relevance_logits=rel, image_itc=self.image_itc(grid),
                               text_itc=self.text_itc(ttok))

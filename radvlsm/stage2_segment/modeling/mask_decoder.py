"""SAM's mask decoder, batched across images, with radvlsm's extra heads.

Which loss trains which head (see :mod:`radvlsm.stage2_segment.losses`):

- mask token → hypernetwork → mask logits: Dice + binary cross-entropy against the lesion mask;
- ``iou_prediction_head`` (SAM's): mean squared error against the IoU of the predicted mask with the
  ground truth, on prompts that hold a lesion;
- ``boundary_hypernet``: binary cross-entropy against a band around the ground-truth contour;
- ``presence_head``: binary cross-entropy against "this box holds (most of) a lesion";
- the mask-pooled embedding has no loss of its own: it is a read-out of features trained by the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from segment_anything.modeling import MaskDecoder
from segment_anything.modeling.mask_decoder import MLP
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class DecoderOutput:
    """Per-prompt outputs of one batched decoder pass (``N`` prompts).

    Attributes:
        mask_logits: ``(N, h, w)``; ``h = w = S/4`` (SAM-style) or ``S/2`` with high-res skips, in the
            frame of the ``S``×``S`` model input.
        iou: ``(N,)`` predicted IoU of each mask with the lesion.
        presence_logit: ``(N,)`` logit of "the box holds a lesion"; ``None`` without aux heads.
        boundary_logits: ``(N, S/4, S/4)`` contour logits; ``None`` without aux heads.
        embedding: ``(N, 2D)`` lesion-aware visual features: the image embedding averaged under the
            predicted mask, concatenated with the mask token.
    """

    mask_logits: torch.Tensor
    iou: torch.Tensor
    presence_logit: torch.Tensor | None
    boundary_logits: torch.Tensor | None
    embedding: torch.Tensor


class BatchedMaskDecoder(MaskDecoder):
    """A :class:`segment_anything.modeling.MaskDecoder` whose prompts may come from different images.

    The stock decoder repeats one image's embedding for each of that image's prompts; this one takes the
    embeddings of ``B`` images and an index ``(N,)`` that says which image each prompt belongs to, so the
    prompts of a whole batch of images go through the transformer in one pass. With ``hires_skips`` the
    upscaled mask features are fused with the encoder's stride-4 map, and the mask is refined at
    stride 2 by a per-prompt linear read-out of the encoder's stride-2 map (both maps computed once per
    image), giving masks at ``S/2``. With ``aux_heads`` it adds a boundary
    hypernetwork and a lesion-presence head. With neither, its parameters are exactly SAM's, so official
    checkpoints load into it.
    """

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: nn.Module,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        hires_skips: bool = False,
        aux_heads: bool = False,
    ) -> None:
        super().__init__(
            transformer_dim=transformer_dim,
            transformer=transformer,
            num_multimask_outputs=num_multimask_outputs,
            iou_head_depth=iou_head_depth,
            iou_head_hidden_dim=iou_head_hidden_dim,
        )
        fine = transformer_dim // 8
        self.hires_skips = hires_skips
        self.aux_heads = aux_heads
        if hires_skips:
            self.fine_hypernet = MLP(transformer_dim, transformer_dim, fine, 3)
        if aux_heads:
            self.boundary_hypernet = MLP(transformer_dim, transformer_dim, fine, 3)
            self.presence_head = MLP(transformer_dim, iou_head_hidden_dim, 1, iou_head_depth)

    def forward_batched(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        image_index: torch.Tensor,
        hires: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> DecoderOutput:
        """Decode ``N`` prompts of ``B`` images in one pass.

        Args:
            image_embeddings: ``(B, D, h, w)``.
            image_pe: ``(1, D, h, w)`` dense positional encoding.
            sparse_prompt_embeddings: ``(N, T, D)`` from the prompt encoder.
            dense_prompt_embeddings: ``(N, D, h, w)`` or ``(1, D, h, w)`` (the no-mask embedding).
            image_index: ``(N,)`` long, image of each prompt, in ``[0, B)``.
            hires: ``(hires4 (B, D/8, 4h, 4w), hires2 (B, D/8, 8h, 8w))`` when the decoder has skips.

        Returns:
            A :class:`DecoderOutput` for the single-mask output (mask token 0), as SAM uses for boxes.
        """
        n = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat((output_tokens.unsqueeze(0).expand(n, -1, -1), sparse_prompt_embeddings), dim=1)

        per_prompt = image_embeddings.index_select(0, image_index)
        src = per_prompt + dense_prompt_embeddings
        pos_src = image_pe.expand(n, -1, -1, -1)
        b, c, h, w = src.shape
        hs, src_out = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 0, :]
        mask_token_out = hs[:, 1, :]

        upscaled = self.output_upscaling(src_out.transpose(1, 2).reshape(b, c, h, w))
        if self.hires_skips:
            if hires is None:
                raise ValueError("this decoder fuses high-resolution features: pass hires=(hires4, hires2)")
            upscaled = upscaled + hires[0].index_select(0, image_index)
        _, cf, hf, wf = upscaled.shape
        flat = upscaled.reshape(n, cf, hf * wf)
        hyper = self.output_hypernetworks_mlps[0](mask_token_out)
        coarse = torch.bmm(hyper.unsqueeze(1), flat).reshape(n, hf, wf)
        mask_logits = coarse
        if self.hires_skips:
            # Refine at stride 2: the coarse logits, upsampled, plus a per-prompt linear read-out of the
            # image-level stride-2 features (no per-prompt convolution at this resolution).
            h2 = hires[1].index_select(0, image_index)  # (N, D/8, 2hf, 2wf)
            fine = torch.bmm(self.fine_hypernet(mask_token_out).unsqueeze(1), h2.flatten(2))
            up = F.interpolate(coarse.unsqueeze(1), h2.shape[-2:], mode="bilinear", align_corners=False)
            mask_logits = (up + fine.reshape(up.shape))[:, 0]
        iou = self.iou_prediction_head(iou_token_out)[:, 0]

        presence = boundary = None
        if self.aux_heads:
            boundary = torch.bmm(self.boundary_hypernet(mask_token_out).unsqueeze(1), flat).reshape(n, hf, wf)
            presence = self.presence_head(iou_token_out)[:, 0]

        weights = F.adaptive_avg_pool2d(torch.sigmoid(mask_logits).unsqueeze(1), (h, w)).flatten(1)  # (N, hw)
        pooled = torch.bmm(weights.unsqueeze(1), per_prompt.flatten(2).transpose(1, 2))[:, 0]  # (N, D)
        pooled = pooled / weights.sum(dim=1, keepdim=True).clamp_min(1e-6)
        embedding = torch.cat([pooled, mask_token_out], dim=1)
        return DecoderOutput(mask_logits, iou, presence, boundary, embedding)

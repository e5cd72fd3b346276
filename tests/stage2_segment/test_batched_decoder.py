"""The hot loop: prompts of many images decoded in one pass equal the same prompts decoded one by one."""

from __future__ import annotations

import numpy as np
import torch

from radvlsm.stage2_segment.build import load_segmenter
from radvlsm.stage2_segment.modeling import LesionSegmenter


def _batched_vs_looped(model: LesionSegmenter, n_images: int, per_image: int) -> None:
    torch.manual_seed(1)
    s = model.config.image_size
    images = torch.rand(n_images, 3, s, s) * 255
    xy = torch.rand(n_images * per_image, 2) * (s * 0.6)
    wh = torch.rand(n_images * per_image, 2) * (s * 0.35) + 4
    boxes = torch.cat([xy, xy + wh], dim=1)
    index = torch.arange(n_images).repeat_interleave(per_image)
    with torch.no_grad():
        feats = model.embed(images)
        batched = model.decode(feats, boxes, index)
        for i in range(len(boxes)):
            single = model.decode(
                type(feats)(feats.embedding[index[i] : index[i] + 1],
                            None if feats.hires is None else tuple(h[index[i] : index[i] + 1] for h in feats.hires)),
                boxes[i : i + 1], torch.zeros(1, dtype=torch.long),
            )
            torch.testing.assert_close(batched.mask_logits[i : i + 1], single.mask_logits, atol=2e-4, rtol=1e-4)
            torch.testing.assert_close(batched.iou[i : i + 1], single.iou, atol=2e-5, rtol=1e-4)
            torch.testing.assert_close(batched.embedding[i : i + 1], single.embedding, atol=2e-4, rtol=1e-4)
            if batched.presence_logit is not None:
                torch.testing.assert_close(batched.presence_logit[i : i + 1], single.presence_logit, atol=2e-5,
                                           rtol=1e-4)


def test_batched_equals_looped_compact(small_compact: LesionSegmenter) -> None:
    _batched_vs_looped(small_compact.eval(), n_images=3, per_image=4)


def test_batched_equals_looped_official_layout(tiny_sam_checkpoint) -> None:
    path, _ = tiny_sam_checkpoint
    _batched_vs_looped(load_segmenter(f"sam_vit_b:{path}"), n_images=3, per_image=3)


def test_prompt_order_does_not_matter(small_compact: LesionSegmenter) -> None:
    """Interleaving prompts of different images gives each prompt the same output."""
    images = torch.rand(2, 3, 64, 64) * 255
    boxes = torch.tensor([[2.0, 2, 30, 30], [10, 10, 60, 50], [5, 20, 40, 60], [0, 0, 64, 64]])
    index = torch.tensor([0, 1, 0, 1])
    perm = torch.tensor([3, 1, 0, 2])
    with torch.no_grad():
        feats = small_compact.embed(images)
        a = small_compact.decode(feats, boxes, index).mask_logits
        b = small_compact.decode(feats, boxes[perm], index[perm]).mask_logits
    np.testing.assert_allclose(a[perm].numpy(), b.numpy(), atol=2e-4)


def test_batched_equals_looped_with_box_prior(small_compact: LesionSegmenter) -> None:
    """With the ellipse prior each prompt carries its own dense embedding; batching still changes nothing."""
    from dataclasses import replace

    from radvlsm.stage2_segment.build import build_from_config

    torch.manual_seed(3)
    model = build_from_config(replace(small_compact.config, box_prior=True)).eval()
    _batched_vs_looped(model, n_images=2, per_image=3)

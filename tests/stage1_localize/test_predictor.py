"""The predictor answers prompts on the features the segmenter predictor already computed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radvlsm.errors import ConfigError, InputError
from radvlsm.stage1_localize.config import LocalizerConfig
from radvlsm.stage1_localize.modeling import TextPromptedLocalizer
from radvlsm.stage1_localize.predictor import LocalizerPredictor
from radvlsm.stage2_segment.predictor import SegmenterPredictor


def _forced(model: TextPromptedLocalizer, itm: float, blob: tuple[int, int, int, int] | None) -> None:
    """Make the model's answer known: constant ITM logit, and a relevance map that is one block (or nothing)."""
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.itm_head.bias.fill_(itm)
        model.map_bias.fill_(-20.0)
    if blob is not None:
        y0, y1, x0, x1 = blob

        def hook(_m, _inp, out):  # type: ignore[no-untyped-def]
            itm_logits, rel = out
            rel = rel.clone()
            rel[:, y0:y1, x0:x1] = 20.0
            return itm_logits, rel

        model.match = _wrap(model.match, hook)  # type: ignore[method-assign]


def _wrap(fn, hook):  # type: ignore[no-untyped-def]
    def inner(*args, **kwargs):  # type: ignore[no-untyped-def]
        return hook(None, args, fn(*args, **kwargs))

    return inner


def test_locate_on_segmenter_features_maps_boxes_to_original(small_compact, tiny_config: LocalizerConfig,
                                                             hashing_encoder) -> None:
    seg = SegmenterPredictor(small_compact)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (120, 200, 3), dtype=np.uint8), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)]
    seg.set_images(images)
    model = TextPromptedLocalizer(tiny_config)
    _forced(model, itm=5.0, blob=(4, 8, 2, 6))  # 16x16 map over a 64-px frame: 4 px per cell
    results = LocalizerPredictor(model, hashing_encoder).locate_on(seg, "polyp", top_k=3)
    assert len(results) == 2 and hashing_encoder.calls == [("polyp",)]
    r = results[0]
    assert r.found and r.status == "ok" and r.prompt == "polyp"
    assert r.relevance.shape == (16, 16) and r.itm_probability > 0.99
    # model px [8, 16, 24, 32] → x * 200/64, y * 120/64
    np.testing.assert_allclose(r.boxes[0], [8 * 200 / 64, 16 * 120 / 64, 24 * 200 / 64, 32 * 120 / 64])
    assert r.boxes.shape[0] <= 3 and r.scores.shape == (r.boxes.shape[0],)
    np.testing.assert_allclose(results[1].boxes[0], [8, 16, 24, 32])


def test_not_found_gives_no_candidates(small_compact, tiny_config: LocalizerConfig, hashing_encoder) -> None:
    seg = SegmenterPredictor(small_compact)
    seg.set_images([np.zeros((50, 70, 3), np.uint8)])
    model = TextPromptedLocalizer(tiny_config)
    _forced(model, itm=-5.0, blob=(4, 8, 2, 6))  # a map, but ITM says no
    [r] = LocalizerPredictor(model, hashing_encoder).locate_on(seg, "polyp")
    assert not r.found and r.status == "not_found" and r.boxes.shape == (0, 4)
    model2 = TextPromptedLocalizer(tiny_config)
    _forced(model2, itm=5.0, blob=None)  # ITM says yes, the map is empty
    [r2] = LocalizerPredictor(model2, hashing_encoder).locate_on(seg, "lesion")
    assert not r2.found and r2.boxes.shape == (0, 4)


def test_bad_inputs(small_compact, tiny_config: LocalizerConfig, hashing_encoder) -> None:
    seg = SegmenterPredictor(small_compact)
    pred = LocalizerPredictor(TextPromptedLocalizer(tiny_config), hashing_encoder)
    with pytest.raises(RuntimeError, match="set_images"):
        pred.locate_on(seg)
    seg.set_images([np.zeros((50, 70, 3), np.uint8)])
    with pytest.raises(InputError, match="empty"):
        pred.locate_on(seg, "   ")
    other = LocalizerPredictor(TextPromptedLocalizer(LocalizerConfig()), hashing_encoder)
    with pytest.raises(ConfigError, match="expects segmenter embeddings of shape"):
        other.locate_on(seg, "lesion")


def test_mirrored_views_are_averaged_in_the_original_frame(small_compact, tiny_config: LocalizerConfig,
                                                           hashing_encoder) -> None:
    seg = SegmenterPredictor(small_compact)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)]
    seg.set_images(images)
    model = TextPromptedLocalizer(tiny_config)
    _forced(model, itm=5.0, blob=(4, 8, 2, 6))  # every view answers the same block of its own frame
    loc = LocalizerPredictor(model, hashing_encoder)
    single = loc.locate_on(seg, "polyp")[0].relevance
    flipped = {f: seg.encode(images, flip=f) for f in ("hflip", "vflip")}
    both = loc.locate_on(seg, "polyp", flipped=flipped)[0]
    # the mirrored views' blocks land mirrored in the image's frame: three blocks of a third each
    np.testing.assert_allclose(both.relevance, (single + single[:, ::-1] + single[::-1, :]) / 3, atol=1e-6)
    assert both.found and len(both.boxes) >= 2
    with pytest.raises(ValueError, match="flip"):
        loc.locate_on(seg, "polyp", flipped={"rot90": flipped["hflip"]})


def test_encode_mirrors_the_model_input(small_compact) -> None:
    seg = SegmenterPredictor(small_compact)
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)  # the model size: resizing is the identity
    torch.testing.assert_close(seg.encode([image], flip="hflip").embedding,
                               seg.encode([np.ascontiguousarray(image[:, ::-1])]).embedding)
    torch.testing.assert_close(seg.encode([image], flip="vflip").embedding,
                               seg.encode([np.ascontiguousarray(image[::-1])]).embedding)
    with pytest.raises(ValueError, match="unknown flip"):
        seg.encode([image], flip="rot90")
    mirrored = seg.encode_mirrored([image, image], ("hflip", "vflip"))  # one resize, each mirroring encoded
    assert list(mirrored) == ["hflip", "vflip"] and seg.encode_mirrored([image], ()) == {}
    for flip, feats in mirrored.items():
        torch.testing.assert_close(feats.embedding, seg.encode([image, image], flip=flip).embedding)

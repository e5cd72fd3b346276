"""Held-out prompt evaluation with the embedded default models on the shipped samples (real images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radvlsm.data.cases import read_dataset
from radvlsm.stage1_localize.build import DEFAULT_WEIGHTS_DIR, load_localizer
from radvlsm.stage1_localize.evaluate import evaluate_prompts, prompt_sets, summarize_prompts
from radvlsm.stage1_localize.predictor import LocalizerPredictor
from radvlsm.stage1_localize.text import TextEncoder
from radvlsm.stage2_segment.build import load_segmenter
from radvlsm.stage2_segment.predictor import SegmenterPredictor

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"


def test_prompt_sets_keep_training_and_held_out_phrases_apart() -> None:
    sets = prompt_sets("dermoscopy")
    assert sets["trained"][0] == "lesion"
    assert not set(sets["paraphrase"]) & set(sets["trained"])
    assert "polyp" in sets["negative"] and "mole" in sets["paraphrase"]
    assert not set(sets["negative"]) & (set(sets["trained"]) | set(sets["paraphrase"]))


def test_default_models_on_samples() -> None:
    if not (DEFAULT_WEIGHTS_DIR / "model.safetensors").is_file():
        pytest.skip(f"the embedded default localizer is not in {DEFAULT_WEIGHTS_DIR}")
    seg = SegmenterPredictor(load_segmenter("default"))
    loc = LocalizerPredictor(load_localizer("default"), TextEncoder())
    cases = read_dataset(SAMPLES).cases
    rows = []
    for name in ("ph2", "kvasir-seg"):
        sel = [c for c in cases if c.labels.get("dataset") == name]
        prompts = {k: v[:3] for k, v in prompt_sets("dermoscopy" if name == "ph2" else "colonoscopy").items()}
        rows += evaluate_prompts(seg, loc, sel, name, prompts)
    summary = {(s.dataset, s.kind): s for s in summarize_prompts(rows)}
    assert len(rows) == 6 * 9
    for data in ("ph2", "kvasir-seg"):
        assert summary[(data, "negative")].rejected == 1.0
        assert np.isnan(summary[(data, "negative")].dice)
        # automatic masks beat the ellipse inscribed in stage 1's own top box
        assert summary[(data, "trained")].dice > summary[(data, "trained")].ellipse_dice
    assert summary[("ph2", "trained")].recall_at_1 == 1.0 and summary[("ph2", "trained")].dice > 0.9
    # one of the three Kvasir-SEG samples (a small flat polyp) is not found: an empty mask, Dice 0 for it
    kv = summary[("kvasir-seg", "trained")]
    assert kv.recall_at_5 >= 2 / 3 and kv.found >= 2 / 3 and kv.dice > 0.55


def test_prompts_asked_of_an_image_without_lesion_are_scored_as_rejections(busi_root: Path) -> None:
    if not (DEFAULT_WEIGHTS_DIR / "model.safetensors").is_file():
        pytest.skip(f"the embedded default localizer is not in {DEFAULT_WEIGHTS_DIR}")
    seg = SegmenterPredictor(load_segmenter("default"))
    loc = LocalizerPredictor(load_localizer("default"), TextEncoder())
    normal = [c for c in read_dataset(busi_root, "busi").cases if c.diagnosis == "normal"][:2]
    prompts = {"trained": ("lesion", "breast mass"), "negative": ("polyp",)}
    rows = evaluate_prompts(seg, loc, normal, "busi", prompts)
    assert sorted({r.kind for r in rows}) == ["negative", "normal"]
    summary = {s.kind: s for s in summarize_prompts(rows)}
    assert summary["normal"].n == 4 and 0.0 <= summary["normal"].rejected <= 1.0
    assert np.isnan(summary["normal"].dice) and np.isnan(summary["normal"].recall_at_5)
    assert summary["normal"].rejected == 1 - summary["normal"].found

"""Aggregation settings that travel with a model (``aggregation.json``) and the recipe's choice of the presence
threshold and box margin on validation images (real images: the PH2 samples, the embedded default model)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from radvlsm.errors import ConfigError
from radvlsm.io import read_image, read_mask, to_display_rgb
from radvlsm.stage2_segment.aggregation import AGGREGATION_FILE, AggregationConfig
from radvlsm.stage2_segment.build import DEFAULT_WEIGHTS_DIR, load_segmenter, save_segmenter
from radvlsm.stage2_segment.predictor import SegmenterPredictor
from radvlsm.stage2_segment.train import (
    BOX_MARGINS,
    PRESENCE_THRESHOLDS,
    CachedSet,
    choose_aggregation,
    write_aggregation,
)

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"


def test_settings_parse_and_reject_bad_values() -> None:
    cfg = AggregationConfig(presence_threshold=0.1)
    assert AggregationConfig.from_json(cfg.to_json()) == cfg
    for text, reason in (('{"presence_threshold": 2}', "must lie in"), ('{"method": "vote"}', "method must be"),
                         ('{"surprise": 1}', "unknown aggregation keys"), ("[1]", "JSON object"), ("{", "valid JSON")):
        with pytest.raises(ConfigError, match=reason):
            AggregationConfig.from_json(text, Path("aggregation.json"))


@pytest.fixture(scope="module")
def samples_at_256() -> CachedSet:
    ids = ("IMD009", "IMD019", "cju0rx1idathl0835detmsp84")
    imgs = np.stack([cv2.resize(to_display_rgb(read_image(SAMPLES / "images" / f"{c}.jpg")), (256, 256),
                                interpolation=cv2.INTER_AREA) for c in ids])
    masks = np.stack([cv2.resize(read_mask(SAMPLES / "masks" / f"{c}.png").astype(np.uint8), (256, 256),
                                 interpolation=cv2.INTER_NEAREST) for c in ids])
    return CachedSet(ids, ("ph2", "ph2", "kvasir-seg"), imgs, masks)


def test_recipe_writes_the_threshold_the_model_then_uses(tmp_path: Path, samples_at_256: CachedSet) -> None:
    if not (DEFAULT_WEIGHTS_DIR / "model.safetensors").is_file():
        pytest.skip(f"the embedded default segmenter is not in {DEFAULT_WEIGHTS_DIR}")
    model = load_segmenter("default")
    assert model.aggregation is None  # the default ships without its own settings
    best, means = choose_aggregation(model, samples_at_256)
    assert set(means) == {(t, m) for t in PRESENCE_THRESHOLDS for m in BOX_MARGINS}
    chosen = (best.presence_threshold, best.box_margin)
    assert means[chosen] == max(means.values()) and means[chosen] > 0.8
    folder = tmp_path / "model"
    save_segmenter(model, folder)
    written = write_aggregation(model, samples_at_256, folder)
    assert (folder / AGGREGATION_FILE).is_file() and written == best
    again = load_segmenter(str(folder))
    assert again.aggregation == written
    assert SegmenterPredictor(again).aggregation == written  # the model's own settings
    mine = AggregationConfig(method="mean")
    assert SegmenterPredictor(again, aggregation=mine).aggregation == mine  # the caller's win

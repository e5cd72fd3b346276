from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from radvlsm.errors import ConfigError
from radvlsm.stage2_segment.build import (
    create_segmenter,
    list_segmenters,
    load_own,
    load_segmenter,
    save_segmenter,
)
from radvlsm.stage2_segment.config import SegmenterConfig
from radvlsm.stage2_segment.modeling import LesionSegmenter
from radvlsm.stage2_segment.predictor import SegmenterPredictor


def test_registry_lists_every_family() -> None:
    assert {"compact", "sam_vit_b", "sam_vit_l", "sam_vit_h", "medsam"} <= set(list_segmenters())
    with pytest.raises(ConfigError, match="unknown segmenter 'vit_x'"):
        create_segmenter("vit_x")


def test_official_checkpoint_loads_and_matches_segment_anything(tiny_sam_checkpoint, caplog) -> None:
    """A SAM-layout checkpoint loads through ``sam_vit_b:PATH`` (architecture read off the tensors) and our
    batched decoder gives the stock ``Sam`` model's masks and IoU for the same boxes."""
    path, sam = tiny_sam_checkpoint
    with caplog.at_level(logging.WARNING):
        model = load_segmenter(f"sam_vit_b:{path}")
    assert "not the sam_vit_b layout" in caplog.text  # a toy ViT, loaded as it is, with a warning
    assert model.config.image_size == 64 and model.config.num_multimask_outputs == 3
    assert not model.config.aux_heads

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8)
    boxes = np.array([[5, 6, 40, 50], [20, 10, 60, 30]], dtype=np.float64)
    ours = model(
        torch.from_numpy(img).permute(2, 0, 1)[None].float(), torch.from_numpy(boxes).float(), torch.zeros(2).long()
    )
    with torch.no_grad():
        ref = sam([{"image": torch.from_numpy(img).permute(2, 0, 1), "original_size": (64, 64),
                    "boxes": torch.from_numpy(boxes).float()}], multimask_output=False)[0]
    torch.testing.assert_close(ours.mask_logits, ref["low_res_logits"][:, 0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.iou, ref["iou_predictions"][:, 0], atol=1e-5, rtol=1e-5)


def test_medsam_uses_stretch_and_unit_scaling(tiny_sam_checkpoint) -> None:
    path, _ = tiny_sam_checkpoint
    model = load_segmenter(f"medsam:{path}")
    assert model.config.resize_mode == "stretch"
    assert model.config.pixel_std == (255.0, 255.0, 255.0)


def test_checkpoint_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    """``weights_only=True``: a checkpoint that would run code when unpickled is not loaded."""

    class Payload:
        def __reduce__(self):  # pragma: no cover - never called by a safe loader
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    with path.open("wb") as fh:
        pickle.dump({"image_encoder.pos_embed": Payload()}, fh)
    with pytest.raises(ConfigError, match="not a loadable weights-only PyTorch checkpoint"):
        load_segmenter(f"sam_vit_b:{path}")


def test_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, path)
    with pytest.raises(ConfigError, match="not a SAM checkpoint"):
        load_segmenter(f"sam_vit_b:{path}")
    with pytest.raises(ConfigError, match="checkpoint file not found"):
        load_segmenter(f"sam_vit_b:{tmp_path / 'missing.pth'}")
    with pytest.raises(ConfigError, match="say which layout"):
        load_segmenter(str(path))


def test_own_weights_round_trip(tmp_path: Path, small_compact: LesionSegmenter) -> None:
    folder = save_segmenter(small_compact, tmp_path / "m")
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    loaded = load_own(folder)
    assert loaded.config == small_compact.config
    x = torch.rand(2, 3, 64, 64) * 255
    boxes = torch.tensor([[4.0, 4, 40, 40], [10, 20, 50, 60]])
    a = small_compact(x, boxes, torch.tensor([0, 1]))
    b = loaded(x, boxes, torch.tensor([0, 1]))
    torch.testing.assert_close(a.mask_logits, b.mask_logits)
    # A folder spec and a file spec both work.
    assert isinstance(load_segmenter(str(folder)), LesionSegmenter)
    assert isinstance(load_segmenter(str(folder / "model.safetensors")), LesionSegmenter)


def test_config_errors_name_the_file(tmp_path: Path, small_compact: LesionSegmenter) -> None:
    folder = save_segmenter(small_compact, tmp_path / "m")
    cfg = folder / "config.json"
    cfg.write_text(cfg.read_text().replace('"decoder_depth"', '"decoder_layers"'))
    with pytest.raises(ConfigError, match=r"config.json: unknown segmenter config keys \['decoder_layers'\]"):
        load_own(folder)
    cfg.write_text("{not json")
    with pytest.raises(ConfigError, match=r"config\.json: not valid JSON"):
        load_own(folder)
    (folder / "config.json").unlink()
    with pytest.raises(ConfigError, match=r"config\.json that travels with"):
        load_own(folder)


def test_weights_that_do_not_fit_the_config(tmp_path: Path, small_compact: LesionSegmenter) -> None:
    folder = save_segmenter(small_compact, tmp_path / "m")
    bigger = SegmenterConfig(**{**small_compact.config.__dict__, "embed_dim": 48})
    (folder / "config.json").write_text(bigger.to_json())
    with pytest.raises(ConfigError, match="weights do not fit the model"):
        load_own(folder)


def test_sam_vit_b_random_weights_build_for_timing() -> None:
    """Without a checkpoint the official builders give random weights of the real size (for benchmarks)."""
    model = create_segmenter("sam_vit_b")
    n = sum(p.numel() for p in model.image_encoder.parameters())
    assert 85e6 < n < 95e6  # ViT-B image encoder: ~89M parameters
    assert model.config.image_size == 1024
    pred = SegmenterPredictor(model)
    assert pred.transform.mode == "longest_side"

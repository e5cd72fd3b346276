"""Saving/loading localizers, the segmenter binding, and official BLIP-2 (HF format) Q-Former weights."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from radvlsm.errors import ConfigError
from radvlsm.stage1_localize import build
from radvlsm.stage1_localize.build import (
    bind_to_segmenter,
    check_segmenter,
    init_qformer_from_blip2,
    load_blip2_qformer,
    load_localizer,
    localizer_config_from_blip2,
    save_localizer,
    segmenter_fingerprint,
)
from radvlsm.stage1_localize.config import LocalizerConfig
from radvlsm.stage1_localize.modeling import TextPromptedLocalizer


def _randomise(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)


def test_save_load_round_trip(tmp_path: Path, tiny_config: LocalizerConfig) -> None:
    torch.manual_seed(0)
    model = TextPromptedLocalizer(tiny_config).eval()
    _randomise(model)
    with torch.no_grad():
        model.logit_scale.fill_(3.3)
    save_localizer(model, tmp_path / "loc")
    assert json.loads((tmp_path / "loc" / "config.json").read_text())["num_query_tokens"] == 4
    loaded = load_localizer(tmp_path / "loc")
    assert loaded.config == tiny_config and not loaded.training
    assert float(loaded.logit_scale.detach()) == pytest.approx(3.3)
    emb, hires, text = torch.randn(2, 32, 4, 4), torch.randn(2, 4, 16, 16), torch.randn(3, 384)
    idx = torch.tensor([0, 1, 1])
    with torch.no_grad():
        a, b = model(emb, hires, text, idx), loaded(emb, hires, text, idx)
    torch.testing.assert_close(a.relevance_logits, b.relevance_logits)
    torch.testing.assert_close(a.itm_logits, b.itm_logits)
    loaded_file = load_localizer(str(tmp_path / "loc" / "model.safetensors"))
    assert loaded_file.config == tiny_config


def test_load_errors(tmp_path: Path, tiny_config: LocalizerConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(build.EMBEDDED_LOCALIZERS, "default", tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="embedded default localizer is missing"):
        load_localizer("default")
    with pytest.raises(ConfigError, match="not a localizer spec"):
        load_localizer(tmp_path / "absent")
    save_localizer(TextPromptedLocalizer(tiny_config), tmp_path / "loc")
    cfg = json.loads((tmp_path / "loc" / "config.json").read_text())
    (tmp_path / "loc" / "config.json").write_text(json.dumps({**cfg, "surprise": 1}))
    with pytest.raises(ConfigError, match=r"unknown localizer config keys \['surprise'\]"):
        load_localizer(tmp_path / "loc")
    (tmp_path / "loc" / "config.json").write_text(json.dumps({**cfg, "qformer_hidden": 48}))
    with pytest.raises(ConfigError, match="weights do not fit"):
        load_localizer(tmp_path / "loc")
    (tmp_path / "loc" / "config.json").unlink()
    with pytest.raises(ConfigError, match=r"config\.json that travels"):
        load_localizer(tmp_path / "loc")


def test_config_json_round_trip() -> None:
    cfg = LocalizerConfig(box_rel_thresholds=(0.4, 0.6), top_k=7, segmenter_fingerprint="abc")
    assert LocalizerConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="multiple of qformer_heads"):
        LocalizerConfig.from_json(json.dumps({"qformer_hidden": 30, "qformer_heads": 4}))
    with pytest.raises(ConfigError, match="newer"):
        LocalizerConfig.from_json(json.dumps({"version": 99}))


def test_segmenter_binding(small_compact, tiny_config: LocalizerConfig) -> None:
    cfg = bind_to_segmenter(LocalizerConfig(), small_compact, "small")
    assert (cfg.image_dim, cfg.image_grid, cfg.image_size, cfg.hires_dim) == (32, 4, 64, 4)
    assert cfg.segmenter_name == "small" and len(cfg.segmenter_fingerprint) == 16
    assert cfg.segmenter_fingerprint == segmenter_fingerprint(small_compact)
    check_segmenter(cfg, small_compact)
    with pytest.raises(ConfigError, match="encoder weights differ"):
        check_segmenter(dataclasses.replace(cfg, segmenter_fingerprint="0" * 16), small_compact)
    with pytest.raises(ConfigError, match="128 channels"):
        check_segmenter(LocalizerConfig(), small_compact)


# ---------------------------------------------------------------------------------------- HF BLIP-2


def _tiny_blip2(folder: Path, hidden: int = 32, layers: int = 2, max_shard_size: str | None = None) -> None:
    """A random ``Blip2Model`` at toy size (ViT 1 layer, OPT 1 layer), saved in HF format."""
    from transformers import Blip2Config, Blip2Model

    torch.manual_seed(1)
    cfg = Blip2Config(
        vision_config={"hidden_size": 24, "intermediate_size": 48, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 16},
        qformer_config={"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 2,
                        "intermediate_size": 64, "encoder_hidden_size": 24, "cross_attention_frequency": 1},
        text_config={"model_type": "opt", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "ffn_dim": 64, "vocab_size": 100, "max_position_embeddings": 64, "word_embed_proj_dim": 32},
        num_query_tokens=4,
    )
    model = Blip2Model(cfg)
    with torch.no_grad():
        model.query_tokens.normal_()
    kwargs = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    model.save_pretrained(folder, **kwargs)


@pytest.fixture(scope="module")
def blip2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("blip2")
    _tiny_blip2(folder)
    return folder


def test_blip2_qformer_weights_load(blip2_folder: Path) -> None:
    model = load_blip2_qformer(blip2_folder)
    cfg = model.config
    assert (cfg.qformer_hidden, cfg.qformer_layers, cfg.num_query_tokens, cfg.encoder_hidden_size) == (32, 2, 4, 24)
    saved = load_file(str(blip2_folder / "model.safetensors"))
    ours = model.qformer.state_dict()
    hf_keys = [k for k in saved if k.startswith("qformer.") or k == "query_tokens"]
    assert hf_keys
    for k in hf_keys:
        torch.testing.assert_close(ours[k], saved[k].float(), msg=k)
    # the text feed-forward (absent from captioning checkpoints) starts as the query feed-forward
    torch.testing.assert_close(ours["qformer.encoder.layer.1.intermediate.dense.weight"],
                               saved["qformer.encoder.layer.1.intermediate_query.dense.weight"])
    # the rest of the localizer is ours, and the whole model runs
    with torch.no_grad():
        out = model(torch.randn(1, 128, 16, 16), torch.randn(1, 16, 64, 64), torch.randn(2, 384), torch.tensor([0, 0]))
    assert out.relevance_logits.shape == (2, 64, 64)


def test_blip2_shape_mismatch_is_a_clear_error(blip2_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not match the localizer config \(qformer_hidden: folder 32 vs "
                                          r"config 192.*localizer_config_from_blip2"):
        load_blip2_qformer(blip2_folder, LocalizerConfig())
    # same settings claimed, tensors of another shape: caught on the tensors
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text((blip2_folder / "config.json").read_text())
    state = load_file(str(blip2_folder / "model.safetensors"))
    state["query_tokens"] = torch.zeros(1, 5, 32)
    save_file(state, str(other / "model.safetensors"))
    with pytest.raises(ConfigError, match="query_tokens: \\(1, 5, 32\\) vs ours \\(1, 4, 32\\)"):
        load_blip2_qformer(other)


def test_blip2_folder_errors(tmp_path: Path, blip2_folder: Path) -> None:
    with pytest.raises(ConfigError, match=r"no config\.json"):
        load_blip2_qformer(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ConfigError, match="no 'qformer_config'"):
        load_blip2_qformer(tmp_path)
    (tmp_path / "config.json").write_text((blip2_folder / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80")
    with pytest.raises(ConfigError, match="only safetensors"):
        load_blip2_qformer(tmp_path)
    (tmp_path / "pytorch_model.bin").unlink()
    save_file({"vision_model.x": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ConfigError, match="not a BLIP-2 checkpoint"):
        load_blip2_qformer(tmp_path)


def test_blip2_sharded_folder_and_init_in_place(tmp_path: Path) -> None:
    _tiny_blip2(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    base = dataclasses.replace(LocalizerConfig(), embed_dim=32)
    cfg = localizer_config_from_blip2(tmp_path, base=base)
    assert cfg.embed_dim == 32 and cfg.qformer_hidden == 32
    model = TextPromptedLocalizer(cfg)
    before = model.itm_head.weight.clone()
    n = init_qformer_from_blip2(model, tmp_path)
    assert n > 10
    torch.testing.assert_close(model.itm_head.weight, before)  # our heads are untouched

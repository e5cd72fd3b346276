"""Which embedded models serve which imaging modality.

``radvlsm segment`` / ``diagnose --modality M`` take the segmenter, localizer, diagnosis head and domain gate
of :data:`MODEL_SETS` ``[M]`` unless ``--model``, ``--localizer``, ``--head`` or ``--domain-prompt`` name others.
Without ``--modality`` the dermoscopy set is used (the embedded ``default`` models, which also segment
colonoscopy images).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType


class Modality(str, Enum):
    """The imaging modalities radvlsm ships models for."""

    DERMOSCOPY = "dermoscopy"
    COLONOSCOPY = "colonoscopy"
    ULTRASOUND = "ultrasound"


@dataclass(frozen=True)
class ModelSet:
    """Model specs for one modality.

    Attributes:
        segmenter: ``--model`` spec of the box-prompted segmenter.
        localizer: ``--localizer`` spec (it must read that segmenter's features).
        head: ``--head`` spec of the diagnosis head, ``None`` when radvlsm has none for the modality.
        domain_prompt: the phrase the localizer must match before the head is applied (``diagnose``).
    """

    segmenter: str
    localizer: str
    head: str | None
    domain_prompt: str


MODEL_SETS: Mapping[Modality, ModelSet] = MappingProxyType({
    Modality.DERMOSCOPY: ModelSet("default", "default", "default", "skin lesion"),
    Modality.COLONOSCOPY: ModelSet("default", "default", None, "polyp"),
    Modality.ULTRASOUND: ModelSet("ultrasound", "ultrasound", "ultrasound", "breast mass"),
})


def model_set(modality: Modality | None) -> ModelSet:
    """The models of ``modality`` (``None``: dermoscopy's, the embedded defaults)."""
    return MODEL_SETS[modality or Modality.DERMOSCOPY]

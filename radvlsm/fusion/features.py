"""Feature vectors of a lesion for the diagnosis head.

Three groups, each under a namespaced, stable name:

- ``original_*``: pyradiomics features of the image inside the mask (:mod:`radvlsm.fusion.radiomics`, default
  2-D parameters; 3-D at the volume's spacing for CT), e.g. ``original_glcm_Contrast``;
- ``visual_000`` … ``visual_NNN``: the stage-2 segmenter's lesion-aware embedding (image embedding averaged
  under the predicted mask, and the mask token; for a CT nodule averaged over its slices, see
  :mod:`radvlsm.fusion.volume`);
- ``colour_*``: CIELAB colour of the lesion (means, spreads, contrast with a ring of surrounding tissue, and
  how unevenly the colours lie about the lesion's two principal axes); 2-D images only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from radvlsm.fusion.radiomics import RadiomicsExtractor
from radvlsm.io.record import ImageRecord
from radvlsm.metrics.symmetry import mirror_difference, smooth_inside

FEATURE_GROUPS = ("radiomics", "visual", "colour")

COLOUR_NAMES = (
    "colour_lesion_L_mean", "colour_lesion_a_mean", "colour_lesion_b_mean",
    "colour_lesion_L_std", "colour_lesion_a_std", "colour_lesion_b_std",
    "colour_lesion_L_p90_p10", "colour_lesion_a_p90_p10", "colour_lesion_b_p90_p10",
    "colour_contrast_L", "colour_contrast_a", "colour_contrast_b",
    "colour_mirror_major", "colour_mirror_minor",
)
#: Smoothing of the colours before the mirror comparison, as a fraction of the lesion's equivalent radius.
MIRROR_SIGMA = 0.1


@dataclass(frozen=True, eq=False)
class LesionFeatures:
    """One case's features: ``names`` and ``values`` (float64, same length), in a fixed order."""

    case_id: str
    names: tuple[str, ...]
    values: np.ndarray

    def group(self, prefix: str) -> LesionFeatures:
        keep = [i for i, n in enumerate(self.names) if n.startswith(prefix)]
        return LesionFeatures(self.case_id, tuple(self.names[i] for i in keep), self.values[keep])


def colour_features(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """14 CIELAB features of the lesion (see :data:`COLOUR_NAMES`); ``rgb (H, W, 3)`` uint8, ``mask (H, W)``.

    L* in 0..100, a*, b* in their usual signed ranges. The surround is a ring outside the lesion, as wide as a
    tenth of the lesion's equivalent diameter (at least 3 px). ``colour_mirror_major`` / ``_minor``: the mean
    ΔE*76 between the lesion's colours and their mirror image about its major / minor principal axis
    (:func:`radvlsm.metrics.symmetry.mirror_difference`), the colours first smoothed inside the lesion over
    :data:`MIRROR_SIGMA` of its equivalent radius: the colour asymmetry of the ABCD rule.
    """
    lab = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB).astype(np.float64)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    m = mask.astype(bool)
    inside = lab[m]
    d = max(3, round(0.1 * np.sqrt(4 * m.sum() / np.pi)))
    ring = cv2.dilate(m.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * d + 1, 2 * d + 1))) > 0
    ring &= ~m
    around = lab[ring] if ring.any() else inside
    p90, p10 = np.percentile(inside, 90, axis=0), np.percentile(inside, 10, axis=0)
    radius = float(np.sqrt(m.sum() / np.pi))
    mirror = mirror_difference(smooth_inside(lab, m, max(0.5, MIRROR_SIGMA * radius)), m)
    return np.concatenate([inside.mean(0), inside.std(0), p90 - p10, inside.mean(0) - around.mean(0), mirror])


def lesion_features(
    case_id: str,
    rgb: np.ndarray,
    mask: np.ndarray,
    embedding: np.ndarray,
    extractor: RadiomicsExtractor,
    spacing: Sequence[float] | None = None,
) -> LesionFeatures:
    """All features of one 2-D lesion. ``embedding`` is the segmenter's ``SegmentationResult.embedding``."""
    rad = extractor.extract_arrays(rgb, mask.astype(np.uint8), spacing)
    names = list(rad) + [f"visual_{i:03d}" for i in range(len(embedding))] + list(COLOUR_NAMES)
    values = np.concatenate(
        [np.fromiter(rad.values(), float), np.asarray(embedding, float), colour_features(rgb, mask)]
    )
    return LesionFeatures(case_id, tuple(names), values)


def volume_lesion_features(
    case_id: str, volume: ImageRecord, mask: np.ndarray, embedding: np.ndarray, extractor: RadiomicsExtractor,
) -> LesionFeatures:
    """All features of one lesion in a volume: 3-D radiomics of ``volume`` (HU, its geometry: the real spacing)
    under ``mask (Z, Y, X)``, and the visual ``embedding`` (no colour).

    Raises:
        InputError: an empty mask, or pyradiomics refusing the case.
    """
    rad = extractor.extract(volume, np.asarray(mask).astype(np.uint8))
    names = list(rad) + [f"visual_{i:03d}" for i in range(len(embedding))]
    values = np.concatenate([np.fromiter(rad.values(), float), np.asarray(embedding, float)])
    return LesionFeatures(case_id, tuple(names), values)


def stack(features: Sequence[LesionFeatures]) -> tuple[np.ndarray, tuple[str, ...]]:
    """``(n_cases, n_features)`` matrix; every case must have the same feature names."""
    names = features[0].names
    for f in features[1:]:
        if f.names != names:
            raise ValueError(f"case {f.case_id} has other features than {features[0].case_id}")
    return np.stack([f.values for f in features]), names


def select_groups(names: Sequence[str], groups: Sequence[str]) -> list[int]:
    """Column indices of the named groups (``radiomics`` = ``original_*``, ``visual``, ``colour``)."""
    prefixes = {"radiomics": "original_", "visual": "visual_", "colour": "colour_"}
    unknown = set(groups) - set(prefixes)
    if unknown:
        raise ValueError(f"unknown feature group(s) {sorted(unknown)}; known: {list(prefixes)}")
    wanted = tuple(prefixes[g] for g in groups)
    return [i for i, n in enumerate(names) if n.startswith(wanted)]

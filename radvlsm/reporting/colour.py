"""The six dermoscopic colours (white, red, light-brown, dark-brown, blue-gray, black) in a lesion.

Method, per image:

1. The image is reduced to a working size (long side :attr:`ColourModel.working_long_side` px, area
   averaging) and converted to CIELAB (sRGB, D65).
2. Hair and other thin dark structures are found with a morphological black-hat of L* (a 9 px disc at the
   working size, response of 8 L* units or more) and left out, as are specular highlights (L* > 97).
3. The surrounding skin is the median colour of a ring outside the lesion (as wide as 15 % of the lesion's
   equivalent diameter, at least 5 px), leaving out hair and the dark vignette of the dermoscope.
4. Depending on :attr:`ColourModel.normalisation` the colours are judged as they are (``"none"``), after a von
   Kries white balance that maps the skin to a reference skin colour (``"von-kries"``), or as differences from
   the skin added to the reference skin (``"relative"``).
5. Every remaining lesion pixel is assigned to the nearest prototype colour (Euclidean distance in CIELAB,
   the distance to the ``skin`` prototype multiplied by ``skin_weight``); pixels nearest ``skin`` belong to no
   dermoscopic colour.
6. A colour is **present** when its share of the analysed lesion area reaches its threshold.

The prototypes, thresholds, skin weight and normalisation of :data:`DEFAULT_COLOUR_MODEL` were tuned on PH2
folds 1-4 only (``benchmarks/findings_ph2.py --tune``); fold 0 is kept for the reported figures.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from radvlsm.reporting.records import DERMOSCOPIC_COLOURS, ColourFindings

log = logging.getLogger(__name__)

_SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_D65 = np.array([0.95047, 1.0, 1.08883])
_HAIR_KERNEL_PX = 9
_GLARE_L = 97.0
_VIGNETTE_L = 25.0


def srgb_to_linear(rgb01: np.ndarray) -> np.ndarray:
    x = np.asarray(rgb01, dtype=np.float64)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_lab(lin: np.ndarray) -> np.ndarray:
    """Linear sRGB ``(..., 3)`` in [0, 1] to CIELAB (D65) ``(..., 3)``: L* 0..100, a*, b* signed."""
    xyz = np.asarray(lin, dtype=np.float64) @ _SRGB_TO_XYZ.T / _D65
    eps = (6 / 29) ** 3
    f = np.where(xyz > eps, np.cbrt(np.maximum(xyz, eps)), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """``uint8`` sRGB ``(..., 3)`` to CIELAB."""
    return linear_to_lab(srgb_to_linear(np.asarray(rgb, dtype=np.float64) / 255.0))


@dataclass(frozen=True)
class ColourModel:
    """Parameters of the colour analysis (see the module docstring).

    Attributes:
        prototypes: CIELAB of each dermoscopic colour and of ``skin``.
        thresholds: per colour, the least share of the analysed lesion area for it to count as present.
        skin_weight: multiplies the squared distance to the skin prototype (> 1: fewer pixels called skin).
        normalisation: ``"none"``, ``"von-kries"`` or ``"relative"``.
        reference_skin_lab: the skin colour the two normalisations map the surrounding skin to.
        working_long_side: long side (px) of the working copy of the image.
    """

    prototypes: tuple[tuple[str, tuple[float, float, float]], ...]
    thresholds: tuple[tuple[str, float], ...]
    skin_weight: float = 1.0
    normalisation: str = "none"
    reference_skin_lab: tuple[float, float, float] = (72.0, 13.6, 21.5)
    working_long_side: int = 384

    def __post_init__(self) -> None:
        names = {n for n, _ in self.prototypes}
        if names != {*DERMOSCOPIC_COLOURS, "skin"}:
            raise ValueError(f"prototypes must name the six colours and skin, got {sorted(names)}")
        if {n for n, _ in self.thresholds} != set(DERMOSCOPIC_COLOURS):
            raise ValueError("thresholds must name the six colours")
        if self.normalisation not in ("none", "von-kries", "relative"):
            raise ValueError(f"unknown normalisation {self.normalisation!r}")

    def prototype_array(self) -> np.ndarray:
        """``(7, 3)``: the six colours in :data:`DERMOSCOPIC_COLOURS` order, then skin."""
        d = dict(self.prototypes)
        return np.array([d[n] for n in (*DERMOSCOPIC_COLOURS, "skin")], dtype=np.float64)

    def threshold_array(self) -> np.ndarray:
        d = dict(self.thresholds)
        return np.array([d[n] for n in DERMOSCOPIC_COLOURS], dtype=np.float64)


#: Tuned on PH2 folds 1-4 (see the module docstring and ``benchmarks/findings_ph2.py``).
DEFAULT_COLOUR_MODEL = ColourModel(
    prototypes=(
        ("white", (111.0, 5.0, 8.0)),
        ("red", (56.0, 48.0, 25.0)),
        ("light-brown", (63.0, 18.0, 29.0)),
        ("dark-brown", (38.0, 22.0, 22.0)),
        ("blue-gray", (45.0, 2.0, -5.0)),
        ("black", (18.0, 11.0, 3.0)),
        ("skin", (70.0, 5.0, 20.0)),
    ),
    thresholds=(
        ("white", 0.002), ("red", 0.02), ("light-brown", 0.12), ("dark-brown", 0.002), ("blue-gray", 0.05),
        ("black", 0.02),
    ),
    skin_weight=1.0,
)


@dataclass(frozen=True, eq=False)
class LesionPixels:
    """The working copy of one lesion: CIELAB of the analysed lesion pixels (``lab (N, 3)``, normalised as
    the model asks), their positions (``rows``, ``cols`` at the working size), the working-size mask, the
    skin colour and the excluded share."""

    lab: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    mask: np.ndarray
    skin_lab: np.ndarray
    excluded_fraction: float


def _working_size(shape: tuple[int, int], long_side: int) -> tuple[int, int]:
    h, w = shape
    s = min(1.0, long_side / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))


def lesion_pixels(rgb: np.ndarray, mask: np.ndarray, model: ColourModel = DEFAULT_COLOUR_MODEL) -> LesionPixels:
    """Steps 1-4 of the module docstring for an ``(H, W, 3)`` uint8 image and its ``(H, W)`` mask."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"colour analysis needs an (H, W, 3) RGB image, got shape {rgb.shape}")
    h, w = _working_size(mask.shape, model.working_long_side)
    if (h, w) != mask.shape:
        small = cv2.resize(np.ascontiguousarray(rgb), (w, h), interpolation=cv2.INTER_AREA)
        m = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        if not m.any():  # a lesion smaller than a working pixel: analyse at full size
            small, m = rgb, mask.astype(bool)
    else:
        small, m = rgb, mask.astype(bool)
    lin = srgb_to_linear(small.astype(np.float64) / 255.0)
    lab = linear_to_lab(lin)
    L = lab[..., 0].astype(np.float32)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (_HAIR_KERNEL_PX, _HAIR_KERNEL_PX))
    hair = cv2.morphologyEx(L, cv2.MORPH_BLACKHAT, kernel) >= 8.0
    glare = L > _GLARE_L
    eq_d = float(np.sqrt(4 * m.sum() / np.pi))
    d = max(5, round(0.15 * eq_d))
    ring = cv2.dilate(m.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * d + 1, 2 * d + 1))) > 0
    ring &= ~m
    ring_ok = ring & ~hair & ~glare & (L > _VIGNETTE_L)
    if ring_ok.sum() >= 20:
        skin_lin = np.median(lin[ring_ok], axis=0)
    elif (~m).sum() >= 20:
        skin_lin = np.median(lin[~m], axis=0)
    else:
        skin_lin = None
    ref_lab = np.asarray(model.reference_skin_lab, dtype=np.float64)
    skin_lab = linear_to_lab(skin_lin) if skin_lin is not None else ref_lab
    keep = m & ~hair & ~glare
    if not keep.any():
        keep = m
    rows, cols = np.nonzero(keep)
    px_lab = lab[rows, cols]
    if model.normalisation == "von-kries" and skin_lin is not None:
        ref_lin = _lab_to_linear(ref_lab)
        px_lab = linear_to_lab(lin[rows, cols] * (ref_lin / np.maximum(skin_lin, 1e-6)))
    elif model.normalisation == "relative" and skin_lin is not None:
        px_lab = px_lab - skin_lab + ref_lab
    excluded = 1.0 - keep.sum() / max(int(m.sum()), 1)
    return LesionPixels(px_lab, rows, cols, m, skin_lab, float(excluded))


def _lab_to_linear(lab: np.ndarray) -> np.ndarray:
    L, a, b = (float(v) for v in lab)
    fy = (L + 16) / 116
    fx, fz = fy + a / 500, fy - b / 200
    d = 6 / 29

    def finv(t: float) -> float:
        return t**3 if t > d else 3 * d * d * (t - 4 / 29)

    xyz = np.array([finv(fx), finv(fy), finv(fz)]) * _D65
    return np.clip(np.linalg.solve(_SRGB_TO_XYZ, xyz), 1e-6, None)


def assign(lab: np.ndarray, model: ColourModel = DEFAULT_COLOUR_MODEL) -> np.ndarray:
    """Index of the nearest prototype for each CIELAB row: 0-5 the colours in :data:`DERMOSCOPIC_COLOURS`
    order, 6 skin."""
    protos = model.prototype_array()
    d = ((lab[:, None, :] - protos[None]) ** 2).sum(-1)
    d[:, 6] *= model.skin_weight
    return d.argmin(axis=1)


def colour_fractions(pixels: LesionPixels, model: ColourModel = DEFAULT_COLOUR_MODEL) -> np.ndarray:
    """Share of the analysed lesion area per colour (six values, :data:`DERMOSCOPIC_COLOURS` order)."""
    if len(pixels.lab) == 0:
        return np.zeros(len(DERMOSCOPIC_COLOURS))
    counts = np.bincount(assign(pixels.lab, model), minlength=7)[:6]
    return counts / len(pixels.lab)


def dermoscopic_colours(
    rgb: np.ndarray, mask: np.ndarray, model: ColourModel = DEFAULT_COLOUR_MODEL, pixels: LesionPixels | None = None
) -> ColourFindings:
    """The colours present in the lesion (see the module docstring); ``pixels``: :func:`lesion_pixels` of the
    same image, mask and model when already computed."""
    px = pixels if pixels is not None else lesion_pixels(rgb, mask, model)
    fr = colour_fractions(px, model)
    present = tuple(c for c, f, t in zip(DERMOSCOPIC_COLOURS, fr, model.threshold_array(), strict=True) if f >= t)
    return ColourFindings(
        present=present,
        fractions=tuple((c, round(float(f), 4)) for c, f in zip(DERMOSCOPIC_COLOURS, fr, strict=True)),
        skin_lab=(round(float(px.skin_lab[0]), 2), round(float(px.skin_lab[1]), 2), round(float(px.skin_lab[2]), 2)),
        excluded_fraction=round(px.excluded_fraction, 4),
    )

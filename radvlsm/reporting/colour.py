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
   dermoscopic colour. The share of the analysed area per colour is reported (``fractions``).
6. Whether a colour is **present** is decided, per colour, by a small logistic model
   (:class:`PresenceModel`) on a handful of named colour measurements of the lesion (:func:`colour_features`:
   the colour's share from step 5 and a few fixed CIELAB-region shares and percentiles that are evidence for
   that colour, e.g. for white the share of the lesion's interior that is at least 10 L* lighter than the
   lesion's median). The weights are constrained to be non-negative, so more evidence never lowers the
   probability; the colour is present when the probability reaches the model's threshold and at least one
   analysed pixel is nearest its prototype, or whenever its share reaches :data:`DOMINANT_SHARE` (these two
   hand-set guards keep the learnt models from naming a colour that no pixel shows or from missing one that
   covers half the lesion). A colour without a presence model is present when its share from step 5 reaches
   :attr:`ColourModel.thresholds`.

The prototypes are hand-set reference colours (:data:`REFERENCE_PROTOTYPES`, not tuned). The presence models
and the share thresholds of :data:`DEFAULT_COLOUR_MODEL` were fitted on PH2 folds 1-4 only, by
:func:`radvlsm.reporting.fitting.fit_colour_model` (run ``python benchmarks/findings_ph2.py --fit``, which
writes ``radvlsm/reporting/params/ph2_findings.json``); fold 0 is kept for the reported figures.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from radvlsm.metrics.symmetry import smooth_inside
from radvlsm.reporting.records import DERMOSCOPIC_COLOURS, ColourFindings

log = logging.getLogger(__name__)

_SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_D65 = np.array([0.95047, 1.0, 1.08883])
_HAIR_KERNEL_PX = 9
_GLARE_L = 97.0
_VIGNETTE_L = 25.0
_FEATURE_SIGMA_PX = 2.0  # smoothing of the lesion colours (working size) before the region features
#: A colour with a presence model is reported whenever its share reaches this (it dominates the lesion) …
DOMINANT_SHARE = 0.5
# … and never when no analysed pixel is nearest its prototype (share 0).

#: Names of :func:`colour_features`, in order.
COLOUR_FEATURES: tuple[str, ...] = (
    *(f"fraction:{c}" for c in DERMOSCOPIC_COLOURS),
    "L50", "C5", "Lcontrast", "neg_b5",
    "dark20", "dark25", "dark30", "dark35",
    "blue5", "blue10", "bluerel",
    "white_int", "light_any",
    "red_ab", "red_hue", "red_rel",
)


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


#: Hand-set CIELAB reference colours (not tuned) of the six dermoscopic colours and of skin.
REFERENCE_PROTOTYPES: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("white", (85.0, 5.0, 8.0)),
    ("red", (50.0, 40.0, 25.0)),
    ("light-brown", (55.0, 20.0, 35.0)),
    ("dark-brown", (38.0, 18.0, 22.0)),
    ("blue-gray", (45.0, 2.0, -5.0)),
    ("black", (18.0, 3.0, 3.0)),
    ("skin", (70.0, 15.0, 20.0)),
)

#: Where the fitted parameters of the default models live (written by ``benchmarks/findings_ph2.py --fit``).
PARAMS_FILE = Path(__file__).parent / "params" / "ph2_findings.json"


@dataclass(frozen=True)
class PresenceModel:
    """Logistic model of one colour's presence: ``p = 1 / (1 + exp(-(b + sum_i w_i (x_i - mean_i) / scale_i)))``
    over the named :func:`colour_features` ``x_i``; the colour is present when ``p >= threshold``.

    Attributes:
        colour: one of :data:`DERMOSCOPIC_COLOURS`.
        features: names of the features used (keys of :func:`colour_features`).
        mean, scale: standardisation of each feature (from the training cases).
        weights: one per feature (non-negative when fitted by :mod:`radvlsm.reporting.fitting`).
        intercept: ``b``.
        threshold: the least probability for the colour to count as present.
    """

    colour: str
    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    intercept: float
    threshold: float

    def __post_init__(self) -> None:
        if self.colour not in DERMOSCOPIC_COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}")
        n = len(self.features)
        if not (len(self.mean) == len(self.scale) == len(self.weights) == n):
            raise ValueError("features, mean, scale and weights must have the same length")
        unknown = set(self.features) - set(COLOUR_FEATURES)
        if unknown:
            raise ValueError(f"unknown colour features {sorted(unknown)}")

    def probability(self, features: Mapping[str, float]) -> float:
        x = np.array([features[n] for n in self.features], dtype=np.float64)
        z = self.intercept + float(np.dot(self.weights, (x - np.asarray(self.mean)) / np.asarray(self.scale)))
        return float(1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0))))

    def to_dict(self) -> dict[str, Any]:
        return {"colour": self.colour, "features": list(self.features), "mean": list(self.mean),
                "scale": list(self.scale), "weights": list(self.weights), "intercept": self.intercept,
                "threshold": self.threshold}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PresenceModel:
        return cls(str(d["colour"]), tuple(str(v) for v in d["features"]), tuple(float(v) for v in d["mean"]),
                   tuple(float(v) for v in d["scale"]), tuple(float(v) for v in d["weights"]),
                   float(d["intercept"]), float(d["threshold"]))


@dataclass(frozen=True)
class ColourModel:
    """Parameters of the colour analysis (see the module docstring).

    Attributes:
        prototypes: CIELAB of each dermoscopic colour and of ``skin``.
        thresholds: per colour, the least share of the analysed lesion area for it to count as present (used
            for the colours that have no presence model).
        skin_weight: multiplies the squared distance to the skin prototype (> 1: fewer pixels called skin).
        normalisation: ``"none"``, ``"von-kries"`` or ``"relative"``.
        reference_skin_lab: the skin colour the two normalisations map the surrounding skin to.
        working_long_side: long side (px) of the working copy of the image.
        presence: per-colour presence models (at most one per colour); empty: the share thresholds decide.
    """

    prototypes: tuple[tuple[str, tuple[float, float, float]], ...]
    thresholds: tuple[tuple[str, float], ...]
    skin_weight: float = 1.0
    normalisation: str = "none"
    reference_skin_lab: tuple[float, float, float] = (72.0, 13.6, 21.5)
    working_long_side: int = 384
    presence: tuple[PresenceModel, ...] = field(default=())

    def __post_init__(self) -> None:
        names = {n for n, _ in self.prototypes}
        if names != {*DERMOSCOPIC_COLOURS, "skin"}:
            raise ValueError(f"prototypes must name the six colours and skin, got {sorted(names)}")
        if {n for n, _ in self.thresholds} != set(DERMOSCOPIC_COLOURS):
            raise ValueError("thresholds must name the six colours")
        if self.normalisation not in ("none", "von-kries", "relative"):
            raise ValueError(f"unknown normalisation {self.normalisation!r}")
        pc = [p.colour for p in self.presence]
        if len(pc) != len(set(pc)):
            raise ValueError("at most one presence model per colour")

    def prototype_array(self) -> np.ndarray:
        """``(7, 3)``: the six colours in :data:`DERMOSCOPIC_COLOURS` order, then skin."""
        d = dict(self.prototypes)
        return np.array([d[n] for n in (*DERMOSCOPIC_COLOURS, "skin")], dtype=np.float64)

    def threshold_array(self) -> np.ndarray:
        d = dict(self.thresholds)
        return np.array([d[n] for n in DERMOSCOPIC_COLOURS], dtype=np.float64)

    def presence_model(self, colour: str) -> PresenceModel | None:
        return next((p for p in self.presence if p.colour == colour), None)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able parameters (:meth:`from_dict` reads them back)."""
        return {
            "prototypes": {n: list(p) for n, p in self.prototypes},
            "thresholds": dict(self.thresholds),
            "skin_weight": self.skin_weight,
            "normalisation": self.normalisation,
            "reference_skin_lab": list(self.reference_skin_lab),
            "working_long_side": self.working_long_side,
            "presence": [p.to_dict() for p in self.presence],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ColourModel:
        return cls(
            prototypes=tuple((str(n), tuple(float(v) for v in p)) for n, p in d["prototypes"].items()),  # type: ignore[misc]
            thresholds=tuple((str(n), float(t)) for n, t in d["thresholds"].items()),
            skin_weight=float(d.get("skin_weight", 1.0)),
            normalisation=str(d.get("normalisation", "none")),
            reference_skin_lab=tuple(float(v) for v in d.get("reference_skin_lab", (72.0, 13.6, 21.5))),  # type: ignore[arg-type]
            working_long_side=int(d.get("working_long_side", 384)),
            presence=tuple(PresenceModel.from_dict(p) for p in d.get("presence", ())),
        )


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """The fitted-parameters file (see :data:`PARAMS_FILE`) as a dict."""
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


#: Hand-set prototypes with the presence models and share thresholds fitted on PH2 folds 1-4 (see the module
#: docstring and ``benchmarks/findings_ph2.py --fit``).
DEFAULT_COLOUR_MODEL = ColourModel.from_dict(load_params()["colour_model"])


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


def smooth_within(pixels: LesionPixels, values: np.ndarray, sigma_px: float) -> np.ndarray:
    """``values`` ``(N, C)`` of the analysed pixels, Gaussian-smoothed (``sigma_px`` at the working size) over
    the analysed pixels only (normalised convolution, :func:`radvlsm.metrics.symmetry.smooth_inside`: hair,
    glare and the outside do not bleed in)."""
    v = np.asarray(values, dtype=np.float32).reshape(len(pixels.rows), -1)
    if sigma_px <= 0:
        return v.astype(np.float64)
    h, w = pixels.mask.shape
    img = np.zeros((h, w, v.shape[1]), np.float32)
    analysed = np.zeros((h, w), bool)
    img[pixels.rows, pixels.cols] = v
    analysed[pixels.rows, pixels.cols] = True
    return smooth_inside(img, analysed, sigma_px)[pixels.rows, pixels.cols].astype(np.float64)


def colour_features(pixels: LesionPixels, model: ColourModel = DEFAULT_COLOUR_MODEL) -> dict[str, float]:
    """Named colour measurements of one lesion (the inputs of the :class:`PresenceModel` s).

    ``fraction:<colour>`` is the square root of the colour's share (:func:`colour_fractions`). The others are
    taken on the lesion colours smoothed over 2 working pixels (:func:`smooth_within`); "share" below is the
    square root of the share of the analysed lesion pixels:

    * ``L50``: median L*; ``C5``: 5th percentile of the chroma; ``Lcontrast``: 95th minus 5th percentile of
      L*; ``neg_b5``: minus the 5th percentile of b*;
    * ``dark20`` … ``dark35``: share with L* below 20 … 35;
    * ``blue5``, ``blue10``: share with b* below 5, 10 and L* at least 30 (not black); ``bluerel``: share with
      b* at least 15 below the skin's and L* at least 30;
    * ``white_int``: share that lies in the lesion's interior (farther from the border than 20 % of the
      equivalent radius) and is at least 10 L* lighter than the lesion's median; ``light_any``: share at
      least 15 L* lighter than the median;
    * ``red_ab``: share with a* − b* > 10; ``red_hue``: share with hue angle below 35° and chroma above 20;
      ``red_rel``: share with a* at least 15 above the skin's.
    """
    names = COLOUR_FEATURES
    if len(pixels.lab) == 0:
        return dict.fromkeys(names, 0.0)
    fr = colour_fractions(pixels, model)
    f: dict[str, float] = {f"fraction:{c}": float(np.sqrt(v)) for c, v in zip(DERMOSCOPIC_COLOURS, fr, strict=True)}
    lab = smooth_within(pixels, pixels.lab, _FEATURE_SIGMA_PX)
    lum, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    chroma = np.hypot(a, b)
    skin = np.asarray(pixels.skin_lab, dtype=np.float64)
    med = float(np.median(lum))

    def share(sel: np.ndarray) -> float:
        return float(np.sqrt(sel.mean()))

    m = pixels.mask.astype(np.uint8)
    dist = cv2.distanceTransform(np.pad(m, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    depth = dist[pixels.rows, pixels.cols] / max(float(np.sqrt(m.sum() / np.pi)), 1.0)
    f.update({
        "L50": med,
        "C5": float(np.percentile(chroma, 5)),
        "Lcontrast": float(np.percentile(lum, 95) - np.percentile(lum, 5)),
        "neg_b5": float(-np.percentile(b, 5)),
        "dark20": share(lum < 20), "dark25": share(lum < 25), "dark30": share(lum < 30), "dark35": share(lum < 35),
        "blue5": share((b < 5) & (lum >= 30)), "blue10": share((b < 10) & (lum >= 30)),
        "bluerel": share((b < skin[2] - 15) & (lum >= 30)),
        "white_int": share((depth > 0.2) & (lum > med + 10)), "light_any": share(lum > med + 15),
        "red_ab": share(a - b > 10), "red_hue": share((np.degrees(np.arctan2(b, a)) < 35) & (chroma > 20)),
        "red_rel": share(a > skin[1] + 15),
    })
    return {n: f[n] for n in names}


def decide_presence(
    fractions: np.ndarray, features: Mapping[str, float] | None, model: ColourModel = DEFAULT_COLOUR_MODEL
) -> tuple[tuple[str, ...], tuple[tuple[str, float], ...]]:
    """Step 6 of the module docstring: the colours present (:data:`DERMOSCOPIC_COLOURS` order) and, for the
    colours with a presence model, its probability (rounded to 4 decimals). ``fractions`` from
    :func:`colour_fractions`, ``features`` from :func:`colour_features` (``None``: share thresholds only)."""
    present = []
    probs = []
    for c, f, t in zip(DERMOSCOPIC_COLOURS, fractions, model.threshold_array(), strict=True):
        pm = model.presence_model(c)
        if pm is not None and features is not None:
            p = pm.probability(features)
            probs.append((c, round(p, 4)))
            is_present = (p >= pm.threshold and f > 0) or f >= DOMINANT_SHARE
        else:
            is_present = f >= t
        if is_present:
            present.append(c)
    return tuple(present), tuple(probs)


def dermoscopic_colours(
    rgb: np.ndarray, mask: np.ndarray, model: ColourModel = DEFAULT_COLOUR_MODEL, pixels: LesionPixels | None = None
) -> ColourFindings:
    """The colours present in the lesion (see the module docstring); ``pixels``: :func:`lesion_pixels` of the
    same image, mask and model when already computed."""
    px = pixels if pixels is not None else lesion_pixels(rgb, mask, model)
    fr = colour_fractions(px, model)
    feats = colour_features(px, model) if model.presence and len(px.lab) else None
    present, probs = decide_presence(fr, feats, model) if len(px.lab) else ((), ())
    return ColourFindings(
        present=present,
        fractions=tuple((c, round(float(f), 4)) for c, f in zip(DERMOSCOPIC_COLOURS, fr, strict=True)),
        skin_lab=(round(float(px.skin_lab[0]), 2), round(float(px.skin_lab[1]), 2), round(float(px.skin_lab[2]), 2)),
        excluded_fraction=round(px.excluded_fraction, 4),
        probabilities=probs or None,
    )

"""IBSI (Image Biomarker Standardisation Initiative) feature tags ↔ pyradiomics features, and compliance checks.

The IBSI reference manual (arXiv:1612.07003) names every feature by a tag (``stat_mean``, ``cm_joint_avg_3D_avg``
…) and publishes, for its lung CT phantom under five processing configurations A–E, a reference value and a
tolerance per tag (Zwanenburg et al., Radiology 2020). This module holds:

* :data:`IBSI_PARAMS`: the pyradiomics parameter files closest to each configuration (``params/ibsi_?.yaml``,
  their comments say what pyradiomics cannot do the IBSI way);
* :data:`FEATURE_MAP`: IBSI tag stem → pyradiomics feature, only where the two compute the same quantity (the
  formula, not just the name); :attr:`FeatureMap.difference` documents the one known definition difference kept
  in the map (pyradiomics' ``Kurtosis`` is IBSI's ``stat_kurt`` + 3) so that the benchmark can show it;
* :data:`NOT_COMPUTED`: the IBSI features and families pyradiomics does not compute, with the reason;
* :func:`read_reference`, :func:`compare`: the reference values of a configuration and a feature set checked
  against them (``|value - reference| <= tolerance``).

**Aggregation.** IBSI texture tags end with how matrices are aggregated. pyradiomics with ``force2D`` sums each
direction's matrix over the slices and averages features over directions: IBSI ``_2_5D_avg`` (GLCM, GLRLM) and
``_2_5D`` (GLSZM, NGTDM, NGLDM); in 3-D it averages over the 13 directions: ``_3D_avg`` and ``_3D``. IBSI's other
aggregations (``_2D_avg``, ``_2D_comb``, ``_2_5D_comb``, ``_3D_comb``, per-slice ``_2D`` zone features) are not
compared: one parameter file gives one aggregation.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from radvlsm.errors import InputError

__all__ = [
    "CONFIG_DIMENSIONS",
    "DIAGNOSTIC_PREFIXES",
    "FEATURE_MAP",
    "IBSI_PARAMS",
    "NOT_COMPUTED",
    "ComplianceReport",
    "FeatureCheck",
    "FeatureMap",
    "Reference",
    "compare",
    "ibsi_tag",
    "read_reference",
    "uncompared",
]

_PARAMS_DIR = Path(__file__).resolve().with_name("params")

#: Configuration letter → its pyradiomics parameter file.
IBSI_PARAMS: Mapping[str, Path] = MappingProxyType({c: _PARAMS_DIR / f"ibsi_{c}.yaml" for c in "abcde"})

#: Configuration letter → whether its texture is computed per slice (``"2d"``: A, B) or in 3-D (C, D, E).
CONFIG_DIMENSIONS: Mapping[str, Literal["2d", "3d"]] = MappingProxyType(
    {"a": "2d", "b": "2d", "c": "3d", "d": "3d", "e": "3d"}
)

Family = Literal["morph", "stat", "ih", "cm", "rlm", "szm", "ngt", "ngl"]


@dataclass(frozen=True)
class FeatureMap:
    """One IBSI feature and the pyradiomics feature that computes it.

    Attributes:
        stem: the IBSI tag without its aggregation suffix (``cm_joint_avg``; ``stat_mean`` has none).
        family: the IBSI family (``cm`` → GLCM …), which decides the suffix (:func:`ibsi_tag`).
        pyradiomics: the feature name as pyradiomics returns it for the original image (``original_glcm_JointAverage``).
        difference: ``None`` when both compute the same quantity; else the known definition difference, in words.
        offset: for a difference that is a constant: IBSI value = pyradiomics value + ``offset``.
    """

    stem: str
    family: Family
    pyradiomics: str
    difference: str | None = None
    offset: float | None = None


def _maps(family: Family, cls: str, pairs: Mapping[str, str]) -> tuple[FeatureMap, ...]:
    return tuple(FeatureMap(f"{family}_{s}", family, f"original_{cls}_{p}") for s, p in pairs.items())


_KURTOSIS = (
    "pyradiomics' Kurtosis is the 4th standardised moment m4/m2^2; IBSI stat_kurt is the excess kurtosis "
    "m4/m2^2 - 3: pyradiomics = IBSI + 3"
)

#: IBSI tag stem → pyradiomics feature, for every IBSI feature pyradiomics computes.
FEATURE_MAP: tuple[FeatureMap, ...] = (
    *_maps("morph", "shape", {
        "volume": "MeshVolume",
        "vol_approx": "VoxelVolume",
        "area_mesh": "SurfaceArea",
        "av": "SurfaceVolumeRatio",
        "comp_1": "Compactness1",
        "comp_2": "Compactness2",
        "sph_dispr": "SphericalDisproportion",
        "sphericity": "Sphericity",
        "diam": "Maximum3DDiameter",
        "pca_maj_axis": "MajorAxisLength",
        "pca_min_axis": "MinorAxisLength",
        "pca_least_axis": "LeastAxisLength",
        "pca_elongation": "Elongation",
        "pca_flatness": "Flatness",
    }),
    # IBSI's intensity statistics (stat_*) are on the re-segmented, not discretised intensities: so is pyradiomics'
    # firstorder, except Entropy and Uniformity, which use the discretised histogram (IBSI ih_entropy, ih_uniformity).
    *_maps("stat", "firstorder", {
        "mean": "Mean",
        "var": "Variance",
        "skew": "Skewness",
        "median": "Median",
        "min": "Minimum",
        "p10": "10Percentile",
        "p90": "90Percentile",
        "max": "Maximum",
        "iqr": "InterquartileRange",
        "range": "Range",
        "mad": "MeanAbsoluteDeviation",
        "rmad": "RobustMeanAbsoluteDeviation",
        "energy": "Energy",  # with voxelArrayShift 0
        "rms": "RootMeanSquared",  # with voxelArrayShift 0
    }),
    FeatureMap("stat_kurt", "stat", "original_firstorder_Kurtosis", _KURTOSIS, offset=-3.0),
    *_maps("ih", "firstorder", {"entropy": "Entropy", "uniformity": "Uniformity"}),
    *_maps("cm", "glcm", {
        "joint_max": "MaximumProbability",
        "joint_avg": "JointAverage",
        "joint_var": "SumSquares",
        "joint_entr": "JointEntropy",
        "diff_avg": "DifferenceAverage",
        "diff_var": "DifferenceVariance",
        "diff_entr": "DifferenceEntropy",
        "sum_avg": "SumAverage",
        "sum_var": "ClusterTendency",  # equal for a symmetric GLCM: pyradiomics dropped SumVariance for that reason
        "sum_entr": "SumEntropy",
        "energy": "JointEnergy",
        "contrast": "Contrast",
        "dissimilarity": "DifferenceAverage",  # the same formula (pyradiomics dropped Dissimilarity as a duplicate)
        "inv_diff": "Id",
        "inv_diff_norm": "Idn",
        "inv_diff_mom": "Idm",
        "inv_diff_mom_norm": "Idmn",
        "inv_var": "InverseVariance",
        "corr": "Correlation",
        "auto_corr": "Autocorrelation",
        "clust_tend": "ClusterTendency",
        "clust_shade": "ClusterShade",
        "clust_prom": "ClusterProminence",
        "info_corr1": "Imc1",
        "info_corr2": "Imc2",
    }),
    *_maps("rlm", "glrlm", {
        "sre": "ShortRunEmphasis",
        "lre": "LongRunEmphasis",
        "lgre": "LowGrayLevelRunEmphasis",
        "hgre": "HighGrayLevelRunEmphasis",
        "srlge": "ShortRunLowGrayLevelEmphasis",
        "srhge": "ShortRunHighGrayLevelEmphasis",
        "lrlge": "LongRunLowGrayLevelEmphasis",
        "lrhge": "LongRunHighGrayLevelEmphasis",
        "glnu": "GrayLevelNonUniformity",
        "glnu_norm": "GrayLevelNonUniformityNormalized",
        "rlnu": "RunLengthNonUniformity",
        "rlnu_norm": "RunLengthNonUniformityNormalized",
        "r_perc": "RunPercentage",
        "gl_var": "GrayLevelVariance",
        "rl_var": "RunVariance",
        "rl_entr": "RunEntropy",
    }),
    *_maps("szm", "glszm", {
        "sze": "SmallAreaEmphasis",
        "lze": "LargeAreaEmphasis",
        "lgze": "LowGrayLevelZoneEmphasis",
        "hgze": "HighGrayLevelZoneEmphasis",
        "szlge": "SmallAreaLowGrayLevelEmphasis",
        "szhge": "SmallAreaHighGrayLevelEmphasis",
        "lzlge": "LargeAreaLowGrayLevelEmphasis",
        "lzhge": "LargeAreaHighGrayLevelEmphasis",
        "glnu": "GrayLevelNonUniformity",
        "glnu_norm": "GrayLevelNonUniformityNormalized",
        "zsnu": "SizeZoneNonUniformity",
        "zsnu_norm": "SizeZoneNonUniformityNormalized",
        "z_perc": "ZonePercentage",
        "gl_var": "GrayLevelVariance",
        "zs_var": "ZoneVariance",
        "zs_entr": "ZoneEntropy",
    }),
    *_maps("ngt", "ngtdm", {
        "coarseness": "Coarseness",
        "contrast": "Contrast",
        "busyness": "Busyness",
        "complexity": "Complexity",
        "strength": "Strength",
    }),
    # IBSI's NGLDM with coarseness a = 0 and Chebyshev distance 1 is pyradiomics' GLDM with its defaults
    # (gldm_a: 0, distance 1).
    *_maps("ngl", "gldm", {
        "lde": "SmallDependenceEmphasis",
        "hde": "LargeDependenceEmphasis",
        "lgce": "LowGrayLevelEmphasis",
        "hgce": "HighGrayLevelEmphasis",
        "ldlge": "SmallDependenceLowGrayLevelEmphasis",
        "ldhge": "SmallDependenceHighGrayLevelEmphasis",
        "hdlge": "LargeDependenceLowGrayLevelEmphasis",
        "hdhge": "LargeDependenceHighGrayLevelEmphasis",
        "glnu": "GrayLevelNonUniformity",
        "dcnu": "DependenceNonUniformity",
        "dcnu_norm": "DependenceNonUniformityNormalized",
        "gl_var": "GrayLevelVariance",
        "dc_var": "DependenceVariance",
        "dc_entr": "DependenceEntropy",
    }),
    # The normalised grey-level non-uniformity of the NGLDM is the uniformity of the discretised histogram
    # (pyradiomics dropped GLDM's GrayLevelNonUniformityNormalized for that reason).
    FeatureMap("ngl_glnu_norm", "ngl", "original_firstorder_Uniformity"),
)

#: IBSI features pyradiomics does not compute, and why: keys are tag patterns (:mod:`fnmatch`, several separated by
#: ``", "``), tried in order.
NOT_COMPUTED: Mapping[str, str] = MappingProxyType({
    "morph_asphericity": "not in pyradiomics (it is SphericalDisproportion - 1)",
    "morph_com": "centre of mass shift: not in pyradiomics",
    "morph_vol_dens_*": "volume densities (AABB, OMBB, AEE, MVEE, convex hull): not in pyradiomics",
    "morph_area_dens_*": "area densities (AABB, OMBB, AEE, MVEE, convex hull): not in pyradiomics",
    "morph_integ_int": "integrated intensity: not in pyradiomics",
    "morph_moran_i": "Moran's I: not in pyradiomics",
    "morph_geary_c": "Geary's C: not in pyradiomics",
    "loc_*": "local intensity peaks: not in pyradiomics",
    "stat_medad": "median absolute deviation: not in pyradiomics",
    "stat_cov": "coefficient of variation: not in pyradiomics",
    "stat_qcod": "quartile coefficient of dispersion: not in pyradiomics",
    "ih_*": "intensity-histogram statistics on the discretised intensities (mean, variance, mode, gradients …): "
    "pyradiomics' firstorder uses the non-discretised intensities (stat_*), except Entropy and Uniformity",
    "ivh_*": "intensity-volume histogram: not in pyradiomics",
    "dzm_*": "grey level distance zone matrix (GLDZM): not in pyradiomics",
    "ngl_dc_perc_*": "dependence count percentage: always 1, pyradiomics dropped it",
    "ngl_dc_energy_*": "dependence count energy: not in pyradiomics",
    "*_2D_avg, *_2D_comb, *_2D": "per-slice features averaged over slices: pyradiomics' force2D merges the slices",
    "*_comb": "matrices merged over directions: these parameter files give the direction average (_avg); pyradiomics "
    "merges them with the setting weightingNorm: no_weighting (another run)",
})


#: IBSI tags that describe the image and mask at each processing step (sizes, voxel counts, intensity range), not
#: features: their prefixes.
DIAGNOSTIC_PREFIXES: tuple[str, ...] = (
    "img_dim_", "vox_dim_", "mean_int_", "min_int_", "max_int_", "int_mask_", "morph_mask_",
)


def ibsi_tag(entry: FeatureMap, dimension: Literal["2d", "3d"]) -> str:
    """The IBSI tag of a mapped feature for a configuration of that texture dimension."""
    if entry.family in ("morph", "stat", "ih"):
        return entry.stem
    space = "2_5D" if dimension == "2d" else "3D"
    return f"{entry.stem}_{space}_avg" if entry.family in ("cm", "rlm") else f"{entry.stem}_{space}"


@dataclass(frozen=True)
class Reference:
    """One IBSI reference value: ``value`` ± ``tolerance``."""

    tag: str
    value: float
    tolerance: float

    def contains(self, x: float) -> bool:
        """Whether ``x`` is within the tolerance (a little slack for values printed with few digits)."""
        return math.isfinite(x) and abs(x - self.value) <= self.tolerance * (1 + 1e-9) + 1e-12 * abs(self.value)


def read_reference(path: str | Path) -> dict[str, Reference]:
    """The reference values of one configuration (``reference value;tolerance;tag`` per line; empty values, for
    features without a consensus value, are left out).

    Raises:
        InputError: an unreadable file or a malformed line, naming the file and the line.
    """
    path = Path(path)
    out: dict[str, Reference] = {}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh, delimiter=";"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read the IBSI reference values: {exc}") from exc
    if not rows or [c.strip().lower() for c in rows[0]] != ["reference value", "tolerance", "tag"]:
        raise InputError(path, "not an IBSI reference file: the header must be 'reference value;tolerance;tag'")
    for n, row in enumerate(rows[1:], start=2):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) != 3:
            raise InputError(path, f"line {n}: expected 3 cells (value;tolerance;tag), got {len(row)}")
        value, tol, tag = (c.strip() for c in row)
        if not value:
            continue
        try:
            out[tag] = Reference(tag, float(value), float(tol or 0))
        except ValueError as exc:
            raise InputError(path, f"line {n}: {tag}: value {value!r} or tolerance {tol!r} is not a number") from exc
    return out


@dataclass(frozen=True)
class FeatureCheck:
    """One IBSI feature compared.

    Attributes:
        tag: the IBSI tag; ``pyradiomics``: the feature compared with it.
        reference: the IBSI value and tolerance; ``value``: pyradiomics' value (``nan`` when it gave none).
        within: ``|value - reference| <= tolerance``.
        difference: the known definition difference (:attr:`FeatureMap.difference`), if any.
        adjusted: for a constant difference, the value on IBSI's definition, else ``None``.
    """

    tag: str
    pyradiomics: str
    reference: Reference
    value: float
    within: bool
    difference: str | None
    adjusted: float | None

    @property
    def deviation(self) -> float:
        """``(value - reference) / tolerance`` (``inf`` for a zero tolerance and a different value)."""
        diff = self.value - self.reference.value
        if self.reference.tolerance > 0:
            return diff / self.reference.tolerance
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)


@dataclass(frozen=True)
class ComplianceReport:
    """A feature set against one configuration's reference values.

    Attributes:
        config: the configuration letter.
        checks: one per IBSI feature that has a reference value and a pyradiomics feature, in map order.
        missing: mapped IBSI tags with a reference value but no pyradiomics value in the features given.
    """

    config: str
    checks: tuple[FeatureCheck, ...]
    missing: tuple[str, ...]

    @property
    def compared(self) -> int:
        return len(self.checks)

    @property
    def within(self) -> int:
        return sum(c.within for c in self.checks)

    @property
    def share(self) -> float:
        """Share of compared features within tolerance (0..1; ``nan`` when none was compared)."""
        return self.within / self.compared if self.checks else math.nan

    def outside(self) -> tuple[FeatureCheck, ...]:
        return tuple(c for c in self.checks if not c.within)


def uncompared(reference: Mapping[str, Reference], report: ComplianceReport) -> dict[str, list[str]]:
    """The IBSI features with a reference value that ``report`` did not compare, by reason (:data:`NOT_COMPUTED`;
    image/mask diagnostics are left out, they are not features)."""
    done = {c.tag for c in report.checks} | set(report.missing)
    out: dict[str, list[str]] = {}
    for tag in reference:
        if tag in done or tag.startswith(DIAGNOSTIC_PREFIXES):
            continue
        reason = next(
            (why for pats, why in NOT_COMPUTED.items() if any(fnmatchcase(tag, p) for p in pats.split(", "))),
            "no pyradiomics feature with the same definition",
        )
        out.setdefault(reason, []).append(tag)
    return out


def compare(features: Mapping[str, float], reference: Mapping[str, Reference], config: str) -> ComplianceReport:
    """Check pyradiomics features (names as pyradiomics returns them) against a configuration's reference values.

    Every :data:`FEATURE_MAP` entry whose IBSI tag (:func:`ibsi_tag` for the configuration's dimension) has a
    reference value is compared; a mapped feature missing from ``features`` is listed in ``missing``.
    """
    config = config.lower()
    dimension = CONFIG_DIMENSIONS[config]
    checks: list[FeatureCheck] = []
    missing: list[str] = []
    for entry in FEATURE_MAP:
        tag = ibsi_tag(entry, dimension)
        ref = reference.get(tag)
        if ref is None:
            continue
        if entry.pyradiomics not in features:
            missing.append(tag)
            continue
        value = float(features[entry.pyradiomics])
        adjusted = value + entry.offset if entry.offset is not None else None
        checks.append(FeatureCheck(tag, entry.pyradiomics, ref, value, ref.contains(value), entry.difference, adjusted))
    return ComplianceReport(config=config, checks=tuple(checks), missing=tuple(missing))

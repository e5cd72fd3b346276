"""Typed, frozen records of what a report states, and their stable JSON form.

A :class:`CaseFindings` holds everything measured for one case; the JSON written to ``reports/<case>.json``
is a :class:`ReportRecord` (the findings plus the text of the report and what became of the optional LLM
rewrite), tagged with :data:`SCHEMA_VERSION`. Serialisation is stable: keys in field order, floats rounded
when the records are built, UTF-8, two-space indent, one trailing newline; reading a file back gives equal
records.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar, Union

from radvlsm.fusion.diagnosis import Diagnosis  # the one diagnosis type, shared with fusion and pipeline

#: Version of the ``reports/<case>.json`` layout. Bump the major number when a field changes meaning or is
#: removed, the minor number when one is added.
SCHEMA_VERSION = "1.1"

#: The six dermoscopic colours of the ABCD rule / PH2 annotations, in PH2's order.
DERMOSCOPIC_COLOURS = ("white", "red", "light-brown", "dark-brown", "blue-gray", "black")


@dataclass(frozen=True)
class AsymmetryFindings:
    """Asymmetry about the two principal axes, on PH2's scale.

    Attributes:
        score: 0 symmetric about both axes, 1 asymmetric about one, 2 asymmetric about both.
        axis_angles_deg: angle of each principal axis (major first) from the horizontal, degrees.
        shape_index: per axis, the fraction of the lesion area not overlapping its mirror image.
        colour_index: per axis, the CIELAB colour difference (ΔE*76) between the two halves' mean colours;
            ``None`` when the image has no colour.
        asymmetric_axes: per axis, whether it counts as asymmetric: with colour, the ``score`` axes with the
            largest axis index (shape index + weight x mirror colour index); without, the axes whose shape
            index exceeds the shape-only threshold.
        mirror_colour_index: per axis, the mean ΔE*76 between each lesion pixel and its mirror image across the
            axis (colours smoothed over 10 % of the lesion's equivalent radius); ``None`` without colour.
        index: the lesion's asymmetry index, the sum over both axes of shape index + weight x mirror colour
            index, that the score's cut-points apply to; ``None`` without colour (shape-only rule).
    """

    score: int
    axis_angles_deg: tuple[float, float]
    shape_index: tuple[float, float]
    colour_index: tuple[float, float] | None
    asymmetric_axes: tuple[bool, bool]
    mirror_colour_index: tuple[float, float] | None = None
    index: float | None = None


@dataclass(frozen=True)
class LesionFindings:
    """Size and shape of the lesion (see :mod:`radvlsm.reporting.shape` for the definitions).

    Attributes:
        count: connected components of at least ``min_component_px`` pixels (voxels for volumes).
        unit: ``"mm"`` when the pixel spacing is known, else ``"px"``; areas are in ``unit``².
        area: summed area of the counted components (for a volume: of the largest lesion's largest axial
            cross-section).
        longest_diameter: max Feret diameter of the largest component.
        perpendicular_diameter: its extent perpendicular to the longest diameter.
        border_irregularity: ``1 - hull perimeter / contour perimeter`` of the largest component, in [0, 1).
        solidity: area over convex-hull area of the largest component, in (0, 1].
        asymmetry: dermoscopy only, else ``None``.
        min_component_px: the size threshold used for ``count``.
        slice_index: for volumes, the axial slice (z index) the 2-D measures were taken on.
    """

    count: int
    unit: str
    area: float
    longest_diameter: float
    perpendicular_diameter: float
    border_irregularity: float
    solidity: float
    asymmetry: AsymmetryFindings | None
    min_component_px: int
    slice_index: int | None = None


@dataclass(frozen=True)
class ColourFindings:
    """The dermoscopic colours found in the lesion.

    Attributes:
        present: the colours found, in :data:`DERMOSCOPIC_COLOURS` order.
        fractions: each of the six colours with the fraction of the analysed lesion area assigned to it.
        skin_lab: CIELAB (L*, a*, b*) of the surrounding skin the colours were judged against.
        excluded_fraction: fraction of the lesion left out of the analysis (hair, glare).
        probabilities: each colour that has a presence model with the model's probability that it is present
            (``None`` when no presence model applied).
    """

    present: tuple[str, ...]
    fractions: tuple[tuple[str, float], ...]
    skin_lab: tuple[float, float, float]
    excluded_fraction: float
    probabilities: tuple[tuple[str, float], ...] | None = None


@dataclass(frozen=True)
class UltrasoundDescriptors:
    """The BI-RADS (5th edition, 2013) ultrasound mass descriptors that a mask supports.

    Attributes:
        shape: ``"oval"``, ``"round"`` or ``"irregular"``.
        orientation: ``"parallel"`` (wider than tall) or ``"not parallel"`` (taller than wide), taking the image
            top as the skin surface.
        margin: ``"circumscribed"`` or ``"not circumscribed"``.
        height_width_ratio: vertical over horizontal extent of the lesion.
        axis_ratio: minor over major principal axis (1 for a circle).
    """

    shape: str
    orientation: str
    margin: str
    height_width_ratio: float
    axis_ratio: float


@dataclass(frozen=True)
class CtFindings:
    """CT attenuation and size category.

    Attributes:
        mean_hu: mean attenuation inside the mask (Hounsfield units).
        hu_std: its standard deviation.
        volume_mm3: lesion volume (counted components) for a volume with spacing, else ``None``.
        mean_diameter_mm: average of the longest and perpendicular diameters on the axial slice of largest
            cross-section, ``None`` without spacing.
        size_category: ``"<6 mm"``, ``"6-8 mm"`` or ``">8 mm"`` from ``mean_diameter_mm`` (Fleischner Society
            2017 solid-nodule categories), ``None`` without spacing.
        volume_category: ``"<100 mm³"``, ``"100-250 mm³"`` or ``">250 mm³"`` (Fleischner 2017), ``None`` without
            a volume.
    """

    mean_hu: float
    hu_std: float
    volume_mm3: float | None
    mean_diameter_mm: float | None
    size_category: str | None
    volume_category: str | None = None


@dataclass(frozen=True)
class SegmentationInfo:
    """Where the mask came from: the ``segment`` record's status, reliability, model and prompt."""

    source: str
    status: str | None = None
    reliability: float | None = None
    model: str | None = None
    prompt: str | None = None


@dataclass(frozen=True)
class NotMeasured:
    """A finding the tool did not measure for this case, and why."""

    finding: str
    reason: str


@dataclass(frozen=True)
class CaseFindings:
    """Everything measured for one case.

    Attributes:
        case_id: the case (file stem).
        image: the input image path as given.
        mask: the mask path.
        modality: ``dermoscopy``, ``ultrasound``, ``ct``, ``endoscopy`` or ``other`` (decides which findings
            apply).
        image_size: ``(height, width)``; for volumes ``(depth, height, width)``.
        pixel_spacing_mm: ``(row, column)`` spacing (volumes: ``(z, y, x)``), ``None`` when unknown.
        lesion: ``None`` when the mask holds no lesion.
        colours, ultrasound, ct: the modality's findings, ``None`` when not measured (see ``not_measured``).
        segmentation: the segmentation's status and reliability when known.
        diagnosis: ``None`` when no diagnosis was run.
        not_measured: what the tool did not measure, with the reason.
    """

    case_id: str
    image: str
    mask: str
    modality: str
    image_size: tuple[int, ...]
    pixel_spacing_mm: tuple[float, ...] | None
    lesion: LesionFindings | None
    colours: ColourFindings | None
    ultrasound: UltrasoundDescriptors | None
    ct: CtFindings | None
    segmentation: SegmentationInfo | None
    diagnosis: Diagnosis | None
    not_measured: tuple[NotMeasured, ...] = ()


@dataclass(frozen=True)
class LlmOutcome:
    """What became of the LLM rewrite: ``status`` is ``"not_configured"``, ``"accepted"``, ``"rejected"``
    (the prose added or changed a fact), or ``"failed"`` (no usable answer: HTTP error, timeout, garbage);
    ``reason`` says why for the last two. ``endpoint`` is the URL without credentials or query."""

    status: str
    model: str | None = None
    endpoint: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class ReportRecord:
    """The content of ``reports/<case>.json``."""

    schema_version: str
    findings: CaseFindings
    template_text: str
    prose: str | None
    llm: LlmOutcome
    generated_by: str = "radvlsm"

    @property
    def narrative(self) -> str:
        """The text shown as the report's findings paragraph: the accepted prose, else the template."""
        return self.prose if self.prose is not None else self.template_text

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ReportRecord:
        """Read a record back (raises ``ValueError`` on a malformed file or another major schema version)."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ValueError("not a report record")
        version = str(raw.get("schema_version", ""))
        if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise ValueError(f"schema version {version!r}, this radvlsm reads {SCHEMA_VERSION}")
        return from_dict(cls, raw)


T = TypeVar("T")


def from_dict(cls: type[T], raw: Any) -> T:
    """Build the dataclass ``cls`` (and its nested records and tuples) from parsed JSON."""
    return _convert(cls, raw)  # type: ignore[no-any-return]


def _convert(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ValueError(f"missing value for {tp}")
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value)
            except (ValueError, TypeError, KeyError):
                continue
        raise ValueError(f"{value!r} does not fit {tp}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list for {tp}, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        if len(args) != len(value):
            raise ValueError(f"expected {len(args)} values for {tp}, got {len(value)}")
        return tuple(_convert(a, v) for a, v in zip(args, value, strict=True))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"expected an object for {tp.__name__}")
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in value:
                kwargs[f.name] = _convert(hints[f.name], value[f.name])
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise KeyError(f"{tp.__name__}.{f.name} missing")
        return tp(**kwargs)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported type {tp}")


__all__ = [
    "DERMOSCOPIC_COLOURS",
    "SCHEMA_VERSION",
    "AsymmetryFindings",
    "CaseFindings",
    "ColourFindings",
    "CtFindings",
    "Diagnosis",
    "LesionFindings",
    "LlmOutcome",
    "NotMeasured",
    "ReportRecord",
    "SegmentationInfo",
    "UltrasoundDescriptors",
    "from_dict",
]

"""Findings of one case from its image and lesion mask, for the modality that applies.

=============  ============================================================================================
modality       findings
=============  ============================================================================================
every one      lesion count, area, longest and perpendicular diameters, border irregularity, solidity
dermoscopy     + asymmetry about the principal axes (PH2 0/1/2), the six dermoscopic colours
ultrasound     + BI-RADS shape, orientation, margin
ct             + mean HU, volume, Fleischner size category
endoscopy      (size and shape only)
other          (size and shape only; the modality is unknown)
=============  ============================================================================================

Whatever a modality's findings leave out is listed in :attr:`CaseFindings.not_measured` with the reason, and
the report says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from radvlsm.errors import InputError
from radvlsm.io import ImageRecord, Modality
from radvlsm.reporting import shape
from radvlsm.reporting.asymmetry import DEFAULT_ASYMMETRY_MODEL, AsymmetryModel, asymmetry
from radvlsm.reporting.colour import DEFAULT_COLOUR_MODEL, ColourModel, dermoscopic_colours, lesion_pixels
from radvlsm.reporting.descriptors import ct_findings, ultrasound_descriptors
from radvlsm.reporting.records import (
    DERMOSCOPIC_COLOURS,
    CaseFindings,
    ColourFindings,
    CtFindings,
    Diagnosis,
    LesionFindings,
    NotMeasured,
    SegmentationInfo,
    UltrasoundDescriptors,
)

log = logging.getLogger(__name__)

MODALITIES = ("dermoscopy", "ultrasound", "ct", "endoscopy", "other")
_FROM_DICOM = {Modality.XC: "dermoscopy", Modality.US: "ultrasound", Modality.CT: "ct", Modality.ES: "endoscopy"}
TO_DICOM = {"dermoscopy": Modality.XC, "ultrasound": Modality.US, "ct": Modality.CT, "endoscopy": Modality.ES}

#: What the tool never measures, per modality (the report lists it under "not measured").
NEVER_MEASURED: dict[str, tuple[NotMeasured, ...]] = {
    "dermoscopy": (
        NotMeasured("dermoscopic structures (pigment network, dots and globules, streaks, regression areas, "
                    "blue-whitish veil)", "not analysed by this tool"),
        NotMeasured("evolution over time", "needs earlier images of the same lesion"),
    ),
    "ultrasound": (
        NotMeasured("BI-RADS echo pattern, posterior features, calcifications, associated features",
                    "need the image texture, not analysed by this tool"),
        NotMeasured("margin subtype (indistinct, angular, microlobulated, spiculated)",
                    "not supported by a mask alone"),
        NotMeasured("BI-RADS assessment category", "a clinical judgement, not given by this tool"),
    ),
    "ct": (
        NotMeasured("nodule composition (solid, part-solid, ground-glass), calcification, spiculation",
                    "not analysed by this tool"),
        NotMeasured("growth", "needs an earlier study"),
    ),
    "endoscopy": (
        NotMeasured("morphology (Paris classification), surface and vessel pattern (NICE / JNET)",
                    "not analysed by this tool"),
    ),
    "other": (
        NotMeasured("modality-specific findings (dermoscopic colours and asymmetry, BI-RADS descriptors, "
                    "attenuation in HU)", "the modality is not known: pass --modality"),
    ),
}


def resolve_modality(requested: str, record: ImageRecord) -> str:
    """``requested`` (one of :data:`MODALITIES` or ``auto``); ``auto`` takes the image's DICOM modality."""
    req = requested.strip().lower()
    if req == "auto":
        return _FROM_DICOM.get(record.modality, "other")
    if req not in MODALITIES:
        raise InputError(None, f"unknown modality {requested!r} (choose auto, {', '.join(MODALITIES)})")
    return req


@dataclass(frozen=True)
class FindingsConfig:
    """Models and thresholds behind the findings."""

    colour_model: ColourModel = DEFAULT_COLOUR_MODEL
    asymmetry_model: AsymmetryModel = DEFAULT_ASYMMETRY_MODEL
    min_component_px: int | None = None


def _r(value: float, unit: str) -> float:
    return round(float(value), 2 if unit == "mm" else 1)


def _slice_2d(record: ImageRecord, mask: np.ndarray) -> tuple[np.ndarray, tuple[float, float] | None, int | None]:
    """The 2-D lesion mask to take 2-D measures on, its (row, col) spacing, and the slice index for volumes."""
    if record.is_volume:
        comps = shape.components(mask, 0)
        big = comps.largest()
        per_slice = big.reshape(big.shape[0], -1).sum(axis=1)
        z = int(np.argmax(per_slice))
        sx, sy, _ = record.geometry.spacing  # type: ignore[union-attr]
        return big[z], (sy, sx), z
    return mask, record.pixel_spacing_mm, None


def compute_findings(
    record: ImageRecord,
    mask: np.ndarray,
    *,
    case_id: str,
    modality: str = "auto",
    mask_source: str = "",
    segmentation: SegmentationInfo | None = None,
    diagnosis: Diagnosis | None = None,
    pixel_spacing_mm: float | None = None,
    config: FindingsConfig = FindingsConfig(),
) -> CaseFindings:
    """All findings of one case.

    Args:
        record: the image (2-D, or a volume with its geometry).
        mask: boolean lesion mask of the image's shape (``(H, W)``, or ``(Z, Y, X)`` for a volume).
        case_id: the case id the report is named by.
        modality: ``auto`` (from the image's DICOM modality) or one of :data:`MODALITIES`.
        mask_source: where the mask came from (written into the findings).
        segmentation, diagnosis: what earlier stages said, when known.
        pixel_spacing_mm: isotropic in-plane spacing to use when the image does not carry one.
        config: colour and asymmetry models, lesion size threshold.

    Raises:
        InputError: multi-frame images, shape mismatches, unknown modality.
    """
    mod = resolve_modality(modality, record)
    if record.is_multiframe:
        raise InputError(record.path, f"holds {record.frames} frames; the report works on one 2-D image or a volume")
    mask = np.asarray(mask, dtype=bool)
    expected = record.pixels.shape[:3] if record.is_volume else record.size_hw
    if mask.shape != tuple(expected):
        raise InputError(record.path, f"mask shape {mask.shape} does not match the image {tuple(expected)}")

    spacing_3d: tuple[float, ...] | None = None
    if record.is_volume:
        sx, sy, sz = record.geometry.spacing  # type: ignore[union-attr]
        spacing_3d = (sz, sy, sx)
    elif record.pixel_spacing_mm is not None:
        spacing_3d = tuple(float(v) for v in record.pixel_spacing_mm)
    elif pixel_spacing_mm is not None:
        spacing_3d = (float(pixel_spacing_mm), float(pixel_spacing_mm))
    spacing_2d: tuple[float, float] | None = (spacing_3d[-2], spacing_3d[-1]) if spacing_3d else None
    unit = "mm" if spacing_2d is not None else "px"

    not_measured: list[NotMeasured] = []
    min_px = config.min_component_px
    if min_px is None:
        min_px = shape.default_min_component_px(mask.shape)
    comps = shape.components(mask, min_px)

    lesion: LesionFindings | None = None
    colours: ColourFindings | None = None
    us: UltrasoundDescriptors | None = None
    ct: CtFindings | None = None

    if comps.count == 0:
        not_measured.append(NotMeasured("all lesion findings",
                                        "the mask holds no lesion" + (" of at least " + str(min_px) + " pixels"
                                                                      if mask.any() else "")))
    else:
        kept = comps.kept()
        if record.is_volume:
            big2d, sp2d, z = _slice_2d(record, comps.labels == 1)
            spacing_for_2d = sp2d
        else:
            big2d, spacing_for_2d, z = comps.largest(), spacing_2d, None
        px_area = float(spacing_for_2d[0] * spacing_for_2d[1]) if spacing_for_2d else 1.0
        area = big2d.sum() * px_area if record.is_volume else kept.sum() * px_area
        dia = shape.diameters(big2d, spacing_for_2d)
        asym = None
        pixels = None
        if mod == "dermoscopy":
            if record.is_volume:
                not_measured.append(NotMeasured("asymmetry and colours", "dermoscopy findings need a 2-D image"))
            elif not record.is_rgb:
                not_measured.append(NotMeasured("dermoscopic colours", "the image has no colour channels"))
            else:
                from radvlsm.io import to_display_rgb

                rgb = to_display_rgb(record)
                pixels = lesion_pixels(rgb, kept, config.colour_model)
                colours = dermoscopic_colours(rgb, kept, config.colour_model, pixels)
            if not record.is_volume:
                asym = asymmetry(big2d, spacing_for_2d, pixels, config.asymmetry_model)
        else:
            not_measured.append(NotMeasured("asymmetry and dermoscopic colours", "defined for dermoscopy only"))
        lesion = LesionFindings(
            count=comps.count,
            unit=unit,
            area=_r(area, unit),
            longest_diameter=_r(dia.longest, unit),
            perpendicular_diameter=_r(dia.perpendicular, unit),
            border_irregularity=round(shape.border_irregularity(big2d, spacing_for_2d), 4),
            solidity=round(shape.solidity(big2d), 4),
            asymmetry=asym,
            min_component_px=int(min_px),
            slice_index=z,
        )
        if mod == "ultrasound":
            if record.is_volume:
                not_measured.append(NotMeasured("BI-RADS descriptors", "defined on a 2-D ultrasound image"))
            else:
                us = ultrasound_descriptors(big2d, spacing_for_2d)
        if mod == "ct":
            hu_ok = record.pixels.dtype.kind in "fi"  # HU are signed; 8/16-bit unsigned pictures are not
            if not hu_ok:
                not_measured.append(NotMeasured("attenuation (HU)", "the image is an 8-bit picture, not in "
                                                "Hounsfield units"))
            mean_d = (dia.longest + dia.perpendicular) / 2 if spacing_for_2d else None
            vol = None
            if record.is_volume and spacing_3d is not None:
                vol = float(kept.sum() * np.prod(spacing_3d))
            if hu_ok:
                ct = ct_findings(record.pixels, kept, volume_mm3=vol, mean_diameter_mm=mean_d)
            if spacing_for_2d is None:
                not_measured.append(NotMeasured("size category", "pixel spacing unknown"))
    if unit == "px" and lesion is not None:
        not_measured.append(NotMeasured("sizes in millimetres", "the pixel spacing is unknown (plain image file); "
                                        "sizes are in pixels"))
    not_measured.extend(NEVER_MEASURED.get(mod, ()))
    return CaseFindings(
        case_id=case_id,
        image=str(record.path),
        mask=mask_source,
        modality=mod,
        image_size=tuple(int(v) for v in (record.pixels.shape[:3] if record.is_volume else record.size_hw)),
        pixel_spacing_mm=None if spacing_3d is None else tuple(round(float(v), 6) for v in spacing_3d),
        lesion=lesion,
        colours=colours,
        ultrasound=us,
        ct=ct,
        segmentation=segmentation,
        diagnosis=diagnosis,
        not_measured=tuple(not_measured),
    )


__all__ = ["DERMOSCOPIC_COLOURS", "MODALITIES", "FindingsConfig", "compute_findings", "resolve_modality"]

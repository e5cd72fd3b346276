"""Which embedded models serve which imaging modality.

``radvlsm segment`` / ``diagnose --modality M`` take the segmenter, localizer, diagnosis head and domain gate
of :data:`MODEL_SETS` ``[M]`` unless ``--model``, ``--localizer``, ``--head`` or ``--domain-prompt`` name others.
Without ``--modality``, DICOM inputs go by their Modality tag (US → ultrasound, ES → colonoscopy, XC →
dermoscopy, CT → ct), NIfTI volumes are CT, plain images stored in grey are ultrasound, and the rest takes the
dermoscopy set (the embedded ``default`` models, which also segment colonoscopy images); see
:func:`group_by_modality`. CT studies are volumes, segmented nodule by nodule from ``--points``
(:mod:`radvlsm.pipeline.volume`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import MappingProxyType

import pydicom
from PIL import Image
from pydicom.errors import InvalidDicomError

from radvlsm.io.nifti import is_nifti_name
from radvlsm.pipeline.inputs import NOT_DICOM, InputItem


class Modality(str, Enum):
    """The imaging modalities radvlsm ships models for."""

    DERMOSCOPY = "dermoscopy"
    COLONOSCOPY = "colonoscopy"
    ULTRASOUND = "ultrasound"
    CT = "ct"

    @property
    def is_volume(self) -> bool:
        """Whether its studies are volumes (segmented in 3-D from nodule points) rather than 2-D images."""
        return self is Modality.CT


@dataclass(frozen=True)
class ModelSet:
    """Model specs for one modality.

    Attributes:
        segmenter: ``--model`` spec of the box-prompted segmenter.
        localizer: ``--localizer`` spec (it must read that segmenter's features); ``None`` when radvlsm has no
            text-prompted localizer for the modality.
        head: ``--head`` spec of the diagnosis head, ``None`` when radvlsm has none for the modality.
        domain_prompt: the phrase the localizer must match before the head is applied (``diagnose``).
    """

    segmenter: str
    localizer: str | None
    head: str | None
    domain_prompt: str


MODEL_SETS: Mapping[Modality, ModelSet] = MappingProxyType({
    Modality.DERMOSCOPY: ModelSet("default", "default", "default", "skin lesion"),
    Modality.COLONOSCOPY: ModelSet("default", "default", None, "polyp"),
    Modality.ULTRASOUND: ModelSet("ultrasound", "ultrasound", "ultrasound", "breast mass"),
    Modality.CT: ModelSet("ct", None, "ct", ""),
})


def model_set(modality: Modality | None) -> ModelSet:
    """The models of ``modality`` (``None``: dermoscopy's, the embedded defaults)."""
    return MODEL_SETS[modality or Modality.DERMOSCOPY]


#: DICOM Modality codes (tag (0008,0060)) and the modality whose models serve them.
DICOM_MODALITIES: Mapping[str, Modality] = MappingProxyType({
    "US": Modality.ULTRASOUND,
    "ES": Modality.COLONOSCOPY,
    "XC": Modality.DERMOSCOPY,
    "CT": Modality.CT,
})




#: Plain-image modes (Pillow's) without colour: such an image, with no modality tag, is taken as ultrasound.
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
PLAIN_IMAGES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def modality_of(path: Path) -> Modality | None:
    """The modality whose models should segment one input, from what the file says about itself.

    - A DICOM file, or a folder holding a DICOM series: its Modality tag (read without the pixels;
      :data:`DICOM_MODALITIES`).
    - A NIfTI volume: CT (the only volumes radvlsm has models for; its values are taken as HU).
    - A plain image (PNG, JPEG, BMP, TIFF) stored without colour channels: ultrasound (dermoscopy and
      colonoscopy images are colour photographs; a grey photograph-less image here is most likely a B-mode
      frame). Only the header is read.
    - Anything else, codes radvlsm has no models for, and files that cannot be read (reading them later says
      why): ``None``, the default models.
    """
    name = path.name.lower()
    if path.is_dir():
        return _series_modality(path)
    if is_nifti_name(path):
        return Modality.CT
    if name.endswith(PLAIN_IMAGES):
        try:
            with Image.open(path) as im:
                return Modality.ULTRASOUND if im.mode in GREY_MODES else None
        except (OSError, ValueError, Image.DecompressionBombError):
            return None
    if name.endswith(NOT_DICOM):
        return None
    return _dicom_modality(path)


def _dicom_modality(path: Path, force: bool = False) -> Modality | None:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"], force=force)
    except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError, KeyError):
        return None
    return DICOM_MODALITIES.get(str(ds.get("Modality", "")).strip().upper())


def _series_modality(folder: Path) -> Modality | None:
    """The modality of the first DICOM file in ``folder`` that names one (a series folder)."""
    try:
        files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
    except OSError:
        return None
    for f in files:
        if not f.name.lower().endswith(NOT_DICOM):
            found = _dicom_modality(f, force=f.suffix.lower() == ".dcm")
            if found is not None:
                return found
    return None


def group_by_modality(
    items: Sequence[InputItem], modality: Modality | None = None
) -> list[tuple[Modality | None, list[InputItem]]]:
    """Inputs grouped by the modality whose models segment them, groups in order of first appearance.

    ``modality`` (the user's ``--modality``) puts every input in one group; otherwise each input goes by what
    :func:`modality_of` reads from it, ``None`` (the default models) when it says nothing.
    """
    if modality is not None:
        return [(modality, list(items))]
    groups: dict[Modality | None, list[InputItem]] = {}
    for it in items:
        groups.setdefault(modality_of(it.path), []).append(it)
    return list(groups.items())

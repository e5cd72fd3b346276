"""Diagnosis of a nodule segmented in a CT volume: 3-D radiomics at the volume's real spacing and the CT
segmenter's visual features, into a :class:`~radvlsm.fusion.head.DiagnosisHead`.

The features of one nodule (the same in training, :class:`NoduleFeaturizer`, and inference,
:class:`VolumeDiagnoser`):

- ``original_*``: pyradiomics 3-D features of the volume (HU) under the nodule mask, with the volume's spacing,
  origin and direction (:data:`CT_PARAMS`: resampled to 1 mm isotropic voxels, see the file), so shape features
  are in mm, mm² and mm³ whatever the scan;
- ``visual_000`` … : the CT segmenter's lesion-aware embedding (the image embedding pooled under its predicted
  mask, and the mask token: :attr:`~radvlsm.stage2_segment.predictor.SegmentationResult.embedding`) of each
  axial slice of the nodule, averaged over the slices its 3-D mask holds (:func:`nodule_embedding`). Each slice
  is seen as :class:`~radvlsm.stage2_segment.volume.VolumeSegmenter` saw it: the zoomed crop centred on the
  slice's prompt box, prompted by that box (the boxes are in :attr:`VolumeSegmentation.slices`).

The visual features therefore need the :class:`~radvlsm.stage2_segment.volume.VolumeSegmentation` the
segmenter returned (its slices and prompt boxes); the radiomics need only the mask.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from radvlsm.data.cases import LesionCase
from radvlsm.errors import InputError
from radvlsm.fusion.diagnosis import Diagnosis
from radvlsm.fusion.features import LesionFeatures, volume_lesion_features
from radvlsm.fusion.head import DiagnosisHead
from radvlsm.fusion.predictor import Diagnoser
from radvlsm.fusion.radiomics import RadiomicsExtractor
from radvlsm.io import Modality, read_image, read_mask
from radvlsm.io.record import ImageRecord
from radvlsm.metrics.segmentation import dice
from radvlsm.stage2_segment.volume import (
    NodulePoint,
    VolumeSegmentation,
    VolumeSegmenter,
    crop_frame,
    crop_slice,
)

log = logging.getLogger(__name__)

#: The pyradiomics parameters of the CT diagnosis features (3-D, 1 mm isotropic, 25 HU bins).
CT_PARAMS = Path(__file__).parent / "params" / "ct_nodule_3d.yaml"


def ct_extractor(params: str | Path | None = None) -> RadiomicsExtractor:
    """The 3-D radiomics extractor of the CT diagnosis features (``params``: :data:`CT_PARAMS` by default)."""
    return RadiomicsExtractor(params if params is not None else CT_PARAMS, dimension="3d")


def _check(volume: ImageRecord, seg: VolumeSegmentation) -> None:
    if not volume.is_volume or volume.geometry is None or volume.pixels.ndim != 3:
        raise InputError(volume.path, "CT nodule diagnosis needs a CT volume (Z, Y, X) with its geometry")
    if seg.mask.shape != volume.pixels.shape:
        raise InputError(volume.path, f"the nodule mask {seg.mask.shape} is not the volume's shape "
                                      f"{volume.pixels.shape}: it belongs to another volume")


def nodule_embedding(segmenter: VolumeSegmenter, volume: ImageRecord, seg: VolumeSegmentation) -> np.ndarray:
    """The segmenter's embedding averaged over the slices of ``seg`` whose final (3-D filtered) mask holds
    nodule voxels; each slice's embedding is recomputed from its crop and prompt box (``seg.slices``) as
    :meth:`VolumeSegmenter.segment_box` made them.

    Raises:
        InputError: the mask is empty (nothing to diagnose) or does not fit the volume.
    """
    _check(volume, seg)
    slices = [r for r in seg.slices if 0 <= r.z < seg.mask.shape[0] and seg.mask[r.z].any()]
    if not seg.mask.any() or not slices:
        raise InputError(volume.path, "the nodule mask is empty (the segmenter found no nodule at the prompt): "
                                      "nothing to diagnose")
    cfg = segmenter.config
    frames = [crop_frame(np.asarray(r.box), segmenter.size, cfg.context, cfg.min_crop_px) for r in slices]
    pred = segmenter.predictor
    pred.set_images([crop_slice(volume.pixels[r.z], f, cfg.window) for r, f in zip(slices, frames, strict=True)])
    res = pred.predict([f.box_to_crop(np.asarray(r.box))[None] for r, f in zip(slices, frames, strict=True)])
    return np.mean(np.stack([r.embedding for r in res]).astype(np.float64), axis=0)


def nodule_features(case_id: str, volume: ImageRecord, seg: VolumeSegmentation, segmenter: VolumeSegmenter,
                    extractor: RadiomicsExtractor, mask: np.ndarray | None = None, *,
                    visual: bool = True) -> LesionFeatures:
    """The features of one nodule: 3-D radiomics under ``mask`` (default: ``seg.mask``) and, with ``visual``,
    the visual embedding of ``seg`` (:func:`nodule_embedding`: a second pass of the segmenter over the slices).

    Raises:
        InputError: an empty mask, a mask of another volume, or pyradiomics refusing the case.
    """
    _check(volume, seg)
    embedding = nodule_embedding(segmenter, volume, seg) if visual else np.zeros(0)
    m = seg.mask if mask is None else np.asarray(mask)
    if m.shape != volume.pixels.shape:
        raise InputError(volume.path, f"mask {m.shape} is not the volume's shape {volume.pixels.shape}")
    if not m.any():
        raise InputError(volume.path, "the nodule mask is empty: nothing to diagnose")
    return volume_lesion_features(case_id, volume, m, embedding, extractor)


class VolumeDiagnoser:
    """Diagnoses a nodule segmented in a CT volume with a head trained on these features (the embedded ``ct``
    head: ``load_head("ct")``, with the embedded ``ct`` segmenter).

    ``segmenter`` must be the one that segmented the nodule and that the head was trained with (it gives the
    visual features); ``extractor`` defaults to :func:`ct_extractor` (the head's radiomics parameters).
    """

    def __init__(self, head: DiagnosisHead, segmenter: VolumeSegmenter,
                 extractor: RadiomicsExtractor | None = None) -> None:
        if not isinstance(segmenter, VolumeSegmenter):
            raise TypeError(f"expected a VolumeSegmenter, not {type(segmenter).__name__}")
        self.head = head
        self.segmenter = segmenter
        self.extractor = extractor or ct_extractor()
        self._diagnoser = Diagnoser(head, self.extractor)
        #: whether the head reads visual features (the shipped ``ct`` head does not: then none are computed)
        self.reads_visual = any(n.startswith("visual_") for n in head.feature_names)

    def features(self, volume: ImageRecord, seg: VolumeSegmentation) -> LesionFeatures:
        """The nodule's radiomics, and its visual features when the head reads them (by name)."""
        return nodule_features("nodule", volume, seg, self.segmenter, self.extractor, visual=self.reads_visual)

    def diagnose(self, volume: ImageRecord, seg: VolumeSegmentation) -> Diagnosis:
        """The diagnosis of the nodule ``seg`` (what :meth:`VolumeSegmenter.segment_point` / ``segment_box``
        returned for it) in ``volume`` (the CT :class:`~radvlsm.io.ImageRecord`: HU, geometry).

        Raises:
            InputError: ``seg``'s mask is empty or not of this volume, the volume is not a CT volume, or
                pyradiomics refuses the nodule.
            ConfigError: the head reads features these models do not give.
        """
        return self._diagnoser.diagnose_features(self.features(volume, seg))


def nodule_point(case: LesionCase) -> NodulePoint:
    """The point prompt of a LIDC nodule: its labelled centre ``coordX/Y/Z`` (scanner mm) and ``diameter_mm``
    (what a user gives with ``--points``)."""
    lab = case.labels
    try:
        return NodulePoint(float(lab["coordX"]), float(lab["coordY"]), float(lab["coordZ"]),
                           float(lab["diameter_mm"]))
    except (KeyError, ValueError) as exc:
        raise InputError(case.image_path, f"case {case.case_id}: no nodule point in labels.csv ({exc})") from None


class NoduleFeaturizer:
    """Features of a CT nodule case for the diagnoser recipe: the nodule is segmented from its point prompt
    (:func:`nodule_point`) by ``segmenter``; the visual features always come from that segmentation, the
    radiomics from the experts' mask (``use_gt_mask``) or the predicted one.

    ``__call__(case) -> (features or None, Dice of the predicted mask against the experts')``: ``None`` when the
    segmenter finds no nodule (its Dice is then 0).
    """

    def __init__(self, segmenter: VolumeSegmenter, extractor: RadiomicsExtractor, use_gt_mask: bool) -> None:
        self.segmenter = segmenter
        self.extractor = extractor
        self.use_gt_mask = use_gt_mask

    def __call__(self, case: LesionCase) -> tuple[LesionFeatures | None, float | None]:
        if case.mask_path is None:
            raise InputError(case.image_path, "has no ground-truth mask; the diagnoser recipe needs one per case")
        volume = read_image(case.image_path, modality=Modality.CT)
        gt = read_mask(case.mask_path, like=volume)
        seg = self.segmenter.segment_point(volume, nodule_point(case))
        d = dice(seg.mask, gt)
        if seg.status != "ok" or not seg.mask.any():
            log.warning("case %s: the segmenter found no nodule at the point", case.case_id)
            return None, d
        return nodule_features(case.case_id, volume, seg, self.segmenter, self.extractor,
                               gt if self.use_gt_mask else None), d

"""Volume studies (CT) in ``radvlsm segment`` and ``diagnose``: nodules segmented in 3-D from points, written in
the input's geometry.

A CT study (a DICOM series folder, a NIfTI volume) is segmented nodule by nodule from ``--points``: a CSV of
``[study,]x,y,z[,diameter_mm]`` rows, the nodule centres in scanner (LPS) millimetres as LIDC's
``coordX/Y/Z`` (:class:`StudyPoints`). Each point goes through
:class:`~radvlsm.stage2_segment.volume.VolumeSegmenter` (the embedded ``ct`` segmenter on zoomed axial
crops, components assembled in 3-D) and, with ``diagnose``, through a volume diagnosis head.

Outputs of study ``S`` (see :mod:`radvlsm.pipeline.outputs`): ``masks/S.nii.gz``, a label map (nodule ``k`` has
value ``k``) with the input's exact geometry; for a DICOM series, ``seg/S.dcm``, a DICOM SEG that references
the series, nodule ``k`` its segment ``k``; ``overlays/S.png``, each nodule's largest axial section side by
side; and the record, last. :class:`VolumeStudyWork` has :class:`~radvlsm.pipeline.segment.StudyWork`'s contract, so the
local and the Ray executors run it the same way.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from radvlsm.errors import InputError, RadvlsmError
from radvlsm.fusion.diagnosis import Diagnosis
from radvlsm.io import ImageRecord, write_nifti_mask, write_png_image
from radvlsm.io.dicom import read_dicom_series
from radvlsm.io.dicom_seg import write_dicom_seg
from radvlsm.io.reader import read_image
from radvlsm.io.record import Modality as ImageModality
from radvlsm.pipeline.inputs import InputItem, InputProblem
from radvlsm.pipeline.outputs import CaseRecord, LesionRecord, OutputFolder, relative, round_diagnosis
from radvlsm.pipeline.overlay import draw_overlay
from radvlsm.pipeline.segment import BatchOutcome, plan_studies
from radvlsm.stage2_segment.volume import (
    NodulePoint,
    VolumeSegmentation,
    VolumeSegmenter,
    crop_frame,
    crop_mask,
    crop_slice,
    read_study_points,
    segment_nodules,
)

log = logging.getLogger(__name__)

#: Side of each nodule's tile in a volume study's overlay, pixels.
OVERLAY_TILE = 192
#: A chest CT in HU has air (about -1000 HU) in it: a volume whose 1st percentile is above this is doubted.
AIR_HU_CHECK = -500.0
#: The DICOM SEG segments' label (nodule k: "lung nodule k", segment k).
SEG_LABEL = "lung nodule"


@dataclass(frozen=True)
class StudyPoints:
    """Nodule points of ``--points``: rows ``(study, point)``; ``study`` is ``""`` where the file names none.

    A study takes the rows that name it; a study that no row names takes the rows without a study (so a file
    with no ``study`` column serves a single study, or the same position in every study).
    """

    source: Path
    rows: tuple[tuple[str, NodulePoint], ...]

    @classmethod
    def read(cls, path: Path) -> StudyPoints:
        """Raises :class:`~radvlsm.errors.InputError` naming the file and the reason."""
        return cls(Path(path), read_study_points(path))

    def for_study(self, case_id: str) -> tuple[NodulePoint, ...]:
        named = tuple(p for s, p in self.rows if s == case_id)
        return named or tuple(p for s, p in self.rows if not s)

    def studies(self) -> set[str]:
        """The studies the file names."""
        return {s for s, _ in self.rows if s}


class VolumeDiagnoser(Protocol):
    """A diagnosis head for one segmented nodule of a volume (``radvlsm.fusion``'s ``VolumeDiagnoser``)."""

    def diagnose(self, volume: ImageRecord, seg: VolumeSegmentation) -> Diagnosis: ...


@dataclass(frozen=True)
class VolumeDiagnosisStep:
    """The diagnosis of each nodule found (``radvlsm diagnose``) by the head named ``model``."""

    diagnoser: VolumeDiagnoser
    model: str

    def run(self, volume: ImageRecord, seg: VolumeSegmentation) -> Diagnosis:
        return round_diagnosis(self.diagnoser.diagnose(volume, seg), self.model)


def load_volume(item: InputItem) -> ImageRecord | InputProblem:
    """Read a CT study (a DICOM series folder, a NIfTI or DICOM volume file), or say why it is not one."""
    try:
        if item.path.is_dir():
            rec = read_dicom_series(item.path, modality_hint=ImageModality.CT, series_uid=item.series_uid)
        else:
            rec = read_image(item.path, modality=ImageModality.CT)
    except (RadvlsmError, ValueError) as exc:
        return InputProblem(item.path, str(exc).removeprefix(f"{item.path}: "))
    if not rec.is_volume or rec.geometry is None or rec.pixels.ndim != 3:
        what = "a multi-frame image without a volume geometry" if rec.is_multiframe else "a single 2-D image"
        return InputProblem(item.path, f"a CT study must be a volume (a DICOM series folder or a NIfTI file); "
                                       f"this is {what}")
    if rec.modality is not ImageModality.CT:
        return InputProblem(item.path, f"radvlsm's volume models are for CT; this study is "
                                       f"{getattr(rec.modality, 'value', rec.modality)}")
    finite = np.isfinite(rec.pixels) if rec.pixels.dtype.kind == "f" else None  # integers are always finite
    if finite is not None and not finite.all():
        n_bad = int(finite.size - np.count_nonzero(finite))
        if n_bad == finite.size:
            return InputProblem(item.path, "the volume has no finite voxel (all NaN or infinite): nothing to segment")
        return InputProblem(item.path, f"{n_bad} of {finite.size} voxels are NaN or infinite: a CT volume in "
                                       "Hounsfield units has a number in every voxel (fill them, e.g. with -1024 "
                                       "HU for air outside the field of view)")
    low = float(np.percentile(rec.pixels, 1))
    if low > AIR_HU_CHECK:
        log.warning("%s: 1%% of the voxels are below %.0f, none near air's -1000 HU: is this a CT in Hounsfield "
                    "units? (a NIfTI volume is taken as CT)", item.path, low)
    return rec


def lesion_record(index: int, point: NodulePoint, seg: VolumeSegmentation) -> LesionRecord:
    """What is measured of nodule ``index`` (from 1) segmented as ``seg`` from ``point``."""
    voxels = int(seg.mask.sum())
    volume = seg.volume_mm3
    centroid = None
    if voxels:
        zyx = np.argwhere(seg.mask).mean(axis=0)
        centroid = tuple(round(float(v), 2) for v in seg.geometry.index_to_physical(zyx[::-1]))
    ious = [s.predicted_iou for s in seg.slices if s.area_px > 0]
    b = seg.prompt
    return LesionRecord(
        index=index, point_mm=(point.x, point.y, point.z), diameter_mm=point.diameter_mm,
        box_voxels=tuple(round(float(v), 2) for v in (b.x0, b.y0, b.z0, b.x1, b.y1, b.z1)),
        voxels=voxels, volume_mm3=round(volume, 2),
        equivalent_diameter_mm=round((6 * volume / math.pi) ** (1 / 3), 2),
        centroid_mm=centroid, reliability=round(float(np.mean(ious)), 5) if ious else 0.0,
        status=seg.status,
    )


def label_map(segs: Sequence[VolumeSegmentation], shape: tuple[int, ...]) -> np.ndarray:
    """``(Z, Y, X)`` uint8: nodule ``k`` (from 1) is value ``k``; where two overlap, the first keeps it."""
    if len(segs) > 255:
        raise ValueError(f"{len(segs)} nodules: a label map holds at most 255")
    labels = np.zeros(shape, dtype=np.uint8)
    for k, seg in enumerate(segs, start=1):
        labels[seg.mask & (labels == 0)] = k
    return labels


def overlay_tiles(volume: ImageRecord, segs: Sequence[VolumeSegmentation], tile: int = OVERLAY_TILE) -> np.ndarray:
    """Each nodule's axial section of largest area (or, when not found, its prompt's middle slice), zoomed
    around its prompt box, the contour in green and the prompt's box in yellow, side by side."""
    tiles = []
    for seg in segs:
        areas = seg.mask.sum(axis=(1, 2))
        b = seg.prompt
        z = int(np.argmax(areas)) if areas.any() else int(np.clip((b.z0 + b.z1) / 2, 0, len(areas) - 1))
        frame = crop_frame(b.xy, tile)
        rgb = crop_slice(volume.pixels[z], frame)
        tiles.append(draw_overlay(rgb, crop_mask(seg.mask[z], frame).astype(bool),
                                  [frame.box_to_crop(b.xy).tolist()], [1.0]))
    return np.concatenate(tiles, axis=1)


class VolumeStudyWork:
    """The per-study work of ``segment`` and ``diagnose`` for CT volumes (the contract of
    :class:`~radvlsm.pipeline.segment.StudyWork`: studies already done are left alone, each file is written
    atomically and the record last, a failing study is returned with its reason and the batch goes on).

    Reading happens outside a lock, the models inside, so the local executor's two threads overlap one study's
    reading with another's segmentation.
    """

    def __init__(
        self, out_dir: Path, segmenter: VolumeSegmenter, points: StudyPoints | None, *, model_name: str,
        diagnosis: VolumeDiagnosisStep | None = None,
    ) -> None:
        self.out = OutputFolder(out_dir).create()
        self.segmenter = segmenter
        self.points = points
        self.model_name = model_name
        self.diagnosis = diagnosis
        self._lock = threading.Lock()

    def process(self, items: Sequence[InputItem]) -> BatchOutcome:
        todo, found_done = plan_studies(self.out.root, items, diagnose=self.diagnosis is not None, overwrite=False)
        written: list[str] = []
        problems: list[InputProblem] = []
        for it in todo:
            got = self._study(it)
            if isinstance(got, InputProblem):
                problems.append(got)
            else:
                written.append(got)
        return BatchOutcome(len(items), tuple(written), tuple(it.case_id for it in found_done), tuple(problems))

    def _points(self, item: InputItem) -> tuple[NodulePoint, ...] | InputProblem:
        pts = self.points.for_study(item.case_id) if self.points is not None else ()
        if pts:
            return pts
        where = f"no row for study {item.case_id!r} in {self.points.source}" if self.points is not None else \
            "no --points given"
        return InputProblem(item.path, f"{where}: CT studies are segmented from nodule positions (--points "
                                       "nodules.csv with [study,]x,y,z[,diameter_mm] in scanner mm); radvlsm has "
                                       "no text-prompted CT localizer")

    def _study(self, item: InputItem) -> str | InputProblem:
        points = self._points(item)
        if isinstance(points, InputProblem):
            return points
        vol = load_volume(item)
        if isinstance(vol, InputProblem):
            return vol
        try:
            with self._lock:
                segs = segment_nodules(vol, points, self.segmenter)
                lesions = [lesion_record(k, p, s) for k, (p, s) in enumerate(zip(points, segs, strict=True), 1)]
                if self.diagnosis is not None:
                    lesions = [self._diagnose(vol, x, s) for x, s in zip(lesions, segs, strict=True)]
        except (RadvlsmError, ValueError) as exc:
            return InputProblem(item.path, str(exc).removeprefix(f"{vol.path}: "))
        try:
            return self._write(item, vol, segs, lesions)
        except (RadvlsmError, OSError, ValueError) as exc:
            return InputProblem(item.path, f"cannot write outputs ({exc})")

    def _diagnose(self, vol: ImageRecord, lesion: LesionRecord, seg: VolumeSegmentation) -> LesionRecord:
        if lesion.status != "ok" or self.diagnosis is None:
            return lesion
        try:
            return replace(lesion, diagnosis=self.diagnosis.run(vol, seg), diagnosis_status="ok")
        except (RadvlsmError, ValueError) as exc:
            raise RadvlsmError(f"nodule {lesion.index}: diagnosis failed: {exc}") from exc

    def _write(self, item: InputItem, vol: ImageRecord, segs: Sequence[VolumeSegmentation],
               lesions: Sequence[LesionRecord]) -> str:
        cid, out = item.case_id, self.out
        assert vol.geometry is not None  # checked by load_volume
        labels = label_map(segs, vol.pixels.shape)
        write_nifti_mask(out.volume_mask_path(cid), labels, vol.geometry, labels=True)
        seg_file = seg_error = None
        if vol.instance_uids and labels.any():
            try:
                seg_file = relative(write_dicom_seg(vol, labels, out.seg_path(cid), label=SEG_LABEL), out.root)
            except InputError as exc:  # the header, not the segmentation: the mask and the record stand
                seg_error = exc.reason
                log.warning("%s: %s", item.path, seg_error)
        write_png_image(out.overlay_path(cid), overlay_tiles(vol, segs), compress_level=1)
        found = [x for x in lesions if x.status == "ok"]
        z, y, x = (int(v) for v in vol.pixels.shape)
        rec = CaseRecord(
            case_id=cid, input=str(item.path), image_size=(y, x), status="ok" if found else "not_found",
            reliability=round(float(np.mean([f.reliability for f in found])), 5) if found else 0.0,
            area_px=int((labels > 0).sum()), bbox=None, candidates=(),
            mask=relative(out.volume_mask_path(cid), out.root), overlay=relative(out.overlay_path(cid), out.root),
            model=self.model_name, prompt=f"points: {self.points.source.name}" if self.points else None,
            diagnosis_status="ok" if self.diagnosis is not None else None,
            volume_shape=(z, y, x), lesions=tuple(lesions), dicom_seg=seg_file, dicom_seg_error=seg_error,
        )
        out.write_record(rec)
        return cid

"""Builders for the I/O tests: DICOM files and series, raster images and NIfTI volumes, all made from code in
``tmp_path`` (no binary fixtures are committed).

The builders are exposed as the ``make`` fixture (pytest runs with ``--import-mode=importlib``, so test modules
cannot import a sibling helper module).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    RTStructureSetStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

#: Patient identifiers written into every synthetic DICOM file; they must never reach a message or a log.
PATIENT_NAME = "Schmidt^Hannelore"
PATIENT_ID = "PID-770311-XQ"
PATIENT_BIRTH_DATE = "19420817"


class Make:
    """Factory of test inputs. Every method writes into the folder it is given and returns the path."""

    phi = (PATIENT_NAME, PATIENT_ID, PATIENT_BIRTH_DATE, "Schmidt", "Hannelore")

    # ---------------------------------------------------------------------------------------------- DICOM

    @staticmethod
    def dataset(
        pixels: np.ndarray | None,
        *,
        sop_class: UID = CTImageStorage,
        modality: str = "CT",
        photometric: str = "MONOCHROME2",
        position: Sequence[float] | None = (0.0, 0.0, 0.0),
        orientation: Sequence[float] | None = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        pixel_spacing: Sequence[float] | None = (0.5, 0.75),
        slope: float | None = 1.0,
        intercept: float | None = -1024.0,
        series_uid: str | None = None,
        series_number: int = 1,
        instance: int = 1,
        bits_stored: int | None = None,
        transfer_syntax: UID = ExplicitVRLittleEndian,
    ) -> Dataset:
        """A DICOM dataset (with file meta) holding ``pixels``: ``(H, W)`` integer, ``(H, W, 3)`` uint8 RGB or
        ``(F, H, W)`` (multi-frame). ``pixels=None`` makes an object without pixel data."""
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = transfer_syntax
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.PatientName = PATIENT_NAME
        ds.PatientID = PATIENT_ID
        ds.PatientBirthDate = PATIENT_BIRTH_DATE
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        ds.SeriesInstanceUID = series_uid or generate_uid()
        ds.SeriesNumber = series_number
        ds.InstanceNumber = instance
        ds.Modality = modality
        if pixels is None:
            return ds
        if position is not None:
            ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        if orientation is not None:
            ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
        if pixel_spacing is not None:
            ds.PixelSpacing = [f"{v:.6f}" for v in pixel_spacing]
            ds.SliceThickness = "2.5"
        if slope is not None:
            ds.RescaleSlope = f"{slope:g}"
        if intercept is not None:
            ds.RescaleIntercept = f"{intercept:g}"
        arr = np.asarray(pixels)
        colour = arr.ndim == 3 and arr.shape[-1] == 3 and arr.dtype == np.uint8
        frames = arr.shape[0] if (arr.ndim == 3 and not colour) or arr.ndim == 4 else 1
        if frames > 1 or arr.ndim == 4:
            ds.NumberOfFrames = frames
        ds.Rows, ds.Columns = arr.shape[-3:-1] if colour else arr.shape[-2:]
        ds.SamplesPerPixel = 3 if colour else 1
        if colour:
            ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = photometric
        bits = arr.dtype.itemsize * 8
        ds.BitsAllocated = bits
        ds.BitsStored = bits_stored or bits
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
        if transfer_syntax.is_compressed:
            ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + bytes(64) + b"\xff\xd9"])
            ds["PixelData"].VR = "OB"
        else:
            ds.PixelData = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"))).tobytes()
        return ds

    @staticmethod
    def save(ds: Dataset, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        return path

    def ct_slice(self, path: Path, pixels: np.ndarray | None = None, **kwargs: object) -> Path:
        """One CT slice file (default: 4x5 int16 stored values 0..19, rescale -1024)."""
        if pixels is None:
            pixels = np.arange(20, dtype=np.int16).reshape(4, 5)
        return self.save(self.dataset(pixels, **kwargs), path)  # type: ignore[arg-type]

    def ct_series(
        self,
        folder: Path,
        n: int = 6,
        *,
        spacing: float = 2.5,
        skip: Sequence[int] = (),
        positions: Sequence[Sequence[float]] | None = None,
        series_uid: str | None = None,
        series_number: int = 1,
        orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        shape: tuple[int, int] = (4, 5),
        prefix: str = "IMG",
    ) -> Path:
        """A CT series of ``n`` slices along the slice normal, written in shuffled file order.

        Slice ``k`` holds the stored value ``100 * k`` everywhere plus a ramp, so the sort order can be
        checked; indices in ``skip`` are not written (missing slices).
        """
        folder.mkdir(parents=True, exist_ok=True)
        uid = series_uid or generate_uid()
        r = np.asarray(orientation[:3], dtype=float)
        c = np.asarray(orientation[3:], dtype=float)
        normal = np.cross(r, c)
        origin = np.array([-50.0, 20.0, -100.0])
        order = np.random.default_rng(7).permutation(n)
        for k in order:
            if k in skip:
                continue
            pos = positions[k] if positions is not None else origin + k * spacing * normal
            pixels = (100 * k + np.arange(shape[0] * shape[1]).reshape(shape)).astype(np.int16)
            ds = self.dataset(
                pixels,
                position=pos,
                orientation=orientation,
                series_uid=uid,
                series_number=series_number,
                instance=int(k) + 1,
            )
            self.save(ds, folder / f"{prefix}{k:04d}.dcm")
        return folder

    def rtstruct(self, path: Path, series_uid: str | None = None) -> Path:
        """An RTSTRUCT-like object: no pixel data."""
        ds = self.dataset(None, sop_class=RTStructureSetStorage, modality="RTSTRUCT", series_uid=series_uid)
        ds.StructureSetLabel = "GTV"
        return self.save(ds, path)

    def structure_set(
        self,
        path: Path,
        series: Path,
        rois: Mapping[str, Sequence[np.ndarray]],
        *,
        series_uid: str | None = None,
        link_slices: bool = True,
        geometric_type: str = "CLOSED_PLANAR",
        slice_of: Mapping[int, str] | None = None,
    ) -> Path:
        """An RTSTRUCT drawn on the series in ``series``: each ROI name maps to contours, ``(N, 3)`` points in mm.

        Args:
            series_uid: the series it says it references (default: the series' own UID).
            link_slices: name each contour's slice (ContourImageSequence, the slice nearest its z) and list every
                slice in the referenced series.
            geometric_type: ContourGeometricType of every contour.
            slice_of: contour number (0-based, over all ROIs) → a SOPInstanceUID to name instead of the nearest.
        """
        headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(series.glob("*.dcm"))]
        by_z = sorted(headers, key=lambda d: float(d.ImagePositionPatient[2]))
        ds = self.dataset(None, sop_class=RTStructureSetStorage, modality="RTSTRUCT")
        ds.StructureSetLabel = "Schmidt plan"  # free text quoting the patient: never shown unredacted

        def image_item(uid: str) -> Dataset:
            item = Dataset()
            item.ReferencedSOPClassUID = CTImageStorage
            item.ReferencedSOPInstanceUID = uid
            return item

        ref_series = Dataset()
        ref_series.SeriesInstanceUID = series_uid or str(headers[0].SeriesInstanceUID)
        if link_slices:
            ref_series.ContourImageSequence = [image_item(str(d.SOPInstanceUID)) for d in by_z]
        ref_study = Dataset()
        ref_study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
        ref_study.ReferencedSOPInstanceUID = str(headers[0].StudyInstanceUID)
        ref_study.RTReferencedSeriesSequence = [ref_series]
        frame = Dataset()
        frame.FrameOfReferenceUID = generate_uid()
        frame.RTReferencedStudySequence = [ref_study]
        ds.ReferencedFrameOfReferenceSequence = [frame]

        roi_items, contour_items = [], []
        n = 0
        for number, (name, contours) in enumerate(rois.items(), start=1):
            roi = Dataset()
            roi.ROINumber = number
            roi.ROIName = name
            roi_items.append(roi)
            roi_contour = Dataset()
            roi_contour.ReferencedROINumber = number
            items = []
            for points in contours:
                pts = np.asarray(points, dtype=float).reshape(-1, 3)
                c = Dataset()
                c.ContourGeometricType = geometric_type
                c.NumberOfContourPoints = len(pts)
                c.ContourData = [f"{v:.6f}" for v in pts.ravel()]
                if link_slices:
                    uid = (slice_of or {}).get(n)
                    if uid is None:
                        nearest = min(by_z, key=lambda d: abs(float(d.ImagePositionPatient[2]) - pts[0, 2]))
                        uid = str(nearest.SOPInstanceUID)
                    c.ContourImageSequence = [image_item(uid)]
                items.append(c)
                n += 1
            if items:
                roi_contour.ContourSequence = items
            contour_items.append(roi_contour)
        ds.StructureSetROISequence = roi_items
        ds.ROIContourSequence = contour_items
        return self.save(ds, path)

    def compressed(self, path: Path) -> Path:
        """A CT slice whose pixel data claims JPEG-LS compression (no decoder is installed for it)."""
        ds = self.dataset(np.zeros((4, 5), np.int16), transfer_syntax=JPEGLSLossless)
        return self.save(ds, path)

    def xray(self, path: Path, pixels: np.ndarray, *, photometric: str = "MONOCHROME1", bits: int = 12) -> Path:
        """A digital X-ray (DX) image, 12 bits stored, no rescale."""
        ds = self.dataset(
            pixels,
            sop_class=DigitalXRayImageStorageForPresentation,
            modality="DX",
            photometric=photometric,
            slope=None,
            intercept=None,
            position=None,
            orientation=None,
            bits_stored=bits,
        )
        return self.save(ds, path)

    def us_cine(self, path: Path, frames: np.ndarray) -> Path:
        """An ultrasound multi-frame file ``(F, H, W)`` uint8 with an ultrasound-region calibration."""
        ds = self.dataset(
            frames,
            sop_class=UltrasoundMultiFrameImageStorage,
            modality="US",
            slope=None,
            intercept=None,
            position=None,
            orientation=None,
            pixel_spacing=None,
        )
        region = Dataset()
        region.PhysicalUnitsXDirection = 3
        region.PhysicalUnitsYDirection = 3
        region.PhysicalDeltaX = 0.02
        region.PhysicalDeltaY = 0.025
        ds.SequenceOfUltrasoundRegions = [region]
        return self.save(ds, path)

    # --------------------------------------------------------------------------------------------- raster

    @staticmethod
    def png(path: Path, arr: np.ndarray, **kwargs: object) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path, **kwargs)
        return path

    @staticmethod
    def jpeg(path: Path, arr: np.ndarray, quality: int = 95) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path, format="JPEG", quality=quality)
        return path

    @staticmethod
    def rgb(h: int = 16, w: int = 24) -> np.ndarray:
        yy, xx = np.mgrid[0:h, 0:w]
        return np.stack([xx * 10 % 256, yy * 15 % 256, (xx + yy) * 5 % 256], axis=-1).astype(np.uint8)

    # ---------------------------------------------------------------------------------------------- NIfTI

    @staticmethod
    def nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
        """A NIfTI file of ``data`` indexed (x, y, z[, t]) with a RAS ``affine`` (default: oblique-free, shifted)."""
        if affine is None:
            affine = np.diag([0.8, 0.9, 2.5, 1.0])
            affine[:3, 3] = [10.0, -20.0, 30.0]
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(data, affine), str(path))
        return path


@pytest.fixture(scope="session")
def make() -> Make:
    """The test-input factory (see :class:`Make`)."""
    return Make()

"""DICOM SEG of a mask, on the IBSI lung phantom's real CT series: the SEG holds exactly the mask's voxels and
references the series it was made from."""

from __future__ import annotations

import logging
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest

from radvlsm.errors import InputError
from radvlsm.io import read_image, read_mask
from radvlsm.io.dicom_seg import redact, source_datasets, write_dicom_seg


def test_series_mask_round_trips_through_a_seg(ibsi_phantom_root: Path, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    record = read_image(ibsi_phantom_root / "dicom" / "image")
    mask = read_mask(ibsi_phantom_root / "nifti" / "mask.nii.gz", like=record)
    sources = source_datasets(record)
    assert [str(ds.SOPInstanceUID) for ds in sources] == list(record.instance_uids)
    with caplog.at_level(logging.DEBUG):
        path = write_dicom_seg(record, mask, tmp_path / "seg" / "phantom.dcm", label="GTV-1", sources=sources)
    seg = hd.seg.segread(path)
    assert seg.Modality == "SEG" and seg.SegmentSequence[0].SegmentLabel == "GTV-1"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == record.series_uid
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    back = seg.get_pixels_by_source_instance(source_sop_instance_uids=list(record.instance_uids),
                                             segment_numbers=[1], ignore_spatial_locations=True)[..., 0]
    assert back.shape == mask.shape and np.array_equal(back.astype(bool), mask.astype(bool))
    assert str(sources[0].PatientName) not in caplog.text  # highdicom's warnings quote it: silenced
    assert not list((tmp_path / "seg").glob(".*tmp"))


def test_bad_requests_are_clear_errors(ibsi_phantom_root: Path, tmp_path: Path) -> None:
    record = read_image(ibsi_phantom_root / "dicom" / "image")
    sources = source_datasets(record)
    with pytest.raises(InputError, match="do not fit"):
        write_dicom_seg(record, np.ones((2, 3, 4), bool), tmp_path / "a.dcm", sources=sources)
    with pytest.raises(InputError, match="empty"):
        write_dicom_seg(record, np.zeros(record.pixels.shape, bool), tmp_path / "b.dcm", sources=sources)
    png = read_image(Path(__file__).resolve().parents[2] / "data" / "samples" / "masks" / "IMD009.png")
    with pytest.raises(InputError, match="needs a DICOM input"):
        write_dicom_seg(png, np.ones(png.pixels.shape[:2], bool), tmp_path / "c.dcm")
    assert not (tmp_path / "a.dcm").exists() and not (tmp_path / "b.dcm").exists()


def test_a_label_map_gives_one_segment_per_lesion_in_its_numbers(ibsi_phantom_root: Path, tmp_path: Path) -> None:
    record = read_image(ibsi_phantom_root / "dicom" / "image")
    labels = np.zeros(record.pixels.shape, np.uint8)
    labels[20:25, 50:60, 50:60] = 1
    labels[30:32, 100:110, 100:110] = 3  # lesion 2 was not found: an empty segment 2
    path = write_dicom_seg(record, labels, tmp_path / "nodules.dcm", label="lung nodule")
    seg = hd.seg.segread(path)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["lung nodule 1", "lung nodule 2", "lung nodule 3"]
    for k in (1, 2, 3):
        back = seg.get_pixels_by_source_instance(source_sop_instance_uids=list(record.instance_uids),
                                                 segment_numbers=[k], ignore_spatial_locations=True)[..., 0]
        assert np.array_equal(back.astype(bool), labels == k), k
    with pytest.raises(InputError, match=r"1\.\.255"):
        write_dicom_seg(record, labels.astype(np.int16) * 100, tmp_path / "x.dcm")


@pytest.mark.parametrize(
    ("attribute", "value", "named"),
    [
        ("PatientName", ["Secret^Ann", "Secret^A"], "PatientName holds 2 values where the standard allows one"),
        ("PatientBirthDate", "1901-02-03", "PatientBirthDate is not a DICOM date (YYYYMMDD)"),
        ("StudyDate", "yesterday", "StudyDate is not a DICOM date (YYYYMMDD)"),
    ],
)
def test_a_header_that_breaks_the_standard_is_named_not_quoted(
    ibsi_phantom_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, attribute: str, value: object,
    named: str,
) -> None:
    record = read_image(ibsi_phantom_root / "dicom" / "image")
    mask = read_mask(ibsi_phantom_root / "nifti" / "mask.nii.gz", like=record)
    sources = source_datasets(record)
    for ds in sources:
        setattr(ds, attribute, value)
    caplog.clear()  # pydicom's own warning about the value just set
    with caplog.at_level(logging.DEBUG), pytest.raises(InputError) as info:
        write_dicom_seg(record, mask, tmp_path / "seg.dcm", sources=sources)
    assert info.value.reason == f"no DICOM SEG written: the source's {named}"
    assert "Secret" not in caplog.text and "1901" not in caplog.text
    assert not list(tmp_path.iterdir())


def test_redact_hides_every_identifying_value(ibsi_phantom_root: Path) -> None:
    record = read_image(ibsi_phantom_root / "dicom" / "image")
    ds = source_datasets(record)[0]
    ds.PatientName, ds.PatientID, ds.OtherPatientIDs = "Doe^Jane^Q", "PID-4711", ["X-991", "X-992"]
    text = "Invalid value 'Doe^Jane^Q' (family Doe, given Jane) for PID-4711 / X-992"
    assert redact(text, ds) == "Invalid value '<redacted>' (family <redacted>, given <redacted>) for <redacted> / " \
                               "<redacted>"
    assert redact("nothing personal", ds) == "nothing personal"

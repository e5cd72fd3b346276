"""``radvlsm report`` on the output folder of a CT segment run: the volume study is reported as CT."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from radvlsm.pipeline.inputs import discover_inputs
from radvlsm.pipeline.volume import StudyPoints, VolumeStudyWork
from radvlsm.reporting.batch import ReportFolder, ReportJob, ReportSettings, collect_jobs, report_case


def test_a_ct_study_from_segment_is_reported_as_ct(lidc_root: Path, tmp_path: Path) -> None:
    from radvlsm.stage2_segment.build import load_segmenter
    from radvlsm.stage2_segment.predictor import SegmenterPredictor
    from radvlsm.stage2_segment.volume import VolumeSegmenter

    with (lidc_root / "labels.csv").open(newline="") as fh:
        row = next(csv.DictReader(fh))
    (tmp_path / "in").mkdir()
    shutil.copy(lidc_root / row["image"], tmp_path / "in" / "nodule.nii.gz")
    points = tmp_path / "points.csv"
    points.write_text(f"x,y,z,diameter_mm\n{row['coordX']},{row['coordY']},{row['coordZ']},{row['diameter_mm']}\n",
                      encoding="utf-8")
    items, _ = discover_inputs([tmp_path / "in"])
    work = VolumeStudyWork(tmp_path / "seg", VolumeSegmenter(SegmenterPredictor(load_segmenter("ct"))),
                           StudyPoints.read(points), model_name="ct")
    assert work.process(items).written == ("nodule",)
    [job] = collect_jobs([tmp_path / "seg"]).jobs
    assert job.modality == "ct"
    record = report_case(job, ReportFolder(tmp_path / "rep"), ReportSettings(), None, None)
    text = record.template_text
    assert "HU" in text and "Fleischner" in text
    assert (tmp_path / "rep" / "reports" / "nodule.html").is_file()


def test_each_series_of_a_folder_is_reported_from_its_own_slices(ibsi_phantom_root: Path, tmp_path: Path) -> None:
    """A folder holding two series is two studies for segment (``<folder>_s<number>``), and so for the report."""
    import pydicom

    from radvlsm.stage2_segment.build import load_segmenter
    from radvlsm.stage2_segment.predictor import SegmenterPredictor
    from radvlsm.stage2_segment.volume import VolumeSegmenter

    folder = tmp_path / "in" / "two"
    folder.mkdir(parents=True)
    uids = {3: pydicom.uid.generate_uid(), 7: pydicom.uid.generate_uid()}
    for number, keep in ((3, slice(10, 30)), (7, slice(12, 26))):
        for f in sorted((ibsi_phantom_root / "dicom" / "image").iterdir())[keep]:
            ds = pydicom.dcmread(f)
            ds.SeriesInstanceUID, ds.SeriesNumber = uids[number], number
            ds.SOPInstanceUID = pydicom.uid.generate_uid()
            ds.save_as(folder / f"s{number}_{f.name}")
    points = tmp_path / "points.csv"
    points.write_text("x,y,z,diameter_mm\n-74.48,16.33,-18.74,90\n", encoding="utf-8")
    items, _ = discover_inputs([tmp_path / "in"])
    work = VolumeStudyWork(tmp_path / "seg", VolumeSegmenter(SegmenterPredictor(load_segmenter("ct"))),
                           StudyPoints.read(points), model_name="ct")
    assert sorted(work.process(items).written) == ["two_s3", "two_s7"]
    collected = collect_jobs([tmp_path / "seg"])
    assert collected.problems == ()
    jobs = {j.case_id: j for j in collected.jobs}
    assert {c: j.series_uid for c, j in jobs.items()} == {"two_s3": uids[3], "two_s7": uids[7]}
    for cid, slices in (("two_s3", 20), ("two_s7", 14)):
        record = report_case(jobs[cid], ReportFolder(tmp_path / "rep"), ReportSettings(), None, None)
        assert record.findings.image_size == (slices, 201, 204), cid


def test_an_unexpected_failure_of_one_case_is_listed_and_the_batch_goes_on(
    ph2_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from radvlsm.reporting import batch

    jobs = [ReportJob(c, ph2_root / "images" / f"{c}.jpg", ph2_root / "masks" / f"{c}.png")
            for c in ("IMD002", "IMD003")]
    real = batch.report_case

    def flaky(job: ReportJob, *args: object, **kwargs: object) -> object:
        if job.case_id == "IMD002":
            raise AttributeError("'NoneType' object has no attribute 'reshape'")
        return real(job, *args, **kwargs)

    monkeypatch.setattr(batch, "report_case", flaky)
    summary = batch.run_reports(jobs, tmp_path / "rep")
    assert summary.written == 1
    [failed] = summary.failed
    assert failed.path.name == "IMD002.jpg" and "AttributeError" in failed.reason and "bug" in failed.reason
    assert (tmp_path / "rep" / "reports" / "IMD003.html").is_file()
    assert "IMD002" in summary.errors_csv.read_text(encoding="utf-8")

"""``radvlsm report`` on the output folder of a CT segment run: the volume study is reported as CT."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from radvlsm.pipeline.inputs import discover_inputs
from radvlsm.pipeline.volume import StudyPoints, VolumeStudyWork
from radvlsm.reporting.batch import ReportFolder, ReportSettings, collect_jobs, report_case


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

"""CT studies through the batch: DICOM series and NIfTI volumes found in folders, nodules segmented from points,
label maps in the input's geometry, DICOM SEG referencing the series, bad studies named while the batch goes on.
Real data: the IBSI lung phantom (a DICOM series) and LIDC nodule volumes."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from radvlsm.fusion.radiomics_folder import extract_folder
from radvlsm.io import Modality, read_image, read_mask, write_nifti_mask
from radvlsm.io.dicom import read_dicom_series
from radvlsm.metrics.segmentation import dice
from radvlsm.pipeline.inputs import discover_inputs
from radvlsm.pipeline.outputs import OutputFolder
from radvlsm.pipeline.segment import write_summaries
from radvlsm.pipeline.volume import StudyPoints, VolumeStudyWork, label_map
from radvlsm.stage2_segment.volume import NodulePoint

PHANTOM_CENTRE = "-74.48,16.33,-18.74,90"  # the GTV's centroid (mm) and about its extent


def _lidc_rows(lidc_root: Path) -> list[dict[str, str]]:
    with (lidc_root / "labels.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _copy_series(src: Path, dst: Path, *, uid: str | None = None, number: int | None = None,
                 keep: slice = slice(None)) -> Path:
    """Copy a DICOM series; optionally as another series (new UID and number) and only some slices."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir())[keep]:
        if uid is None:
            shutil.copy(f, dst / f.name)
            continue
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID, ds.SeriesNumber = uid, number
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(dst / f"s{number}_{f.name}")
    return dst


def test_series_folders_become_one_study_each_and_non_images_are_skipped(ibsi_phantom_root: Path,
                                                                          tmp_path: Path) -> None:
    study = tmp_path / "in" / "phantom"
    shutil.copytree(ibsi_phantom_root / "dicom", study)
    shutil.copy(ibsi_phantom_root / "nifti" / "image.nii.gz", tmp_path / "in" / "phantom_nifti.nii.gz")
    items, problems = discover_inputs([tmp_path / "in"])
    assert problems == []
    uid = str(pydicom.dcmread(next((study / "image").iterdir())).SeriesInstanceUID)
    assert [(it.case_id, it.path, it.series_uid) for it in items] == [
        ("image", study / "image", uid),  # 60 slices: one study; the RTSTRUCT beside it is not an input
        ("phantom_nifti", tmp_path / "in" / "phantom_nifti.nii.gz", None),
    ]


def test_a_folder_holding_two_series_gives_two_studies(ibsi_phantom_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    _copy_series(ibsi_phantom_root / "dicom" / "image", folder, keep=slice(10, 20))
    _copy_series(ibsi_phantom_root / "dicom" / "image", folder, uid=pydicom.uid.generate_uid(), number=7,
                 keep=slice(0, 5))
    _copy_series(ibsi_phantom_root / "dicom" / "image", folder, uid=pydicom.uid.generate_uid(), number=8,
                 keep=slice(30, 31))  # a lone slice of a third series (a scout): a study of its own
    items, problems = discover_inputs([folder])
    assert problems == []
    assert [it.path.name for it in items if it.path.is_file()] == ["s8_DCM_IMG_00030.dcm"]
    items = [it for it in items if it.path.is_dir()]
    by_id = {it.case_id: it for it in items}
    # the phantom's series has no SeriesNumber: it is named by its rank in the folder (first by file name)
    assert set(by_id) == {"mixed_s1", "mixed_s7"}
    depths = sorted(read_dicom_series(folder, series_uid=it.series_uid).pixels.shape[0] for it in items)
    assert depths == [5, 10]
    # what reads one case again (report, radiomics) reads the one series of it
    assert read_image(folder, series_uid=by_id["mixed_s7"].series_uid).pixels.shape[0] == 5
    masks = tmp_path / "masks"
    masks.mkdir()
    for it in items:
        rec = read_image(folder, series_uid=it.series_uid)
        m = np.zeros(rec.pixels.shape, np.uint8)
        m[1:4, 90:110, 90:110] = 1
        assert rec.geometry is not None
        write_nifti_mask(masks / f"{it.case_id}.nii.gz", m, rec.geometry)
    params = tmp_path / "light.yaml"
    params.write_text("featureClass:\n  shape:\nsetting:\n  label: 1\n")
    summary = extract_folder(folder, masks, tmp_path / "f.csv", params=params, workers=1)
    assert summary.rows == 2
    assert [e.case_id for e in summary.failed] == ["s8_DCM_IMG_00030"]  # the scout: no mask given


def test_label_map_gives_each_nodule_its_value_and_the_first_keeps_overlaps() -> None:
    from radvlsm.stage2_segment.volume import VolumeSegmentation, VoxelBox

    a = np.zeros((2, 4, 4), bool)
    a[0, :2] = True
    b = np.zeros_like(a)
    b[0, 1:3] = True
    geo = read_image  # any object: label_map reads masks only
    segs = [VolumeSegmentation(m, geo, VoxelBox(0, 0, 0, 1, 1, 1)) for m in (a, b)]  # type: ignore[arg-type]
    labels = label_map(segs, a.shape)
    assert labels.dtype == np.uint8
    assert (labels[0, 0] == 1).all() and (labels[0, 1] == 1).all() and (labels[0, 2] == 2).all()
    assert labels.max() == 2 and (labels[1] == 0).all()


@pytest.fixture(scope="module")
def ct_work_out(ibsi_phantom_root: Path, lidc_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One batch: the phantom series (its PatientName and PatientID made recognisable), two LIDC nodules, a
    series with a missing slice, a study with no point, a point outside its volume."""
    import torch

    from radvlsm.stage2_segment.build import load_segmenter
    from radvlsm.stage2_segment.predictor import SegmenterPredictor
    from radvlsm.stage2_segment.volume import VolumeSegmenter

    root = tmp_path_factory.mktemp("ct")
    inp = root / "in"
    phantom = inp / "phantom"
    phantom.mkdir(parents=True)
    for f in sorted((ibsi_phantom_root / "dicom" / "image").iterdir()):
        ds = pydicom.dcmread(f)
        ds.PatientName, ds.PatientID = "Doe^Jane", "PID-4711"
        ds.save_as(phantom / f.name)
    gap = _copy_series(ibsi_phantom_root / "dicom" / "image", inp / "gap", uid=pydicom.uid.generate_uid(),
                       number=9, keep=slice(10, 30))
    sorted(gap.iterdir())[7].unlink()  # a missing slice in the middle
    odd = _copy_series(ibsi_phantom_root / "dicom" / "image", inp / "odd_header", uid=pydicom.uid.generate_uid(),
                       number=11, keep=slice(10, 30))
    for f in odd.iterdir():  # a birth date that is no DICOM date: the SEG cannot carry it
        ds = pydicom.dcmread(f)
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Roe^Richard", "PID-0815", "1901-02-03"
        ds.save_as(f)
    rows = _lidc_rows(lidc_root)[:3]
    lines = ["study,x,y,z,diameter_mm", f"phantom,{PHANTOM_CENTRE}", f"gap,{PHANTOM_CENTRE}",
             f"odd_header,{PHANTOM_CENTRE}"]
    for r in rows:
        shutil.copy(lidc_root / r["image"], inp / f"{r['case_id']}.nii.gz")
        lines.append(f"{r['case_id']},{r['coordX']},{r['coordY']},{r['coordZ']},{r['diameter_mm']}")
    shutil.copy(lidc_root / rows[2]["image"], inp / "no_point.nii.gz")
    src = nib.load(lidc_root / rows[0]["image"])
    sheared = src.affine.copy()
    sheared[0, 1] = 0.3
    nib.save(nib.Nifti1Image(np.asarray(src.dataobj), sheared), inp / "sheared.nii.gz")
    lines.append(f"sheared,{rows[0]['coordX']},{rows[0]['coordY']},{rows[0]['coordZ']},{rows[0]['diameter_mm']}")
    (root / "points.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "points_bad.csv").write_text(f"study,x,y,z\n{rows[1]['case_id']},9999,9999,9999\n", encoding="utf-8")

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        items, problems = discover_inputs([inp])
        assert problems == []
        work = VolumeStudyWork(root / "out", VolumeSegmenter(SegmenterPredictor(load_segmenter("ct"))),
                               StudyPoints.read(root / "points.csv"), model_name="ct")
        outcome = work.process(items)
        write_summaries(root / "out", outcome.problems, diagnose=False)
        again = work.process(items)
        assert again.written == () and set(again.found_done) == set(outcome.written)
        bad = VolumeStudyWork(root / "out_bad", work.segmenter, StudyPoints.read(root / "points_bad.csv"),
                              model_name="ct").process([it for it in items if it.case_id == rows[1]["case_id"]])
        (root / "bad_reason.txt").write_text(bad.problems[0].reason, encoding="utf-8")
    finally:
        torch.set_num_threads(n)
    return root


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_ct_batch_writes_label_maps_in_the_input_geometry(ct_work_out: Path, lidc_root: Path,
                                                           ibsi_phantom_root: Path) -> None:
    out = ct_work_out / "out"
    results = {r["image"]: r for r in _csv(out / "results.csv")}
    rows = _lidc_rows(lidc_root)[:3]
    nodules = [r["case_id"] for r in rows]
    assert set(results) == {"phantom", "odd_header", *nodules}
    for cid in nodules:
        src = read_image(ct_work_out / "in" / f"{cid}.nii.gz", modality=Modality.CT)
        got = read_mask(out / results[cid]["mask"], like=src)  # checks shape and geometry against the input
        gt = read_mask(lidc_root / "masks" / f"{cid}.nii.gz", like=src)
        assert dice(got, gt) > 0.7, cid
    phantom = read_dicom_series(ct_work_out / "in" / "phantom")
    got = read_mask(out / "masks" / "phantom.nii.gz", like=phantom)
    gt = read_mask(ibsi_phantom_root / "nifti" / "mask.nii.gz", like=phantom)
    assert dice(got, gt) > 0.7  # a 10 cm tumour: far larger than the nodules the model trained on
    lesions = _csv(out / "lesions.csv")
    assert [(r["study"], r["lesion"], r["status"]) for r in lesions] == sorted(
        [(c, "1", "ok") for c in ("phantom", "odd_header", *nodules)])
    lesion = next(r for r in lesions if r["study"] == rows[0]["case_id"])
    assert abs(float(lesion["centroid_x_mm"]) - float(rows[0]["coordX"])) < 3
    assert int(lesion["voxels"]) == int(results[rows[0]["case_id"]]["area_px"])


def test_ct_batch_writes_a_dicom_seg_of_the_series(ct_work_out: Path) -> None:
    seg = pydicom.dcmread(ct_work_out / "out" / "seg" / "phantom.dcm")
    src = pydicom.dcmread(next((ct_work_out / "in" / "phantom").iterdir()))
    assert seg.Modality == "SEG"
    assert seg.StudyInstanceUID == src.StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["lung nodule 1"]
    assert not (ct_work_out / "out" / "seg").joinpath("no_point.dcm").exists()


def test_a_header_the_seg_cannot_carry_costs_the_seg_only(ct_work_out: Path) -> None:
    out = OutputFolder(ct_work_out / "out")
    record = next(r for r in out.read_records() if r.case_id == "odd_header")
    assert record.status == "ok" and record.dicom_seg is None
    assert record.dicom_seg_error == (
        "no DICOM SEG written: the source's PatientBirthDate is not a DICOM date (YYYYMMDD)")
    assert (out.root / "masks" / "odd_header.nii.gz").is_file()
    assert not (out.root / "seg" / "odd_header.dcm").exists()


def test_ct_batch_names_bad_studies_and_goes_on(ct_work_out: Path) -> None:
    errors = {Path(r["input"]).name: r["reason"] for r in _csv(ct_work_out / "out" / "errors.csv")}
    assert set(errors) == {"gap", "no_point.nii.gz", "sheared.nii.gz"}
    assert "sheared" in errors["sheared.nii.gz"]
    assert "missing" in errors["gap"] or "gap" in errors["gap"]
    assert "no row for study 'no_point'" in errors["no_point.nii.gz"]
    assert "--points" in errors["no_point.nii.gz"]
    assert "nodule 1 at (9999, 9999, 9999) mm" in (ct_work_out / "bad_reason.txt").read_text(encoding="utf-8")
    assert OutputFolder(ct_work_out / "out_bad").read_records() == []


def test_no_patient_identifier_in_the_tables(ct_work_out: Path) -> None:
    for name in ("results.csv", "lesions.csv", "errors.csv", "records/phantom.json", "records/odd_header.json"):
        text = (ct_work_out / "out" / name).read_text(encoding="utf-8")
        for value in ("Doe", "PID-4711", "Roe", "PID-0815", "1901"):
            assert value not in text, (name, value)


def test_study_points_serve_named_studies_then_unnamed_rows(tmp_path: Path) -> None:
    f = tmp_path / "p.csv"
    f.write_text("study,x,y,z\na,1,2,3\n,4,5,6\n", encoding="utf-8")
    pts = StudyPoints.read(f)
    assert pts.for_study("a") == (NodulePoint(1, 2, 3),)
    assert pts.for_study("b") == (NodulePoint(4, 5, 6),)
    assert pts.studies() == {"a"}


def test_a_volume_without_air_is_doubted_as_hu(lidc_root: Path, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    from radvlsm.pipeline.inputs import InputItem
    from radvlsm.pipeline.volume import load_volume

    row = _lidc_rows(lidc_root)[0]
    src = nib.load(lidc_root / row["image"])
    shifted = tmp_path / "shifted.nii.gz"  # stored without its rescale: 0..~3000 instead of HU
    nib.save(nib.Nifti1Image(np.asarray(src.dataobj).astype(np.int16) + 1024, src.affine), shifted)
    with caplog.at_level("WARNING"):
        assert not isinstance(load_volume(InputItem("ok", lidc_root / row["image"])), Exception)
        assert "Hounsfield" not in caplog.text
        rec = load_volume(InputItem("shifted", shifted))
    assert rec.pixels.shape[0] > 0  # read, and doubted aloud
    assert "shifted.nii.gz" in caplog.text and "Hounsfield" in caplog.text


def test_a_volume_with_nan_voxels_is_named(lidc_root: Path, tmp_path: Path) -> None:
    from radvlsm.pipeline.inputs import InputItem, InputProblem
    from radvlsm.pipeline.volume import load_volume

    src = nib.load(lidc_root / _lidc_rows(lidc_root)[0]["image"])
    data = np.asarray(src.dataobj).astype(np.float32)
    for name, arr in (("all_nan", np.full_like(data, np.nan)), ("some_nan", np.where(data > 0, np.nan, data))):
        nib.save(nib.Nifti1Image(arr, src.affine), tmp_path / f"{name}.nii.gz")
    got = load_volume(InputItem("all_nan", tmp_path / "all_nan.nii.gz"))
    assert isinstance(got, InputProblem) and "no finite voxel" in got.reason
    got = load_volume(InputItem("some_nan", tmp_path / "some_nan.nii.gz"))
    assert isinstance(got, InputProblem) and "voxels are NaN or infinite" in got.reason


def test_a_ct_study_that_is_no_volume_is_named(tmp_path: Path, us_cine: Callable[..., Path]) -> None:
    from radvlsm.pipeline.inputs import InputItem, InputProblem
    from radvlsm.pipeline.volume import load_volume

    frames = us_cine(tmp_path / "ct.dcm", np.full((2, 32, 32), 100, np.uint8), modality="CT")
    got = load_volume(InputItem("ct", frames))
    assert isinstance(got, InputProblem) and got.path == frames
    assert "must be a volume" in got.reason and "multi-frame" in got.reason

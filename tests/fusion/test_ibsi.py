"""radvlsm.fusion.ibsi: the IBSI tag map, the reference files, and the compliance on the IBSI lung CT phantom (read
as a DICOM series with its RTSTRUCT; skipped without the shared datasets): configuration A as pyradiomics processes
it, B-E with IBSI's processing (``radvlsm radiomics --ibsi``)."""

from __future__ import annotations

import math
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from radvlsm.errors import InputError
from radvlsm.fusion.ibsi import (
    CONFIG_DIMENSIONS,
    FEATURE_MAP,
    IBSI_PARAMS,
    NOT_COMPUTED,
    Reference,
    compare,
    ibsi_tag,
    read_reference,
    uncompared,
)
from radvlsm.fusion.radiomics import RadiomicsExtractor
from radvlsm.fusion.radiomics_params import load_params
from radvlsm.fusion.resampling import IbsiProcessing
from radvlsm.io import rasterise_roi, read_image

#: Features within tolerance for configuration A as measured by benchmarks/ibsi_compliance.py (107 of 108; the one
#: outside is stat_kurt, pyradiomics' Kurtosis being IBSI's + 3). A lower count is a regression.
CONFIG_A_WITHIN = 107
#: Features within tolerance with ``--ibsi`` (benchmarks/ibsi_compliance.py), against 47, 17, 17 and 9 with
#: pyradiomics' own processing. C keeps pyradiomics' bin numbering (22 features off by the shift); D's 5
#: others are outside by 1-2 tolerances with every IBSI step emulated too.
IBSI_WITHIN = {"b": 107, "c": 84, "d": 102, "e": 106}


def _reference_file(root: Path, config: str) -> Path:
    return root / "reference-values" / f"config_{config}.csv"


def _all_tags(path: Path) -> set[str]:
    """Every tag of a reference file, with or without a reference value."""
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    return {ln.split(";")[2].strip() for ln in lines if ln.strip()}


# ------------------------------------------------------------------------------------------------ the map


def test_parameter_files_pass_pyradiomics_schema() -> None:
    for config, path in IBSI_PARAMS.items():
        params = load_params(path)
        settings = params["setting"]
        assert settings["voxelArrayShift"] == 0, config  # IBSI's energy squares the HU themselves
        assert bool(settings.get("force2D")) == (CONFIG_DIMENSIONS[config] == "2d"), config


def test_map_is_one_to_one_on_ibsi_tags_and_names_real_features() -> None:
    from radiomics import getFeatureClasses

    stems = [e.stem for e in FEATURE_MAP]
    assert len(stems) == len(set(stems))
    classes = getFeatureClasses()
    for entry in FEATURE_MAP:
        _, cls, name = entry.pyradiomics.split("_", 2)
        assert name in classes[cls].getFeatureNames(), entry.pyradiomics


@pytest.mark.shared_data
def test_every_mapped_tag_exists_in_the_reference_files(ibsi_phantom_root: Path) -> None:
    for config, dimension in CONFIG_DIMENSIONS.items():
        tags = _all_tags(_reference_file(ibsi_phantom_root, config))
        missing = [ibsi_tag(e, dimension) for e in FEATURE_MAP if ibsi_tag(e, dimension) not in tags]
        assert not missing, f"config {config}: {missing}"
        reference = read_reference(_reference_file(ibsi_phantom_root, config))
        assert all(ibsi_tag(e, dimension) in reference for e in FEATURE_MAP), config  # all have a value
    every = set().union(*(_all_tags(_reference_file(ibsi_phantom_root, c)) for c in CONFIG_DIMENSIONS))
    for pats in NOT_COMPUTED:
        assert any(fnmatchcase(t, p) for t in every for p in pats.split(", ")), f"{pats} matches no IBSI tag"


def test_read_reference_skips_empty_values_and_reports_bad_lines(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("reference value;tolerance;tag\n13.4;1.1;stat_mean\n;;morph_vol_dens_ombb\n-500;0;stat_min\n")
    assert read_reference(good) == {
        "stat_mean": Reference("stat_mean", 13.4, 1.1),
        "stat_min": Reference("stat_min", -500.0, 0.0),
    }
    bad = tmp_path / "bad.csv"
    bad.write_text("reference value;tolerance;tag\n13.4;x;stat_mean\n")
    with pytest.raises(InputError, match=r"bad\.csv: line 2: stat_mean: value '13.4' or tolerance 'x'"):
        read_reference(bad)
    header = tmp_path / "header.csv"
    header.write_text("value,tag\n")
    with pytest.raises(InputError, match="not an IBSI reference file"):
        read_reference(header)


def test_compare_counts_within_outside_and_the_kurtosis_offset() -> None:
    reference = {
        "stat_mean": Reference("stat_mean", 13.4, 1.1),
        "stat_kurt": Reference("stat_kurt", 5.96, 0.24),
        "cm_joint_avg_3D_avg": Reference("cm_joint_avg_3D_avg", 39.0, 0.2),
    }
    features = {
        "original_firstorder_Mean": 14.0,
        "original_firstorder_Kurtosis": 8.9,
        "original_glcm_JointAverage": 36.98,
    }
    report = compare(features, reference, "C")
    assert report.compared == 3 and report.within == 1 and math.isclose(report.share, 1 / 3)
    kurt = next(c for c in report.checks if c.tag == "stat_kurt")
    assert not kurt.within and kurt.adjusted is not None and kurt.reference.contains(kurt.adjusted)
    assert [c.tag for c in report.outside()] == ["stat_kurt", "cm_joint_avg_3D_avg"]
    assert compare({}, reference, "c").missing == ("stat_mean", "stat_kurt", "cm_joint_avg_3D_avg")
    # 2-D configurations compare the 2.5-D tags.
    assert ibsi_tag(next(e for e in FEATURE_MAP if e.stem == "cm_joint_avg"), "2d") == "cm_joint_avg_2_5D_avg"
    assert ibsi_tag(next(e for e in FEATURE_MAP if e.stem == "szm_sze"), "2d") == "szm_sze_2_5D"


# ------------------------------------------------------------------------------------------ the phantom


@pytest.mark.shared_data
def test_configuration_a_compliance_on_the_phantom(ibsi_phantom_root: Path) -> None:
    series = read_image(ibsi_phantom_root / "dicom" / "image")
    roi = rasterise_roi(next((ibsi_phantom_root / "dicom" / "rtstruct").glob("*.dcm")), series, "GTV-1")
    features = RadiomicsExtractor(IBSI_PARAMS["a"], "3d").extract(series, roi.mask)
    reference = read_reference(_reference_file(ibsi_phantom_root, "a"))
    report = compare(features, reference, "a")
    assert report.compared == len(FEATURE_MAP) == 108 and not report.missing
    assert report.within >= CONFIG_A_WITHIN, [(c.tag, c.value, c.reference) for c in report.outside()]
    for c in report.outside():  # only definition differences may remain, and they must account for it
        assert c.difference is not None and c.adjusted is not None and c.reference.contains(c.adjusted), c
    not_compared = uncompared(reference, report)
    assert "dzm_sde_2_5D" in not_compared["grey level distance zone matrix (GLDZM): not in pyradiomics"]


@pytest.mark.shared_data
@pytest.mark.parametrize("config", sorted(IBSI_WITHIN))
def test_ibsi_processing_on_the_phantom(ibsi_phantom_root: Path, config: str) -> None:
    series = read_image(ibsi_phantom_root / "dicom" / "image")
    roi = rasterise_roi(next((ibsi_phantom_root / "dicom" / "rtstruct").glob("*.dcm")), series, "GTV-1")
    first = (-1000.0, 400.0) if config == "e" else None  # E: the range, then the file's mean +- 3 SD
    extractor = RadiomicsExtractor(IBSI_PARAMS[config], "3d", ibsi=IbsiProcessing(range_first=first))
    features = extractor.extract(series, roi.mask)
    reference = read_reference(_reference_file(ibsi_phantom_root, config))
    report = compare(features, reference, config)
    assert report.within >= IBSI_WITHIN[config], [(c.tag, c.deviation) for c in report.outside()]
    # Morphology is measured on the interpolated mask (before any re-segmentation), which has IBSI's voxel count
    # within 0.1% (2 x 2 x 3 mm voxels for B, 2 mm for C-E).
    voxel_mm3 = 12.0 if config == "b" else 8.0
    voxels = features["original_shape_VoxelVolume"] / voxel_mm3
    assert voxels == pytest.approx(reference["int_mask_vox_count_interp_roi"].value, rel=1e-3)

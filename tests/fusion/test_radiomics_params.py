"""radvlsm.fusion.radiomics_params: pyradiomics parameter files checked by its schema, radvlsm's overrides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radvlsm.errors import ConfigError
from radvlsm.fusion.radiomics import RadiomicsExtractor
from radvlsm.fusion.radiomics_params import DEFAULT_PARAMS, load_params


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("setting:\n  binWidht: 25\n", "unknown key 'binWidht' in setting (did you mean 'binWidth'?)"),
        ("setting:\n  binWidth: wide\n", "setting.binWidth: Value 'wide' is not of type 'float'"),
        ("setting:\n  force2D: 3\n", "setting.force2D: Value '3' is not of type 'bool'"),
        ("imageType:\n  LoG:\n    sigmaa: [1.0]\n", "unknown key 'sigmaa' in imageType.LoG (did you mean 'sigma'?)"),
        ("imageType:\n  Fancy: {}\n", "Image Type Fancy is not recognized"),
        ("featureClass:\n  glcm: [Contrastt]\n", "unrecognized features: {'Contrastt'}"),
        ("settings:\n  binWidth: 25\n", "unknown key 'settings' in the top level (did you mean 'setting'?)"),
        ("setting: [\n", "cannot parse the parameter file"),
        ("# nothing\n", "the parameter file is empty"),
    ],
)
def test_bad_params_file(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "my_params.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_params(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    with pytest.raises(ConfigError, match=r"my_params\.yaml"):
        RadiomicsExtractor(path)


def test_default_params_are_valid_and_documented() -> None:
    p2, p3 = load_params(DEFAULT_PARAMS["2d"]), load_params(DEFAULT_PARAMS["3d"])
    assert p2["setting"]["force2D"] is True
    assert p2["setting"]["binWidth"] == 5
    assert "shape2D" in p2["featureClass"]
    assert p3["setting"]["binWidth"] == 25
    assert "resampledPixelSpacing" not in p3["setting"]
    assert "shape" in p3["featureClass"]


def test_2d_runs_force_2d_and_label_1(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("setting:\n  binWidth: 5\n  force2D: false\n  label: 2\n")
    ex = RadiomicsExtractor(path, "2d")
    assert dict(ex.param_set("2d").overrides) == {"label": 1, "force2D": True}
    assert "force2D: False ignored" in caplog.text
    img = np.arange(30 * 30, dtype=np.uint8).reshape(30, 30)
    m = np.zeros((30, 30), bool)
    m[5:20, 8:25] = True
    feats = ex.extract_arrays(img, m)
    assert feats["original_shape2D_PixelSurface"] == m.sum()

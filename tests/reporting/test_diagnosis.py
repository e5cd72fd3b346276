"""Reading diagnoses.csv."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from radvlsm.errors import InputError
from radvlsm.reporting.diagnosis import read_diagnoses
from radvlsm.reporting.text import diagnosis_sentence


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_labels_probabilities_and_malignant_probability(tmp_path: Path, caplog) -> None:
    p = _write(tmp_path / "diagnoses.csv",
               "case_id,label,p_common_nevus,p_atypical_nevus,p_melanoma,malignant_probability,mask,reliability\n"
               "IMD002,melanoma,0.1,0.2,0.7,0.7,masks/IMD002.png,0.9\n"
               "IMD003,common_nevus,0.8,0.15,0.05,0.05,masks/IMD003.png,0.8\n"
               "IMD004,melanoma,0.1,0.2,1.7,0.7,masks/IMD004.png,0.9\n")
    with caplog.at_level(logging.WARNING):
        dx = read_diagnoses(p)
    assert set(dx) == {"IMD002", "IMD003"}
    assert "outside 0..1" in caplog.text
    d = dx["IMD002"]
    assert d.label == "melanoma"
    assert d.probabilities == (("common_nevus", 0.1), ("atypical_nevus", 0.2), ("melanoma", 0.7))
    assert d.malignant_probability == 0.7
    s = diagnosis_sentence(dx["IMD003"])
    assert "common nevus" in s and "80%" in s and "5%" in s
    assert diagnosis_sentence(None) == "No diagnosis was run for this case."


def test_malignant_class_stands_in_for_a_missing_column(tmp_path: Path) -> None:
    p = _write(tmp_path / "d.csv", "case_id,predicted,prob_benign,prob_malignant\nB1,benign,0.6,0.4\n")
    assert read_diagnoses(p)["B1"].malignant_probability == 0.4


def test_unusable_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="case_id"):
        read_diagnoses(_write(tmp_path / "a.csv", "id,label\n1,x\n"))
    with pytest.raises(InputError, match="label column"):
        read_diagnoses(_write(tmp_path / "b.csv", "case_id,p_x\n1,0.3\n"))
    with pytest.raises(InputError, match="cannot read"):
        read_diagnoses(tmp_path / "missing.csv")

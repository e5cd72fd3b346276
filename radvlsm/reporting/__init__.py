"""Reporting: findings measured from an image and its lesion mask, and the reports that state them.

* :func:`compute_findings` → :class:`CaseFindings` (typed, frozen records; which findings apply depends on
  the modality: dermoscopy, ultrasound, ct, endoscopy, other);
* :func:`findings_text` / :func:`markdown_report` / :func:`case_html` / :func:`index_html`: the words and pages;
* :mod:`radvlsm.reporting.llm`: the optional, fact-checked rewrite by an OpenAI-compatible endpoint;
* :func:`collect_jobs` and :func:`run_reports`: the batch behind ``radvlsm report``.
"""

from __future__ import annotations

from radvlsm.reporting.asymmetry import DEFAULT_ASYMMETRY_MODEL, AsymmetryModel
from radvlsm.reporting.batch import ReportJob, ReportSettings, ReportSummary, collect_jobs, run_reports
from radvlsm.reporting.colour import DEFAULT_COLOUR_MODEL, ColourModel, PresenceModel, dermoscopic_colours
from radvlsm.reporting.diagnosis import read_diagnoses
from radvlsm.reporting.findings import MODALITIES, FindingsConfig, compute_findings
from radvlsm.reporting.html import case_html, index_html
from radvlsm.reporting.llm import LlmClient, LlmConfig, LlmRewriter, check_prose
from radvlsm.reporting.records import (
    DERMOSCOPIC_COLOURS,
    SCHEMA_VERSION,
    AsymmetryFindings,
    CaseFindings,
    ColourFindings,
    CtFindings,
    Diagnosis,
    LesionFindings,
    LlmOutcome,
    NotMeasured,
    ReportRecord,
    SegmentationInfo,
    UltrasoundDescriptors,
)
from radvlsm.reporting.text import findings_text, markdown_report

__all__ = [
    "DEFAULT_ASYMMETRY_MODEL",
    "DEFAULT_COLOUR_MODEL",
    "DERMOSCOPIC_COLOURS",
    "MODALITIES",
    "SCHEMA_VERSION",
    "AsymmetryFindings",
    "AsymmetryModel",
    "CaseFindings",
    "ColourFindings",
    "ColourModel",
    "CtFindings",
    "Diagnosis",
    "FindingsConfig",
    "LesionFindings",
    "LlmClient",
    "LlmConfig",
    "LlmOutcome",
    "LlmRewriter",
    "NotMeasured",
    "PresenceModel",
    "ReportJob",
    "ReportRecord",
    "ReportSettings",
    "ReportSummary",
    "SegmentationInfo",
    "UltrasoundDescriptors",
    "case_html",
    "check_prose",
    "collect_jobs",
    "compute_findings",
    "dermoscopic_colours",
    "findings_text",
    "index_html",
    "markdown_report",
    "read_diagnoses",
    "run_reports",
]

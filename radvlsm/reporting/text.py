"""The report's words: a plain-language template filled from the findings, and the Markdown report.

The template states each measured finding once, with its number and unit, in fixed formats (the LLM fact
check compares the prose against these very numbers): millimetres with one decimal, pixels as whole numbers,
probabilities as whole percentages, indices with two decimals, attenuation in whole HU.
"""

from __future__ import annotations

import re

from radvlsm.reporting.records import DERMOSCOPIC_COLOURS, CaseFindings, Diagnosis, ReportRecord

DISCLAIMER = (
    "This report was generated automatically by radvlsm from the image and a lesion mask. It is not a "
    "diagnosis and must be reviewed by a qualified clinician."
)
IRREGULARITY_NOTE = "0 for a smooth convex outline, higher for notched or ragged borders"
_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_MODALITY_NAMES = {
    "dermoscopy": "dermoscopy image",
    "ultrasound": "ultrasound image",
    "ct": "CT image",
    "endoscopy": "endoscopy image",
    "other": "image (modality not given)",
}


def fmt_length(value: float, unit: str) -> str:
    return f"{value:.1f} mm" if unit == "mm" else f"{value:.0f} px"


def fmt_area(value: float, unit: str) -> str:
    return f"{value:.1f} mm²" if unit == "mm" else f"{value:.0f} px²"


def fmt_percent(p: float) -> str:
    return f"{100 * p:.0f}%"


def fmt_hu(v: float) -> str:
    return f"{v:.0f} HU"


def readable(label: str) -> str:
    """A class label as words: ``common_nevus`` → ``common nevus``."""
    return re.sub(r"[_\s]+", " ", label).strip()


def _count_words(n: int, noun: str) -> str:
    word = _NUMBER_WORDS[n] if n < len(_NUMBER_WORDS) else str(n)
    return f"{word} {noun}{'' if n == 1 else 's'}"


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def diagnosis_sentence(dx: Diagnosis | None) -> str:
    if dx is None:
        return "No diagnosis was run for this case."
    best = max((p for c, p in dx.probabilities if c == dx.label), default=None)
    s = f"The diagnosis model's most likely class is {readable(dx.label)}"
    s += f" (probability {fmt_percent(best)})." if best is not None else "."
    if dx.malignant_probability is not None:
        s += f" The probability of malignancy is {fmt_percent(dx.malignant_probability)}."
    return s


def findings_text(f: CaseFindings) -> str:
    """The narrative paragraph of the findings (the part an LLM may rewrite)."""
    parts: list[str] = []
    seg = f.segmentation
    lesion = f.lesion
    if lesion is None:
        parts.append("No lesion was found in the mask, so nothing was measured.")
    else:
        unit = lesion.unit
        if lesion.count == 1:
            parts.append("One lesion was segmented.")
        else:
            parts.append(f"{_count_words(lesion.count, 'separate lesion').capitalize()} were segmented; the "
                         "diameters and shape below describe the largest.")
        where = ""
        if lesion.slice_index is not None:
            where = f" on the axial slice of largest cross-section (slice {lesion.slice_index})"
        area_what = "Its cross-sectional area" if lesion.slice_index is not None else (
            "The lesion area" if lesion.count == 1 else "The total lesion area")
        parts.append(f"{area_what} is {fmt_area(lesion.area, unit)}{where}.")
        parts.append(
            f"The longest diameter is {fmt_length(lesion.longest_diameter, unit)} and the largest extent "
            f"perpendicular to it is {fmt_length(lesion.perpendicular_diameter, unit)}."
        )
        if unit == "px":
            parts.append("Sizes are in pixels because the pixel spacing is unknown.")
        parts.append(
            f"The border irregularity index is {lesion.border_irregularity:.2f} (0 for a convex outline)."
        )
        a = lesion.asymmetry
        if a is not None:
            if a.score == 0:
                parts.append("The lesion is symmetric about both of its principal axes (asymmetry score 0 of 2).")
            elif a.score == 1:
                parts.append("The lesion is asymmetric about one of its two principal axes (asymmetry score 1 "
                             "of 2).")
            else:
                parts.append("The lesion is asymmetric about both of its principal axes (asymmetry score 2 of 2).")
        c = f.colours
        if c is not None:
            if c.present:
                parts.append(f"Dermoscopic colours found: {_join(list(c.present))} "
                             f"({_count_words(len(c.present), 'colour')} of the six assessed).")
            else:
                parts.append("None of the six dermoscopic colours reached its detection threshold.")
        us = f.ultrasound
        if us is not None:
            parts.append(f"By the BI-RADS ultrasound lexicon the mass shape is {us.shape}, its orientation is "
                         f"{us.orientation} and its margin is {us.margin}.")
        ct = f.ct
        if ct is not None:
            parts.append(f"The mean attenuation inside the lesion is {fmt_hu(ct.mean_hu)}.")
            if ct.volume_mm3 is not None:
                parts.append(f"The lesion volume is {ct.volume_mm3:.0f} mm³.")
            if ct.mean_diameter_mm is not None and ct.size_category is not None:
                parts.append(f"The mean of the two diameters is {ct.mean_diameter_mm:.1f} mm, in the "
                             f"Fleischner size category {ct.size_category}.")
    if seg is not None and seg.reliability is not None:
        parts.append(f"The segmentation's reliability estimate is {seg.reliability:.2f} (0 to 1).")
    parts.append(diagnosis_sentence(f.diagnosis))
    return " ".join(parts)


def not_measured_lines(f: CaseFindings) -> list[str]:
    return [f"{nm.finding}: {nm.reason}" for nm in f.not_measured]


def findings_table(f: CaseFindings) -> list[tuple[str, str]]:
    """(finding, value) rows for the tables of the Markdown and HTML reports (values formatted here)."""
    rows: list[tuple[str, str]] = [("Modality", _MODALITY_NAMES.get(f.modality, f.modality))]
    if f.pixel_spacing_mm is not None:
        rows.append(("Pixel spacing", " × ".join(f"{v:g}" for v in f.pixel_spacing_mm) + " mm"))
    else:
        rows.append(("Pixel spacing", "unknown (sizes in pixels)"))
    lesion = f.lesion
    if lesion is not None:
        u = lesion.unit
        rows += [
            ("Lesion count", f"{lesion.count} (components of at least {lesion.min_component_px} pixels)"),
            ("Area" if lesion.slice_index is None else "Largest axial cross-section", fmt_area(lesion.area, u)),
            ("Longest diameter", fmt_length(lesion.longest_diameter, u)),
            ("Perpendicular diameter", fmt_length(lesion.perpendicular_diameter, u)),
            ("Border irregularity", f"{lesion.border_irregularity:.2f} ({IRREGULARITY_NOTE})"),
            ("Solidity", f"{lesion.solidity:.2f} (area / convex hull area)"),
        ]
        a = lesion.asymmetry
        if a is not None:
            detail = f"shape index {a.shape_index[0]:.2f} / {a.shape_index[1]:.2f}"
            if a.mirror_colour_index is not None:
                detail += f"; mirror colour ΔE {a.mirror_colour_index[0]:.1f} / {a.mirror_colour_index[1]:.1f}"
            elif a.colour_index is not None:
                detail += f"; colour ΔE {a.colour_index[0]:.1f} / {a.colour_index[1]:.1f}"
            if a.index is not None:
                detail += f"; asymmetry index {a.index:.2f}"
            rows.append(("Asymmetry (PH2 scale 0-2)", f"{a.score} ({detail}; axes at {a.axis_angles_deg[0]:.0f}° "
                                                       f"and {a.axis_angles_deg[1]:.0f}°)"))
    if f.colours is not None:
        fr = dict(f.colours.fractions)
        present = ", ".join(f"{c} ({fmt_percent(fr[c])} of the area)" for c in f.colours.present) or "none"
        rows.append(("Dermoscopic colours", present))
        absent = [c for c in DERMOSCOPIC_COLOURS if c not in f.colours.present]
        if absent:
            rows.append(("Colours not found", ", ".join(absent)))
    if f.ultrasound is not None:
        us = f.ultrasound
        rows += [
            ("BI-RADS shape", f"{us.shape} (minor/major axis ratio {us.axis_ratio:.2f})"),
            ("BI-RADS orientation", f"{us.orientation} (height/width {us.height_width_ratio:.2f})"),
            ("BI-RADS margin", us.margin),
        ]
    if f.ct is not None:
        ct = f.ct
        rows.append(("Mean attenuation", f"{fmt_hu(ct.mean_hu)} (SD {ct.hu_std:.0f} HU)"))
        if ct.volume_mm3 is not None:
            rows.append(("Volume", f"{ct.volume_mm3:.0f} mm³ ({ct.volume_category})"))
        if ct.mean_diameter_mm is not None:
            rows.append(("Mean diameter", f"{ct.mean_diameter_mm:.1f} mm (Fleischner category {ct.size_category})"))
    seg = f.segmentation
    if seg is not None:
        bits = []
        if seg.status:
            bits.append(f"status {seg.status}")
        if seg.reliability is not None:
            bits.append(f"reliability {seg.reliability:.2f}")
        if seg.model:
            bits.append(f"model {seg.model}")
        if seg.prompt:
            bits.append(f"prompt “{seg.prompt}”")
        rows.append(("Segmentation", ", ".join(bits) or seg.source))
    else:
        rows.append(("Segmentation", "mask given by the user (no reliability estimate)"))
    dx = f.diagnosis
    if dx is None:
        rows.append(("Diagnosis", "no diagnosis was run"))
    else:
        probs = ", ".join(f"{readable(c)} {fmt_percent(p)}" for c, p in dx.probabilities)
        rows.append(("Diagnosis", f"{readable(dx.label)} ({probs})"))
        if dx.malignant_probability is not None:
            rows.append(("Malignant probability", fmt_percent(dx.malignant_probability)))
    return rows


# -------------------------------------------------------------------------------------------------------
# Markdown
# -------------------------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]#|~])")


def md_escape(text: str) -> str:
    """Escape Markdown and inline-HTML syntax in a string that came from an input (file name, tag, prose):
    ``& < >`` become entities (no HTML survives), other Markdown punctuation is backslash-escaped."""
    text = text.replace("\r", " ").replace("\n", " ")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def llm_note(record: ReportRecord) -> str | None:
    o = record.llm
    if o.status == "accepted":
        return f"Prose written by the language model {o.model} and checked against the measured findings."
    if o.status in ("rejected", "failed", "skipped"):
        return f"The language model's prose was not used ({o.status}: {o.reason}); the template text stands."
    return None


def markdown_report(record: ReportRecord) -> str:
    f = record.findings
    lines = [
        f"# Lesion report: {md_escape(f.case_id)}",
        "",
        f"- Image: {md_escape(f.image)}",
        f"- Mask: {md_escape(f.mask) if f.mask else '(none)'}",
        f"- Report schema {record.schema_version}",
        "",
        "## Findings",
        "",
        md_escape(record.narrative),
        "",
    ]
    note = llm_note(record)
    if note:
        lines += [f"*{md_escape(note)}*", ""]
    lines += ["| Finding | Value |", "| --- | --- |"]
    lines += [f"| {k} | {md_escape(v)} |" for k, v in findings_table(f)]
    lines += ["", "## Not measured", ""]
    lines += [f"- {line}" for line in not_measured_lines(f)] or ["- (nothing)"]
    lines += ["", "## Definitions", ""]
    lines += [f"- {d}" for d in definitions(f.modality)]
    lines += ["", "---", "", DISCLAIMER, ""]
    return "\n".join(lines)


def definitions(modality: str | None = None) -> tuple[str, ...]:
    """How each finding is defined (the thresholds are those of the default models); with ``modality``, only
    the definitions that apply to it."""
    from radvlsm.reporting.asymmetry import DEFAULT_ASYMMETRY_MODEL as A

    if A.colour_weight is not None:
        asym = (
            "Asymmetry (dermoscopy): about each principal axis, the shape index (share of the area that does not "
            "overlap the lesion's mirror image) plus "
            f"{A.colour_weight:.4g} × the mirror colour index (mean ΔE between each point and its mirror image, "
            f"colours smoothed over {100 * A.colour_sigma:g}% of the lesion radius) gives the axis index; the two "
            "axes' sum is the asymmetry index: "
            f"score 0 up to {A.cuts[0]:.2f}, 1 up to {A.cuts[1]:.2f}, 2 above (PH2 scale); the asymmetric axes "
            "are the most asymmetric ones. Without colour, an axis is asymmetric when more than "
            f"{100 * A.shape_threshold:.3g}% of its area does not overlap its mirror image."
        )
    else:
        asym = (
            "Asymmetry (dermoscopy): about each principal axis, the lesion counts as asymmetric when more than "
            f"{100 * A.shape_threshold:.3g}% of its area does not overlap its mirror image; the score is the number "
            "of asymmetric axes (PH2 scale)."
        )
    general = (
        "Lesion count: connected regions of the mask at least as large as the stated minimum.",
        "Longest diameter: the largest distance across the lesion (maximum Feret diameter); perpendicular "
        "diameter: the lesion's extent at right angles to it.",
        "Border irregularity: 1 minus the ratio of the convex hull's perimeter to the (lightly smoothed) "
        "outline's perimeter.",
    )
    specific = {
        "dermoscopy": (
            asym,
            "Colours (dermoscopy): each lesion pixel is assigned to the nearest of six reference colours or to "
            "skin in CIELAB (the shares given); hair and glare are left out; whether a colour is present is "
            "decided by a per-colour logistic model on colour measurements of the lesion, fitted to expert "
            "annotations (PH2), or, for a colour without one, by its share reaching a threshold.",
        ),
        "ultrasound": (
            "BI-RADS descriptors (ultrasound): from the outline only; the image top is taken as the skin "
            "surface.",
        ),
        "ct": (
            "Size category (CT): Fleischner Society 2017, from the mean of the longest and perpendicular "
            "diameters (rounded to the nearest mm).",
        ),
    }
    if modality is None:
        return general + tuple(d for v in specific.values() for d in v)
    return general + specific.get(modality, ())

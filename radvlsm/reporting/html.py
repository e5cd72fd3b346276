"""Self-contained HTML: one page per case (overlay embedded as a base64 PNG) and the batch index.

Every string that comes from an input (file names, case ids, DICOM tags, class labels, LLM prose) goes through
:func:`esc` (``html.escape`` with quotes); links are percent-encoded. The pages load nothing from anywhere:
a Content-Security-Policy forbids every external resource, and the index allows only its own inline script
(pinned by its SHA-256), so even an unescaped ``<script>`` could not run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from radvlsm.reporting.records import ReportRecord
from radvlsm.reporting.text import (
    DISCLAIMER,
    definitions,
    findings_table,
    fmt_length,
    fmt_percent,
    llm_note,
    not_measured_lines,
    readable,
)

_STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2327;max-width:1100px;
margin:24px auto;padding:0 16px;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:22px 0 8px;border-bottom:1px solid #dde3e8}
.meta{color:#55616b;font-size:13px;word-break:break-all}
.grid{display:flex;gap:24px;flex-wrap:wrap;align-items:flex-start}
.pic{flex:1 1 420px;max-width:560px}.pic img{width:100%;border:1px solid #ccd4da;border-radius:4px}
.legend{font-size:12px;color:#55616b}.txt{flex:1 1 380px}
table{border-collapse:collapse;width:100%;font-size:14px}
td,th{border-bottom:1px solid #e6eaee;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f3f6f8}.narr{background:#f7f9fb;border-left:4px solid #3b7dd8;padding:10px 14px}
.note{font-size:13px;color:#55616b}.warn{color:#8a4b00}
footer{margin-top:28px;font-size:12px;color:#55616b;border-top:1px solid #dde3e8;padding-top:8px}
ul{margin:4px 0;padding-left:20px}
"""

_CASE_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_INDEX_SCRIPT = """
function sortBy(col, num) {
  const body = document.querySelector('#cases tbody');
  const rows = Array.from(body.rows);
  const th = document.querySelectorAll('#cases th')[col];
  const asc = th.dataset.dir !== 'asc';
  document.querySelectorAll('#cases th').forEach(h => { h.dataset.dir = ''; });
  th.dataset.dir = asc ? 'asc' : 'desc';
  const key = r => r.cells[col].dataset.v;
  rows.sort((a, b) => {
    let x = key(a), y = key(b);
    if (num) { x = x === '' ? -1 : parseFloat(x); y = y === '' ? -1 : parseFloat(y); }
    return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
  });
  rows.forEach(r => body.appendChild(r));
}
document.querySelectorAll('#cases th[data-col]').forEach(th => th.addEventListener('click',
  () => sortBy(+th.dataset.col, th.dataset.num === '1')));
"""
_INDEX_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-"
              + base64.b64encode(hashlib.sha256(_INDEX_SCRIPT.encode()).digest()).decode() + "'")


def esc(text: object) -> str:
    """HTML-escape any value (quotes included)."""
    return html.escape(str(text), quote=True)


def href(path: str) -> str:
    """A relative link, percent-encoded (then attribute-escaped)."""
    return esc(urllib.parse.quote(path, safe="/"))


def data_uri(png: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(png).decode('ascii')}"


def _page(title: str, body: str, csp: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<meta name=\"generator\" content=\"radvlsm\"><title>{title}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def case_html(record: ReportRecord, overlay_png: bytes | None) -> str:
    """The case's page. ``overlay_png``: the picture (PNG bytes) or ``None`` when there is none."""
    f = record.findings
    parts = [f"<h1>Lesion report: {esc(f.case_id)}</h1>",
             f"<div class=\"meta\">Image: {esc(f.image)}<br>Mask: {esc(f.mask or '(none)')}"
             f"<br>Report schema {esc(record.schema_version)}</div>",
             "<div class=\"grid\">"]
    if overlay_png is not None:
        legend = "Green: lesion outline. Yellow: longest diameter. Cyan: perpendicular diameter."
        if f.lesion is not None and f.lesion.slice_index is not None:
            legend += f" Axial slice {f.lesion.slice_index}."
        parts.append(f"<div class=\"pic\"><img alt=\"{esc(f.case_id)} with the lesion outline\" "
                     f"src=\"{data_uri(overlay_png)}\"><div class=\"legend\">{legend}</div></div>")
    parts.append("<div class=\"txt\"><h2>Findings</h2>")
    parts.append(f"<p class=\"narr\">{esc(record.narrative)}</p>")
    note = llm_note(record)
    if note:
        cls = "note" if record.llm.status == "accepted" else "note warn"
        parts.append(f"<p class=\"{cls}\">{esc(note)}</p>")
    parts.append("<table><thead><tr><th>Finding</th><th>Value</th></tr></thead><tbody>")
    parts += [f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in findings_table(f)]
    parts.append("</tbody></table></div></div>")
    parts.append("<h2>Not measured</h2><ul>")
    parts += [f"<li>{esc(line)}</li>" for line in not_measured_lines(f)] or ["<li>(nothing)</li>"]
    parts.append("</ul><h2>Definitions</h2><ul>")
    parts += [f"<li>{esc(d)}</li>" for d in definitions(f.modality)]
    parts.append(f"</ul><footer>{esc(DISCLAIMER)}</footer>")
    return _page(f"Lesion report: {esc(f.case_id)}", "".join(parts), _CASE_CSP)


@dataclass(frozen=True)
class IndexRow:
    """One case in the index: its record, its report page (relative link) and a thumbnail (JPEG/PNG bytes)."""

    record: ReportRecord
    page: str
    thumbnail: bytes | None
    thumbnail_mime: str = "image/jpeg"


def _summary(record: ReportRecord) -> str:
    f = record.findings
    if f.lesion is None:
        return "no lesion in the mask"
    bits = [f"{f.lesion.count} lesion{'s' if f.lesion.count != 1 else ''}",
            fmt_length(f.lesion.longest_diameter, f.lesion.unit)]
    if f.lesion.asymmetry is not None:
        bits.append(f"asymmetry {f.lesion.asymmetry.score}")
    if f.colours is not None:
        bits.append(", ".join(f.colours.present) or "no colour")
    if f.ultrasound is not None:
        bits.append(f"{f.ultrasound.shape}, {f.ultrasound.orientation}, {f.ultrasound.margin}")
    if f.ct is not None:
        bits.append(f"{f.ct.mean_hu:.0f} HU")
        if f.ct.size_category:
            bits.append(f.ct.size_category)
    return "; ".join(bits)


def index_html(rows: Sequence[IndexRow], errors: Sequence[tuple[str, str]] = ()) -> str:
    """The batch page: one row per case, thumbnails, click a header to sort (malignant probability first)."""
    head = [("Picture", None), ("Case", "0"), ("Modality", "0"), ("Findings", None), ("Reliability", "1"),
            ("Diagnosis", "0"), ("Malignant probability", "1"), ("Text", "0")]
    ths = []
    for i, (name, num) in enumerate(head):
        if num is None:
            ths.append(f"<th>{name}</th>")
        else:
            ths.append(f"<th data-col=\"{i}\" data-num=\"{num}\" style=\"cursor:pointer\" "
                       f"title=\"click to sort\">{name} ⇅</th>")
    body = []
    ordered = sorted(rows, key=lambda r: (-(r.record.findings.diagnosis.malignant_probability or -1.0)
                                          if r.record.findings.diagnosis else 1.0, r.record.findings.case_id))
    for r in ordered:
        f = r.record.findings
        dx = f.diagnosis
        mal = dx.malignant_probability if dx is not None else None
        rel = f.segmentation.reliability if f.segmentation is not None else None
        thumb = (f"<a href=\"{href(r.page)}\"><img alt=\"\" style=\"max-width:140px;max-height:110px\" "
                 f"src=\"{data_uri(r.thumbnail, r.thumbnail_mime)}\"></a>") if r.thumbnail else ""
        body.append(
            "<tr>"
            f"<td>{thumb}</td>"
            f"<td data-v=\"{esc(f.case_id)}\"><a href=\"{href(r.page)}\">{esc(f.case_id)}</a></td>"
            f"<td data-v=\"{esc(f.modality)}\">{esc(f.modality)}</td>"
            f"<td>{esc(_summary(r.record))}</td>"
            f"<td data-v=\"{'' if rel is None else f'{rel:.4f}'}\">{'—' if rel is None else f'{rel:.2f}'}</td>"
            f"<td data-v=\"{esc(readable(dx.label)) if dx else ''}\">"
            f"{esc(readable(dx.label)) if dx else 'no diagnosis was run'}</td>"
            f"<td data-v=\"{'' if mal is None else f'{mal:.4f}'}\">{'—' if mal is None else fmt_percent(mal)}</td>"
            f"<td data-v=\"{esc(r.record.llm.status)}\">{'LLM prose' if r.record.prose else 'template'}</td>"
            "</tr>"
        )
    parts = [
        "<h1>Lesion reports</h1>",
        f"<p class=\"meta\">{len(rows)} case(s). Click a column header to sort; the table starts sorted by "
        "malignant probability, highest first.</p>",
        "<table id=\"cases\"><thead><tr>" + "".join(ths) + "</tr></thead><tbody>" + "".join(body)
        + "</tbody></table>",
    ]
    if errors:
        parts.append("<h2>Cases without a report</h2><table><thead><tr><th>Input</th><th>Reason</th></tr></thead>"
                     "<tbody>" + "".join(f"<tr><td>{esc(a)}</td><td>{esc(b)}</td></tr>" for a, b in errors)
                     + "</tbody></table>")
    parts.append(f"<footer>{esc(DISCLAIMER)}</footer><script>{_INDEX_SCRIPT}</script>")
    return _page("Lesion reports", "".join(parts), _INDEX_CSP)

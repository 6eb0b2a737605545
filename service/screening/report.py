"""report.html: the screening of a population as one self-contained page for the team that asked.

A nephrology service or a quality team opens it from a folder or a mail, with no network: the
charts are inline SVG drawn here (Vega-Lite through vl-convert), the page carries no script and
a Content-Security-Policy that allows nothing to be fetched. It says what was screened, the most
likely type and its grade across the population, the latest Ca x P against the threshold the
rules use (and how many patients have none: unknown is not normal), the work-up still missing
by test, and the highest-graded patients with the values behind their grade. A grade is worded
as a suspicion, never as a diagnosis. Every text from the rows or the run is escaped.

`run_facts` (a mapping; every key optional, a missing one reads "not stated"):
    source           what was screened: the export folder, the Bundle folder or the FHIR server URL
    run_at           when the run was made (datetime or ISO 8601 text)
    evaluation_time  the instant the rules assessed every patient at (datetime or ISO 8601 text)
    engine           "local" or "spark" (with the Spark master, if wanted: "spark (local[2])")
    patients         patients screened (default: the rows counted)
    issues           problems found in the input: lines or resources not read or not used, as
                     written to issues.ndjson
    seconds          how long the run took
    version          the service version (default: this one)
Other keys are ignored.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..bibliography import load_bibliography
from ..version import __version__
from . import report_charts
from .report_tally import PatientLine, ReportTally, report_data, tally

RUN_FACTS: dict[str, str] = {
    "source": "Source",
    "run_at": "Date of the run",
    "evaluation_time": "Evaluation instant",
    "engine": "Engine",
    "patients": "Patients screened",
    "issues": "Problems found in the data",
    "seconds": "Run time",
    "version": "Rule service version",
}
NOT_STATED = "not stated"

STYLE = """
:root { color-scheme: light; --ink: #101828; --muted: #475467; --line: #d0d5dd; --soft: #f2f4f7; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: #fff; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 26px; margin: 0 0 6px; }
h2 { font-size: 19px; margin: 34px 0 10px; padding-top: 10px; border-top: 1px solid var(--line); }
p, li { max-width: 78ch; }
.lede { color: var(--muted); margin-top: 0; }
.caution { border-left: 4px solid #dc6803; background: #fffaeb; padding: 8px 12px; max-width: none; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; padding: 0; margin: 16px 0 0; list-style: none; }
.figures li { flex: 1 1 150px; border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.figures strong { display: block; font-size: 24px; }
.figures span { color: var(--muted); font-size: 13px; }
figure { margin: 12px 0; padding-left: 40px; overflow-x: auto; }
figure svg { max-width: 100%; height: auto; overflow: visible; }
figcaption { color: var(--muted); font-size: 13px; }
table { border-collapse: collapse; margin: 10px 0; font-size: 14px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 9px; text-align: left; vertical-align: top; }
thead th { background: var(--soft); position: sticky; top: 0; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.id { overflow-wrap: anywhere; min-width: 14ch; max-width: 38ch; font-family: ui-monospace, monospace; font-size: 12px; }
td small { display: block; color: var(--muted); font-size: 12px; white-space: nowrap; }
.unknown { color: #b54708; font-style: italic; }
.grade { display: inline-block; padding: 0 7px; border-radius: 10px; font-weight: 600; font-size: 13px; }
.grade-high { background: #fee4e2; color: #912018; }
.grade-moderate { background: #fef0c7; color: #93370d; }
.grade-low { background: #fefbe8; color: #854a0e; }
.grade-negligible, .grade-none { background: var(--soft); color: var(--muted); }
.tests { font-size: 13px; }
.above { font-weight: 700; color: #912018; }
.scroll { overflow-x: auto; }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); white-space: nowrap; }
footer { margin-top: 40px; color: var(--muted); font-size: 13px; }
"""


def render_report(rows: Iterable[Mapping[str, Any]], run_facts: Mapping[str, Any] | None = None) -> str:
    """The whole page for `rows` (summary rows, read once) and the facts of the run."""
    return render_tallied(tally(rows), run_facts)


def render_tallied(counts: ReportTally, run_facts: Mapping[str, Any] | None = None) -> str:
    """The whole page for the rows `counts` has tallied, and the facts of the run."""
    facts = dict(run_facts or {})
    style = STYLE.strip()
    policy = ("default-src 'none'; " f"style-src '{_sha256(style)}'; "
              "img-src 'none'; base-uri 'none'; form-action 'none'")
    threshold = _number(counts.threshold)
    unit = report_data()["ca_x_p_threshold"]["unit"]
    parts = [
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n',  # constants and a digest only
        '<meta name="referrer" content="no-referrer">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f"<title>Calcinosis cutis screening: {counts.patients} patients</title>\n",
        f"<style>{style}</style>\n</head>\n<body>\n<main>\n",
        "<header><h1>Calcinosis cutis screening</h1>\n",
        "<p class=\"lede\">Each patient's record was assessed by the calcinosis-cds rule library at the "
        "evaluation instant below, with the same rules as a single-patient assessment.</p>\n",
        "<p class=\"caution\">A grade is a suspicion to be checked by a clinician, not a diagnosis: "
        "&ldquo;graded high for metastatic calcinosis cutis&rdquo; means the record matches what the rules "
        "look for, not that the patient has the condition.</p></header>\n",
        _run_section(counts, facts, threshold, unit),
        _grades_section(counts),
        _ca_x_p_section(counts, threshold, unit),
        _gaps_section(counts, threshold),
        _top_section(counts, threshold),
        _sources_section(threshold, unit),
        "<footer>Every patient, with the same values, is in summary.csv and summary.parquet beside this page; "
        "the problems found in the data are in issues.ndjson, each with its file and line.</footer>\n",
        "</main>\n</body>\n</html>\n",
    ]
    return "".join(parts)


def write_report(rows: Iterable[Mapping[str, Any]], out_path: Path, run_facts: Mapping[str, Any] | None = None) -> None:
    """Write report.html to `out_path` (whole or not at all: a reader never sees half a page)."""
    write_tallied(tally(rows), out_path, run_facts)


def write_tallied(counts: ReportTally, out_path: Path, run_facts: Mapping[str, Any] | None = None) -> None:
    """`write_report` for rows already tallied (`counts`)."""
    out_path = Path(out_path)
    page = render_tallied(counts, run_facts)
    temporary = out_path.with_name(out_path.name + ".tmp")
    temporary.write_text(page, encoding="utf-8")
    os.replace(temporary, out_path)


# ---- sections -------------------------------------------------------------------------------

def _run_section(counts: ReportTally, facts: Mapping[str, Any], threshold: str, unit: str) -> str:
    values = {key: _fact(facts.get(key)) for key in RUN_FACTS}
    if facts.get("patients") is None:
        values["patients"] = str(counts.patients)
    elif _fact(facts["patients"]) != str(counts.patients):
        values["patients"] += f" ({counts.patients} in the summary)"
    if facts.get("seconds") is not None:
        values["seconds"] = _seconds(facts["seconds"])
    if facts.get("version") is None:
        values["version"] = __version__
    if facts.get("issues") is not None:
        values["issues"] += " (lines or resources not read or not used; listed in issues.ndjson)"
    items = "".join(f"<dt>{_e(label)}</dt><dd>{_e(values[key])}</dd>" for key, label in RUN_FACTS.items())
    high = sum(n for (kind, grade), n in counts.by_type_grade.items() if grade == "high")
    figures = [
        (counts.patients, "patients screened"),
        (high, "graded high for their most likely type"),
        (counts.at_or_above, f"with a latest Ca x P at or above {threshold} {unit}"),
        (counts.no_ca_x_p, "with no Ca x P (calcium or phosphate missing): unknown, not normal"),
        (counts.with_gaps, "still needing at least one test of the work-up"),
        (counts.with_data_problems, "with a problem in their data"),
    ]
    tiles = "".join(f"<li><strong>{n}</strong><span>{_e(text)}</span></li>" for n, text in figures)
    return (f'<section id="run"><h2>What was screened</h2>\n<dl class="facts">{items}</dl>\n'
            f'<ul class="figures" id="figures">{tiles}</ul></section>\n')


def _grades_section(counts: ReportTally) -> str:
    head = ("<section id=\"grades\"><h2>Most likely type and its grade</h2>\n"
            "<p>Each patient is counted once, under the type the rules graded most likely for them and that type's "
            "grade. Patients with no type graded had no grade from the rules.</p>\n")
    if not counts.patients:
        return head + "<p class=\"unknown\">No patient was screened.</p></section>\n"
    columns = counts.grade_columns()
    header = "".join(f'<th class="n" scope="col">{_e(report_charts.grade_label(g))}</th>' for g in columns)
    body = []
    for kind in counts.type_rows():
        cells = [counts.by_type_grade[(kind, grade)] for grade in columns]
        body.append(f'<tr><th scope="row">{_e(report_charts.type_label(kind))}</th>'
                    + "".join(f'<td class="n">{n}</td>' for n in cells) + f'<td class="n">{sum(cells)}</td></tr>')
    totals = [sum(counts.by_type_grade[(kind, grade)] for kind in counts.type_rows()) for grade in columns]
    body.append('<tr><th scope="row">all types</th>' + "".join(f'<td class="n">{n}</td>' for n in totals)
                + f'<td class="n">{counts.patients}</td></tr>')
    table = (f'<table id="grades-table"><caption class="sr">Patients by most likely type (rows) and grade '
             f'(columns)</caption><thead><tr><th scope="col">most likely type</th>{header}'
             f'<th class="n" scope="col">all grades</th></tr></thead><tbody>{"".join(body)}</tbody></table>\n')
    return (head + _figure(report_charts.grades_spec(counts), "grades",
                           "Patients by most likely type, each bar split by grade.") + table + "</section>\n")


def _ca_x_p_section(counts: ReportTally, threshold: str, unit: str) -> str:
    head = (f'<section id="ca-x-p"><h2>Latest calcium x phosphate product</h2>\n'
            f"<p>The product of the calcium and the phosphate the rules used for each patient (their latest "
            f"results in the lookback), in {_e(unit)}. The dashed line marks {threshold} {_e(unit)}, the threshold "
            f"the rules use (see Sources).</p>\n")
    if counts.ca_x_p_values:
        share = f" ({_percent(counts.at_or_above, counts.ca_x_p_values)} of those with a product)"
        summary = (f'<p id="ca-x-p-summary"><strong class="above">{counts.at_or_above}</strong> of the '
                   f"{counts.ca_x_p_values} patients with a Ca x P are at or above {threshold} {_e(unit)}{share}; "
                   f"{counts.above} of them are above it, which the rules count as exceeding it.</p>\n")
    else:
        summary = '<p id="ca-x-p-summary">No patient has a Ca x P.</p>\n'
    unknown_parts = [(counts.no_calcium_only, "no calcium"), (counts.no_phosphate_only, "no phosphate"),
                     (counts.no_calcium_nor_phosphate, "neither calcium nor phosphate"),
                     (counts.both_known_no_product, "both known but no product computed by the rules")]
    detail = "; ".join(f"{n} with {what}" for n, what in unknown_parts if n)
    unknown = (f'<p id="ca-x-p-unknown"><strong>{counts.no_ca_x_p}</strong> patients have no Ca x P because a '
               f"calcium or a phosphate result is missing or could not be used"
               f"{': ' + _e(detail) if detail else ''}. Their product is unknown, not normal: they are not in the "
               f"chart and may still be above the threshold.</p>\n")
    figure = _figure(report_charts.ca_x_p_spec(counts), "ca-x-p",
                     f"Patients by latest Ca x P, in bins {_number(counts.bin_width)} {_e(unit)} wide; the last bin holds "
                     f"every product of {_number(counts.upper)} and above.")
    bins = "".join(f'<tr><td>{_e(b.label)}</td><td class="n">{b.patients}</td></tr>' for b in counts.histogram())
    table = ("" if not counts.ca_x_p_values else
             f'<details><summary>The counts of the chart</summary><table id="ca-x-p-bins"><thead><tr>'
             f'<th scope="col">Ca x P ({_e(unit)})</th><th class="n" scope="col">patients</th></tr></thead>'
             f"<tbody>{bins}</tbody></table></details>\n")
    return head + summary + unknown + figure + table + "</section>\n"


def _gaps_section(counts: ReportTally, threshold: str) -> str:
    head = ('<section id="gaps"><h2>Work-up gaps</h2>\n'
            "<p>The tests of the work-up the rules still recommend: no current valid result and none already "
            f"ordered. {counts.with_gaps} of {counts.patients} patients still need at least one.</p>\n")
    rows = counts.gap_rows()
    if not rows:
        return head + "<p>No test of the work-up is missing.</p></section>\n"
    body = "".join(f'<tr><td>{_e(test)}</td><td class="n">{n}</td><td class="n">{above}</td></tr>'
                   for test, n, above in rows)
    table = (f'<table id="gaps-table"><thead><tr><th scope="col">test</th><th class="n" scope="col">patients still '
             f'needing it</th><th class="n" scope="col">of them with Ca x P at or above {threshold}</th></tr></thead>'
             f"<tbody>{body}</tbody></table>\n")
    return head + _figure(report_charts.gaps_spec(counts), "gaps", "Patients still needing each test.") + table + "</section>\n"


def _top_section(counts: ReportTally, threshold: str) -> str:
    top = counts.top()
    head = (f'<section id="top"><h2>The {counts.top_size} highest-graded patients</h2>\n'
            f"<p>Ordered by the grade of their most likely type, then by Ca x P (highest first; unknown last). "
            f"{'All ' + str(len(top)) + ' patients are shown.' if len(top) == counts.patients else f'{len(top)} of {counts.patients} shown; the others are in summary.csv.'}"
            f"</p>\n")
    if not top:
        return head + "<p class=\"unknown\">No patient was screened.</p></section>\n"
    body = "".join(_patient_row(index, line, counts.threshold) for index, line in enumerate(top, start=1))
    table = ('<div class="scroll"><table id="top-table"><thead><tr><th class="n" scope="col">#</th>'
             '<th scope="col">patient</th><th scope="col">graded</th><th class="n" scope="col">Ca (mg/dL)</th>'
             '<th class="n" scope="col">P (mg/dL)</th><th class="n" scope="col">Ca x P (mg2/dL2)</th>'
             '<th class="n" scope="col">eGFR (mL/min/1.73 m2)</th><th scope="col">tests still needed</th>'
             f'<th class="n" scope="col">data problems</th></tr></thead><tbody>{body}</tbody></table></div>\n')
    return head + table + "</section>\n"


def _patient_row(rank: int, line: PatientLine, threshold: float) -> str:
    if line.top_grade is None:
        graded = '<span class="grade grade-none">not graded</span>'
    else:
        kind = f" for {line.top_type} calcinosis cutis" if line.top_type else ""
        css = line.top_grade if line.top_grade in report_data()["grades"] else "none"
        graded = f'graded <span class="grade grade-{_e(css)}">{_e(line.top_grade)}</span>{_e(kind)}'
    product_class = " above" if line.ca_x_p is not None and line.ca_x_p >= threshold else ""
    tests = _e(", ".join(line.missing_tests)) if line.missing_tests else "none"
    return (f'<tr><td class="n">{rank}</td><td class="id">{_e(line.patient_id) or "<span class=unknown>no id</span>"}</td>'
            f"<td>{graded}</td>{_value_cell(line.calcium, line.calcium_date)}"
            f"{_value_cell(line.phosphate, line.phosphate_date)}"
            f"{_value_cell(line.ca_x_p, line.ca_x_p_date, product_class, _product_text(line.ca_x_p, threshold))}"
            f"{_value_cell(line.egfr, line.egfr_date)}"
            f'<td class="tests">{tests}</td><td class="n">{line.data_problems}</td></tr>')


def _value_cell(value: float | None, day: str | None, extra_class: str = "", text: str | None = None) -> str:
    if value is None:
        return '<td class="n"><span class="unknown">not known</span></td>'
    when = f'<small>{_e(day)}</small>' if day else '<small class="unknown">date not known</small>'
    return f'<td class="n{extra_class}">{_e(text or _value(value))}{when}</td>'


def _product_text(value: float | None, threshold: float) -> str | None:
    """Ca x P as the rule library writes it: one decimal, two within 0.5 of the threshold (so that 69.96
    does not read "70.0"), every digit when two still read exactly the threshold."""
    if value is None or abs(value - threshold) >= 0.5:
        return None
    if round(value, 2) == threshold and value != threshold:
        return repr(value)
    return f"{value:.2f}"


def _sources_section(threshold: str, unit: str) -> str:
    cited = report_data()["ca_x_p_threshold"]["citation"]
    citation = load_bibliography().citation(cited["source"], cited["section"], cited["quote"])
    link = (f' Available at <a href="{_e(citation.url)}" rel="noopener noreferrer">{_e(citation.url)}</a>.'
            if citation.url and citation.url.startswith("https://") else "")
    return ('<section id="sources"><h2>Sources</h2>\n'
            f'<p id="threshold-source">The Ca x P threshold of {threshold} {_e(unit)} rests on: {_e(citation.reference)} '
            f"Section {_e(citation.section)}: &ldquo;{_e(citation.quote)}&rdquo;{link}</p>\n"
            "<p>No guideline behind the number was found; it is the source's threshold. The rules flag a product "
            f"that exceeds {threshold}; this page also counts a product of exactly {threshold} with those at or above "
            "it, so that none is missed.</p></section>\n")


# ---- pieces ---------------------------------------------------------------------------------

def _figure(spec: Mapping[str, Any] | None, name: str, caption: str) -> str:
    if spec is None:
        return ""
    return (f'<figure id="{name}-chart" aria-label="{_e(spec.get("description", caption))}">'
            f"{report_charts.svg(spec, name)}<figcaption>{_e(caption)}</figcaption></figure>\n")


def _fact(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return NOT_STATED
    if isinstance(value, datetime):
        moment = value if value.tzinfo is None else value.astimezone(timezone.utc)
        return moment.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if value.tzinfo is not None else "")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _seconds(value: Any) -> str:
    try:
        return f"{float(value):.1f} s"
    except (TypeError, ValueError):
        return _fact(value)


def _value(value: float) -> str:
    return f"{value:.1f}" if abs(value) >= 10 or value == int(value) else f"{value:.2f}".rstrip("0")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "0%"


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)

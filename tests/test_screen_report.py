"""report.html, the screening report: its counts, its histogram and threshold line, the order of its
top table, its escaping, its self-containment (no URL but the citation's, a strict CSP), empty and
None-heavy inputs, a large population kept small, and the page in headless Chromium."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import shutil
from datetime import datetime, timezone
from html import unescape
from pathlib import Path

import pytest

from service.assessment_model import RISK_ORDER
from service.bibliography import load_bibliography
from service.screening import report_tally
from service.screening.report import render_report, write_report
from service.screening.report_charts import ca_x_p_spec, gaps_spec, grades_spec
from service.screening.report_tally import report_data, tally
from tests.conftest import PROJECT_ROOT
from tests.support.report_population import synthetic_rows

LIBRARY = (PROJECT_ROOT / "service" / "knowledge" / "CalcinosisCutis.cql").read_text(encoding="utf-8")
FACTS = {"source": "/exports/q4", "run_at": datetime(2026, 11, 15, 9, 12, tzinfo=timezone.utc),
         "evaluation_time": "2026-11-15T09:00:00Z", "engine": "local", "issues": 3}


def row(patient_id: str, grade: str | None = None, kind: str | None = "metastatic", ca_x_p: float | None = None,
        **values) -> dict:
    """A summary row; calcium and phosphate are set so that their product is `ca_x_p` unless given."""
    base = {"patient_id": patient_id, "top_type": kind if grade else None, "top_grade": grade,
            "calcium": None, "calcium_date": None, "phosphate": None, "phosphate_date": None,
            "ca_x_p": ca_x_p, "ca_x_p_date": None, "egfr": None, "egfr_date": None,
            "missing_tests": [], "data_problems": 0}
    if ca_x_p is not None:
        base.update(calcium=10.0, calcium_date="2026-11-01", phosphate=ca_x_p / 10, phosphate_date="2026-11-01",
                    ca_x_p_date="2026-11-01")
    base.update(values)
    return base


def top_table_ids(page: str) -> list[str]:
    table = page[page.index('id="top-table"'):]
    table = table[:table.index("</table>")]
    return [unescape(cell) for cell in re.findall(r'<td class="id">(.*?)</td>', table)]


def section(page: str, name: str) -> str:
    start = page.index(f'<section id="{name}"')
    return page[start:page.index("</section>", start)]


def bars(svg_text: str) -> dict[float, int]:
    """The histogram's bars as the SVG labels them for a screen reader: bin start -> patients."""
    found = {}
    for label in re.findall(r'aria-label="latest Ca x P \(mg2/dL2\): ([0-9.]+); patients: (\d+);', svg_text):
        found[float(label[0])] = int(label[1])
    return found


# ---- counts -------------------------------------------------------------------------------------

def test_counts_by_type_and_grade_for_known_rows():
    rows = [row("a", "high"), row("b", "high"), row("c", "moderate", kind="dystrophic"),
            row("d", "negligible", kind="idiopathic"), row("e"), row("f", "low", kind="calciphylaxis")]
    counts = tally(rows)
    assert counts.patients == 6
    assert counts.by_type_grade[("metastatic", "high")] == 2
    assert counts.by_type_grade[("dystrophic", "moderate")] == 1
    assert counts.by_type_grade[(None, None)] == 1
    assert counts.grade_columns() == ["high", "moderate", "low", "negligible", None]

    page = render_report(rows, FACTS)
    grades = section(page, "grades")
    metastatic = re.search(r"<th scope=\"row\">metastatic</th>(.*?)</tr>", grades).group(1)
    assert re.findall(r'<td class="n">(\d+)</td>', metastatic) == ["2", "0", "0", "0", "0", "2"]
    totals = re.search(r"<th scope=\"row\">all types</th>(.*?)</tr>", grades).group(1)
    assert re.findall(r'<td class="n">(\d+)</td>', totals) == ["2", "1", "1", "1", "1", "6"]
    # the chart stacks the same counts
    spec = grades_spec(counts)
    drawn = {(r["type"], r["grade"]): r["patients"] for r in spec["data"]["values"]}
    assert drawn == {("metastatic", "high"): 2, ("dystrophic", "moderate"): 1, ("idiopathic", "negligible"): 1,
                     ("calciphylaxis", "low"): 1, ("no type graded", "not graded"): 1}
    assert 'id="grades-chart"' in page and "<svg" in section(page, "grades")


def test_histogram_bins_and_the_threshold_counts_for_known_products():
    products = [0.0, 9.99, 10.0, 69.99, 70.0, 70.01, 149.9, 150.0, 400.0]
    rows = [row(f"p{i}", "low", ca_x_p=value) for i, value in enumerate(products)]
    rows += [row("no-ca", "low", calcium=None, phosphate=5.0), row("no-p", "low", calcium=9.0),
             row("neither", "low"), row("both-no-product", "low", calcium=9.0, phosphate=5.0)]
    counts = tally(rows)
    by_start = {b.start: b.patients for b in counts.histogram()}
    assert by_start[0] == 2 and by_start[10] == 1 and by_start[60] == 1 and by_start[70] == 2
    assert by_start[140] == 1 and by_start[150] == 2 and sum(by_start.values()) == len(products)
    assert counts.histogram()[-1].end is None and counts.histogram()[-1].label == "150 and above"
    assert (counts.at_or_above, counts.above, counts.ca_x_p_values) == (5, 4, 9)
    assert (counts.no_ca_x_p, counts.no_calcium_only, counts.no_phosphate_only, counts.no_calcium_nor_phosphate,
            counts.both_known_no_product) == (4, 1, 1, 1, 1)

    page = render_report(rows, FACTS)
    histogram = section(page, "ca-x-p")
    text = unescape(re.sub(r"<[^>]+>", "", histogram))
    assert "5 of the 9 patients with a Ca x P are at or above 70 mg2/dL2" in text
    assert "4 of them are above it" in text
    assert "4 patients have no Ca x P because a calcium or a phosphate result is missing" in text
    assert "unknown, not normal" in text
    assert bars(histogram) == {0.0: 2, 10.0: 1, 60.0: 1, 70.0: 2, 140.0: 1, 150.0: 2}
    # the bins right of the line are the ones counted at or above it
    spec = ca_x_p_spec(counts)
    sides = {r["start"]: r["side"] for r in spec["layer"][0]["data"]["values"]}
    assert sides[60.0] == "below 70" and sides[70.0] == "70 or above" and sides[150.0] == "70 or above"


def test_the_70_line_is_drawn_and_labelled():
    page = render_report([row("a", "high", ca_x_p=82.1), row("b", "low", ca_x_p=31.0)], FACTS)
    chart = section(page, "ca-x-p")
    rule = re.search(r'<g class="mark-rule role-mark[^"]*"[^>]*>(.*?)</g>', chart).group(1)
    assert 'aria-label="value: 70"' in rule and 'stroke-dasharray="6,4"' in rule
    assert re.search(r"<text[^>]*>70 mg2/dL2</text>", chart)
    ticks = re.findall(r"<text[^>]*>([0-9]+\+?)</text>", chart)
    assert ticks[:17] == [str(n) for n in range(0, 150, 10)] + ["150+"] + ["0"]  # x axis, the open bin, then y


def test_the_threshold_and_its_citation_are_the_rule_librarys():
    threshold = report_data()["ca_x_p_threshold"]
    assert f'define "{threshold["define"]}": {threshold["value"]} \'{threshold["unit"]}\'' in LIBRARY
    cited = threshold["citation"]
    cites = re.findall(r"\"Cite\"\('([^']+)', '([^']+)',\s*'([^']*)'\)", LIBRARY)
    assert any(key == cited["source"] and section_ == cited["section"] and cited["quote"] in quote
               for key, section_, quote in cites)

    page = render_report([row("a", "high", ca_x_p=82.1)], FACTS)
    sources = unescape(re.sub(r"<[^>]+>", "", section(page, "sources")))
    reference = load_bibliography().publication(cited["source"]).reference
    assert reference == "Le C, Bedocs PM. Calcinosis Cutis. StatPearls, 2019."
    assert reference in sources and cited["quote"] in sources and cited["section"] in sources
    assert not re.search(r"\.(cql|json|py)\b", re.sub(r"<svg.*?</svg>", "", page, flags=re.S))  # no file names


def test_work_up_gaps_by_test():
    rows = [row("a", "high", ca_x_p=80.0, missing_tests=["Parathyroid hormone, intact", "Skin biopsy"]),
            row("b", "low", ca_x_p=40.0, missing_tests=["Parathyroid hormone, intact"]),
            row("c", "low", missing_tests=["Skin biopsy", "Skin biopsy"]), row("d", "low")]
    counts = tally(rows)
    assert counts.gap_rows() == [("Parathyroid hormone, intact", 2, 1), ("Skin biopsy", 2, 1)]
    assert counts.with_gaps == 3
    assert [r["test"] for r in gaps_spec(counts)["data"]["values"]] == ["Parathyroid hormone, intact", "Skin biopsy"]
    gaps = section(render_report(rows, FACTS), "gaps")
    assert re.search(r"<td>Parathyroid hormone, intact</td><td class=\"n\">2</td><td class=\"n\">1</td>", gaps)
    assert "3 of 4 patients still need at least one" in gaps


# ---- the top table ------------------------------------------------------------------------------

def test_the_top_table_is_the_50_highest_graded_in_order():
    grades = [*RISK_ORDER, None, "unheard-of"]
    rows = []
    for number in range(5000):  # more than a batch: the top is cut back while reading and must stay right
        grade = grades[(number * 7) % len(grades)]
        product = None if number % 11 == 0 else float((number * 37) % 130)
        rows.append(row(f"id-{number:05d}", grade, ca_x_p=product))

    def expected_key(r):
        rank = RISK_ORDER.get(r["top_grade"], -1) if r["top_grade"] else -1
        return (-rank, r["ca_x_p"] is None, -(r["ca_x_p"] or 0), r["patient_id"])

    expected = [r["patient_id"] for r in sorted(rows, key=expected_key)[:50]]
    page = render_report(iter(rows), FACTS)
    assert top_table_ids(page) == expected
    assert len(top_table_ids(page)) == 50
    highs = [r for r in rows if r["top_grade"] == "high"]
    assert all(r["patient_id"] in expected for r in sorted(highs, key=expected_key)[:50])
    assert "50 of 5000 shown" in page


def test_a_grade_is_worded_as_a_suspicion():
    page = render_report([row("a", "high", ca_x_p=82.1), row("b", "moderate", kind="calciphylaxis")], FACTS)
    top = unescape(re.sub(r"<[^>]+>", "", section(page, "top")))
    assert "graded high for metastatic calcinosis cutis" in top
    assert "graded moderate for calciphylaxis calcinosis cutis" in top
    assert not re.search(r"\bhas (metastatic|calciphylaxis|calcinosis)", unescape(page))
    assert "not a diagnosis" in page


def test_a_product_just_below_the_threshold_does_not_read_as_70():
    page = render_report([row("a", "high", ca_x_p=69.96), row("b", "high", ca_x_p=70.004)], FACTS)
    cells = re.findall(r'<td class="n(?: above)?">([0-9.]+)<small>2026-11-01</small></td>', section(page, "top"))
    assert "69.96" in cells and "70.0" not in cells and "70.004" in cells


# ---- safety and self-containment ----------------------------------------------------------------

def test_everything_printed_is_escaped():
    hostile = '<script>alert("x")</script>'
    rows = [row(hostile, "high", kind='"><img src=x onerror=alert(1)>', ca_x_p=90.0,
                missing_tests=["<b>PTH</b>"], calcium_date="<i>2026</i>")]
    page = render_report(rows, {**FACTS, "source": "</title><script>bad()</script>", "engine": "<svg onload=x>"})
    assert "<script" not in page.lower()
    assert "<img" not in page and "<b>PTH" not in page and "<svg onload" not in page and "<i>2026" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert top_table_ids(page) == [hostile]
    assert "&lt;/title&gt;&lt;script&gt;bad()&lt;/script&gt;" in page


def test_no_url_but_the_citation_and_a_strict_content_security_policy():
    page = render_report(list(synthetic_rows(300, seed=4)), FACTS)
    citation_url = load_bibliography().publication(report_data()["ca_x_p_threshold"]["citation"]["source"]).url
    links = re.findall(r"""\b(?:src|href|xlink:href|action|srcset|poster|data)\s*=\s*["']?([^"'\s>]+)""", page, re.I)
    assert links == [citation_url]
    assert not re.search(r"<(script|iframe|object|embed|link|img|image|use|foreignObject)\b", page, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:|//)|@import", page, re.I)
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page).group(1)
    assert policy.startswith("default-src 'none';") and "unsafe" not in policy
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in policy


# ---- edge inputs --------------------------------------------------------------------------------

def test_no_patients():
    page = render_report([], {})
    assert "<title>Calcinosis cutis screening: 0 patients</title>" in page
    assert "No patient was screened." in page and "No patient has a Ca x P." in page
    assert "No test of the work-up is missing." in page
    assert "<svg" not in page and 'id="top-table"' not in page
    assert page.count("not stated") == 6  # source, date, instant, engine, problems found, run time


def test_one_patient():
    page = render_report([row("only", "low", ca_x_p=12.5, missing_tests=["CT"])], FACTS)
    assert top_table_ids(page) == ["only"] and "All 1 patients are shown." in page
    assert page.count("<svg") == 3


def test_rows_full_of_none_nan_and_text():
    rows = [
        {"patient_id": None},
        {"patient_id": "x", "top_type": None, "top_grade": "high", "calcium": float("nan"), "phosphate": "5.1",
         "ca_x_p": float("nan"), "egfr": "n/a", "missing_tests": "Calcium; Skin biopsy", "data_problems": float("nan")},
        {"patient_id": "y", "top_type": "metastatic", "top_grade": None, "calcium": 9.0, "phosphate": None,
         "ca_x_p": math.inf, "missing_tests": None, "data_problems": "2"},
        {"patient_id": "z", "ca_x_p": "75.5", "missing_tests": ("CT", None, ""), "data_problems": None},
    ]
    counts = tally(rows)
    assert counts.patients == 4 and counts.ca_x_p_values == 1 and counts.at_or_above == 1
    assert counts.no_ca_x_p == 3 and counts.no_calcium_only == 1 and counts.no_phosphate_only == 1
    assert counts.gaps == {"Calcium": 1, "Skin biopsy": 1, "CT": 1}
    assert counts.with_data_problems == 1 and counts.data_problems == 2
    page = render_report(rows, {"patients": None, "seconds": "soon"})
    ids = top_table_ids(page)
    assert ids[0] == "x" and len(ids) == 4  # graded high, though its type is not known
    assert "no id" in page and "not known" in page
    assert "Run time</dt><dd>soon" in page


def test_a_population_of_10000_keeps_a_small_page(tmp_path):
    out = tmp_path / "report.html"
    write_report(synthetic_rows(10_000, seed=1), out, {**FACTS, "patients": 10_000})
    page = out.read_text(encoding="utf-8")
    assert len(top_table_ids(page)) == 50 and "50 of 10000 shown" in page
    assert len(page.encode()) < 200_000
    assert [path.name for path in tmp_path.iterdir()] == ["report.html"]  # no temporary file left


def test_the_patient_count_of_the_run_and_of_the_rows_disagreeing_is_said():
    page = render_report([row("a", "low")], {"patients": 3})
    assert "3 (1 in the summary)" in page


def test_the_report_never_holds_the_rows(monkeypatch):
    monkeypatch.setattr(report_tally, "_TOP_BATCH", 60)
    counts = tally(synthetic_rows(1000, seed=2))
    assert len(counts._top) < 60 + 1 and len(counts.top()) == 50


def test_the_screen_writer_uses_this_report(tmp_path):
    from service.screening.outputs import write_report as writer_report

    writer_report([row("a", "high", ca_x_p=82.1)], tmp_path / "report.html", {"patients": 1})
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Content-Security-Policy" in page and 'id="top-table"' in page


# ---- in a browser -------------------------------------------------------------------------------

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(not (BROWSER and DRIVER), reason="the browser test needs Debian's chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver); .ci/run installs them")
def test_the_page_in_headless_chromium_draws_its_charts_offline(tmp_path):
    pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra: pip install -e '.[test]'")
    from selenium.webdriver.common.by import By

    from tests.support.report_screenshot import chromium, example_facts, screenshot_whole_page

    page = tmp_path / "report.html"
    write_report(synthetic_rows(500, seed=3), page, example_facts(500))
    driver = chromium(1280, 1000)
    try:
        driver.get(page.resolve().as_uri())
        for name, mark in (("grades", "g.mark-rect.role-mark path"), ("ca-x-p", "g.mark-rect.role-mark path"),
                           ("ca-x-p", "g.mark-rule.role-mark line"), ("gaps", "g.mark-rect.role-mark path")):
            svg = driver.find_element(By.CSS_SELECTOR, f"#{name}-chart svg")
            assert svg.size["width"] > 300 and svg.size["height"] > 100
            assert driver.find_elements(By.CSS_SELECTOR, f"#{name}-chart svg {mark}"), f"{name}: no {mark}"
        assert len(driver.find_elements(By.CSS_SELECTOR, "#top-table tbody tr")) == 50
        console = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
        assert console == []
        requested = [json.loads(entry["message"])["message"]["params"]["request"]["url"]
                     for entry in driver.get_log("performance")
                     if json.loads(entry["message"])["message"]["method"] == "Network.requestWillBeSent"]
        assert requested and all(url == page.resolve().as_uri() for url in requested), requested
        shot = tmp_path / "report.png"
        screenshot_whole_page(driver, shot, 1280)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    finally:
        driver.quit()

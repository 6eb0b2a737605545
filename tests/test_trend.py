"""The laboratory trend: every charted result marked with what the assessment did with it, its chart
spec, its SVG and its DocumentReference (validated with the R4B models)."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from service.config import load_config
from service.pipeline.assess import get_assessor
from service.trend.assessed import add_chart_documents
from service.trend.chart_spec import trend_spec
from service.trend.series import EARLIER, SKIPPED, STALE, USED, chart_data, extract_trends
from tests.conftest import FIXTURE_NOW, PROJECT_ROOT, assess_fixture


@pytest.fixture(scope="module")
def assessor():
    return get_assessor(load_config({}))


def trends(assessor, bundle, now=FIXTURE_NOW, lookback_days=365):
    run = assessor.assess(bundle, now=now)
    return run, extract_trends(bundle, run, terminology=assessor.terminology, lookback_days=lookback_days)


def load(prefix: str) -> dict:
    return json.loads(assess_fixture(prefix).read_text(encoding="utf-8"))


def by_analyte(trend):
    found: dict[str, list] = {}
    for point in trend.points:
        found.setdefault(point.analyte, []).append(point)
    return found


def test_the_metastatic_esrd_patient_has_the_values_the_rules_used(assessor):
    _, (trend,) = trends(assessor, load("04"))
    points = by_analyte(trend)
    assert set(points) == {"calcium", "phosphate", "ca-x-p", "pth", "vitamin-d-25oh"}
    assert all(p.status == USED for p in trend.points)
    assert points["calcium"][0].value == Decimal("10.8") and points["calcium"][0].reported == "10.8 mg/dL"
    # Ca x P is the product the rules computed, dated by the calcium, and above the 70 line
    product = points["ca-x-p"][0]
    assert product.value == Decimal("10.8") * Decimal("7.6") and product.value > 70
    assert product.effective == points["calcium"][0].effective
    assert points["calcium"][0].range_low is not None and points["calcium"][0].range_high is not None
    assert len(trend.plotted) == 5


def test_an_older_result_is_earlier_and_one_before_the_lookback_is_stale(assessor):
    bundle = load("12")
    _, (trend,) = trends(assessor, bundle)
    statuses = {(p.analyte, p.status) for p in trend.points}
    assert ("calcium", EARLIER) in statuses and ("calcium", USED) in statuses
    # the same-day pair of the earlier day gives an earlier Ca x P, computed for the chart and saying so
    earlier_products = [p for p in trend.points if p.analyte == "ca-x-p" and p.status == EARLIER]
    assert len(earlier_products) == 1 and "computed for the chart" in earlier_products[0].why
    assert earlier_products[0].value == Decimal("9.0") * Decimal("7.9")
    # a shorter window makes the March results stale
    _, (short,) = trends(assessor, bundle, lookback_days=90)
    stale = {p.analyte for p in short.points if p.status == STALE}
    assert {"calcium", "phosphate"} <= stale


def test_a_result_in_an_unknown_unit_is_skipped_with_the_reason_and_not_plotted(assessor):
    _, (trend,) = trends(assessor, load("14"))
    (calcium,) = by_analyte(trend)["calcium"]
    assert calcium.status == SKIPPED and calcium.value is None
    assert "mg/furlong" in calcium.reported and "mg/furlong" in calcium.why
    assert calcium not in trend.plotted and trend.as_json()["notPlotted"] == 1


def test_an_entered_in_error_result_in_the_axis_unit_is_plotted_as_skipped(assessor):
    bundle = load("04")
    wrong = copy.deepcopy(next(e for e in bundle["entry"] if e["resource"].get("code", {}).get("coding", [{}])[0].get("code") == "2777-1"))
    wrong["fullUrl"] = "urn:uuid:7b7c1a8e-0d5e-4a55-9f7e-3a3c7e4f0a01"
    wrong["resource"]["status"] = "entered-in-error"
    wrong["resource"]["valueQuantity"]["value"] = 12.5
    wrong["resource"]["effectiveDateTime"] = "2026-10-01T08:00:00Z"
    wrong["resource"].pop("id", None)
    bundle["entry"].append(wrong)
    _, (trend,) = trends(assessor, bundle)
    skipped = [p for p in trend.points if p.status == SKIPPED]
    assert len(skipped) == 1 and skipped[0].value == Decimal("12.5") and "entered-in-error" in skipped[0].why


def test_the_chart_threshold_is_the_rule_librarys():
    library = (PROJECT_ROOT / "service" / "knowledge" / "CalcinosisCutis.cql").read_text(encoding="utf-8")
    threshold = chart_data()["ca_x_p_threshold"]
    assert f'define "{threshold["define"]}": {threshold["value"]} \'{threshold["unit"]}\'' in library


def test_the_spec_draws_the_threshold_line_shapes_and_small_multiples(assessor):
    _, (trend,) = trends(assessor, load("04"))
    spec = trend_spec(trend.as_json(), width=800)
    text = json.dumps(spec)
    assert '"threshold": 70' in text and '"strokeDash": [6, 4]' in text
    assert '"field": "status"' in text and '"shape"' in text  # status by shape as well as colour
    small = spec["vconcat"][-1]["hconcat"]
    assert [panel["title"] for panel in small] == ["PTH, intact (pg/mL)", "25-OH vitamin D (ng/mL)"]  # no eGFR sent


def test_the_svg_shows_every_plotted_point(assessor):
    from service.trend.render import to_svg

    _, (trend,) = trends(assessor, load("12"))
    svg = to_svg(trend_spec(trend.as_json()))
    assert svg.startswith("<svg") and "70 mg2/dL2" in svg
    # Vega's SVG marks each point with role="graphics-symbol"; legend symbols are not marks
    assert svg.count('role="graphics-symbol"') >= len(trend.plotted)
    assert "http://" not in svg.replace("http://www.w3.org", "")


def test_the_chart_document_is_valid_r4_and_follows_its_risk_assessment(assessor):
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.documentreference import DocumentReference
    from service.fhir_outputs.result_bundle import build_result_bundle

    bundle = load("10")  # several patients
    run, patient_trends = trends(assessor, bundle)
    result = add_chart_documents(build_result_bundle(run.patients, run.issues), patient_trends)
    Bundle.model_validate(result)
    kinds = [entry["resource"]["resourceType"] for entry in result["entry"]]
    documents = [entry["resource"] for entry in result["entry"] if entry["resource"]["resourceType"] == "DocumentReference"]
    assert len(documents) == len(run.patients) >= 2
    for position, kind in enumerate(kinds):
        if kind == "DocumentReference":
            risk = result["entry"][position - 1]["resource"]
            assert risk["resourceType"] == "RiskAssessment"
            document = DocumentReference.model_validate(result["entry"][position]["resource"])
            assert document.context.related[0].reference == result["entry"][position - 1]["fullUrl"]
            assert document.subject.reference == risk["subject"]["reference"]
            raw = result["entry"][position]["resource"]["content"][0]["attachment"]
            svg = base64.b64decode(raw["data"]).decode("utf-8")
            assert raw["size"] == len(svg.encode("utf-8"))
            assert svg.startswith("<svg") and document.content[0].attachment.contentType == "image/svg+xml"


def test_the_trend_and_its_chart_load_without_flask():
    code = ("import sys, service.trend.series, service.trend.chart_spec, service.trend.render, "
            "service.trend.assessed, service.trend.report_store, service.hooks.example_request; "
            "print('flask' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_report_expires_and_an_unknown_token_finds_nothing(tmp_path):
    from service.trend.report_store import ReportStore

    clock = [1000.0]
    store = ReportStore(tmp_path / "reports.sqlite3", ttl_seconds=60, clock=lambda: clock[0])
    token = store.put({"patient": "Patient/x", "points": []})
    assert len(token) >= 40 and store.get(token) == {"patient": "Patient/x", "points": []}
    assert store.get(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    clock[0] += 61
    assert store.get(token) is None
    # expired rows are deleted, not just hidden
    import sqlite3
    assert sqlite3.connect(tmp_path / "reports.sqlite3").execute("SELECT count(*) FROM ui_report").fetchone() == (0,)


def test_assessed_at_is_the_evaluation_instant(assessor):
    _, (trend,) = trends(assessor, load("04"), now=datetime(2026, 11, 20, tzinfo=timezone.utc))
    assert trend.as_json()["assessedAt"] == "2026-11-20T00:00:00Z"

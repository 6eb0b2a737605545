"""The assessment core: one patient's failure is reported and never fails the others."""

from __future__ import annotations

import orjson

from conftest import FIXTURE_NOW, assess_fixture
from service.assess import get_assessor
from service.cql_like.errors import CqlEvaluationError


def test_a_rule_failing_on_one_patient_is_reported_and_the_others_are_assessed(monkeypatch):
    assessor = get_assessor()
    bundle = orjson.loads(assess_fixture("10").read_bytes())
    real_evaluate = assessor.library.evaluate
    calls = []

    def evaluate(provider, **kwargs):
        calls.append(provider.patient_reference)
        if len(calls) == 2:
            raise CqlEvaluationError("cannot compare 'mmol/L' with 'mg/dL'", define="Metastatic",
                                     filename="/srv/app/service/knowledge/CalcinosisCutis.cql", line=193, column=17)
        return real_evaluate(provider, **kwargs)

    monkeypatch.setattr(assessor.library, "evaluate", evaluate)
    run = assessor.assess(bundle, now=FIXTURE_NOW)
    assert len(calls) == 3
    assert [p.patient_reference for p in run.patients] == [calls[0], calls[2]]
    failure = next(issue for issue in run.issues if issue.code == "processing")
    assert calls[1] in failure.diagnostics
    assert 'rule "Metastatic"' in failure.diagnostics
    assert "/srv/app" not in failure.diagnostics and ".cql" not in failure.diagnostics


def test_resources_sent_without_id_or_full_url_are_cited_by_location_not_lost():
    from service.assess import assess_bundle
    from service.fhir_outputs.result_bundle import build_result_bundle

    calcium = {"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6"}]},
               "effectiveDateTime": "2026-10-01T08:00:00Z",
               "valueQuantity": {"value": 12.0, "unit": "mg/dL", "system": "http://unitsofmeasure.org",
                                 "code": "mg/dL"}}
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": {"resourceType": "Patient", "gender": "female"}}, {"resource": calcium}]}
    run = assess_bundle(bundle, now=FIXTURE_NOW)
    result = build_result_bundle(run.patients, run.issues)
    risk = next(e["resource"] for e in result["entry"] if e["resource"]["resourceType"] == "RiskAssessment")
    assert "reference" not in risk["subject"]
    assert risk["subject"]["display"].startswith("Bundle.entry[0].resource")
    assert {"display": "Bundle.entry[1].resource (sent without id or fullUrl)"} in risk["basis"]
    assert "12" in " ".join(p["rationale"] for p in risk["prediction"])

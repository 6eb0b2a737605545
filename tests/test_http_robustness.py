"""No input, however malformed, gets a 5xx from /fhir/$assess or a CDS Hooks service.

Hypothesis builds bundles that look like what integration engines send, with every field
free to take any JSON value, and the whole path (ingest, validation, normalization, rules,
outputs) must answer 200 or a 4xx OperationOutcome.
"""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

json_scalars = st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
loinc_codes = st.sampled_from(["17861-6", "2000-8", "2777-1", "14879-1", "2731-8", "62292-8", "2160-0", "1751-7",
                               "49765-1", "58410-2", "8061-4", "0000-0"])
units = st.sampled_from(["mg/dL", "mmol/L", "umol/L", "pg/mL", "g/L", "mg/furlong", "", "[pH]", "µmol/L"])
quantities = st.fixed_dictionaries({}, optional={
    "value": st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.integers(-10**6, 10**6), st.text(max_size=4)),
    "unit": units, "code": units, "system": st.sampled_from(["http://unitsofmeasure.org", "urn:x"]),
    "comparator": st.sampled_from(["<", ">", "="]),
})
dates = st.sampled_from(["2026-10-01", "2026-10-01T08:00:00Z", "2026", "not a date", "2027-01-01T00:00:00+05:00"])
observations = st.fixed_dictionaries(
    {"resourceType": st.just("Observation")},
    optional={
        "id": st.text(min_size=1, max_size=6),
        "status": st.sampled_from(["final", "amended", "entered-in-error", "preliminary", "bogus"]),
        "code": st.fixed_dictionaries({"coding": st.lists(st.fixed_dictionaries(
            {"system": st.sampled_from(["http://loinc.org", "urn:local"]), "code": loinc_codes}), max_size=2)}),
        "subject": st.fixed_dictionaries({"reference": st.sampled_from(["Patient/p1", "Patient/p2", "urn:uuid:x"])}),
        "valueQuantity": quantities,
        "valueString": st.text(max_size=6),
        "effectiveDateTime": dates,
        "referenceRange": st.lists(st.fixed_dictionaries({}, optional={"low": quantities, "high": quantities}),
                                   max_size=2),
        "interpretation": json_values,
        "extension": json_values,
    })
conditions = st.fixed_dictionaries(
    {"resourceType": st.just("Condition")},
    optional={
        "subject": st.fixed_dictionaries({"reference": st.sampled_from(["Patient/p1", "Patient/p2"])}),
        "code": st.fixed_dictionaries({"coding": st.lists(st.fixed_dictionaries({
            "system": st.sampled_from(["http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm"]),
            "code": st.sampled_from(["46177005", "N18.6", "89155008", "L94.2", "x"])}), max_size=2)}),
        "clinicalStatus": json_values,
        "onsetDateTime": dates,
    })
patients = st.fixed_dictionaries(
    {"resourceType": st.just("Patient")},
    optional={"id": st.sampled_from(["p1", "p2", ""]), "birthDate": dates, "gender": json_values})
fhir_entries = st.fixed_dictionaries(
    {"resource": st.one_of(observations, observations, conditions, patients)},
    optional={"fullUrl": st.sampled_from(["urn:uuid:x", "https://h/fhir/Patient/p1", "Patient/p2"]),
              "request": json_values})
# Mostly FHIR-shaped entries so most examples reach the rules; sometimes anything at all.
entries = st.one_of(fhir_entries, fhir_entries, fhir_entries, fhir_entries, fhir_entries,
                    st.fixed_dictionaries({"resource": json_values}), json_values)
bundles = st.fixed_dictionaries(
    {"resourceType": st.just("Bundle"),
     "type": st.sampled_from(["collection", "batch", "transaction", "searchset", "document", "history"])},
    optional={"entry": st.lists(entries, max_size=6)})


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(bundles)
def test_any_bundle_shaped_input_gets_200_or_a_4xx_outcome(client, bundle):
    response = client.post("/fhir/$assess", data=orjson.dumps(bundle), content_type="application/fhir+json")
    assert response.status_code < 500, response.get_data(as_text=True)[:2000]
    body = response.get_json()
    assert body["resourceType"] in ("Bundle", "OperationOutcome")
    if response.status_code >= 400:
        assert body["resourceType"] == "OperationOutcome"


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.one_of(json_values, st.binary(max_size=64)))
def test_any_body_at_all_gets_a_4xx_not_a_5xx(client, body):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    response = client.post("/fhir/$assess", data=data, content_type="application/json")
    assert 400 <= response.status_code < 500
    assert response.get_json()["resourceType"] == "OperationOutcome"


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["hook", "hookInstance", "context", "prefetch", "fhirServer",
                                        "fhirAuthorization"]), json_values, max_size=6))
def test_any_cds_hooks_call_body_gets_an_answer_not_a_5xx(client, body):
    response = client.post("/cds-services/calcinosis-patient-view", data=orjson.dumps(body),
                           content_type="application/json")
    assert response.status_code < 500, response.get_data(as_text=True)[:2000]


def _patient_with_calcium(quantity: dict, reference_range: list | None = None) -> dict:
    calcium = {"resourceType": "Observation", "id": "ca1", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6"}]},
               "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-10-01T08:00:00Z",
               "valueQuantity": quantity}
    if reference_range is not None:
        calcium["referenceRange"] = reference_range
    ana = {"resourceType": "Observation", "id": "ana1", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "8061-4"}]},
           "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-10-01T08:00:00Z",
           "valueQuantity": {"value": 1e300, "unit": "[IU]/mL", "system": "http://unitsofmeasure.org",
                             "code": "[IU]/mL"}}
    return {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "https://h/fhir/Patient/p1", "resource": {"resourceType": "Patient", "id": "p1"}},
        {"fullUrl": "https://h/fhir/Observation/ca1", "resource": calcium},
        {"fullUrl": "https://h/fhir/Observation/ana1", "resource": ana}]}


UCUM_MG_DL = {"unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}


def test_values_beyond_the_cql_decimal_range_are_reported_not_crashed_on(client):
    bundle = _patient_with_calcium(dict(UCUM_MG_DL, value=1e308),
                                   [{"low": dict(UCUM_MG_DL, value=1e308), "high": dict(UCUM_MG_DL, value=-1e300)}])
    response = client.post("/fhir/$assess", json=bundle)
    assert response.status_code == 200
    text = orjson.dumps(response.get_json()).decode()
    assert "magnitude below 10^28" in text
    assert "Bundle.entry[1].resource.valueQuantity.value" in text


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.one_of(st.dictionaries(st.just("feedback"), st.lists(json_values, max_size=4), max_size=1),
                 st.dictionaries(st.sampled_from(["feedback", "card", "outcome"]), json_values, max_size=3)))
def test_any_feedback_body_gets_an_answer_not_a_5xx(client, body):
    response = client.post("/cds-services/calcinosis-patient-view/feedback", data=orjson.dumps(body),
                           content_type="application/json")
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)[:2000]

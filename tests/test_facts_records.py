"""The facts model (knowledge/model.json) and the record builders agree by construction.

Every record is built through `RecordBuilder`, which reads the model: a field the model does not
declare, one it declares but the builder leaves out, or a value of the wrong runtime kind fails when
the record is built. Building every fixture then shows each field of the model is produced
somewhere, so the model declares nothing the builders never fill.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from service.config import load_config
from service.cql_like.model import load_model_info
from service.cql_like.quantity import Quantity
from service.cql_like.values import Code, Concept
from service.pipeline.assess import get_assessor
from service.pipeline.ingest import read_bundle
from service.pipeline.normalize import build_facts
from service.pipeline.records import FactsModelError, RecordBuilder

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = sorted(path for path in (ROOT / "fhir_fixtures" / "assess").glob("*.json")
                  if not path.name.endswith(".expected.json") and path.name != "MANIFEST.json")
NOW = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)
MODEL = load_model_info(load_config()["MODEL_INFO"])


@pytest.fixture(scope="module")
def build():
    return RecordBuilder(MODEL)


def _condition_fields(**changes):
    fields = {"id": "c1", "code": Concept((Code("46177005", "http://snomed.info/sct"),)), "clinicalStatus": "active",
              "verificationStatus": None, "category": None, "onset": datetime(2020, 1, 1, tzinfo=timezone.utc),
              "abatement": None, "recorded": None}
    fields.update(changes)
    return fields


def test_a_record_with_exactly_the_model_fields_of_the_right_kinds_is_built(build):
    record = build("Condition", _condition_fields(), "Condition/c1")
    assert (record.type_name, record.source, record.get("clinicalStatus")) == ("Condition", "Condition/c1", "active")


def test_a_field_the_model_does_not_declare_is_an_error_at_build_time(build):
    with pytest.raises(FactsModelError, match=r"not in the facts model \['severity'\]"):
        build("Condition", _condition_fields(severity="mild"))


def test_a_model_field_the_builder_leaves_out_is_an_error_at_build_time(build):
    fields = _condition_fields()
    del fields["recorded"]
    with pytest.raises(FactsModelError, match=r"model fields not given \['recorded'\]"):
        build("Condition", fields)


@pytest.mark.parametrize("field, value", [
    ("onset", "2020-01-01"),  # DateTime: a str is not one
    ("onset", date(2020, 1, 1)),  # DateTime: a date is not one
    ("code", "46177005"),  # Concept
    ("clinicalStatus", 1),  # String
])
def test_a_value_of_the_wrong_runtime_kind_is_an_error_at_build_time(build, field, value):
    with pytest.raises(FactsModelError, match=rf"Condition\.{field} is declared"):
        build("Condition", _condition_fields(**{field: value}))


def test_the_runtime_kinds_of_system_types_are_told_apart(build):
    patient = {"id": "p", "birthDate": datetime(1960, 1, 1, tzinfo=timezone.utc), "gender": "female"}
    with pytest.raises(FactsModelError, match=r"Patient\.birthDate is declared Date"):
        build("Patient", patient)  # a datetime is no Date
    observation = {name: None for name in build.field_names("Observation")}
    with pytest.raises(FactsModelError, match=r"Observation\.value is declared Quantity"):
        build("Observation", dict(observation, value=Decimal("9.1")))
    with pytest.raises(FactsModelError, match=r"Observation\.conflictingSameInstant is declared Boolean"):
        build("Observation", dict(observation, conflictingSameInstant=1))
    assert build("Observation", dict(observation, value=Quantity(Decimal("9.1"), "mg/dL"))).get("value").unit == "mg/dL"


def test_a_type_the_model_does_not_declare_is_an_error_at_build_time(build):
    with pytest.raises(FactsModelError, match="Encounter is not a type of the facts model"):
        build("Encounter", {})


def _cds_bundle(path: Path) -> dict:
    """Every resource a CDS Hooks request fixture sends (prefetch and draft orders), as one collection Bundle."""
    request = orjson.loads(path.read_bytes())
    entries = []
    for value in [*request.get("prefetch", {}).values(), request["context"].get("draftOrders")]:
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            entries += [{"resource": entry["resource"]} for entry in value.get("entry", [])]
        elif isinstance(value, dict):
            entries.append({"resource": value})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


# What no fixture sends: a bounded result, a qualitative result as text, a Condition that has abated, a dated order.
_UCUM = "http://unitsofmeasure.org"
_SUPPLEMENT = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in (
    {"resourceType": "Patient", "id": "s1", "birthDate": "1970-01-01", "gender": "male"},
    {"resourceType": "Observation", "id": "pth", "status": "final", "subject": {"reference": "Patient/s1"},
     "code": {"coding": [{"system": "http://loinc.org", "code": "2731-8"}]}, "effectiveDateTime": "2026-11-01",
     "valueQuantity": {"value": 3, "comparator": "<", "unit": "pg/mL", "system": _UCUM, "code": "pg/mL"}},
    {"resourceType": "Observation", "id": "ana", "status": "final", "subject": {"reference": "Patient/s1"},
     "code": {"coding": [{"system": "http://loinc.org", "code": "8061-4"}]}, "effectiveDateTime": "2026-11-01",
     "valueString": "positive 1:160"},
    {"resourceType": "Condition", "id": "burn", "subject": {"reference": "Patient/s1"},
     "code": {"text": "burn of skin"}, "onsetDateTime": "2020-01-01", "abatementDateTime": "2020-06-01"},
    {"resourceType": "ServiceRequest", "id": "xr", "status": "active", "intent": "order",
     "subject": {"reference": "Patient/s1"}, "code": {"text": "hand radiograph"}, "authoredOn": "2026-11-02"},
)]}


def test_every_field_of_the_model_is_produced_by_the_builders_over_the_fixtures():
    assessor = get_assessor(load_config())
    produced: dict[str, set[str]] = {name: set() for name in MODEL.types}
    bundles = [orjson.loads(path.read_bytes()) for path in FIXTURES]
    bundles += [_cds_bundle(path) for path in sorted((ROOT / "fhir_fixtures" / "cds-hooks").glob("*-request.json"))]
    for bundle in [*bundles, _SUPPLEMENT]:
        for patient in read_bundle(bundle, assessor.selection).patients:
            facts = build_facts(patient, now=NOW, terminology=assessor.terminology, records=assessor.records)
            records = [facts.patient(), *(record for name in MODEL.types if name != "Patient"
                                          for record in facts.records(name))]
            for record in records:
                if record is not None:
                    assert set(record.fields) == set(MODEL.types[record.type_name].fields), record.type_name
                    produced[record.type_name] |= {name for name, value in record.fields.items() if value is not None}
    never = {name: sorted(set(spec.fields) - produced[name]) for name, spec in MODEL.types.items()
             if set(spec.fields) - produced[name]}
    assert never == {}, f"model fields no fixture produces: {never}"

"""Every output the builders can write is valid FHIR R4, whatever the assessment holds.

The service does not validate its outputs at runtime by default (`VALIDATE_OUTPUTS`): the builders
write valid R4 by construction. This is the check of that claim: random `PatientAssessment`s (any
text, markup and control characters included, where a caller's text can reach an output; codes and
references in the forms the core produces) are built into a result Bundle and every resource is
validated with `fhir.resources.R4B` and the service's own R4 checks (reference targets,
narratives, cpl-3). Validation on and off must also give the same Bundle, so turning it on
changes nothing but the cost.
"""

from __future__ import annotations

import dataclasses
import string
from datetime import datetime, timezone

import pytest
from fhir.resources.R4B.bundle import Bundle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.assessment_model import (CALCINOSIS_TYPES, RISK_ORDER, AvailableTest, Citation, InputIssue,
                                      OmittedTest, OrderAlert, PanelTest, PatientAssessment, TypeGrade,
                                      UnconfirmedTest, ValueUsed)
from service.bibliography import load_bibliography
from service.fhir_outputs import OutputValidationError, build_result_bundle, operation_outcome
from service.fhir_outputs.ids import urn
from service.fhir_outputs.validation import validate_resource
from service.fhir_outputs.vocabulary import issue_types

# Any text a caller could send (markup, control characters, blanks), short enough to keep examples fast.
TEXT = st.text(max_size=30)
TEXTS = st.lists(TEXT, max_size=3).map(tuple)
IDS = st.text(alphabet=string.ascii_letters + string.digits + "-.", min_size=1, max_size=20)
RESOURCE_TYPES = st.sampled_from(["Observation", "Condition", "MedicationRequest", "ServiceRequest", "Procedure",
                                  "MedicationAdministration"])
INSTANTS = st.datetimes(min_value=datetime(1950, 1, 1), max_value=datetime(2100, 1, 1),
                        timezones=st.sampled_from([None, timezone.utc]))
CODINGS = st.one_of(
    st.tuples(st.sampled_from(["17861-6", "2777-1", "2731-8", "1989-3", "2160-0", "33914-3"]),
              st.just("http://loinc.org")),
    st.tuples(st.sampled_from(["240977001", "168537006", "241615005"]), st.just("http://snomed.info/sct")),
    st.just(("", "")),  # proposed by name only
)


def references(resource_types=RESOURCE_TYPES) -> st.SearchStrategy[str]:
    """A reference in each form the core hands on: relative, urn:uuid, absolute, or an entry without id."""
    return st.one_of(
        st.builds(lambda kind, ident: f"{kind}/{ident}", resource_types, IDS),
        st.uuids().map(lambda value: f"urn:uuid:{value}"),
        st.builds(lambda kind, ident: f"https://ehr.example.org/fhir/{kind}/{ident}", resource_types, IDS),
        st.integers(0, 500).map(lambda index: f"Bundle.entry[{index}]"),
    )


def citations() -> st.SearchStrategy[Citation]:
    """A citation as the core resolves it: a shipped publication (or an unknown key), any section and quote."""
    keys = st.sampled_from(["statpearls-calcinosis-cutis", "not-in-the-bibliography"])
    return st.builds(lambda key, section, quote: load_bibliography().citation(key, section, quote), keys, TEXT, TEXT)


CITATIONS = st.lists(citations(), max_size=2).map(tuple)


@st.composite
def grades(draw) -> tuple[TypeGrade, ...]:
    """Some of the five types, each once, most likely first (as the core orders them)."""
    kinds = draw(st.lists(st.sampled_from(CALCINOSIS_TYPES), unique=True, max_size=5))
    graded = [TypeGrade(kind, draw(st.sampled_from(list(RISK_ORDER))), draw(TEXT),
                        evidence=tuple(draw(st.lists(references(), max_size=3))), citation=draw(TEXT),
                        citations=draw(CITATIONS))
              for kind in kinds]
    return tuple(sorted(graded, key=lambda grade: -RISK_ORDER[grade.risk]))


def _panel_test(coding, display, group, reason, citations_, name) -> PanelTest:
    return PanelTest(coding[0], coding[1], display, group, reason, citations_, name)


PANEL_TESTS = st.builds(_panel_test, CODINGS, TEXT, st.sampled_from(["baseline", "myositis", "autoimmune",
                                                                      "milk-alkali", "imaging"]),
                        TEXT, CITATIONS, TEXT)
OMITTED = st.builds(lambda coding, display, reason, name: OmittedTest(coding[0], coding[1], display, reason, name),
                    CODINGS, TEXT, TEXT, TEXT)
UNCONFIRMED = st.builds(lambda coding, display, group, reason, purpose, name:
                        UnconfirmedTest(coding[0], coding[1], display, group, reason, purpose, name),
                        CODINGS, TEXT, st.sampled_from(["baseline", "imaging"]), TEXT, TEXT, TEXT)


@st.composite
def available_tests(draw) -> AvailableTest:
    """A result (Observation) or an open order (ServiceRequest) on file; its source of that type, if any."""
    kind = draw(st.sampled_from(["Observation", "ServiceRequest"]))
    code, system = draw(CODINGS)
    source = draw(st.one_of(st.just(""), references(st.just(kind))))
    return AvailableTest(code, system, draw(TEXT), draw(TEXT), source, draw(TEXT), kind)


AVAILABLE = available_tests()
VALUES = st.builds(ValueUsed, st.sampled_from(["calcium", "phosphate", "pth"]), TEXT,
                   st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-1000, max_value=1000),
                   st.sampled_from(["mg/dL", "pg/mL", "mmol/L"]), st.one_of(st.none(), INSTANTS, st.dates()),
                   references(st.just("Observation")), st.just("final"),
                   st.sampled_from([None, "H", "L", "N", "HH"]), st.one_of(st.none(), TEXT),
                   st.sampled_from([None, "<", ">="]))
ISSUES = st.builds(InputIssue, st.sampled_from(["fatal", "error", "warning", "information"]),
                   st.one_of(st.sampled_from(sorted(issue_types())), IDS), TEXT,
                   st.one_of(st.none(), st.integers(0, 99).map(lambda i: f"Bundle.entry[{i}].resource.status"), TEXT))
ALERTS = st.builds(OrderAlert, references(st.sampled_from(["MedicationRequest", "ServiceRequest"])), TEXT, TEXT,
                   TEXT, CITATIONS)


@st.composite
def assessments(draw, patient_index: int = 0) -> PatientAssessment:
    """A random assessment in the shape the core produces it."""
    patient_id = draw(IDS) + f"-{patient_index}"
    reference = draw(st.sampled_from([f"Patient/{patient_id}", f"urn:uuid:{draw(st.uuids())}"]))
    return PatientAssessment(
        patient_id=patient_id,
        patient_reference=reference,
        assessed_at=draw(INSTANTS),
        library="CalcinosisCutis",
        library_version=draw(st.sampled_from(["1.0.0", "2.3.1"])),
        grades=draw(grades()),
        recommended=tuple(draw(st.lists(PANEL_TESTS, max_size=4, unique_by=lambda t: (t.code, t.system, t.display)))),
        available=tuple(draw(st.lists(AVAILABLE, max_size=3))),
        omitted=tuple(draw(st.lists(OMITTED, max_size=2))),
        values_used=tuple(draw(st.lists(VALUES, max_size=3))),
        issues=tuple(draw(st.lists(ISSUES, max_size=3))),
        order_alerts=tuple(draw(st.lists(ALERTS, max_size=2))),
        calcinosis_condition=draw(st.one_of(st.none(), references(st.just("Condition")))),
        notes=draw(TEXTS),
        unconfirmed=tuple(draw(st.lists(UNCONFIRMED, max_size=2))),
        values_note=draw(TEXT),
    )


def _validate_every_resource(bundle: dict) -> None:
    """fhir.resources.R4B on the Bundle and on each resource, plus the service's own R4 checks."""
    Bundle.model_validate(bundle)
    entries = bundle.get("entry", [])
    known_types = {entry["fullUrl"]: entry["resource"]["resourceType"] for entry in entries}
    for entry in entries:
        assert entry["fullUrl"] == urn(entry["resource"]["id"])
        validate_resource(entry["resource"], known_types)


PROPERTY_SETTINGS = settings(max_examples=200, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@PROPERTY_SETTINGS
@given(patient=assessments(), bundle_issues=st.lists(ISSUES, max_size=2))
def test_every_output_of_a_random_assessment_is_valid_r4(patient, bundle_issues):
    _validate_every_resource(build_result_bundle([patient], bundle_issues))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(first=assessments(0), second=assessments(1))
def test_validation_at_runtime_changes_nothing_but_the_cost(first, second):
    second = dataclasses.replace(second, assessed_at=first.assessed_at)  # one evaluation instant per bundle
    built = build_result_bundle([first, second], [])
    _validate_every_resource(built)
    assert build_result_bundle([first, second], [], validate=True) == built


@PROPERTY_SETTINGS
@given(issues=st.lists(ISSUES, max_size=4))
def test_every_error_outcome_is_valid_r4(issues):
    outcome = operation_outcome(issues)
    validate_resource(outcome)
    assert operation_outcome(issues, validate=True) == outcome


def test_with_validation_on_an_invalid_output_is_a_clear_error_naming_where():
    from test_outputs_scenarios import metastatic_high

    # A core defect the builders cannot see: an Observation handed on as the calcinosis Condition.
    bad = dataclasses.replace(metastatic_high(), calcinosis_condition="Observation/ca-1")
    assert "entry" in build_result_bundle([bad], [])  # validation is off by default: built as given
    with pytest.raises(OutputValidationError, match=r"RiskAssessment/[0-9a-f-]+\.condition: reference to a "
                                                    r"Observation is not allowed here in R4; allowed: Condition"):
        build_result_bundle([bad], [], validate=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(recommended=st.lists(PANEL_TESTS, min_size=1, max_size=4,
                            unique_by=lambda t: (t.code, t.system, t.display)))
def test_every_service_request_a_card_suggests_is_valid_r4(recommended):
    """The CDS Hooks cards propose the same tests as draft ServiceRequests, built valid the same way."""
    from fhir.resources.R4B.servicerequest import ServiceRequest

    from service.hooks.cards import CardContext, build_cards
    from tests.support.cds_app import metastatic_assessment

    assessment = dataclasses.replace(metastatic_assessment(), recommended=tuple(recommended))
    context = CardContext(hook="patient-view", base_url="https://cds.example.org", patient_reference="Patient/pat-1")
    proposed = [action["resource"] for issued in build_cards(assessment, context)
                for suggestion in issued.card.get("suggestions", []) for action in suggestion["actions"]
                if action.get("resource", {}).get("resourceType") == "ServiceRequest"]
    assert proposed
    for resource in proposed:
        ServiceRequest.model_validate(resource)
    checked = CardContext(hook="patient-view", base_url="https://cds.example.org", patient_reference="Patient/pat-1",
                          validate_outputs=True)
    again = [action["resource"] for issued in build_cards(assessment, checked)
             for suggestion in issued.card.get("suggestions", []) for action in suggestion["actions"]
             if action.get("resource", {}).get("resourceType") == "ServiceRequest"]
    assert len(again) == len(proposed)

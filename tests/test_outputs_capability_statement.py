"""GET /fhir/metadata content and the shipped conformance artefacts (all validated as R4)."""

from __future__ import annotations

from service.assessment_model import CALCINOSIS_TYPES
from service.fhir_outputs import assess_operation_definition, calcinosis_type_codesystem, capability_statement
from test_outputs_scenarios import validate_r4

OPERATION_URL = "https://calcinosis-cds.org/fhir/OperationDefinition/assess"


def test_capability_statement_declares_an_instance_server_with_the_assess_operation():
    statement = capability_statement()
    validate_r4(statement)
    assert (statement["status"], statement["kind"], statement["fhirVersion"]) == ("active", "instance", "4.0.1")
    assert statement["format"] == ["json"]
    (rest,) = statement["rest"]
    assert rest["mode"] == "server"
    assert [(op["name"], op["definition"]) for op in rest["operation"]] == [("assess", OPERATION_URL)]


def test_base_url_and_software_version_are_filled_in_when_given():
    statement = capability_statement(base_url="https://cds.example.org/fhir/", software_version="0.1.0")
    validate_r4(statement)
    assert statement["implementation"]["url"] == "https://cds.example.org/fhir"
    assert statement["software"] == {"name": "calcinosis-cds", "version": "0.1.0"}
    assert "url" not in capability_statement()["implementation"]  # the template itself is untouched


def test_the_operation_definition_named_by_the_statement_is_shipped_and_valid():
    definition = assess_operation_definition()
    validate_r4(definition)
    assert definition["url"] == OPERATION_URL
    assert (definition["code"], definition["system"], definition["instance"]) == ("assess", True, False)
    assert {(p["name"], p["use"], p["type"]) for p in definition["parameter"]} == {
        ("bundle", "in", "Bundle"), ("return", "out", "Bundle")}


def test_the_calcinosis_type_codesystem_has_exactly_the_five_types():
    codesystem = calcinosis_type_codesystem()
    validate_r4(codesystem)
    assert codesystem["url"] == "https://calcinosis-cds.org/fhir/CodeSystem/calcinosis-type"
    assert codesystem["content"] == "complete"
    assert tuple(concept["code"] for concept in codesystem["concept"]) == CALCINOSIS_TYPES
    assert codesystem["count"] == len(CALCINOSIS_TYPES)

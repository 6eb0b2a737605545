"""The facts model is named for what it is: normalized facts, not FHIR resources.

A library declares `using CalcinosisFacts version '1.0.0'`; `using FHIR` is refused with the model to
use, and a FHIR element name with an obvious facts counterpart (`valueQuantity`, `effectiveDateTime`,
`clinicalStatus.coding`) gets that counterpart as its suggestion, from the mapping kept in model.json.
"""

from __future__ import annotations

import json

import pytest

from service.cql_like import CqlCompilationError, CqlNameError, CqlTypeError, compile_library

from cqlcases import HEADER, MODEL, MODEL_PATH, ROOT


def compile_errors(source: str) -> list:
    with pytest.raises(CqlCompilationError) as info:
        compile_library(source, filename="rules/t.cql", model=MODEL)
    return info.value.errors


def test_the_model_is_named_calcinosis_facts():
    data = json.loads(MODEL_PATH.read_text(encoding="utf-8"))
    assert (data["model"], data["version"]) == ("CalcinosisFacts", "1.0.0")
    assert (MODEL.model, MODEL.version) == ("CalcinosisFacts", "1.0.0")


def test_a_library_using_calcinosis_facts_compiles():
    lib = compile_library(HEADER + 'define "Calcium": [Observation] O where O.value > 10 \'mg/dL\'',
                          filename="rules/t.cql", model=MODEL)
    assert "Calcium" in lib.define_names


def test_the_shipped_library_declares_the_facts_model():
    text = (ROOT / "service" / "knowledge" / "CalcinosisCutis.cql").read_text(encoding="utf-8")
    assert "using CalcinosisFacts version '1.0.0'" in text
    assert "using FHIR" not in text


def test_using_fhir_is_refused_naming_the_model_to_use():
    (error,) = compile_errors("library T version '1'\nusing FHIR version '4.0.1'\ncontext Patient\n"
                              'define "A": 1')
    assert isinstance(error, CqlNameError)
    assert (error.line, error.column) == (2, 1)
    assert "'FHIR' is not available" in error.message
    assert "normalized facts, not FHIR resources" in error.message
    assert "using CalcinosisFacts version '1.0.0'" in error.message
    assert error.suggestion == "CalcinosisFacts"


def test_a_wrong_version_of_the_facts_model_is_refused():
    (error,) = compile_errors("library T version '1'\nusing CalcinosisFacts version '4.0.1'\ncontext Patient\n"
                              'define "A": 1')
    assert "model CalcinosisFacts version '4.0.1' is not available (have '1.0.0')" in error.message


@pytest.mark.parametrize("fhir_name, facts_name, record", [
    ("valueQuantity", "value", "Observation"),
    ("effectiveDateTime", "effective", "Observation"),
    ("onsetDateTime", "onset", "Condition"),
    ("authoredOn", None, "MedicationRequest"),  # the same name in both: nothing to map
])
def test_a_fhir_element_name_suggests_the_facts_field(fhir_name, facts_name, record):
    source = HEADER + f'define "A": [{record}] R return R.{fhir_name}'
    if facts_name is None:
        compile_library(source, filename="rules/t.cql", model=MODEL)
        return
    (error,) = compile_errors(source)
    assert isinstance(error, CqlTypeError)
    assert f"{record} has no element '{fhir_name}'" in error.message
    assert (f"the facts model is not FHIR: FHIR's {record}.{fhir_name} is the facts field '{facts_name}'"
            in error.message)
    assert error.suggestion == facts_name


def test_clinical_status_coding_suggests_the_facts_status_string():
    (error,) = compile_errors(HEADER + 'define "A": [Condition] C where C.clinicalStatus.coding is not null')
    assert isinstance(error, CqlTypeError)
    assert "String has no element 'coding'" in error.message
    assert "FHIR's Condition.clinicalStatus.coding is the facts field 'clinicalStatus'" in error.message
    assert error.suggestion == "clinicalStatus"


def test_a_misspelling_without_fhir_counterpart_keeps_the_nearest_name():
    (error,) = compile_errors(HEADER + 'define "A": [Observation] O return O.efective')
    assert error.suggestion == "effective" and "not FHIR" not in error.message


def test_every_fhir_name_maps_to_a_field_of_its_type():
    data = json.loads(MODEL_PATH.read_text(encoding="utf-8"))
    for type_name, spec in data["types"].items():
        for fhir_path, field in spec.get("fhirNames", {}).items():
            assert field in spec["fields"], (type_name, fhir_path)
            assert fhir_path.split(".")[0] != field or "." in fhir_path, (type_name, fhir_path)

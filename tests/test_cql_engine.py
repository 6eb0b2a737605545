"""The engine's public API: loading, evaluation, parameters, evidence, value sets, formatting, tooling."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from service.cql_like import (CqlCompilationError, CqlNameError, DefineResult, compile_library, format_value,
                              load_library)
from service.cql_like.quantity import Quantity
from service.cql_like.tooling import render_result
from service.cql_like.values import Code, Concept, CqlTuple, Interval, Record

from cqlcases import MODEL, NOW, FactsProvider

LOINC = "http://loinc.org"

LIBRARY = """library Labs version '3.0.0'
using CalcinosisFacts version '1.0.0'
codesystem "LOINC": 'http://loinc.org'
valueset "Calcium": 'https://example.org/ValueSet/calcium'
parameter "Lookback" Quantity default 1 year
parameter "Threshold" default 10.5 'mg/dL'
context Patient
define "Recent calcium": [Observation: "Calcium"] O
    where O.status = 'final' and O.effective during Interval[Now() - "Lookback", Now()]
define "Latest calcium": Last("Recent calcium" C sort by effective)
define "High": "Latest calcium".value > "Threshold"
define function Label(q Quantity): ToString(q)
define "Label": Label("Latest calcium".value)
"""


def facts(*observations):
    return FactsProvider({
        "patient": {"source": "Patient/p1", "birthDate": {"date": "1960-01-01"}},
        "Observation": [
            {"source": f"Observation/{i}", "code": {"concept": [[LOINC, "17861-6"]]}, "status": status,
             "value": {"quantity": [value, "mg/dL"]}, "effective": {"datetime": when}}
            for i, (value, when, status) in enumerate(observations, start=1)],
    })


def labs(valuesets=None):
    return compile_library(LIBRARY, filename="labs.cql", model=MODEL,
                           valuesets=valuesets or {"https://example.org/ValueSet/calcium": [(LOINC, "17861-6")]})


def test_library_metadata_and_define_order():
    library = labs()
    assert (library.name, library.version, library.filename) == ("Labs", "3.0.0", "labs.cql")
    assert library.define_names == ("Recent calcium", "Latest calcium", "High", "Label")
    assert library.parameters == {"Lookback": Quantity(Decimal(1), "year"), "Threshold": Quantity(Decimal("10.5"), "mg/dL")}


def test_evaluate_returns_every_define_with_precise_evidence():
    provider = facts(("9.8", "2026-10-01T08:00:00Z", "final"), ("11.0", "2026-11-01T08:00:00Z", "final"),
                     ("12.0", "2026-11-02T08:00:00Z", "preliminary"), ("13.0", "2024-01-01T08:00:00Z", "final"))
    result = labs().evaluate(provider, now=NOW)
    assert list(result) == ["Recent calcium", "Latest calcium", "High", "Label"]
    assert result["Recent calcium"].evidence == ("Observation/1", "Observation/2")
    assert result["Latest calcium"].value is provider.by_source["Observation/2"]
    assert result["Latest calcium"].evidence == ("Observation/2",)
    assert result["High"] == DefineResult(True, ("Observation/2",))
    assert result["Label"].value == "11.0 'mg/dL'"


def test_retrieve_passes_the_value_set_codes_to_the_provider_once():
    provider = facts(("9.8", "2026-10-01T08:00:00Z", "final"))
    labs().evaluate(provider, now=NOW)
    assert provider.retrieves == [("Observation", frozenset({Code("17861-6", LOINC)}))]


def test_parameters_can_be_overridden_by_name():
    provider = facts(("9.8", "2025-06-01T08:00:00Z", "final"))
    library = labs()
    assert library.evaluate_define("High", provider, now=NOW).value is None
    widened = library.evaluate_define("High", provider, now=NOW,
                                      parameters={"Lookback": Quantity(Decimal(2), "years"),
                                                  "Threshold": Quantity(Decimal("9.0"), "mg/dL")})
    assert widened.value is True


def test_unknown_parameter_or_define_name_is_a_name_error():
    library = labs()
    with pytest.raises(CqlNameError, match="did you mean 'Lookback'"):
        library.evaluate(facts(), now=NOW, parameters={"Lookbak": None})
    with pytest.raises(CqlNameError, match="did you mean 'High'"):
        library.evaluate_define("Hgh", facts(), now=NOW)


def test_now_makes_results_deterministic():
    library = compile_library("library T version '1'\ncontext Patient\ndefine \"Age\": AgeInYears()\n"
                              "define \"Today\": Today()", model=MODEL)
    provider = facts()
    first = library.evaluate(provider, now=datetime(2026, 12, 31, 23, 0, tzinfo=timezone.utc))
    second = library.evaluate(provider, now=datetime(2027, 1, 1, 0, 30, tzinfo=timezone.utc))
    assert (first["Age"].value, first["Today"].value) == (66, date(2026, 12, 31))
    assert (second["Age"].value, second["Today"].value) == (67, date(2027, 1, 1))


def test_value_sets_are_loaded_from_a_directory_of_fhir_json(tmp_path):
    (tmp_path / "ca.json").write_text(json.dumps({
        "resourceType": "ValueSet", "url": "https://example.org/ValueSet/calcium",
        "compose": {"include": [{"system": LOINC, "concept": [{"code": "17861-6"}]}]}}), encoding="utf-8")
    (tmp_path / "other.json").write_text(json.dumps({"resourceType": "CodeSystem", "url": "x"}), encoding="utf-8")
    (tmp_path / "labs.cql").write_text(LIBRARY, encoding="utf-8")
    library = load_library(tmp_path / "labs.cql", model=MODEL, valueset_dir=tmp_path)
    provider = facts(("11.0", "2026-11-01T08:00:00Z", "final"))
    assert library.evaluate_define("High", provider, now=NOW).value is True


def test_a_value_set_missing_from_the_directory_fails_the_load(tmp_path):
    (tmp_path / "labs.cql").write_text(LIBRARY, encoding="utf-8")
    with pytest.raises(CqlCompilationError) as info:
        load_library(tmp_path / "labs.cql", model=MODEL, valueset_dir=tmp_path)
    assert info.value.errors[0].line == 4


def test_records_without_a_model_field_read_as_null():
    library = compile_library("library T version '1'\ncontext Patient\n"
                              "define \"A\": First([Condition]).abatement is null", model=MODEL)
    provider = FactsProvider({"Condition": [{"source": "Condition/1", "code": {"concept": [[LOINC, "x"]]}}]})
    assert library.evaluate_define("A", provider, now=NOW) == DefineResult(True, ("Condition/1",))


def test_model_file_describes_the_facts_types():
    assert set(MODEL.types) >= {"Patient", "Observation", "Condition", "MedicationRequest", "MedicationAdministration",
                                "MedicationStatement", "Procedure", "ServiceRequest"}
    assert str(MODEL.types["Observation"].fields["referenceRange"]) == "Interval<Quantity>"
    assert MODEL.types["Observation"].primary_code_path == "code"
    assert MODEL.types["Patient"].primary_code_path is None


@pytest.mark.parametrize("value, text", [
    (None, "null"), (True, "true"), (3, "3"), (Decimal("2.50"), "2.5"), (Decimal("3"), "3.0"),
    ("it's", "'it\\'s'"), (Quantity(Decimal("10.5"), "mg/dL"), "10.5 'mg/dL'"), (date(2026, 1, 1), "@2026-01-01"),
    (datetime(2026, 1, 1, 8, 0, tzinfo=timezone.utc), "@2026-01-01T08:00:00Z"), ([1, 2], "{ 1, 2 }"), ([], "{ }"),
    (CqlTuple({"a": 1, "b": None}), "Tuple { a: 1, b: null }"), (Interval(1, 5, True, False), "Interval[1, 5)"),
    (Code("17861-6", LOINC), "Code '17861-6' from 'http://loinc.org'"),
    (Concept((Code("1", "s"),)), "Concept { Code '1' from 's' }"),
    (Record("Observation", {}, "Observation/9"), "Observation(Observation/9)"),
])
def test_format_value_renders_cql_literals(value, text):
    assert format_value(value) == text


def test_render_result_prints_value_then_evidence():
    assert render_result("High", DefineResult(True, ("Observation/1", "Observation/2"))) == (
        "High = true\nevidence:\n  Observation/1\n  Observation/2")
    assert render_result("None", DefineResult(None, ())) == "None = null\nevidence: (none)"


def test_parameter_defaults_are_evaluated_at_the_evaluation_instant():
    library = compile_library("library T version '1'\nparameter \"Since\" default Today() - 1 year\ncontext Patient\n"
                              "define \"Result\": \"Since\"", model=MODEL)
    result = library.evaluate_define("Result", FactsProvider({}), now=datetime(2030, 3, 1, tzinfo=timezone.utc))
    assert result.value == date(2029, 3, 1)


# ---- deep expressions and implicit conversions -----------------------------------------------

DEEP_HEADER = "library Deep version '1'\nusing CalcinosisFacts version '1.0.0'\ncontext Patient\n"


def _evaluate_one(body: str, **kwargs):
    library = compile_library(DEEP_HEADER + body, model=MODEL)
    return library.evaluate(FactsProvider({}), now=NOW, **kwargs)


@pytest.mark.parametrize("expression, expected", [
    ("1" + " + 1" * 2000, 2001),
    ("Abs(" * 500 + "-7" + ")" * 500, 7),
    ("Count(" + "First(" * 249 + "{" * 250 + "1" + "}" * 250 + ")" * 249 + ")", 1),
    ("true" + " and true" * 2000, True),
    ("- " * 1000 + "1", 1),
])
def test_deeply_nested_expressions_compile_and_evaluate(expression, expected):
    import sys
    limit = sys.getrecursionlimit()
    assert _evaluate_one(f'define "A": {expression}')["A"].value == expected
    assert sys.getrecursionlimit() == limit


def test_a_deeply_nested_list_value_can_be_formatted():
    value = _evaluate_one('define "A": ' + "{" * 500 + "1" + "}" * 500)["A"].value
    text = format_value(value)
    assert text.startswith("{ { {") and text.count("1") == 1


def test_an_integer_override_of_a_decimal_parameter_is_a_decimal():
    library = compile_library("library P version '1'\nparameter \"Limit\" Decimal default 1.5\ncontext Patient\n"
                              "define \"Next\": \"Limit\" + 1", model=MODEL)
    result = library.evaluate(FactsProvider({}), now=NOW, parameters={"Limit": 2147483647})["Next"].value
    assert result == Decimal("2147483648") and isinstance(result, Decimal)


def test_an_integer_default_of_a_decimal_parameter_is_a_decimal():
    library = compile_library("library P version '1'\nparameter \"Limit\" Decimal default 2147483647\ncontext Patient\n"
                              "define \"Next\": \"Limit\" + 1", model=MODEL)
    result = library.evaluate(FactsProvider({}), now=NOW)["Next"].value
    assert result == Decimal("2147483648") and isinstance(result, Decimal)


def test_a_long_chain_of_defines_referring_to_later_defines_evaluates():
    body = "".join(f'define "A{i}": "A{i + 1}" + 1\n' for i in range(599)) + 'define "A599": 1\n'
    assert _evaluate_one(body)["A0"].value == 600


def test_distinct_over_thousands_of_records_keeps_first_occurrences_in_order():
    from service.cql_like.operators import distinct
    from service.cql_like.values import Record as FactRecord

    records = [FactRecord("MedicationRequest", {"id": f"m{i % 1500}", "status": "draft"},
                          f"MedicationRequest/m{i % 1500}") for i in range(3000)]
    kept = distinct(records)
    assert [r.source for r in kept] == [f"MedicationRequest/m{i}" for i in range(1500)]


def test_distinct_treats_integer_and_equal_decimal_as_one_and_booleans_apart():
    from decimal import Decimal

    from service.cql_like.operators import distinct

    assert distinct([1, Decimal("1.0"), None, None, "a", "a", True, 2]) == [1, None, "a", True, 2]

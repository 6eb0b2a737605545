"""What evaluation does not repeat: defines nobody asked for, calls already made with the same
arguments, constant expressions, value-set membership of a code already looked up. Each saving
must leave values and evidence exactly as a full evaluation gives them."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from service.cql_like import CqlEvaluationError, CqlNameError, compile_library
from service.cql_like import checker, codegen, constants
from service.cql_like import functions as fn
from service.cql_like import valuesets
from service.cql_like.parser import parse
from service.cql_like.valuesets import ValueSet
from service.cql_like.quantity import Quantity
from service.cql_like.values import Code, Concept

from cqlcases import FAILS, HEADER, MODEL, NOW, FactsProvider

FACTS = {"patient": {"source": "Patient/p1", "id": "p1", "gender": "female"},
         "Condition": [{"source": "Condition/1", "clinicalStatus": "active",
                        "code": {"concept": [["http://snomed.info/sct", "1"]]}}]}


@pytest.fixture
def upper_calls(monkeypatch):
    """Every value `Upper` is called with, in libraries compiled while the fixture is active."""
    calls: list[str] = []
    spec = fn.REGISTRY["Upper"]

    def counting(text):
        calls.append(text)
        return spec.impl(text)
    monkeypatch.setitem(fn.REGISTRY, "Upper", dataclasses.replace(spec, impl=counting))
    return calls


def checked_library(source: str):
    """The checked library of `source` (named t.cql), with no value sets."""
    return checker.check(parse(source, "t.cql"), source=source, filename="t.cql", model=MODEL, valuesets={}).library


def library(body: str):
    return compile_library(HEADER + body, filename="t.cql", model=MODEL)


# ---- only the defines asked for ------------------------------------------------------------------

def test_evaluate_gives_the_defines_asked_for_in_declaration_order():
    lib = library('define "A": 1\ndefine "B": "A" + 1\ndefine "C": 3\n')
    result = lib.evaluate(FactsProvider({}), now=NOW, defines=["C", "B"])
    assert list(result) == ["B", "C"]
    assert result.values_only() == {"B": 2, "C": 3}


def test_a_define_no_one_asked_for_is_not_evaluated():
    lib = library(f'define "Broken": {FAILS}\ndefine "Fine": 1\ndefine "Uses": "Broken"\n')
    assert lib.evaluate(FactsProvider({}), now=NOW, defines=["Fine"]).values_only() == {"Fine": 1}
    with pytest.raises(CqlEvaluationError, match="cannot compare"):
        lib.evaluate(FactsProvider({}), now=NOW, defines=["Uses"])
    with pytest.raises(CqlEvaluationError):
        lib.evaluate(FactsProvider({}), now=NOW)


def test_asking_for_an_unknown_define_is_a_name_error_with_a_suggestion():
    lib = library('define "Fine": 1\n')
    with pytest.raises(CqlNameError) as info:
        lib.evaluate(FactsProvider({}), now=NOW, defines=["Fien"])
    assert info.value.suggestion == "Fine"


def test_a_subset_has_the_values_and_evidence_of_a_full_evaluation():
    lib = library('define "Conditions": [Condition]\n'
                  'define "Count": Count("Conditions")\n'
                  'define "Active": "Conditions" C where C.clinicalStatus = \'active\'\n')
    full = lib.evaluate(FactsProvider(FACTS), now=NOW)
    part = lib.evaluate(FactsProvider(FACTS), now=NOW, defines=["Active", "Count"])
    assert {name: part[name] for name in part} == {name: full[name] for name in ("Count", "Active")}


# ---- user function calls, once per evaluation and arguments --------------------------------------

def test_a_call_repeated_with_the_same_arguments_is_evaluated_once_per_evaluation(upper_calls):
    # The body reads the patient, so its value is this evaluation's only.
    lib = library('define function Tagged(s String): Upper(s) + \':\' + Patient.id\n'
                  'define "A": Tagged(Patient.id)\ndefine "B": Tagged(Patient.id)\n'
                  'define "C": Tagged(Patient.gender)\n')
    result = lib.evaluate(FactsProvider(FACTS), now=NOW)
    assert result.values_only() == {"A": "P1:p1", "B": "P1:p1", "C": "FEMALE:p1"}
    assert upper_calls == ["p1", "female"]
    lib.evaluate(FactsProvider(FACTS), now=NOW)
    assert upper_calls == ["p1", "female"] * 2, "a new evaluation (another patient) evaluates again"


def test_a_function_of_its_text_arguments_only_is_computed_once_per_library_and_arguments(upper_calls):
    lib = library('define function Shout(s String): Upper(s)\n'
                  'define "A": Shout(Patient.id)\ndefine "C": Shout(Patient.gender)\n')
    other = {"patient": {"source": "Patient/p2", "id": "p2", "gender": "female"}}
    assert lib.evaluate(FactsProvider(FACTS), now=NOW).values_only() == {"A": "P1", "C": "FEMALE"}
    second = lib.evaluate(FactsProvider(other), now=NOW)
    assert second.values_only() == {"A": "P2", "C": "FEMALE"}
    assert upper_calls == ["p1", "female", "p2"], "the same text in a later evaluation: the value kept"
    assert second["C"].evidence == ("Patient/p2",), "the evidence is the reading of this patient's record"


def test_a_function_of_a_record_is_computed_again_in_each_evaluation(upper_calls):
    lib = library('define function Status(c Condition): Upper(c.clinicalStatus)\n'
                  'define "A": Status(([Condition])[0])\n')
    for _ in range(2):
        result = lib.evaluate(FactsProvider(FACTS), now=NOW)
        assert (result["A"].value, result["A"].evidence) == ("ACTIVE", ("Condition/1",))
    assert upper_calls == ["active", "active"]


def test_a_function_of_a_concept_is_kept_by_the_concept_s_content(upper_calls):
    lib = library('define function Codes(c Concept): Upper(Combine((c.codes) X return X.code, \',\'))\n'
                  'define "A": Codes((([Condition])[0]).code)\n')

    def condition_codes(patient_id: str, *codes: str) -> str:
        facts = {"patient": {"source": f"Patient/{patient_id}", "id": patient_id},
                 "Condition": [{"source": f"Condition/{patient_id}",
                                "code": {"concept": [["http://snomed.info/sct", code] for code in codes]}}]}
        result = lib.evaluate(FactsProvider(facts), now=NOW)["A"]
        assert result.evidence == (f"Condition/{patient_id}",), "the record read at the call is this patient's"
        return result.value

    assert [condition_codes("p1", "1a"), condition_codes("p2", "1a"), condition_codes("p3", "1a", "2b")] \
        == ["1A", "1A", "1A,2B"]
    assert upper_calls == ["1a", "1a,2b"], "an equal concept of another patient: the value kept"


def test_concepts_and_codes_that_differ_in_anything_a_function_reads_have_different_content_keys():
    code = Code("1", "http://snomed.info/sct", "Lupus")
    variants = [Code("1", "http://snomed.info/sct", "Lupus (disorder)"), Code("1", "http://snomed.info/sct"),
                Code("1", "http://snomed.info/sct", "Lupus", "2026"), Code("1", "http://loinc.org", "Lupus")]
    assert all(variant == code or variant.system != code.system for variant in variants), "equal as CQL codes"
    keys = {codegen.content_key(item) for item in (code, *variants)}
    assert len(keys) == 1 + len(variants)
    concept = Concept((code,), "Lupus")
    assert codegen.content_key(concept) == codegen.content_key(Concept((Code("1", "http://snomed.info/sct", "Lupus"),),
                                                                       "Lupus"))
    assert codegen.content_key(concept) != codegen.content_key(Concept((code,), "Lupus erythematosus"))


def test_long_texts_are_not_kept_and_the_kept_values_are_bounded(upper_calls, monkeypatch):
    monkeypatch.setattr(codegen, "REMEMBERED_CALLS", 2)
    lib = library('define function Shout(s String): Upper(s)\ndefine "A": Shout(Patient.id)\n')

    def shout(patient_id: str) -> str:
        facts = {"patient": {"source": f"Patient/{patient_id}", "id": patient_id}}
        return lib.evaluate(FactsProvider(facts), now=NOW)["A"].value

    long_id = "x" * 1100
    assert [shout(long_id), shout(long_id)] == [long_id.upper()] * 2
    assert upper_calls == [long_id] * 2, "arguments of more than 1,024 characters are computed each time"
    upper_calls.clear()
    assert [shout("a"), shout("b"), shout("a"), shout("c"), shout("a")] == ["A", "B", "A", "C", "A"]
    assert upper_calls == ["a", "b", "c", "a"], "a third text empties the two kept: 'a' is computed again"


def test_a_concept_is_kept_only_when_all_its_key_holds_is_short(upper_calls):
    # The key holds each code's system and version too: a long system is text kept like any other.
    lib = library('define function Codes(c Concept): Upper(Combine((c.codes) X return X.code, \',\'))\n'
                  'define "A": Codes((([Condition])[0]).code)\n')
    long_system = "urn:oid:" + "1." * 520 + "1"

    def codes_of(patient_id: str) -> str:
        facts = {"patient": {"source": f"Patient/{patient_id}", "id": patient_id},
                 "Condition": [{"source": f"Condition/{patient_id}", "code": {"concept": [[long_system, "1a"]]}}]}
        return lib.evaluate(FactsProvider(facts), now=NOW)["A"].value

    assert [codes_of("p1"), codes_of("p2")] == ["1A", "1A"]
    assert upper_calls == ["1a", "1a"], "a concept with more than 1,024 characters in its key: computed each time"


def test_a_repeated_call_adds_the_evidence_its_body_read(upper_calls):
    # The indexer adds no evidence: the record is evidence only through what the body reads.
    lib = library('define function Status(c Condition): Upper(c.clinicalStatus)\n'
                  'define "A": Status(([Condition])[0])\ndefine "B": Status(([Condition])[0])\n'
                  'define "Ignored": Length(Status(([Condition])[0])) > 100 or true\n')
    result = lib.evaluate(FactsProvider(FACTS), now=NOW)
    assert (result["A"].value, result["B"].value) == ("ACTIVE", "ACTIVE")
    assert result["A"].evidence == result["B"].evidence == ("Condition/1",)
    assert upper_calls == ["active"]


def test_arguments_a_function_could_tell_apart_are_not_one_call():
    keys = [codegen.argument_key(v) for v in (Decimal("1.0"), Decimal("1.00"), 1, True, "1", ["1"], None)]
    assert len(set(keys)) == len(keys)
    assert codegen.argument_key(["a", 1]) == codegen.argument_key(["a", 1])
    first, second = Code("1", "s"), Code("1", "s")
    assert codegen.argument_key(first) != codegen.argument_key(second), "other values: by identity"


def test_equal_decimals_of_different_precision_are_different_calls():
    lib = library("define function Same(d Decimal): d\n"
                  'define "Whole": Same(1)\ndefine "Tenths": Same(1.0)\n')
    values = lib.evaluate(FactsProvider({}), now=NOW).values_only()
    assert [str(values["Whole"]), str(values["Tenths"])] == ["1", "1.0"]


# ---- constant expressions, once per library ------------------------------------------------------

def test_a_constant_expression_is_computed_once_per_library(upper_calls):
    lib = library('define "Constant": Upper(\'abc\')\n'
                  'define function Shout(s String): Upper(s)\n'
                  'define "Constant call": Shout(\'def\')\n'
                  'define "Per patient": Upper(Patient.id)\n')
    for _ in range(3):
        values = lib.evaluate(FactsProvider(FACTS), now=NOW).values_only()
        assert values == {"Constant": "ABC", "Constant call": "DEF", "Per patient": "P1"}
    assert sorted(upper_calls) == ["abc", "def", "p1", "p1", "p1"]


def test_a_constant_that_fails_fails_in_every_evaluation():
    lib = library(f'define "Broken": {FAILS}\n')
    for _ in range(2):
        with pytest.raises(CqlEvaluationError, match="cannot compare"):
            lib.evaluate(FactsProvider({}), now=NOW)


def test_what_reads_the_evaluation_is_never_constant():
    header = HEADER.replace("context Patient", "parameter \"Limit\" Integer default 3\ncontext Patient")
    source = header + (
                       'define "Literal list": ({ 1, 2 }) X where X > 1\n'
                       'define "Clock": Today()\n'
                       'define "Offset": year from @2026-01-01T00:00:00Z\n'
                       'define "Parameter": "Limit" + 1\n'
                       'define "Data": Count([Condition])\n'
                       'define "Via define": "Data" + 1\n'
                       'define function Twice(x Integer): x * 2 + Count({ 1 })\n'
                       'define "Call": Twice(2)\n'
                       'define "Call on data": Twice("Data")\n')
    checked = checked_library(source)
    found = constants.constant_nodes(checked)
    is_constant = {name: id(define.node.expression) in found for name, define in checked.defines.items()}
    assert is_constant == {"Literal list": True, "Clock": False, "Offset": False, "Parameter": False,
                           "Data": False, "Via define": False, "Call": True, "Call on data": False}
    (twice,) = checked.functions.values()
    body = twice.node.body   # x * 2 + Count({ 1 }): the operand is bound by the call, the count is not
    assert id(body) not in found and id(body.right) in found


# ---- expressions of the clock and parameters, once per evaluation ---------------------------------

PARAMETERS = HEADER.replace("context Patient", "parameter \"Name\" String default 'ab'\n"
                            "parameter \"Span\" Quantity default 1 year\ncontext Patient")
OBSERVATIONS = {"patient": {"source": "Patient/p1", "id": "p1", "birthDate": {"date": "1970-05-01"}},
                "Observation": [{"source": f"Observation/{i}", "effective": {"datetime": when}}
                                for i, when in enumerate(["2026-10-01T00:00:00Z", "2025-01-01T00:00:00Z",
                                                          "2026-11-01T00:00:00+02:00"], start=1)]}


def both_forms(source: str):
    """The library with regions (and per-evaluation expressions) and the closure-per-node reference."""
    checked = checked_library(source)
    from service.cql_like.library import Library
    return Library(codegen.generate(checked, inline=True)), Library(codegen.generate(checked, inline=False))


def test_what_reads_only_the_clock_or_parameters_in_a_repeated_place_is_kept_per_evaluation():
    source = PARAMETERS + (
        'define function Recent(o Observation): o.effective >= Now() - "Span"\n'
        'define function Aged(o Observation): AgeInYears() + 1 > 2\n'
        'define "Window": Now() - "Span"\n'
        'define "Rows": [Observation] O where O.effective >= Today() - "Span" return Upper("Name")\n')
    checked = checked_library(source)
    constant, per_evaluation = constants.classify(checked)
    recent, aged = (f.node for f in checked.functions.values())
    assert id(recent.body) not in per_evaluation, "it reads the operand"
    assert id(recent.body.right) in per_evaluation and id(recent.body.right.left) not in per_evaluation
    assert not any(id(node) in per_evaluation for node in (aged.body, aged.body.left, aged.body.left.left))
    window = checked.defines["Window"].node.expression
    assert id(window) not in per_evaluation, "a define is evaluated once anyway"
    rows = checked.defines["Rows"].node.expression
    assert id(rows.where.right) in per_evaluation and id(rows.return_) in per_evaluation
    assert id(rows) not in per_evaluation and not per_evaluation & constant


def test_a_per_evaluation_expression_is_computed_once_per_evaluation_with_its_own_values(upper_calls):
    inlined, closures = both_forms(PARAMETERS + (
        'define function Label(o Observation): Upper("Name") & \'-\' & o.id\n'
        'define "Labels": [Observation] O return Label(O)\n'
        'define "Recent": [Observation] O where O.effective >= Now() - "Span"\n'))
    for parameters, name in ((None, "AB"), ({"Name": "cd", "Span": Quantity(Decimal(1), "month")}, "CD")):
        upper_calls.clear()
        got = inlined.evaluate(FactsProvider(OBSERVATIONS), now=NOW, parameters=parameters)
        assert upper_calls == [name.lower()], "one call for three rows"
        reference = closures.evaluate(FactsProvider(OBSERVATIONS), now=NOW, parameters=parameters)
        assert len(upper_calls) == 4, "the reference computes it per row"
        assert {k: (v.value if k == "Labels" else [r.source for r in v.value], v.evidence) for k, v in got.items()} \
            == {k: (v.value if k == "Labels" else [r.source for r in v.value], v.evidence) for k, v in reference.items()}
        assert got["Labels"].value == [f"{name}-"], "no row has an id: one distinct label"
    recent = inlined.evaluate(FactsProvider(OBSERVATIONS), now=NOW, defines=["Recent"])["Recent"]
    assert [r.source for r in recent.value] == ["Observation/1", "Observation/3"]


def test_a_per_evaluation_expression_that_fails_fails_at_its_position_in_every_evaluation():
    source = PARAMETERS.replace("default 1 year", "default 1 'mg'") + (
        'define "Recent": [Observation] O where O.effective >= Now() - "Span"\n')
    inlined, closures = both_forms(source)
    errors = []
    for library in (inlined, inlined, closures):
        with pytest.raises(CqlEvaluationError) as info:
            library.evaluate(FactsProvider(OBSERVATIONS), now=NOW)
        errors.append((str(info.value), info.value.line, info.value.column))
    assert errors[0] == errors[1] == errors[2] and errors[0][1:] == (6, 55)
    assert not inlined.evaluate(FactsProvider({"patient": {"source": "Patient/p1"}}), now=NOW)["Recent"].value


# ---- value-set membership, once per code ---------------------------------------------------------

def test_value_set_membership_is_decided_once_per_code_and_bounded(monkeypatch):
    vs = ValueSet("urn:vs", frozenset({Code("1", "s")}))
    assert [vs.contains("s", "1"), vs.contains("s", "2"), vs.contains("t", "1")] == [True, False, False]
    assert vs._members == {("s", "1"): True, ("s", "2"): False, ("t", "1"): False}
    monkeypatch.setattr(valuesets, "MEMBERSHIP_CACHE_SIZE", 3)
    assert vs.contains("s", "3") is False and len(vs._members) == 3
    assert vs == ValueSet("urn:vs", frozenset({Code("1", "s")})), "what is remembered is not part of the value"

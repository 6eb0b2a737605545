"""Expression regions compiled to Python source (inline.py) give exactly what the closure-per-node
form gives: the same values (to the digit), the same evidence, the same nulls and the same
positioned errors, on the shipped library and on small libraries aimed at the fallback."""

from __future__ import annotations

import orjson
import pytest

from service.cql_like import CqlEvaluationError, codegen, checker, compile_library
from service.cql_like.library import Library, read_source
from service.cql_like.parser import parse
from service.cql_like.valuesets import load_valueset_dir
from service.pipeline.assess import get_assessor
from service.pipeline.ingest import read_bundle
from service.pipeline.normalize import build_facts

from cqlcases import HEADER, MODEL, NOW, ROOT, SHIPPED_LIBRARY, SHIPPED_VALUESETS, FactsProvider

CONDITIONS = {"patient": {"source": "Patient/p1"},
              "Condition": [{"source": "Condition/1", "id": "c1", "code": {"concept": [["http://snomed.info/sct", "1"]]}},
                            {"source": "Condition/2", "id": "c2", "code": {"concept": [["http://snomed.info/sct", "2"]]}}]}


def both_forms(source: str, filename: str = "t.cql", valuesets=None) -> tuple[Library, Library]:
    """The library compiled with regions (as compile_library does) and with a closure per node."""
    tree = parse(source, filename)
    checked = checker.check(tree, source=source, filename=filename, model=MODEL, valuesets=valuesets or {})
    assert not checked.errors
    return (Library(codegen.generate(checked.library, inline=True)),
            Library(codegen.generate(checked.library, inline=False)))


def exact(result) -> dict:
    """Each define's value as repr (Decimal('1.0') is not Decimal('1.00')) and its evidence."""
    return {name: (repr(outcome.value), outcome.evidence) for name, outcome in result.items()}


def outcome(library: Library, provider, **kwargs):
    try:
        return exact(library.evaluate(provider, now=NOW, **kwargs))
    except CqlEvaluationError as error:
        return ("error", str(error), error.define, error.line, error.column)


def test_the_shipped_library_gives_the_same_values_and_evidence_for_every_fixture_patient():
    inlined, closures = both_forms(read_source(SHIPPED_LIBRARY), str(SHIPPED_LIBRARY),
                                   load_valueset_dir(SHIPPED_VALUESETS))
    assessor = get_assessor()
    patients = 0
    for path in sorted((ROOT / "fhir_fixtures" / "assess").glob("*.json")):
        if path.name.endswith(".expected.json"):
            continue
        try:
            ingested = read_bundle(orjson.loads(path.read_bytes()), assessor.selection)
        except Exception:   # noqa: BLE001 - bundles refused before evaluation have nothing to compare
            continue
        for patient in ingested.patients:
            facts = build_facts(patient, now=NOW, terminology=assessor.terminology, gaps=ingested.gaps,
                                records=assessor.records)
            # every define, not only the outputs, so that each region of the library runs
            assert outcome(inlined, facts) == outcome(closures, facts), (path.name, patient.patient_reference)
            patients += 1
    assert patients >= 20


def test_defines_are_compiled_to_regions_of_python_source():
    library = compile_library(HEADER + 'define "A": Count([Condition]) + 1 > 2 and exists [Condition]\n',
                              filename="t.cql", model=MODEL)
    source = library._defines["A"].closure.source
    assert "def region(ctx):" in source and "except FALLBACK_ERRORS" in source
    assert library.evaluate(FactsProvider(CONDITIONS), now=NOW)["A"].value is True


BODIES = [
    # three-valued logic, short circuits and the evidence each side leaves
    'define "A": Count([Condition]) > 5 and exists [Condition]\n'
    'define "B": Count([Condition]) > 1 or exists [Condition]\n'
    'define "C": (if Count([Condition]) = 2 then null else true) and exists [Condition]\n'
    'define "D": not (Count([Condition]) = 2) xor (First([Condition]) is null)\n',
    # arithmetic with Integer -> Decimal promotion, nulls and division by zero
    'define "A": Count([Condition]) / 3\n'
    'define "B": Count([Condition]) * 1.50 + 0.25\n'
    'define "C": Count([Condition]) / (Count([Condition]) - 2)\n'
    'define "D": (Count([Condition]) + Coalesce(null, null, 1)) * 2 + Length(First([Condition]).id)\n'
    'define "E": Count([Condition]) mod 0\n',
    # members, tuples, lists, case, strings, membership and intervals
    'define "T": Tuple { n: Count([Condition]), first: First([Condition]), name: \'x\' & ToString(Count([Condition])) }\n'
    'define "U": "T".first.code\n'
    'define "V": case "T".n when 1 then \'one\' when 2 then \'two\' else \'many\' end\n'
    'define "W": { "T".n, 3, null }\n'
    'define "X": "T".n in { 1, 2 } and "T".n in Interval[1, Count([Condition]) + 1]\n'
    'define "Y": Interval[Count([Condition]), Count([Condition]) + 2] overlaps Interval[3, 9]\n'
    'define "Z": Count([Condition]) between 1 and 2\n',
    # queries whose where and return are regions
    'define "Q": [Condition] C where C.code is not null return Tuple { s: C.code, n: Count([Condition]) }\n'
    'define "R": First([Condition] C sort by id desc)\n',
    # `and` / `or` written out for a true or false left side, and `&` with nulls
    'define "P": exists [Condition]\n'
    'define "N": First([Condition] C where false).id = \'x\'\n'
    'define "Table": { "P" and "N", "N" and "P", "P" and "P", "P" and not "P", "N" and "N",\n'
    '  "P" or "N", "N" or "P", not "P" or "N", not "P" or "P", not "P" or not "P", "N" or "N" }\n'
    'define "S": First([Condition]).id & First([Condition] C where false).id & \'-\' & Last([Condition]).id\n',
    # queries written into the region as loops: nested, shadowing, with/without, distinct, sort, single
    'define "Nested": [Condition] C where exists ([Condition] D where D.id = C.id) return C.id\n'
    'define "Outer": [Condition] C return Count([Condition] D where D.id != C.id)\n'
    'define "With": [Condition] C with [Condition] D such that D.id != C.id return all C.id\n'
    'define "Without": [Condition] C without [Condition] D such that D.id = \'c2\' return C.id\n'
    'define "Distinct": [Condition] C return \'same\'\n'
    'define "All": [Condition] C return all \'same\'\n'
    'define "Sorted": [Condition] C return C.id sort desc\n'
    'define "By": [Condition] C where C.id is not null sort by id desc\n'
    'define "Single": (First([Condition])) C where C.id = \'c1\' return C.id\n'
    'define "Rejected": (First([Condition])) C where C.id = \'c2\'\n'
    'define "Codes": ([Condition] C return C.code) K where K is not null\n'
    'define "Read": [Condition] C where exists ([Condition] D where D.id = \'c2\') return all \'x\'\n'
    'define "Matched": [Condition] C with [Condition] D such that D.id = \'c2\' and C.id = \'c1\' return all \'x\'\n',
    # functions called from regions, once per arguments
    'define function "Twice"(n Integer): n * 2\n'
    'define function "Label"(c Condition): \'c-\' & ToString("Twice"(Count([Condition])))\n'
    'define "F": "Twice"(Count([Condition])) + "Twice"(Count([Condition]))\n'
    'define "G": "Label"(First([Condition]))\n',
]


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("data", [CONDITIONS, {"patient": {"source": "Patient/p2"}}])
def test_small_libraries_give_the_same_values_evidence_and_nulls_in_both_forms(body, data):
    inlined, closures = both_forms(HEADER + body)
    assert outcome(inlined, FactsProvider(data)) == outcome(closures, FactsProvider(data))


def test_a_runtime_error_inside_a_region_keeps_its_position():
    body = ('define "Bounds": Interval[Count([Condition]) + 3, 1]\n'
            'define "Uses": "Bounds" is not null and Count([Condition]) > 0\n')
    inlined, closures = both_forms(HEADER + body)
    assert hasattr(inlined._defines["Bounds"].closure, "source"), "the define is a compiled region"
    for library in (inlined, closures):
        with pytest.raises(CqlEvaluationError) as info:
            library.evaluate(FactsProvider(CONDITIONS), now=NOW, defines=["Uses"])
        assert (info.value.define, info.value.line, info.value.column) == ("Bounds", 4, 18)
        assert "low bound is greater than its high bound" in str(info.value)


def test_a_failure_inside_a_region_falls_back_with_the_evidence_of_the_closures():
    # mg + mL is a unit error raised inside the region after the conditions were read; the closure
    # form then reports it at the addition, and the patient with no condition gets null without error
    body = ('define "Weight": if exists [Condition] then (Count([Condition]) * 1 \'mg\' + 1 \'mL\')'
            ' else null\n')
    inlined, closures = both_forms(HEADER + body)
    with_conditions = [outcome(library, FactsProvider(CONDITIONS)) for library in (inlined, closures)]
    assert with_conditions[0] == with_conditions[1]
    assert with_conditions[0][0] == "error" and (with_conditions[0][3], with_conditions[0][4]) == (4, 46)
    without = [outcome(library, FactsProvider({"patient": {"source": "Patient/p2"}})) for library in (inlined, closures)]
    assert without[0] == without[1] == {"Weight": ("None", ())}


def test_a_failure_inside_a_query_of_a_region_has_the_position_of_the_closures():
    body = ('define "Ids": [Condition] C where C.id is not null return C.id\n'
            'define "Bad": [Condition] C where exists "Ids" and Count("Ids") * 1 \'mg\' > 1 \'mL\' return C.id\n'
            'define "Zero": [Condition] C return Count("Ids") / (Count("Ids") - 2)\n')
    inlined, closures = both_forms(HEADER + body)
    assert "def _query0(ctx):" in inlined._defines["Bad"].closure.source
    for data in (CONDITIONS, {"patient": {"source": "Patient/p2"}}):
        got = [outcome(library, FactsProvider(data), defines=["Bad"]) for library in (inlined, closures)]
        assert got[0] == got[1]
    assert got[0] == {"Bad": ("[]", ())}
    failed = outcome(inlined, FactsProvider(CONDITIONS), defines=["Bad"])
    assert failed == outcome(closures, FactsProvider(CONDITIONS), defines=["Bad"])
    assert failed[0] == "error" and failed[2:] == ("Bad", 5, 52)
    zero = [outcome(library, FactsProvider(CONDITIONS), defines=["Zero"]) for library in (inlined, closures)]
    assert zero[0] == zero[1] == {"Zero": ("[None]", ("Condition/1", "Condition/2"))}

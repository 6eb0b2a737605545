"""The pipeline has the library evaluate only the defines the assessment reads: that list is
complete, and an assessment built from it is the one a full evaluation gives."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
import pytest

from conftest import FIXTURE_NOW, FIXTURES_DIR
from service.cql_like.values import Code, Concept, Record
from service.pipeline.assess import get_assessor
from service.pipeline.facts import PatientFacts
from service.pipeline.ingest import read_bundle
from service.pipeline.normalize import build_facts
from service.pipeline.rules_adapter import OUTPUT_DEFINES, to_patient_assessment

INPUTS = sorted(p for p in (FIXTURES_DIR / "assess").glob("*.json")
                if not p.name.endswith(".expected.json") and p.name != "MANIFEST.json")


class _Reads(Mapping):
    """A result that remembers every define name looked up in it."""

    def __init__(self, result) -> None:
        self.result, self.read = result, set()

    def __getitem__(self, name):
        self.read.add(name)
        return self.result[name]

    def __contains__(self, name):
        self.read.add(name)
        return name in self.result

    def __iter__(self):
        raise AssertionError("the assessment reads defines by name, never the whole result")

    def __len__(self):
        return len(self.result)


def _patients(path):
    assessor = get_assessor()
    for patient in read_bundle(orjson.loads(path.read_bytes())).patients:
        yield patient, build_facts(patient, now=FIXTURE_NOW, terminology=assessor.terminology)


def _assessment(result, patient):
    assessor = get_assessor()
    return to_patient_assessment(result, library=assessor.library, patient_id=patient.patient_id,
                                 patient_reference=patient.patient_reference, assessed_at=FIXTURE_NOW,
                                 bibliography=assessor.bibliography)


def test_the_output_defines_are_every_define_the_assessment_reads():
    assessor = get_assessor()
    patient, facts = next(_patients(INPUTS[0]))
    result = _Reads(assessor.library.evaluate(facts, parameters=assessor.parameters, now=FIXTURE_NOW))
    _assessment(result, patient)
    assert result.read == set(OUTPUT_DEFINES)
    assert assessor.output_defines == OUTPUT_DEFINES, "the shipped library has every output define"


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.stem)
def test_an_assessment_from_the_output_defines_is_the_one_from_every_define(path):
    assessor = get_assessor()
    for patient, facts in _patients(path):
        full = assessor.library.evaluate(facts, parameters=assessor.parameters, now=FIXTURE_NOW)
        part = assessor.library.evaluate(facts, parameters=assessor.parameters, now=FIXTURE_NOW,
                                         defines=assessor.output_defines)
        assert list(part) == [name for name in full if name in OUTPUT_DEFINES]
        assert _assessment(part, patient) == _assessment(full, patient)


def test_a_retrieve_finds_the_same_records_from_either_side():
    def condition(n, *codes):
        return Record("Condition", {"code": Concept(tuple(Code(c, "s") for c in codes))}, f"Condition/{n}")
    records = [condition(1, "a"), condition(2, "b", "c"), condition(3, "c"), condition(4, "d", "a")]
    facts = PatientFacts("p", "Patient/p", None, records)
    small = frozenset({Code("c", "s")})                                   # fewer codes than codings
    large = frozenset({Code(str(n), "s") for n in range(50)} | {Code("a", "s"), Code("c", "s")})
    assert [r.source for r in facts.retrieve("Condition", small)] == ["Condition/2", "Condition/3"]
    assert [r.source for r in facts.retrieve("Condition", large)] == [
        "Condition/1", "Condition/2", "Condition/3", "Condition/4"]
    assert facts.retrieve("Condition", frozenset({Code("a", "other")} | {Code(str(n), "s") for n in range(9)})) == ()

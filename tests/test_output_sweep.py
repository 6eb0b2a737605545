"""A sweep over every clinical scenario the tests build, as it is and with its data read only in part.

Every evaluation of the rule library in the tests is swept as it happens (`engine_outputs` and the
other modules' `evaluate` call `tests/support/output_sweep.py`), and the fixtures, the CLI summary
and the CDS Hooks examples are swept in `test_citations.py`. This module adds the variants no test
writes by hand: every named scenario of the library tests, run again with the laboratory,
condition or medication search read only in part. Whatever the text, no output names a seed
article, a team file or a repository path; where a search was incomplete, no text claims that what
it would have found is absent ("not on file", "no usable ... result"); and with the laboratory
search incomplete, no laboratory test is proposed as missing. Last, every fixture bundle's
assessment that the service itself found incomplete (a skipped result, a partial searchset) is
checked the same way.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Iterator

import pytest

from test_clinical_incomplete_data import data_gap, evaluate
from test_knowledge_scenarios import LOINC, SWEPT_DEFINES, Facts
from tests.support.output_sweep import absence_claims, forbidden_in, texts_in

# The test modules that build named library scenarios (functions taking no argument, returning Facts).
SCENARIO_MODULES = ("test_knowledge_scenarios", "test_knowledge_edge_cases", "test_clinical_lab_values",
                    "test_clinical_incomplete_data")

GAPS: dict[str, Callable[[], list[Any]]] = {
    "complete": lambda: [],
    "laboratory search incomplete": lambda: [data_gap("Observation", location="prefetch.labs")],
    "condition search incomplete": lambda: [data_gap("Condition", location="prefetch.conditions")],
    "medication search incomplete": lambda: [data_gap("MedicationRequest", location="prefetch.medications")],
}

def _scenarios() -> Iterator[tuple[str, Callable[[], Facts]]]:
    """Every function of those modules that takes no argument and returns Facts (a named scenario)."""
    for module_name in SCENARIO_MODULES:
        module = importlib.import_module(module_name)
        for name, function in vars(module).items():
            if (inspect.isfunction(function) and function.__module__ == module_name
                    and not inspect.signature(function, eval_str=True).parameters
                    and getattr(inspect.signature(function, eval_str=True).return_annotation, "__name__", "") == "Facts"):
                yield f"{module_name}.{name}", function


SCENARIOS = dict(_scenarios())


def _output_texts(out: dict[str, Any]) -> list[str]:
    return [text for name in SWEPT_DEFINES if name in out for text in texts_in(out[name])]


def test_the_sweep_covers_the_scenarios_of_every_library_test_module():
    covered = {name.split(".")[0] for name in SCENARIOS}
    assert covered == set(SCENARIO_MODULES)
    assert len(SCENARIOS) >= 45


def test_the_absence_check_catches_what_it_looks_for():
    labs, conditions = GAPS["laboratory search incomplete"](), GAPS["condition search incomplete"]()
    for gaps, claim in ((labs, "No skin necrosis or ulceration on file."),
                        (labs, "no usable calcium result within 1 year"),
                        (conditions, "No chronic kidney disease, ESRD or dialysis coded, and ...")):
        assert absence_claims(gaps, [claim]) == [claim], claim
    for gaps, fine in ((labs, "No skin necrosis or ulceration found among the conditions read."),
                       (labs, "Hypercalcemia on file"),
                       (conditions, "no usable calcium result within 1 year"),
                       ([], "No skin necrosis or ulceration on file.")):
        assert absence_claims(gaps, [fine]) == [], fine


@pytest.mark.parametrize("gap", sorted(GAPS))
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_no_output_names_a_team_file_and_unread_data_is_never_called_absent(name: str, gap: str):
    facts = SCENARIOS[name]()
    facts = Facts(list(facts.records) + GAPS[gap](), facts.patient_record)
    out = evaluate(facts)
    texts = _output_texts(out)
    assert texts, name
    leaks = [leak for text in texts for leak in forbidden_in(text)]
    assert leaks == [], (name, gap, leaks)
    if gap == "complete":
        return
    claims = absence_claims(facts.records, texts)
    assert claims == [], (name, gap, claims)
    if gap == "laboratory search incomplete":
        proposed = [t["code"] for t in out["Recommended Tests"]
                    if t["system"] == LOINC and not t["reason"].startswith("Repeat:")]
        assert proposed == [], (name, proposed)


# ---- the fixture bundles: what the service itself found incomplete --------------------------

def _fixture_patients() -> Iterator[tuple[str, Any]]:
    import orjson

    from conftest import FIXTURE_NOW, FIXTURES_DIR
    from service.pipeline.assess import assess_bundle

    for path in sorted((FIXTURES_DIR / "assess").glob("*.json")):
        if path.name.endswith(".expected.json") or path.name == "MANIFEST.json":
            continue
        for patient in assess_bundle(orjson.loads(path.read_bytes()), now=FIXTURE_NOW).patients:
            yield f"{path.stem} {patient.patient_reference}", patient


def test_no_fixture_rationale_calls_absent_what_its_assessment_could_not_read():
    from tests.support.output_sweep import NO_USABLE_RESULT, NOT_ON_FILE

    incomplete = 0
    for where, patient in _fixture_patients():
        if not (patient.incomplete_analytes or patient.incomplete_searches):
            continue
        incomplete += 1
        texts = [grade.rationale for grade in patient.grades] + list(patient.notes)
        assert not [t for t in texts if NOT_ON_FILE.search(t)], where
        if "laboratory" in patient.incomplete_searches:
            assert not [t for t in texts if NO_USABLE_RESULT.search(t)], where
    assert incomplete >= 2  # fixtures 14 (unknown unit) and 15 (value as text) at least

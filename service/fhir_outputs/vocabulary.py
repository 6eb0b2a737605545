"""The codes, displays and labels the outputs use, loaded from the package's JSON data files.

Kept as data so that a display or a group label changes without touching the builders.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from importlib import resources
from typing import Any, Sequence

from ..assessment_model import AvailableTest, OmittedTest, PanelTest, UnconfirmedTest

from .errors import OutputValidationError


@lru_cache(maxsize=None)
def _load(name: str) -> Any:
    return json.loads(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


def load_data_file(name: str) -> Any:
    """A deep copy of one JSON data file of this package (callers may edit the copy)."""
    return copy.deepcopy(_load(name))


def _vocabulary() -> dict[str, Any]:
    return _load("output-vocabulary.json")


def calcinosis_type_system() -> str:
    """The URL of the CodeSystem of calcinosis type outcome codes."""
    return _vocabulary()["calcinosis_type_system"]


@lru_cache(maxsize=None)
def calcinosis_type_displays() -> dict[str, str]:
    """code -> display, read from the shipped CodeSystem so outputs and CodeSystem never disagree."""
    codesystem = _load("codesystem-calcinosis-type.json")
    return {concept["code"]: concept["display"] for concept in codesystem["concept"]}


def calcinosis_type_coding(calcinosis_type: str) -> dict[str, str]:
    """The Coding of one calcinosis type; OutputValidationError for a type the CodeSystem lacks."""
    displays = calcinosis_type_displays()
    if calcinosis_type not in displays:
        raise OutputValidationError(f"unknown calcinosis type {calcinosis_type!r} (expected one of {sorted(displays)})")
    return {"system": calcinosis_type_system(), "code": calcinosis_type, "display": displays[calcinosis_type]}


def risk_probability_coding(risk: str) -> dict[str, str]:
    """The qualitative probability Coding of a risk grade; OutputValidationError for an unknown grade."""
    table = _vocabulary()["risk_probability"]
    if risk not in table["displays"]:
        raise OutputValidationError(f"unknown risk grade {risk!r} (expected one of {sorted(table['displays'])})")
    return {"system": table["system"], "code": risk, "display": table["displays"][risk]}


def risk_display(risk: str) -> str:
    """Readable grade, e.g. 'High likelihood'; the raw grade when it is not in the table."""
    return _vocabulary()["risk_probability"]["displays"].get(risk, risk)


def issue_types() -> frozenset[str]:
    """The R4 IssueType codes; an issue code outside them must not be written as OperationOutcome.issue.code."""
    return frozenset(_vocabulary()["issue_types"])


def issue_severities() -> frozenset[str]:
    """The R4 issue severities OperationOutcome allows."""
    return frozenset(_vocabulary()["issue_severities"])


def is_abnormal_flag(flag: str | None) -> bool:
    """A lab flag that marks a value outside its range (anything but absent or 'N')."""
    return bool(flag) and flag not in _vocabulary()["abnormal_flags_excluded"]


def panel_group_label(group: str) -> str:
    """Readable name of a panel group; the group key itself when the table has no label."""
    return _vocabulary()["panel_groups"].get(group, group)


def panel_group_order() -> tuple[str, ...]:
    """Panel group keys in the order outputs list them."""
    return tuple(_vocabulary()["panel_groups"])


def code_system_name(system: str) -> str:
    """Short readable name of a code system URL ("LOINC"); the URL itself when unknown."""
    return _vocabulary()["code_system_names"].get(system, system)


def care_plan_title() -> str:
    """CarePlan.title, kept in the vocabulary file with the other wording."""
    return _vocabulary()["care_plan_title"]


def risk_assessment_code_text() -> str:
    """RiskAssessment.code.text, kept in the vocabulary file with the other wording."""
    return _vocabulary()["risk_assessment_code_text"]


def group_panel_tests(tests: Sequence[PanelTest]) -> list[tuple[str, list[PanelTest]]]:
    """Tests grouped by panel group: known groups in table order, unknown ones after, in order met;
    within a group the order given is kept."""
    groups: dict[str, list[PanelTest]] = {}
    for test in tests:
        groups.setdefault(test.group, []).append(test)
    order = {group: index for index, group in enumerate(panel_group_order())}
    return sorted(groups.items(), key=lambda item: order.get(item[0], len(order)))


def panel_test_code(test: PanelTest | OmittedTest | UnconfirmedTest | AvailableTest) -> dict[str, Any]:
    """The CodeableConcept of a test of the work-up: its coding, with the code system's display, and
    the plain name as text ("Parathyroid hormone, intact"), which is what a person reads; the text
    alone for a test with no verified code (a wrong code on an order is worse than none)."""
    if not (test.code and test.system):
        return {"text": test.name}
    return {"coding": [{"system": test.system, "code": test.code, "display": test.display}], "text": test.name}

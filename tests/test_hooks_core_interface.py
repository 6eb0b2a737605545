"""The one typed seam between the CDS Hooks logic and the assessment pipeline.

The hooks ask the core "assess this bundle" through `AssessBundle` and get an `AssessmentRun` back;
each issue says which entry of the bundle it is about as a number and a path inside it, so the
hooks locate it in the caller's request without reading the location text back.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from service.assessment_model import AssessBundle, AssessmentRun, EntryPlace, InputIssue
from tests.support.cds_app import FakeCore, metastatic_assessment

HOOKS = Path(__file__).resolve().parents[1] / "service" / "hooks"


def _keyword_names(function) -> set[str]:
    return {p.name for p in inspect.signature(function).parameters.values() if p.kind is p.KEYWORD_ONLY}


def test_the_core_and_the_test_fake_both_answer_the_assess_protocol_with_an_assessment_run():
    from service.hooks.hook_call import core_assess
    from service.pipeline import assess as pipeline_assess

    fake = FakeCore(metastatic_assessment("esrd-7301"))
    assert isinstance(fake, AssessBundle) and isinstance(core_assess, AssessBundle)
    wanted = _keyword_names(AssessBundle.__call__)
    assert wanted <= _keyword_names(FakeCore.__call__) and wanted <= _keyword_names(core_assess)
    run = fake({"resourceType": "Bundle"}, config={}, now=None, data_gaps=())
    assert isinstance(run, AssessmentRun) and run.patients[0].patient_id == "esrd-7301" and run.issues == ()
    assert pipeline_assess.AssessmentRun is AssessmentRun  # the pipeline returns the model's own type


def test_an_issue_about_a_bundle_entry_carries_the_entry_number_and_the_path_inside_it():
    # The core builds the place structured; the location text an OperationOutcome carries is written from it.
    issue = InputIssue.at_entry(3, "resource.valueQuantity.unit", "warning", "value", "unit 'mg' is not a concentration")
    assert (issue.entry_index, issue.path) == (3, "resource.valueQuantity.unit")
    assert issue.location == "Bundle.entry[3].resource.valueQuantity.unit"  # OperationOutcome text unchanged
    entry = InputIssue.at_entry(0, "", "warning", "required", "entry has no resource; skipped", prefix="")
    assert (entry.entry_index, entry.path) == (0, "")
    assert (entry.location, entry.diagnostics) == ("Bundle.entry[0]", "Bundle.entry[0]: entry has no resource; skipped")
    whole = InputIssue("error", "too-costly", "too many", "Bundle.entry")
    assert (whole.entry_index, whole.path) == (None, None)
    from dataclasses import replace

    moved = replace(issue, entry_index=5, path="resource.code")
    assert (moved.entry_index, moved.path, moved.location) == (5, "resource.code", "Bundle.entry[5].resource.code")
    assert replace(issue, entry_index=None, location="Bundle").entry_index is None
    # A location text is never read back: only the structured fields say which entry an issue is about.
    assert InputIssue("warning", "value", "text", "Bundle.entry[3].resource").entry_index is None


def test_the_core_reports_an_unreadable_observation_by_its_entry_number():
    from datetime import datetime, timezone

    from service.pipeline.assess import assess_bundle

    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1", "birthDate": "1960-01-01", "gender": "female"}},
        {"resource": {"resourceType": "Observation", "id": "ca", "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6"}]},
                      "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-11-01",
                      "valueQuantity": {"value": 9.1, "unit": "furlongs", "system": "http://unitsofmeasure.org",
                                        "code": "furlongs"}}}]}
    run = assess_bundle(bundle, now=datetime(2026, 11, 15, tzinfo=timezone.utc))
    issues = [*run.issues, *(i for p in run.patients for i in p.issues)]
    about_calcium = [i for i in issues if i.entry_index == 1]
    assert about_calcium, issues
    assert all(i.location.startswith("Bundle.entry[1]") for i in about_calcium)
    assert all(i.path is not None and i.location == f"Bundle.entry[1].{i.path}".rstrip(".") for i in about_calcium)


def test_the_mentions_of_other_entries_in_a_diagnostic_are_written_by_the_caller():
    issue = InputIssue.at_entry(2, "", "warning", "duplicate", "Observation/x is already used by ", EntryPlace(0),
                                "; this entry is skipped", prefix="")
    assert issue.diagnostics == "Bundle.entry[2]: Observation/x is already used by Bundle.entry[0]; this entry is skipped"
    assert issue.mentions == (EntryPlace(0),)
    located = issue.diagnostics_located(lambda index, path: f"prefetch.labs.entry[{index}]" + (f".{path}" if path else ""))
    assert located == "Observation/x is already used by prefetch.labs.entry[0]; this entry is skipped"
    assert issue.diagnostics_located(lambda index, path: None) == ("Observation/x is already used by Bundle.entry[0]; "
                                                                  "this entry is skipped")


def test_no_module_of_the_hooks_parses_location_strings_with_a_regular_expression():
    for path in HOOKS.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert "Bundle\\.entry" not in node.value, f"{path.name} re-parses the core's locations"


def test_the_hooks_no_longer_read_the_run_by_attribute_name():
    source = (HOOKS / "hook_call.py").read_text(encoding="utf-8")
    assert 'getattr(run' not in source and "Callable[..., Any]" not in source

"""What a person reads in the `$assess` outputs: plain test names, a two-sentence CarePlan, a short
why on every activity, and a generated XHTML narrative on every resource.

An EHR that renders narratives shows the narrative; one that shows `code.text` shows the plain
name ("Parathyroid hormone, intact"), while the coding keeps the code system's display. Whatever
the caller sent is escaped before it reaches a narrative.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from conftest import FIXTURE_NOW, FIXTURES_DIR
from service.pipeline.assess import assess_bundle
from service.fhir_outputs import build_result_bundle, operation_outcome
from service.assessment_model import InputIssue

ASSESS_DIR = FIXTURES_DIR / "assess"
INPUTS = sorted(p for p in ASSESS_DIR.glob("*.json")
                if not p.name.endswith(".expected.json") and p.name != "MANIFEST.json")
XHTML = "http://www.w3.org/1999/xhtml"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"

# The plain name of every test of the work-up panel, by its code (bone scintigraphy has none).
PLAIN_NAMES: dict[str, str] = {
    "58410-2": "Complete blood count", "24321-2": "Basic metabolic panel", "17861-6": "Calcium",
    "2777-1": "Phosphate", "2885-2": "Total protein", "1751-7": "Albumin",
    "2731-8": "Parathyroid hormone, intact", "62292-8": "25-OH vitamin D",
    "6874-2": "24-hour urine calcium", "2779-7": "24-hour urine phosphate", "2157-6": "Creatine kinase",
    "2532-0": "LDH", "1920-8": "AST", "1742-6": "ALT", "1761-6": "Aldolase", "8061-4": "ANA",
    "5130-0": "Anti-dsDNA", "43119-7": "Anti-ENA panel", "1963-8": "Bicarbonate", "2744-1": "Arterial pH",
    "168537006": "Plain X-ray", "16310003": "Skin ultrasound", "77477000": "CT", "113091000": "MRI",
    "240977001": "Skin biopsy",
}
BONE_SCAN_NAME = "Bone scintigraphy"

# The XHTML elements R4 narratives may hold (the basic HTML 4.0 formatting elements, links, images).
NARRATIVE_ELEMENTS = frozenset(
    "a abbr acronym b big blockquote br caption cite code col colgroup dd dfn div dl dt em h1 h2 h3 h4 h5 h6 hr "
    "i img li ol p pre q samp small span strong sub sup table tbody td tfoot th thead tr tt ul var".split())
GRADE_WORDS = {"high": "High", "moderate": "Moderate", "low": "Low", "negligible": "Negligible"}


def _outputs(path: Path) -> list[dict[str, Any]]:
    run = assess_bundle(orjson.loads(path.read_bytes()), now=FIXTURE_NOW)
    return [entry["resource"] for entry in build_result_bundle(run.patients, run.issues)["entry"]]


_cache: dict[Path, list[dict[str, Any]]] = {}


def outputs_of(path: Path) -> list[dict[str, Any]]:
    if path not in _cache:
        _cache[path] = _outputs(path)
    return _cache[path]


def narrative_problems(resource: dict[str, Any]) -> list[str]:
    """Why the resource's narrative is not a generated, well-formed R4 XHTML narrative ([] when it is)."""
    text = resource.get("text")
    if not isinstance(text, dict):
        return ["no text"]
    problems = [] if text.get("status") == "generated" else [f"status {text.get('status')!r}"]
    try:
        root = ElementTree.fromstring(text.get("div", ""))
    except ElementTree.ParseError as error:
        return problems + [f"not well-formed XML: {error}"]
    if root.tag != f"{{{XHTML}}}div":
        problems.append(f"root is {root.tag}, not an XHTML div")
    for element in root.iter():
        namespace, _, name = element.tag.partition("}")
        if namespace != "{" + XHTML or name not in NARRATIVE_ELEMENTS:
            problems.append(f"element {element.tag} not allowed")
        problems += [f"attribute {a} on {name}" for a in element.attrib if a.lower().startswith("on")]
    if not "".join(root.itertext()).strip():
        problems.append("no text content")
    return problems


def narrative_text(resource: dict[str, Any]) -> str:
    """The narrative as a person reads it: the texts of the XHTML, one space between cells."""
    return " ".join(" ".join(ElementTree.fromstring(resource["text"]["div"]).itertext()).split())


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.stem)
def test_every_output_validates_and_has_a_generated_xhtml_narrative(path):
    for resource in outputs_of(path):
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert narrative_problems(resource) == [], (resource["resourceType"], resource.get("id"))


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.stem)
def test_the_risk_assessment_narrative_shows_each_type_with_its_grade(path):
    for risk in (r for r in outputs_of(path) if r["resourceType"] == "RiskAssessment"):
        shown = narrative_text(risk)
        for prediction in risk["prediction"]:
            assert prediction["outcome"]["text"] in shown
            assert GRADE_WORDS[prediction["qualitativeRisk"]["coding"][0]["code"]] in shown
        rows = ElementTree.fromstring(risk["text"]["div"]).iter(f"{{{XHTML}}}tr")
        assert len(list(rows)) == len(risk["prediction"]) + 1  # a header, then one row per type


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.stem)
def test_the_care_plan_description_is_two_sentences_with_no_loinc_long_name(path):
    for plan in (r for r in outputs_of(path) if r["resourceType"] == "CarePlan"):
        description = plan["description"]
        assert len(sentences(description)) <= 2, description
        assert description.startswith("Most likely")
        assert "[" not in description and "Parathyrin" not in description
        assert len(description.split()) <= 60, description


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.stem)
def test_every_service_request_is_named_plainly_beside_its_code(path):
    for request in (r for r in outputs_of(path) if r["resourceType"] == "ServiceRequest"):
        code = request["code"]
        assert "[" not in code["text"]
        if "coding" in code:
            (coding,) = code["coding"]
            assert code["text"] == PLAIN_NAMES[coding["code"]]
            assert coding["display"] != "" and coding["system"] in (LOINC, SNOMED)
        else:
            assert code["text"] == BONE_SCAN_NAME
        assert code["text"] in narrative_text(request)


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.stem)
def test_every_service_request_carries_its_reason_and_its_source(path):
    for request in (r for r in outputs_of(path) if r["resourceType"] == "ServiceRequest"):
        reason = request["reasonCode"][0]["text"]
        notes = [note["text"] for note in request["note"]]
        assert any(reason.rstrip(".") in note for note in notes)
        assert any(note.startswith("Source: ") for note in notes)
        assert any(x["url"] == "http://hl7.org/fhir/StructureDefinition/cqf-relatedArtifact"
                   for x in request["extension"])
        shown = narrative_text(request)
        assert reason.rstrip(".") in shown and "StatPearls" in shown


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.stem)
def test_every_care_plan_activity_says_why_and_the_plan_shows_them_as_a_table(path):
    resources = outputs_of(path)
    for plan in (r for r in resources if r["resourceType"] == "CarePlan"):
        shown = narrative_text(plan)
        for activity in plan.get("activity", []):
            # R4 cpl-3: an activity is a reference or a detail, never both.
            assert not ("reference" in activity and "detail" in activity)
            if "reference" in activity:
                (why,) = activity["progress"]
                assert why["text"] and "[" not in why["text"]
                name = activity["reference"]["display"]
            else:
                detail = activity["detail"]
                assert detail["description"] and "[" not in detail["description"]
                if detail["status"] != "completed":  # a result on file needs no reason for its status
                    assert detail["statusReason"]["text"]
                name = detail["code"]["text"]
            assert "[" not in name
            assert name in shown


def _plan_and_requests(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    resources = outputs_of(path)
    (plan,) = [r for r in resources if r["resourceType"] == "CarePlan"]
    return plan, {r["id"]: r for r in resources if r["resourceType"] == "ServiceRequest"}


def _details(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["detail"]["code"]["text"]: a["detail"] for a in plan.get("activity", []) if "detail" in a}


def test_the_care_plan_counts_what_it_proposes_and_keeps_what_the_long_text_held_as_activities():
    # Calcinosis cutis on file with kidney failure: the CBC and six imaging or tissue studies are
    # proposed, the 24-hour urines are left out, and the results on file are listed with their values.
    plan, requests = _plan_and_requests(ASSESS_DIR / "04-metastatic-esrd.json")
    assert plan["description"] == (
        "Most likely: metastatic calcinosis cutis (high). Proposed: 1 laboratory test and 6 imaging or tissue "
        "studies; 7 tests already available; 2 not proposed (see activities).")
    details = _details(plan)
    assert details["Parathyroid hormone, intact"]["status"] == "completed"
    assert details["Parathyroid hormone, intact"]["description"] == "Result on file: 480 pg/mL on 2026-11-09."
    assert details["Calcium"]["description"] == "Result on file: 10.8 mg/dL on 2026-11-09."
    for urine in ("24-hour urine calcium", "24-hour urine phosphate"):
        assert details[urine]["status"] == "cancelled"
        assert details[urine]["statusReason"]["text"].startswith(
            "kidney failure or dialysis on file (End-stage renal disease")
        assert details[urine]["description"] == (
            "Not proposed: kidney failure or dialysis on file (End-stage renal disease, Dependence on renal "
            "dialysis, Hemodialysis).")
    (cbc,) = [a for a in plan["activity"] if a.get("reference", {}).get("display") == "Complete blood count"]
    assert cbc["progress"] == [{"text": "Complete blood count for lupus erythematosus and malignant neoplasms."}]
    cbc_request = requests[cbc["reference"]["reference"].removeprefix("urn:uuid:")]
    assert cbc_request["code"]["coding"][0]["display"] == \
        "Complete blood count (hemogram) panel - Blood by Automated count"
    shown = narrative_text(plan)
    assert "24-hour urine calcium not proposed kidney failure or dialysis on file" in shown
    assert "Parathyroid hormone, intact result on file 480 pg/mL on 2026-11-09" in shown


def test_the_narratives_name_the_leading_grade_and_the_proposed_tests():
    resources = outputs_of(ASSESS_DIR / "04-metastatic-esrd.json")
    (risk,) = [r for r in resources if r["resourceType"] == "RiskAssessment"]
    assert "Metastatic calcinosis cutis High" in narrative_text(risk)
    (skin_biopsy,) = [r for r in resources if r["resourceType"] == "ServiceRequest"
                      and r["code"]["text"] == "Skin biopsy"]
    shown = narrative_text(skin_biopsy)
    assert shown.startswith("Test Skin biopsy (SNOMED CT 240977001: Biopsy of skin) Reason Skin biopsy of a lesion")
    assert "Source StatPearls \"Calcinosis Cutis\" (Le C, Bedocs PM, 2019)" in shown


def test_the_operation_outcome_narrative_lists_severity_what_and_where():
    resources = outputs_of(ASSESS_DIR / "14-unknown-unit.json")
    outcomes = [r for r in resources if r["resourceType"] == "OperationOutcome"]
    assert outcomes
    for outcome in outcomes:
        shown = narrative_text(outcome)
        for issue in outcome["issue"]:
            assert issue["severity"] in shown and issue["diagnostics"] in shown
            for location in issue.get("expression", []):
                assert location in shown


def test_an_error_outcome_of_the_http_layer_has_a_narrative_too():
    outcome = operation_outcome(InputIssue("error", "invalid", "Body is not JSON.", "Bundle"))
    assert narrative_problems(outcome) == []
    assert narrative_text(outcome) == "Severity What Where error Body is not JSON. Bundle"


def _bundle_with_markup(markup: str) -> dict[str, Any]:
    subject = {"reference": "Patient/p-1"}
    return {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p-1", "gender": "female", "birthDate": "1970-01-01"}},
        {"resource": {"resourceType": "Condition", "id": "cc-1", "subject": subject,
                      "code": {"coding": [{"system": ICD10CM, "code": "L94.2", "display": markup}], "text": markup}}},
        {"resource": {"resourceType": "Observation", "id": "ca-1", "status": "final", "subject": subject,
                      "code": {"coding": [{"system": LOINC, "code": "17861-6"}]},
                      "effectiveDateTime": "2026-11-01T08:00:00Z",
                      "valueQuantity": {"value": 9.4, "unit": markup}}},
    ]}


def test_markup_sent_by_the_caller_is_escaped_in_every_narrative():
    markup = "<script>alert('x')</script> & <b>bold</b>"
    run = assess_bundle(_bundle_with_markup(markup), now=FIXTURE_NOW)
    resources = [e["resource"] for e in build_result_bundle(run.patients, run.issues)["entry"]]
    reached = [r for r in resources if "<script>" in json.dumps(r)]
    assert {r["resourceType"] for r in reached} >= {"RiskAssessment", "ServiceRequest", "OperationOutcome"}
    for resource in resources:
        assert narrative_problems(resource) == []
        div = resource["text"]["div"]
        assert "<script" not in div and "<b>" not in div
    for resource in reached:
        if resource["resourceType"] != "CarePlan":
            assert "&lt;script&gt;" in resource["text"]["div"], resource["resourceType"]
            assert markup in narrative_text(resource) or "<script>alert('x')</script>" in narrative_text(resource)


def test_the_assessment_carries_the_plain_names_for_every_surface():
    run = assess_bundle(orjson.loads((ASSESS_DIR / "04-metastatic-esrd.json").read_bytes()), now=FIXTURE_NOW)
    (patient,) = run.patients
    assert [t.name for t in patient.recommended] == [
        "Complete blood count", "Plain X-ray", "Skin ultrasound", "CT", "MRI", BONE_SCAN_NAME, "Skin biopsy"]
    assert [t.display for t in patient.recommended][:2] == [
        "Complete blood count (hemogram) panel - Blood by Automated count", "Plain X-ray"]
    assert [t.name for t in patient.omitted] == ["24-hour urine calcium", "24-hour urine phosphate"]
    assert [t.name for t in patient.available] == [
        "Basic metabolic panel", "Calcium", "Phosphate", "Total protein", "Albumin",
        "Parathyroid hormone, intact", "25-OH vitamin D"]
    assert {t.resource_type for t in patient.available} == {"Observation"}


def _care_plan(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "CarePlan", "id": "cp", "status": "active", "intent": "proposal",
            "subject": {"reference": "Patient/1"}, **extra}


@pytest.mark.parametrize("div, problem", [
    ('<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script>text</div>', "script"),
    ('<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="x()">text</p></div>', "onclick"),
    ('<div xmlns="http://www.w3.org/1999/xhtml"><p>unclosed</div>', "well-formed"),
    ('<div>text, no XHTML namespace</div>', "not an XHTML div"),
    ('<div xmlns="http://www.w3.org/1999/xhtml"> <p/> </div>', "no text"),
], ids=["script", "event-attribute", "not-well-formed", "no-namespace", "empty"])
def test_a_narrative_outside_the_r4_rules_is_a_defect_never_handed_out(div, problem):
    from service.fhir_outputs import OutputValidationError
    from service.fhir_outputs.validation import validate_resource

    with pytest.raises(OutputValidationError, match=problem):
        validate_resource(_care_plan(text={"status": "generated", "div": div}))


def test_an_activity_with_both_a_reference_and_a_detail_is_a_defect_cpl_3():
    from service.fhir_outputs import OutputValidationError
    from service.fhir_outputs.validation import validate_resource

    activity = {"reference": {"reference": "ServiceRequest/1"}, "detail": {"status": "not-started"}}
    with pytest.raises(OutputValidationError, match=r"cpl-3"):
        validate_resource(_care_plan(activity=[activity]))
    assert validate_resource(_care_plan(activity=[{"reference": {"reference": "ServiceRequest/1"},
                                                   "progress": [{"text": "why"}]}]))


def test_the_narrative_helpers_escape_what_they_are_given():
    from service.fhir_outputs.narrative import field_table, narrative, narrative_problems, table

    text = narrative(table(("a<b", "c"), [("<i>x</i>", 'say "hi" & go')]), field_table([("k>", "<br/>")]))
    assert narrative_problems(text) == []
    assert "<i>" not in text["div"] and "&lt;i&gt;x&lt;/i&gt;" in text["div"]
    assert "&quot;hi&quot; &amp; go" in text["div"] and "&lt;br/&gt;" in text["div"]


# (A lone surrogate never gets this far: the JSON parser refuses it.)
@pytest.mark.parametrize("text", ["a\x00b", "bell\x07", "not a char \uffff", "esc \x1b[0m"],
                         ids=["nul", "bell", "uffff", "escape"])
def test_characters_xml_cannot_hold_are_replaced_so_the_narrative_still_parses(text):
    outcome = operation_outcome(InputIssue("error", "invalid", f"key {text!s} is not valid", f"prefetch.{text}"))
    assert narrative_problems(outcome) == []
    assert "\ufffd" in narrative_text(outcome)

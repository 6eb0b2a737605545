"""Every output cites publications a reader can find, never a file the reader cannot open.

The sweep runs every `$assess` fixture bundle and every CDS Hooks example request through the
service in process, and reads every text the service returns: the result Bundles, the cards, the
CLI summary, the documents the service serves. Every grade, proposed test and order alert must
cite an entry of the bibliography, with a section and a quoted sentence.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import FIXTURE_NOW, FIXTURES_DIR, PROJECT_ROOT
from tests.support.output_sweep import TEAM_FILES, forbidden_in

BIBLIOGRAPHY = PROJECT_ROOT / "service" / "knowledge" / "bibliography.json"
LIBRARY = PROJECT_ROOT / "service" / "knowledge" / "CalcinosisCutis.cql"
ASSESS_BUNDLES = sorted(p for p in (FIXTURES_DIR / "assess").glob("*.json")
                        if not p.name.endswith(".expected.json") and p.name != "MANIFEST.json")
RELATED_ARTIFACT = "http://hl7.org/fhir/StructureDefinition/cqf-relatedArtifact"

def test_the_sweep_would_catch_what_it_looks_for():
    for leak in ('seed 002, Evaluation: "..."', "a calciphylaxis risk factor in the project's clinical notes",
                 "see codes.md A2", "KNOWLEDGE.md distinctions", "../shared/seeds/002_x.txt",
                 "service/knowledge/CalcinosisCutis.cql", "rules in CalcinosisCutis.cql"):
        assert forbidden_in(leak), leak
    for fine in ("Ca x P 81.8 mg2/dL2 exceeds 70 mg2/dL2", "https://cds.example.org/docs/rules",
                 'Le C, Bedocs PM. Calcinosis Cutis. StatPearls, 2019. Evaluation: "..."',
                 "CalcinosisCutis rule library 1.0.0"):
        assert not forbidden_in(fine), fine


# ---- the sweep ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fixed_client(tmp_path_factory):
    from service import create_app

    app = create_app({"EVALUATION_TIME": "2026-11-15T09:00:00Z", "CDS_REQUIRE_JWT": False,
                      "CDS_FEEDBACK_DB": str(tmp_path_factory.mktemp("citations") / "feedback.sqlite3")})
    return app.test_client()


@pytest.mark.parametrize("path", ASSESS_BUNDLES, ids=lambda p: p.stem)
def test_no_assess_output_names_a_seed_a_team_file_or_a_repository_path(fixed_client, path: Path):
    response = fixed_client.post("/fhir/$assess", data=path.read_bytes(), content_type="application/fhir+json")
    assert response.status_code == 200
    assert forbidden_in(response.get_data(as_text=True)) == []


@pytest.mark.parametrize("path", ASSESS_BUNDLES, ids=lambda p: p.stem)
def test_no_cli_summary_names_a_seed_a_team_file_or_a_repository_path(path: Path):
    from service.pipeline.assess import assess_bundle
    from service.summary import format_summary

    run = assess_bundle(json.loads(path.read_text(encoding="utf-8")), now=FIXTURE_NOW)
    assert forbidden_in(format_summary(run.patients, run.issues)) == []


def test_no_cds_hooks_answer_to_the_example_requests_names_a_seed_or_a_team_file(tmp_path):
    from tests.support.cds_fixtures import responses_through_the_core

    for hook, answer in responses_through_the_core(tmp_path).items():
        assert answer["status"] == 200, hook
        assert answer["body"]["cards"], hook
        assert forbidden_in(json.dumps(answer["body"], ensure_ascii=False)) == [], hook


@pytest.mark.parametrize("route", ["/docs/rules", "/fhir/metadata", "/fhir/OperationDefinition/assess",
                                   "/fhir/CodeSystem/calcinosis-type"])
def test_the_documents_the_service_serves_name_no_seed_or_team_file(fixed_client, route: str):
    """The rule documentation is for knowledge engineers too: it may name the repository's own files."""
    response = fixed_client.get(route)
    assert response.status_code == 200
    assert forbidden_in(response.get_data(as_text=True), TEAM_FILES) == []


# ---- every citation resolves to a publication -------------------------------------------------

def _assessed_patients() -> Iterator[Any]:
    from service.pipeline.assess import assess_bundle

    for path in ASSESS_BUNDLES:
        yield from assess_bundle(json.loads(path.read_text(encoding="utf-8")), now=FIXTURE_NOW).patients


def _bibliography_keys() -> set[str]:
    return {entry["key"] for entry in json.loads(BIBLIOGRAPHY.read_text(encoding="utf-8"))["entries"]}


# The four source articles, which the rules quote sentence by sentence.
QUOTED_SOURCES = {"statpearls-calcinosis-cutis", "watch-removing-calcinosis-cutis", "calcium-stones-in-the-skin",
                  "symptoms-causes-and-treatment"}


def _assert_resolved(citations, where: str) -> None:
    keys = _bibliography_keys()
    assert citations, f"{where} cites nothing"
    for citation in citations:
        assert citation.source in keys, f"{where}: {citation.source!r} is not in the bibliography"
        assert citation.section, where
        assert citation.reference != citation.source, where
        if citation.source in QUOTED_SOURCES:  # the articles are quoted; guidelines and equations cited by section
            assert citation.quote and f'{citation.section}: "' in citation.text, where
        else:
            assert citation.text == f"{citation.reference} {citation.section}", where
        assert citation.text.startswith(citation.reference), where


def test_every_grade_test_and_order_alert_of_every_fixture_cites_a_bibliography_entry():
    seen = 0
    for patient in _assessed_patients():
        for grade in patient.grades:
            _assert_resolved(grade.citations, f"{patient.patient_reference} {grade.type}")
            assert grade.citation == "; ".join(dict.fromkeys(c.text for c in grade.citations))
            seen += 1
        for test in patient.recommended:
            _assert_resolved(test.citations, f"{patient.patient_reference} {test.display}")
        for alert in patient.order_alerts:
            _assert_resolved(alert.citations, f"{patient.patient_reference} order alert {alert.display}")
    assert seen >= 5 * len(ASSESS_BUNDLES)


def test_the_statpearls_citation_reads_as_a_clinician_cites_it():
    from service.pipeline.assess import assess_bundle

    bundle = json.loads((FIXTURES_DIR / "assess" / "01-dystrophic-systemic-sclerosis.json").read_text())
    (patient,) = assess_bundle(bundle, now=FIXTURE_NOW).patients
    dystrophic = next(g for g in patient.grades if g.type == "dystrophic")
    assert dystrophic.citation.startswith(
        'Le C, Bedocs PM. Calcinosis Cutis. StatPearls, 2019. Pathophysiology, Dystrophic Calcification: '
        '"Dystrophic calcification is the most common type of calcinosis cutis.')
    (citation,) = dystrophic.citations
    assert citation.url == "https://pubmed.ncbi.nlm.nih.gov/28846311/"


def test_each_prediction_carries_its_citations_as_a_related_artifact(fixed_client):
    path = FIXTURES_DIR / "assess" / "07-calciphylaxis-dialysis.json"
    body = fixed_client.post("/fhir/$assess", data=path.read_bytes(), content_type="application/fhir+json").get_json()
    risk = next(e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "RiskAssessment")
    calciphylaxis = next(p for p in risk["prediction"] if p["outcome"]["coding"][0]["code"] == "calciphylaxis")
    artifacts = [x["valueRelatedArtifact"] for x in calciphylaxis["extension"] if x["url"] == RELATED_ARTIFACT]
    # The StatPearls sentence, the risk-factor sentence, then (dialysis on file) the kidney-function
    # source: creatinine for chronic kidney failure (no eGFR is computed on dialysis, so no KDIGO category).
    assert [a["type"] for a in artifacts] == ["citation"] * 3
    assert "creatinine and urea can be obtained to evaluate for chronic kidney failure" in artifacts[2]["citation"]
    assert artifacts[0]["citation"].startswith("Le C, Bedocs PM. Calcinosis Cutis. StatPearls, 2019. "
                                               "Pearls and Other Issues: \"Calciphylaxis is a disease")
    assert artifacts[0]["url"] == "https://pubmed.ncbi.nlm.nih.gov/28846311/"
    assert artifacts[1]["citation"].startswith('"Calcinosis Cutis - Symptoms, causes and treat[ment]". '
                                               'Consumer health article. Calciphylaxis: "However, there is')
    assert "url" not in artifacts[1]  # none is known: none is made up
    requests = [e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "ServiceRequest"]
    for request in requests:
        cited = [x["valueRelatedArtifact"] for x in request.get("extension", []) if x["url"] == RELATED_ARTIFACT]
        assert cited and all(a["type"] == "citation" for a in cited), request["code"]
        assert request["note"][0]["text"].startswith("Source: ")


def test_the_calcium_phosphate_product_range_names_the_publication():
    for patient in _assessed_patients():
        for value in patient.values_used:
            if value.analyte == "ca-x-p":
                assert value.range_text == '<= 70 mg2/dL2 (StatPearls "Calcinosis Cutis", 2019)'
                return
    pytest.fail("no fixture has a calcium-phosphate product")


def test_warfarin_is_named_as_not_scored_with_no_claim_about_its_role():
    from test_knowledge_scenarios import engine_outputs, scenario_warfarin_by_rxnorm_with_ckd_necrosis

    rationale = engine_outputs(scenario_warfarin_by_rxnorm_with_ckd_necrosis())["Calciphylaxis"]["rationale"]
    assert "warfarin on file: not scored by this service." in rationale
    assert "risk factor in" not in rationale and "treatment" not in rationale


# ---- the bibliography itself ------------------------------------------------------------------

def _entries() -> list[dict[str, Any]]:
    return json.loads(BIBLIOGRAPHY.read_text(encoding="utf-8"))["entries"]


def test_every_bibliography_entry_is_complete_or_says_what_the_publication_does_not_give():
    keys = [entry["key"] for entry in _entries()]
    assert len(keys) == len(set(keys))
    for entry in _entries():
        not_given = set(entry.get("not_given", ()))
        assert entry.get("title"), entry["key"]
        assert entry.get("label") and entry.get("used_for"), entry["key"]
        assert isinstance(entry.get("year"), int) or "year" in not_given, entry["key"]
        assert (entry.get("authors") or entry.get("publisher") or entry.get("site") or entry.get("journal")
                or {"authors", "site"} <= not_given), entry["key"]
        for field in not_given:
            assert field not in entry, f"{entry['key']}: {field} is both given and not given"


def test_the_bibliography_names_the_sources_and_the_kidney_standards():
    by_key = {entry["key"]: entry for entry in _entries()}
    statpearls = by_key["statpearls-calcinosis-cutis"]
    assert (statpearls["title"], statpearls["authors"], statpearls["publisher"], statpearls["year"]) == (
        "Calcinosis Cutis", ["Le C", "Bedocs PM"], "StatPearls Publishing", 2019)
    assert by_key["watch-removing-calcinosis-cutis"]["title"] == "WATCH: Removing Calcinosis Cutis"
    assert by_key["calcium-stones-in-the-skin"]["title"] == \
        "Calcinosis Cutis (Calcium Stones in the Skin) Causes, Types, Treatment"
    assert by_key["symptoms-causes-and-treatment"]["title"].startswith("Calcinosis Cutis - Symptoms, causes and treat")
    kdigo = by_key["kdigo-2012-ckd"]
    assert kdigo["title"].startswith("KDIGO 2012 Clinical Practice Guideline for the Evaluation and Management")
    assert (kdigo["journal"], kdigo["year"], kdigo["volume"], kdigo["pages"]) == ("Kidney Int Suppl", 2013, "3", "1-150")
    ckd_epi = by_key["ckd-epi-2021"]
    assert ckd_epi["authors"][0] == "Inker LA"
    assert (ckd_epi["journal"], ckd_epi["year"], ckd_epi["volume"], ckd_epi["pages"]) == (
        "N Engl J Med", 2021, "385", "1737-1749")


def test_the_references_render_from_the_bibliography():
    from service.bibliography import load_bibliography

    bibliography = load_bibliography(BIBLIOGRAPHY)
    assert bibliography.publication("statpearls-calcinosis-cutis").reference == \
        "Le C, Bedocs PM. Calcinosis Cutis. StatPearls, 2019."
    assert bibliography.publication("ckd-epi-2021").reference == (
        "Inker LA, Eneanya ND, Coresh J, et al. New Creatinine- and Cystatin C-Based Equations to Estimate GFR "
        "without Race. N Engl J Med 2021;385(19):1737-1749.")
    assert bibliography.publication("kdigo-2012-ckd").reference == (
        "Kidney Disease: Improving Global Outcomes (KDIGO) CKD Work Group. KDIGO 2012 Clinical Practice Guideline "
        "for the Evaluation and Management of Chronic Kidney Disease. Kidney Int Suppl 2013;3(1):1-150.")
    assert bibliography.publication("watch-removing-calcinosis-cutis").reference == \
        "WATCH: Removing Calcinosis Cutis. pimplepopping.org, 2018."
    unknown = bibliography.citation("no-such-key", "Evaluation", "A sentence.")
    assert unknown.text == 'no-such-key Evaluation: "A sentence."'


def test_every_publication_the_library_cites_is_in_the_bibliography():
    text = LIBRARY.read_text(encoding="utf-8")
    cited = set(re.findall(r'"Cite"\(\s*\'([^\']+)\'', text))
    assert cited and cited <= _bibliography_keys()
    assert {"statpearls-calcinosis-cutis", "symptoms-causes-and-treatment", "calcium-stones-in-the-skin"} <= cited

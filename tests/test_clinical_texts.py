"""What a clinician reads in the rationales and notes the rule library writes.

A clinician gives a card a few seconds. Each type's rationale says why the type has its grade in
one sentence (the finding or its absence, with the numbers that drove it and their dates) and, only
when needed, what caps or qualifies it in a second. The values used are listed once, in one note
("Values used: ..."), not repeated in every rationale. Nothing reads as doubt without cause: a
25-OH vitamin D below the level the cited source calls toxic excludes hypervitaminosis D and says
so. Rationales and notes use plain test names, never LOINC long names.

Checked on every named library scenario and on every `$assess` fixture bundle.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

import orjson
import pytest

from conftest import FIXTURE_NOW, FIXTURES_DIR
from service.pipeline.assess import assess_bundle
from test_clinical_incomplete_data import evaluate
from test_knowledge_scenarios import (ICD10CM, SNOMED, Facts, calcium, condition, grades, obs, patient, phosphate,
                                      scenario_esrd_high_product_without_necrosis,
                                      scenario_dystrophic_systemic_sclerosis_normal_labs)
from test_output_sweep import GAPS, SCENARIOS

GRADE_DEFINES = ("Dystrophic", "Metastatic", "Idiopathic", "Iatrogenic", "Calciphylaxis")
ASSESS_INPUTS = sorted(p for p in (FIXTURES_DIR / "assess").glob("*.json")
                       if not p.name.endswith(".expected.json") and p.name != "MANIFEST.json")
VALUES_NOTE = "Values used: "
# LOINC long names ("Parathyrin.intact [Mass/volume] in Serum or Plasma"): their bracketed property and
# their system phrase.
LOINC_LONG_NAME = re.compile(r"\[(?:Mass|Moles|Units|Enzymatic activity|Volume|Presence|Titer|Ratio|Time)"
                             r"[^\]]*\]|\bin (?:Serum or Plasma|Serum, Plasma or Blood|Blood|Urine)\b|Parathyrin")


def sentences(text: str) -> list[str]:
    """The sentences of a text: a sentence ends at '.', '!' or '?' followed by a space or the end,
    outside parentheses; a decimal point ('9.4') ends none."""
    found, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif char in ".!?" and depth == 0 and (i + 1 == len(text) or text[i + 1].isspace()):
            found.append(text[start:i + 1].strip())
            start = i + 1
    rest = text[start:].strip()
    if rest:
        found.append(rest)
    return [s for s in found if s]


def test_the_sentence_counter_counts_sentence_ends_only():
    assert sentences("Ca 9.4 mg/dL on 2026-11-05 (N). Graded moderate, not high: Ca x P 41.8 mg2/dL2.") == [
        "Ca 9.4 mg/dL on 2026-11-05 (N).", "Graded moderate, not high: Ca x P 41.8 mg2/dL2."]
    assert len(sentences("Obesity (BMI 38. Severe.), diabetes; eGFR 7 mL/min/1.73 m2 (L)")) == 1
    assert len(sentences("One. Two. Three.")) == 3


def _check_texts(rationales: dict[str, str], notes: Iterable[str], where: str) -> None:
    notes = list(notes)
    seen: dict[str, str] = {}
    for kind, rationale in rationales.items():
        said = sentences(rationale)
        assert 1 <= len(said) <= 2, (where, kind, rationale)
        for sentence in said:
            assert sentence not in seen, (where, f"said in both {seen.get(sentence)} and {kind}", sentence)
            seen[sentence] = kind
        assert not rationale.startswith("Labs: ") and " Labs: " not in rationale, (where, kind, rationale)
    for text in [*rationales.values(), *notes]:
        assert "not excluded" not in text, (where, text)
        assert not LOINC_LONG_NAME.search(text), (where, text)
    values_notes = [note for note in notes if note.startswith(VALUES_NOTE)]
    assert len(values_notes) == 1, (where, notes)


@pytest.mark.parametrize("gap", sorted(GAPS))
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_library_scenario_reads_in_two_sentences_per_type_with_the_values_listed_once(name: str, gap: str):
    """As the scenario is, and with a search read only in part (whose qualifiers must fit the same limits)."""
    facts = SCENARIOS[name]()
    out = evaluate(Facts(list(facts.records) + GAPS[gap](), facts.patient_record))
    _check_texts({define: out[define]["rationale"] for define in GRADE_DEFINES}, out["Notes"], f"{name} ({gap})")
    assert out["Values Note"] == next(n for n in out["Notes"] if n.startswith(VALUES_NOTE))


@pytest.mark.parametrize("path", ASSESS_INPUTS, ids=lambda p: p.stem)
def test_each_fixture_patient_reads_in_two_sentences_per_type_with_the_values_listed_once(path: Path):
    run = assess_bundle(orjson.loads(path.read_bytes()), now=FIXTURE_NOW)
    assert run.patients, path.name
    for assessment in run.patients:
        where = f"{path.stem}/{assessment.patient_id}"
        _check_texts({g.type: g.rationale for g in assessment.grades}, assessment.notes, where)
        assert assessment.values_note.startswith(VALUES_NOTE), where
        assert assessment.notes[0] == assessment.values_note, where


# ---- the wording a clinician reads ------------------------------------------------------------

def _values_note(out: dict[str, Any]) -> str:
    (note,) = [n for n in out["Notes"] if n.startswith(VALUES_NOTE)]
    return note


def test_metastatic_says_why_in_one_sentence_with_the_values_dates_and_the_kidney_failure():
    out = evaluate(scenario_esrd_high_product_without_necrosis())
    assert grades(out)["metastatic"] == "high"
    assert out["Metastatic"]["rationale"] == (
        "Calcium and phosphate are high: Ca 10.5 mg/dL on 2026-11-05 (H), P 7.5 mg/dL on 2026-11-05 (H); "
        "Ca x P 78.8 mg2/dL2 exceeds 70 mg2/dL2; causes of metastatic calcinosis: End stage renal disease.")


def test_the_values_used_are_listed_once_in_a_note_and_not_in_the_other_rationales():
    out = evaluate(scenario_dystrophic_systemic_sclerosis_normal_labs())
    note = _values_note(out)
    assert note.startswith("Values used: Ca 9.4 mg/dL on 2026-11-05 (N); P 3.5 mg/dL on 2026-11-05 (N); "
                           "Ca x P 32.9 mg2/dL2 does not exceed 70 mg2/dL2")
    assert out["Dystrophic"]["rationale"] == (
        "Tissue damage recorded: CR(E)ST syndrome; calcium and phosphate are normal.")
    for define in ("Dystrophic", "Idiopathic", "Iatrogenic", "Calciphylaxis"):
        assert "Ca 9.4" not in out[define]["rationale"], define
    assert grades(out)["dystrophic"] == "high"


def test_a_vitamin_d_below_the_toxic_level_excludes_hypervitaminosis_d_and_says_so_with_its_source():
    out = evaluate(Facts([calcium("11.9", "H"), phosphate("4.1"), obs("62292-8", "24", "ng/mL", None)], patient()))
    rationale = out["Metastatic"]["rationale"]
    assert ("hypervitaminosis D excluded: 25-OH vitamin D 24 ng/mL on 2026-11-05 is below 150 ng/mL, "
            "the hallmark level of vitamin D toxicity") in rationale
    assert "25-OH vitamin D 24 ng/mL on 2026-11-05, below 150 ng/mL (hypervitaminosis D excluded)" in _values_note(out)
    assert "no upper reference limit" not in rationale and "(no flag)" not in _values_note(out)
    # The review is cited by section (its exact sentence is in the bibliography), as the kidney guideline is.
    (toxicity,) = [c for c in out["Metastatic"]["citation"] if c["source"] == "vitamin-d-toxicity-2018"]
    assert toxicity["section"].startswith("Abstract: serum 25(OH)D concentrations higher than 150 ng/mL")
    assert grades(out)["metastatic"] == "moderate"  # a high calcium alone: unchanged


def test_a_vitamin_d_at_the_toxic_level_the_lab_did_not_flag_is_a_cause():
    out = evaluate(Facts([calcium("11.9", "H"), phosphate("4.9", "H"), obs("62292-8", "160", "ng/mL", None)], patient()))
    rationale = out["Metastatic"]["rationale"]
    assert ("causes of metastatic calcinosis: 25-OH vitamin D 160 ng/mL on 2026-11-05, at or above 150 ng/mL, the "
            "hallmark level of vitamin D toxicity (not flagged by the lab)") in rationale
    assert "hypervitaminosis D excluded" not in rationale
    # A cause with a high calcium and phosphate but Ca x P 58.3: moderate until the product exceeds 70.
    assert grades(out)["metastatic"] == "moderate"
    assert grades(evaluate(Facts([calcium("9.2"), phosphate("3.5"), obs("62292-8", "160", "ng/mL", None),
                                  obs("17861-6", "9.2", "mg/dL", "N", days_ago=400)], patient())))["idiopathic"] \
        == "negligible"  # another cause: hypervitaminosis D by its level


def test_no_vitamin_d_result_cites_no_toxic_level():
    out = evaluate(scenario_esrd_high_product_without_necrosis())
    assert "vitamin-d-toxicity-2018" not in [c["source"] for c in out["Metastatic"]["citation"]]


def test_a_kidney_absence_names_the_stages_looked_for_so_ckd_stage_1_is_not_called_no_ckd():
    out = evaluate(Facts([condition(ICD10CM, "N18.1", "Chronic kidney disease, stage 1"),
                          calcium("9.4"), phosphate("3.6")], patient()))
    text = out["Calciphylaxis"]["rationale"]
    assert "No chronic kidney disease stage 3 to 5, ESRD or dialysis found among the conditions and procedures read" in text
    assert "No chronic kidney disease, " not in text


def test_a_suspected_high_picture_keeps_its_qualifier_in_the_second_sentence():
    out = evaluate(Facts([condition(ICD10CM, "N18.6", "End stage renal disease"),
                          condition(None, None, "Necrosis of skin of abdominal wall", verification="provisional"),
                          condition(ICD10CM, "E11.9", "Type 2 diabetes mellitus without complications"),
                          calcium("9.4"), phosphate("3.6")], patient()))
    assert grades(out)["calciphylaxis"] == "moderate"
    first, second = sentences(out["Calciphylaxis"]["rationale"])
    assert first == ("Kidney failure / dialysis: End stage renal disease; skin necrosis or ulceration: Necrosis of skin "
                     "of abdominal wall (suspected, not confirmed); risk factors: Type 2 diabetes mellitus without "
                     "complications.")
    assert second == "Graded moderate, not high: part of this picture is suspected, not confirmed."


def test_iatrogenic_evidence_is_one_sentence_and_the_cap_the_second():
    out = evaluate(Facts([condition(SNOMED, "89155008", "Systemic sclerosis (disorder)"),
                          condition(ICD10CM, "Z94.0", "Kidney transplant status"),
                          condition(ICD10CM, "E88.3", "Tumor lysis syndrome"),
                          calcium("9.4"), phosphate("3.6")], patient()))
    rationale = out["Iatrogenic"]["rationale"]
    assert len(sentences(rationale)) <= 2
    assert rationale.startswith("Tumor lysis syndrome: Tumor lysis syndrome; organ transplant: Kidney transplant status")
    assert grades(out)["iatrogenic"] == "moderate"
    assert sentences(rationale)[1].startswith("Graded at most moderate: a confirmed connective tissue disease")

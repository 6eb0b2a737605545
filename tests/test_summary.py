"""The readable summary `calcinosis-cds assess FILE` prints: read like a card, within 100 columns."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from types import SimpleNamespace

import pytest

from service.assessment_model import OmittedTest, UnconfirmedTest
from service.summary import WIDTH, format_summary, plain_test_name, short_reference
from test_outputs_scenarios import BUNDLE_ISSUES, dystrophic_with_condition, metastatic_high, no_labs

SECTIONS = ["Types, most likely first", "Metastatic calcinosis cutis: high likelihood",
            "Calciphylaxis: moderate likelihood", "Values used", "Recommended tests",
            "Already available (not proposed again)", "Order alerts", "Notes", "Skipped inputs", "Sources"]


def _section(text: str, title: str) -> list[str]:
    """The lines of one section (after its title and underline, up to the blank line that ends it)."""
    lines = text.split(f"\n{title}\n{'-' * len(title)}\n", 1)[1].split("\n\n", 1)[0]
    return lines.splitlines()


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_patient_block_has_its_sections_in_reading_order():
    text = format_summary([metastatic_high()], [])
    positions = [text.index(f"\n{title}\n") for title in SECTIONS]
    assert positions == sorted(positions)
    assert text.startswith("Calcinosis cutis assessment: Patient/esrd-1\n")
    assert "Assessed 2026-11-02T09:30:00Z with the CalcinosisCutis rule library 1.0.0." in text


def test_types_are_a_compact_table_one_line_each_most_likely_first():
    rows = _section(format_summary([metastatic_high()], []), "Types, most likely first")
    assert rows[0].split() == ["type", "grade", "why"]
    assert [row.split()[:2] for row in rows[1:]] == [
        ["Metastatic", "high"], ["Calciphylaxis", "moderate"], ["Iatrogenic", "low"],
        ["Dystrophic", "negligible"], ["Idiopathic", "negligible"]]
    whys = {row.split()[0]: row[row.index(row.split()[2]):] for row in rows[1:]}
    assert whys["Iatrogenic"] == "No calcium or phosphate infusion on record."  # short and uncited: whole
    assert whys["Metastatic"].endswith("… [1]") and whys["Calciphylaxis"].endswith("… [2]")  # its sources
    assert whys["Metastatic"].startswith("Calcium 11.2 mg/dL (2026-10-30) and phosphate 7.1 mg/dL")
    columns = {row.index(row.split()[2]) for row in rows}
    assert len(columns) == 1  # the why column is aligned


def test_a_long_why_is_cut_at_a_word_boundary_with_an_ellipsis():
    rows = _section(format_summary([metastatic_high()], []), "Types, most likely first")
    metastatic = rows[1]
    assert metastatic.endswith("… [1]") and len(metastatic) <= WIDTH
    shown = metastatic.split("high", 1)[1].strip().removesuffix("… [1]")
    full = metastatic_high().grades[0].rationale
    assert full.startswith(shown)
    assert full[len(shown)] == " "  # cut between words, never inside one
    assert len(shown) >= 50  # still says something


def test_the_leading_type_and_any_other_at_least_moderate_are_explained_in_full():
    text = format_summary([metastatic_high()], [])
    metastatic = _flat("\n".join(_section(text, "Metastatic calcinosis cutis: high likelihood")))
    assert "Ca x P product 79.5 mg2/dL2 exceeds 70; end-stage renal disease on record." in metastatic
    assert "Based on: Calcium (serum), Phosphate (serum), Condition/esrd." in metastatic
    assert "Sources: [1]." in metastatic
    calciphylaxis = _flat("\n".join(_section(text, "Calciphylaxis: moderate likelihood")))
    assert "no skin necrosis recorded" in calciphylaxis and "Sources: [2]." in calciphylaxis
    assert "Iatrogenic calcinosis cutis: low likelihood\n" not in text  # a low type stays in the table


def test_citations_are_listed_once_at_the_end_not_under_each_grade():
    text = format_summary([metastatic_high(), dystrophic_with_condition()], [])
    assert "Source: " not in text
    sources = _flat("\n".join(_section(text, "Sources")))
    assert sources.startswith("[1] Le C, Bedocs PM. Calcinosis Cutis. StatPearls, 2019. Pathophysiology, "
                              "Metastatic Calcification: \"Calcium deposition occurs")
    assert "[3] Le C, Bedocs PM. Calcinosis Cutis. StatPearls, 2019. Pathophysiology, Iatrogenic" in sources
    assert "[4] Le C, Bedocs PM. Calcinosis Cutis. StatPearls, 2019. Pathophysiology, Dystrophic" in sources
    assert text.index("\nSources\n") > text.index("assessment: Patient/dm-7")  # one list for every patient
    assert text.count("Calcium deposition occurs when the calcium phosphate product exceeds") == 1


def test_source_numbers_in_a_row_are_sorted_and_runs_are_ranges():
    from service.summary import _numbers

    assert _numbers([3, 1]) == "[1, 3]"
    assert _numbers([4, 2, 3, 5, 6, 9]) == "[2-6, 9]"
    assert _numbers([1, 2]) == "[1, 2]"
    assert _numbers([]) == ""


def test_a_why_cut_after_a_full_stop_ends_with_the_ellipsis_alone():
    from service.summary import _cut

    assert _cut("Calcium and phosphate are within the applied ranges. Labs: Ca 9.1 mg/dL", 54) == (
        "Calcium and phosphate are within the applied ranges…")
    assert _cut("short enough", 60) == "short enough"


def test_a_passage_cited_twice_gets_one_number():
    patient = metastatic_high()
    twice = dataclasses.replace(patient.grades[1], citations=patient.grades[0].citations,
                                citation=patient.grades[0].citation)
    text = format_summary([dataclasses.replace(patient, grades=(patient.grades[0], twice, *patient.grades[2:]))], [])
    assert "Sources: [1]." in _flat("\n".join(_section(text, "Calciphylaxis: moderate likelihood")))
    assert "[2]" in text  # the order alert's passage comes next
    assert text.count("Calcium deposition occurs when") == 1


def test_values_used_show_number_unit_flag_date_range_and_source():
    text = format_summary([metastatic_high()], [])
    assert "Calcium (serum): 11.2 mg/dL, flag H, on 2026-10-30T07:15:00Z, range 8.5-10.2 mg/dL (lab)" in text
    assert "Phosphate (serum): 7.1 mg/dL, flag H, on 2026-10-30, range 2.5-4.5 mg/dL (default, adult)" in text
    assert "Creatinine (serum): 6.40 mg/dL" in text  # trailing zero kept as the lab gave it
    assert "from Observation/cr-1" in _flat(text)


def test_the_missing_work_up_is_a_short_list_of_test_names_by_group():
    text = format_summary([metastatic_high()], [])
    recommended = _section(text, "Recommended tests")
    assert recommended == [
        "  Baseline work-up:",
        "    - PTH intact (LOINC 2731-8)",
        "    - 25-hydroxyvitamin D (LOINC 62292-8)",
        "  Milk-alkali syndrome work-up:",
        "    - Bicarbonate (LOINC 1963-8)",
    ]
    assert "Calcium (serum) (LOINC 17861-6): 11.2 mg/dL on 2026-10-30 from Observation/ca-1" in text


def test_a_test_is_named_by_its_plain_name_when_it_has_one():
    coded = SimpleNamespace(code="2731-8", system="http://loinc.org", name="PTH",
                            display="Parathyrin.intact [Mass/volume] in Serum or Plasma")
    assert plain_test_name(coded) == "PTH"
    without = SimpleNamespace(code="2731-8", system="http://loinc.org", display="PTH intact")
    assert plain_test_name(without) == "PTH intact"
    blank = SimpleNamespace(code="", system="", name="  ", display="Bone scintigraphy (bone scan)")
    assert plain_test_name(blank) == "Bone scintigraphy (bone scan)"


def test_tests_not_proposed_and_tests_not_confirmed_take_one_line_each_under_their_reason():
    reason = ("kidney failure or dialysis on file (End-stage renal disease, Dependence on renal dialysis, "
              "Hemodialysis): a patient on dialysis or with kidney failure may pass little or no urine, so no "
              "24-hour urine collection is proposed")
    partly_read = "could not confirm: the laboratory search was only partly read"
    patient = dataclasses.replace(
        metastatic_high(),
        omitted=(OmittedTest("6874-2", "http://loinc.org", "Calcium [Mass/time] in 24 hour Urine", reason),
                 OmittedTest("2779-7", "http://loinc.org", "Phosphate [Mass/time] in 24 hour Urine", reason)),
        unconfirmed=(UnconfirmedTest("17861-6", "http://loinc.org", "Calcium (serum)", "baseline", partly_read),
                     UnconfirmedTest("2777-1", "http://loinc.org", "Phosphate (serum)", "baseline", partly_read)))
    text = format_summary([patient], [])
    not_proposed = _section(text, "Not proposed")
    assert _flat("\n".join(not_proposed[:-2])) == reason + ":"  # the reason once, whole
    assert not_proposed[-2:] == ["    - Calcium [Mass/time] in 24 hour Urine (LOINC 6874-2)",
                                 "    - Phosphate [Mass/time] in 24 hour Urine (LOINC 2779-7)"]
    unconfirmed = _section(text, "Could not confirm (not proposed: check for a current result before ordering)")
    assert unconfirmed == [f"  {partly_read}:",
                           "    - Calcium (serum) (LOINC 17861-6)",
                           "    - Phosphate (serum) (LOINC 2777-1)"]


def test_a_test_name_too_long_for_a_line_is_cut_not_wrapped():
    long_name = "Very long laboratory test name " * 5
    patient = dataclasses.replace(metastatic_high(), omitted=(
        OmittedTest("1-8", "http://loinc.org", long_name, "kidney failure on file"),))
    line = _section(format_summary([patient], []), "Not proposed")[1]
    assert len(line) <= WIDTH and line.endswith("…") and line.startswith("    - Very long laboratory test name")


@pytest.mark.parametrize("reference, short", [
    ("Observation/obs-ca-1", "Observation/obs-ca-1"),
    ("urn:uuid:170cbf6b-56f0-50c0-b30f-2f94fc292362", "urn:uuid:170cbf6b…"),
    ("Patient/0e36c8df-3931-501e-851e-fa2fef284ab5", "Patient/0e36c8df…"),
    ("Observation/not-a-uuid-but-long-0000", "Observation/not-a-uuid-but-long-0000"),
    ("", ""),
])
def test_references_are_shortened_only_where_they_are_uuids(reference, short):
    assert short_reference(reference) == short


def test_resources_are_named_or_shortened_never_a_wall_of_uuids():
    patient = no_labs()
    grade = dataclasses.replace(patient.grades[0], evidence=(
        "urn:uuid:0e36c8df-3931-501e-851e-fa2fef284ab5", "urn:uuid:1dfe1d9f-7c33-5fab-8b30-9e762f7d80d1"))
    text = format_summary([dataclasses.replace(patient, grades=(grade, *patient.grades[1:]))], [])
    assert text.startswith("Calcinosis cutis assessment: urn:uuid:f0a1c3d2…\n")
    assert "  Based on: urn:uuid:0e36c8df…, urn:uuid:1dfe1d9f…\n" in text
    assert "f0a1c3d2-0000" not in text and "3931-501e" not in text


def test_a_resource_whose_name_is_known_is_named_and_two_of_one_name_are_told_apart():
    patient = metastatic_high()
    second = dataclasses.replace(patient.values_used[0], analyte="calcium-ionized", source="Observation/ca-2")
    grade = dataclasses.replace(patient.grades[0], evidence=("Observation/ca-1", "Observation/ca-2"))
    text = format_summary([dataclasses.replace(patient, values_used=(*patient.values_used, second),
                                               grades=(grade, *patient.grades[1:]))], [])
    assert "Based on: Calcium (serum) (Observation/ca-1), Calcium (serum) (Observation/ca-2)." in _flat(text)


def test_order_alerts_and_skipped_inputs_show_what_and_where():
    text = format_summary([metastatic_high()], [])
    alert = _flat("\n".join(_section(text, "Order alerts")))
    assert "Calcium gluconate 10% IV (MedicationRequest/cagluc-1): Check phosphate first" in alert
    assert alert.endswith("[3]")
    assert "warning (value) at Bundle.entry[7].resource.valueQuantity.unit: Unit 'mmol'" in text


def test_no_labs_says_unknown_not_normal_and_lists_the_baseline_panel():
    text = format_summary([no_labs()], [])
    assert "none: no usable lab value (unknown, not normal)" in text
    assert "    - CBC panel (LOINC 58410-2)" in text
    assert "Order alerts" not in text
    assert "Skipped inputs\n--------------\n  none" in text
    assert "\nSources\n" not in text  # nothing cited, no empty list


def test_condition_on_record_and_snomed_imaging_are_named():
    text = format_summary([dystrophic_with_condition()], [])
    assert "Calcinosis cutis Condition on record: Condition/calcinosis-7." in text
    assert "    - Plain X-ray (SNOMED CT 168537006)" in text


def test_several_patients_in_order_then_bundle_level_skipped_inputs():
    text = format_summary([metastatic_high(), no_labs()], BUNDLE_ISSUES)
    first = text.index("assessment: Patient/esrd-1")
    second = text.index("assessment: urn:uuid:f0a1c3d2…")
    bundle_level = text.index("Skipped inputs not tied to a patient")
    assert first < second < bundle_level < text.index("\nSources\n")
    assert "warning (not-supported) at Bundle.entry[12].resource: Resource type Claim" in text


def test_no_patient_is_said_plainly():
    assert format_summary([], []) == "No patient found in the input.\n"


def test_plain_text_within_100_columns_and_no_colour_codes():
    text = format_summary([metastatic_high(), no_labs(), dystrophic_with_condition()], BUNDLE_ISSUES)
    assert max(len(line) for line in text.splitlines()) <= WIDTH == 100
    assert "\x1b" not in text


def test_a_long_type_row_stays_within_the_width():
    patient = metastatic_high()
    grade = dataclasses.replace(patient.grades[0], rationale="x" * 300)  # one word, no boundary to cut at
    text = format_summary([dataclasses.replace(patient, grades=(grade, *patient.grades[1:]))], [])
    row = _section(text, "Types, most likely first")[1]
    assert len(row) <= WIDTH and row.endswith("x… [1]")


def test_a_grade_without_rationale_and_a_value_without_label_still_print():
    patient = metastatic_high()
    grade = dataclasses.replace(patient.grades[0], rationale="  ")
    value = dataclasses.replace(patient.values_used[0], label="")
    text = format_summary([dataclasses.replace(patient, grades=(grade, *patient.grades[1:]),
                                               values_used=(value, *patient.values_used[1:]))], [])
    assert _section(text, "Types, most likely first")[1].split()[2:5] == ["(no", "rationale", "given)"]
    assert "Based on: Calcium (serum), Phosphate (serum), Condition/esrd." in _flat(text)  # named by its test


def test_decimal_in_exponent_form_is_printed_in_plain_notation():
    patient = metastatic_high()
    value = dataclasses.replace(patient.values_used[0], value=Decimal("1.12E+1"))
    text = format_summary([dataclasses.replace(patient, values_used=(value,))], [])
    assert "Calcium (serum): 11.2 mg/dL" in text
    assert "E+1" not in text


def test_a_value_without_date_says_the_date_is_unknown():
    patient = metastatic_high()
    value = dataclasses.replace(patient.values_used[0], effective=None)
    text = format_summary([dataclasses.replace(patient, values_used=(value,))], [])
    assert "Calcium (serum): 11.2 mg/dL, flag H, date unknown, range" in text

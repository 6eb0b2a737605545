"""Edge cases of the CalcinosisCutis library: which calcium decides, long names, skin necrosis
look-alikes, tests already ordered, the milk-alkali picture and Ca x P next to 70.

Each runs through the compiled rule library (the `assess` fixture).
"""

from __future__ import annotations

from datetime import datetime, timezone

from test_knowledge_scenarios import (
    ICD10CM, SNOMED, Facts, assess, calcium, condition, engine_evidence, grades, medication, obs, patient, phosphate,
    recommended_codes, service_request, values_note,
)  # noqa: F401  (assess is the rule-library fixture)


def _day(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, 9, tzinfo=timezone.utc)


# ---- calcium evidence: an older ionized result does not outrank a newer total -------------

def older_normal_ionized_with_newer_high_total() -> Facts:
    return Facts([
        obs("1995-0", "4.8", "mg/dL", "N", effective=_day(2026, 1, 10)),
        calcium("13", "H", effective=_day(2026, 11, 10)),
        phosphate("3.5", "N"),
        condition(ICD10CM, "M34.1", "CR(E)ST syndrome"),
    ], patient())


def test_an_older_normal_ionized_calcium_does_not_hide_a_newer_high_total(assess):
    out = assess(older_normal_ionized_with_newer_high_total())
    assert grades(out)["dystrophic"] != "high"
    assert grades(out)["metastatic"] in ("moderate", "high")
    # The rationale names the calcium that decided (the newer total); the values note says why the ionized was not used.
    assert "but calcium is high and phosphate is normal: Ca 13 mg/dL on 2026-11-10 (H)" in out["Dystrophic"]["rationale"]
    assert "ionized Ca 4.8 mg/dL on 2026-01-10 is older than total Ca 13 mg/dL on 2026-11-10: total used" in values_note(out)
    assert "calcium is high" in out["Metastatic"]["rationale"].lower()
    assert "within the applied ranges" not in out["Metastatic"]["rationale"]


def test_an_ionized_calcium_of_the_same_day_as_the_total_still_decides(assess):
    facts = Facts([
        obs("1995-0", "5.6", "mg/dL", "H", effective=_day(2026, 11, 10)),
        calcium("9.5", "N", effective=_day(2026, 11, 10)),
        phosphate("3.5", "N"),
        condition(ICD10CM, "M34.1", "CR(E)ST syndrome"),
    ], patient())
    out = assess(facts)
    assert grades(out)["dystrophic"] != "high"
    assert "older than total" not in out["Dystrophic"]["rationale"]


# ---- long names are searched, not refused ------------------------------------------------

def test_a_twelve_thousand_character_medication_name_is_searched_and_condition_text_compared_whole(assess):
    # A medication name is searched (descriptive text); a condition's name is compared whole, so a
    # 12,000-character text that starts with "scleroderma" is no accepted name, and nothing fails.
    long_name = "calcium gluconate " + "x" * 12_000 + " injection"
    facts = Facts([
        medication("MedicationStatement", long_name, "active"),
        condition(None, None, "scleroderma " + "y" * 12_000),
        calcium("9.5"), phosphate("3.5"),
    ], patient())
    out = assess(facts)
    assert grades(out)["iatrogenic"] == "high"
    assert grades(out)["dystrophic"] == "low"
    assert "No connective tissue disease or other tissue damage found among the conditions read." in out["Dystrophic"]["rationale"]


# ---- skin necrosis look-alikes -----------------------------------------------------------

def _esrd_diabetes_with(name: str) -> Facts:
    return Facts([
        condition(SNOMED, "46177005", "End-stage renal disease (disorder)"),
        condition(ICD10CM, "E11.9", "Type 2 diabetes mellitus without complications"),
        condition(None, None, name),
    ], patient())


def test_organ_gangrene_and_fat_necrosis_are_not_skin_necrosis(assess):
    for name in ("Gangrenous cholecystitis", "Acute gangrenous appendicitis", "Fat necrosis of breast"):
        out = assess(_esrd_diabetes_with(name))
        assert grades(out)["calciphylaxis"] == "low", name
        assert name not in out["Calciphylaxis"]["rationale"]


def test_gangrene_of_a_toe_skin_necrosis_and_retiform_purpura_with_eschar_are_skin_necrosis(assess):
    for name in ("Dry gangrene of toe", "Skin necrosis of calf", "Retiform purpura with central eschar"):
        out = assess(_esrd_diabetes_with(name))
        assert grades(out)["calciphylaxis"] == "high", name
        assert name in out["Calciphylaxis"]["rationale"]


# ---- tests already ordered ---------------------------------------------------------------

def test_orders_under_another_code_of_the_analyte_or_a_cmp_count_as_already_ordered(assess):
    facts = Facts([
        service_request("2000-8", "active"),   # calcium in moles
        service_request("14879-1", "draft"),   # phosphate in moles
        service_request("1989-3", "on-hold"),  # not an open order (and not a 25-OH D code)
    ], patient())
    out = assess(facts)
    recommended = recommended_codes(out)
    assert "17861-6" not in recommended and "2777-1" not in recommended
    assert "62292-8" in recommended
    ordered = {t["code"]: t for t in out["Available Tests"]}
    assert ordered["17861-6"]["summary"] == "already ordered (ServiceRequest active, 2026-11-14)"
    assert ordered["2777-1"]["summary"] == "already ordered (ServiceRequest draft, 2026-11-14)"
    assert ordered["17861-6"]["result"].type_name == "ServiceRequest"


def test_a_comprehensive_metabolic_panel_order_covers_bmp_calcium_protein_and_albumin(assess):
    out = assess(Facts([service_request("24323-8", "active")], patient()))
    recommended = recommended_codes(out)
    for covered in ("24321-2", "17861-6", "2885-2", "1751-7"):
        assert covered not in recommended
    assert "2777-1" in recommended
    assert {t["code"] for t in out["Available Tests"]} == {"24321-2", "17861-6", "2885-2", "1751-7"}


# ---- milk-alkali picture -----------------------------------------------------------------

def milk_alkali_picture() -> Facts:
    return Facts([
        calcium("11.8", "H"), phosphate("3.5", "N"),
        obs("1963-8", "31", "mmol/L", "H"),
        medication("MedicationStatement", "calcium carbonate 500 mg chewable tablet", "active"),
    ], patient())


def test_high_calcium_with_calcium_carbonate_is_named_as_a_metastatic_cause(assess):
    out = assess(milk_alkali_picture())
    rationale = out["Metastatic"]["rationale"]
    assert "milk-alkali picture: calcium 11.8 mg/dL (H) with calcium carbonate 500 mg chewable tablet intake" in rationale
    assert "bicarbonate 31 mmol/L" in rationale
    # A cause with a high calcium but Ca x P 41.3: moderate until the product exceeds 70.
    assert grades(out)["metastatic"] == "moderate"
    reasons = [t["reason"] for t in out["Recommended Tests"] if t["group"] == "milk-alkali"]
    assert reasons and all(
        "to rule out milk-alkali syndrome: calcium 11.8 mg/dL (H) with calcium carbonate 500 mg chewable tablet intake" in r
        for r in reasons)


def test_the_milk_alkali_medication_and_bicarbonate_are_evidence_of_the_metastatic_grade():
    facts = milk_alkali_picture()
    evidence = engine_evidence(facts)["Metastatic"]
    statement = next(r for r in facts.records if r.type_name == "MedicationStatement")
    bicarbonate = next(r for r in facts.records if r.type_name == "Observation" and r.get("code").codes[0].code == "1963-8")
    assert statement.source in evidence
    assert bicarbonate.source in evidence


# ---- Ca x P next to 70 -------------------------------------------------------------------

def test_a_product_just_above_70_is_shown_with_two_decimals_so_it_reads_above_70(assess):
    for ca, p, shown in (("10.006", "7", "70.04"), ("8.9", "7.87", "70.04")):
        out = assess(Facts([calcium(ca, "N"), phosphate(p, "H")], patient()))
        assert f"Ca x P {shown} mg2/dL2 exceeds 70 mg2/dL2" in out["Metastatic"]["rationale"], (ca, p)


def test_a_product_far_from_70_keeps_one_decimal(assess):
    out = assess(Facts([calcium("10.2", "N"), phosphate("4.1", "N")], patient()))
    assert "Ca x P 41.8 mg2/dL2 does not exceed 70 mg2/dL2" in out["Metastatic"]["rationale"]


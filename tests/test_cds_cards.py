"""Cards from an assessment: indicator, summary, detail, suggestions and spec conformance."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from fhir.resources.R4B.servicerequest import ServiceRequest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataclasses import dataclass
from datetime import date

from service.assessment_model import (Citation, OmittedTest, PanelTest, TypeGrade, UnconfirmedTest, ValueUsed)
from service.hooks.cards import CardContext, build_cards, rule_docs_url, truncate_summary
from service.hooks.data_notes import DataNote
from tests.support.card_text import DATA_NOTES_EXTENSION, data_note_lines, limit_violations, rendered_words
from tests.support.cds_app import calcium_gluconate_alert, metastatic_assessment, quiet_assessment
from tests.support.cds_spec import card_violations

BASE = "https://cds.example.org"


def _context(**changes) -> CardContext:
    fields = dict(hook="patient-view", base_url=BASE, patient_reference="Patient/pat-1")
    fields.update(changes)
    return CardContext(**fields)


def _body(cards) -> dict:
    return {"cards": [c.card for c in cards]}


def test_high_grade_metastatic_with_calcinosis_on_file_is_critical_and_names_the_ca_x_p_product():
    assessment = metastatic_assessment(calcinosis_condition="Condition/calcinosis-1")
    (card,) = build_cards(assessment, _context())
    assert card.card["indicator"] == "critical"
    assert card.card["summary"] == "Metastatic calcinosis likely: Ca x P 81.8 mg2/dL2"
    assert card.card_type == "assessment:metastatic"
    assert "No calcinosis cutis found among the conditions read" not in card.card["detail"]
    assert card_violations(_body([card])) == []


def test_high_grade_metastatic_without_calcinosis_on_file_is_a_warning_that_says_so():
    (card,) = build_cards(metastatic_assessment(calcinosis_condition=None), _context())
    assert card.card["indicator"] == "warning"
    assert "No calcinosis cutis found among the conditions read: this is the likely type if present, not a diagnosis." in card.card["detail"]
    assert card_violations(_body([card])) == []


def test_high_grade_dystrophic_is_a_warning_not_critical():
    grades = (TypeGrade("dystrophic", "high", "Systemic sclerosis with normal calcium and phosphate."),
              TypeGrade("metastatic", "low", "Normal labs."))
    (card,) = build_cards(metastatic_assessment(grades=grades), _context())
    assert card.card["indicator"] == "warning"
    assert card.card["summary"].startswith("Dystrophic calcinosis likely: Ca 11.2 mg/dL (H)")


def test_moderate_calciphylaxis_is_a_warning_that_says_possible():
    grades = (TypeGrade("calciphylaxis", "moderate", "Dialysis and warfarin."),)
    (card,) = build_cards(metastatic_assessment(grades=grades), _context())
    assert card.card["indicator"] == "warning"
    assert card.card["summary"] == "Calciphylaxis possible: Ca x P 81.8 mg2/dL2"


def test_low_grades_with_a_missing_panel_give_an_info_card():
    assessment = quiet_assessment(recommended=metastatic_assessment().recommended)
    (card,) = build_cards(assessment, _context())
    assert card.card["indicator"] == "info"
    assert card.card["summary"] == "Calcinosis work-up incomplete: 3 tests missing; Ca 9.4 mg/dL (N)"
    assert card.card_type == "work-up"


def test_no_values_on_file_is_said_and_never_reads_as_normal():
    assessment = quiet_assessment(values_used=(), recommended=metastatic_assessment().recommended)
    (card,) = build_cards(assessment, _context())
    assert "no calcium/phosphate on file" in card.card["summary"]
    assert "No calcium or phosphate result on file: unknown, not normal." in card.card["detail"]
    assert "| Ca |" not in card.card["detail"]


def test_nothing_to_say_gives_no_cards():
    assert build_cards(quiet_assessment(), _context()) == []


def test_the_detail_says_why_in_one_sentence_and_tables_the_key_values_with_their_dates():
    (card,) = build_cards(metastatic_assessment(), _context())
    detail = card.card["detail"]
    assert detail.startswith("**Why metastatic (high):** Ca x P 81.8 mg2/dL2 on 2026-11-01 exceeds 70; "
                             "calcium 11.2 mg/dL (H).\n")
    assert ("| Test | Result | Date |\n|---|---|---|\n| Ca | 11.2 mg/dL (H) | 2026-11-01 |\n"
            "| P | 7.3 mg/dL (H) | 2026-11-01 |\n| Ca x P | 81.8 mg2/dL2 (H) | 2026-11-01 |") in detail
    assert "**Missing work-up:** PTH, 25-OH vitamin D, CBC" in detail
    assert "Parathyrin" not in detail and "[Mass/volume]" not in detail
    assert "Already available" not in detail and "Rule library" not in detail  # behind the links, not here
    assert limit_violations(card.card) == []


def test_a_long_first_sentence_is_not_copied_the_why_is_composed_from_the_grade_and_its_number():
    long = ("Calcium and phosphate are high with albumin-corrected Ca 8.9 mg/dL (albumin 4.4 g/dL on 2026-10-09) (N) "
            "and ionized calcium 5.9 mg/dL on 2026-10-09 (H) and P 7.3 mg/dL on 2026-11-01 (H) and more words here; "
            "phosphate unknown: 1 phosphate result within 365 days could not be read; Ca x P cannot be computed.")
    grades = (TypeGrade("metastatic", "high", long + " More."),)
    (card,) = build_cards(metastatic_assessment(grades=grades), _context())
    assert card.card["detail"].startswith("**Why metastatic (high):** graded high: Ca x P 81.8 mg2/dL2.\n")


def test_a_long_first_sentence_gives_its_leading_finding_when_that_clause_is_short():
    long = ("Kidney failure / dialysis: End-stage renal disease, Dependence on renal dialysis, Hemodialysis; skin necrosis "
            "or ulceration: Retiform purpura with central eschar, left flank; risk factors: Obesity (BMI 38), Type 2 "
            "diabetes mellitus, PTH 610 pg/mL on 2026-11-10 (H).")
    grades = (TypeGrade("calciphylaxis", "high", long),)
    (card,) = build_cards(metastatic_assessment(grades=grades), _context())
    assert card.card["detail"].startswith("**Why calciphylaxis (high):** Kidney failure / dialysis: End-stage renal "
                                          "disease, Dependence on renal dialysis, Hemodialysis; skin necrosis or "
                                          "ulceration: Retiform purpura with central eschar, left flank; …\n")


def test_the_rows_beyond_calcium_and_phosphate_are_the_values_that_drive_the_leading_type():
    values = metastatic_assessment().values_used + (
        ValueUsed("pth", "Parathyroid hormone (intact)", Decimal("480"), "pg/mL", date(2026, 11, 2), "Observation/pth",
                  flag="H"),
        ValueUsed("vitamin-d-25oh", "25-hydroxyvitamin D", Decimal("24"), "ng/mL", date(2026, 11, 2), "Observation/d"),
        ValueUsed("creatinine", "Creatinine", Decimal("6.8"), "mg/dL", date(2026, 11, 1), "Observation/cr", flag="H"),
        ValueUsed("egfr", "eGFR computed from creatinine (CKD-EPI 2021)", Decimal("6"), "mL/min/{1.73_m2}",
                  date(2026, 11, 1), "Observation/cr"),
    )
    (card,) = build_cards(metastatic_assessment(values_used=values), _context())
    detail = card.card["detail"]
    assert "| PTH | 480 pg/mL (H) | 2026-11-02 |" in detail
    assert "| eGFR | 6 mL/min/1.73 m2 | 2026-11-01 |" in detail
    assert "vitamin D" not in detail.split("**Missing")[0]  # normal: it did not drive the grade
    assert "| creatinine |" not in detail  # the eGFR computed from it is shown
    dystrophic = (TypeGrade("dystrophic", "high", "Tissue damage recorded: Systemic sclerosis."),)
    (card,) = build_cards(metastatic_assessment(values_used=values, grades=dystrophic), _context())
    assert "| PTH |" not in card.card["detail"] and "| eGFR |" not in card.card["detail"]


def test_a_bound_a_preliminary_result_and_a_value_without_date_are_shown_as_such():
    values = (ValueUsed("calcium", "Calcium (serum)", Decimal("10"), "mg/dL", date(2026, 11, 14), "Observation/ca",
                        status="preliminary", flag="N"),
              ValueUsed("phosphate", "Phosphate (serum)", Decimal("2"), "mg/dL", None, "Observation/p", flag="L",
                        comparator="<"))
    (card,) = build_cards(metastatic_assessment(values_used=values), _context())
    assert "| Ca | 10 mg/dL (N) | 2026-11-14, preliminary |" in card.card["detail"]
    assert "| P | below 2 mg/dL (L) | date not recorded |" in card.card["detail"]


def test_the_second_type_is_one_line_and_only_when_at_least_moderate():
    (card,) = build_cards(metastatic_assessment(), _context())
    assert "**Also possible:** calciphylaxis (moderate): ESRD on dialysis; no skin necrosis recorded." in card.card["detail"]
    grades = metastatic_assessment().grades[:1] + metastatic_assessment().grades[2:]
    (card,) = build_cards(metastatic_assessment(grades=grades), _context())
    assert "Also possible" not in card.card["detail"] and "dystrophic" not in card.card["detail"]


@dataclass(frozen=True)
class _NamedTest(PanelTest):
    """A panel test carrying its plain name, as the core gives it."""

    name: str = ""


def test_a_test_is_named_by_its_own_name_then_the_short_name_table_never_the_loinc_long_name():
    recommended = (_NamedTest("2731-8", "http://loinc.org", "Parathyrin.intact [Mass/volume] in Serum or Plasma",
                              "baseline", "hyperparathyroidism", name="Parathyroid hormone, intact"),
                   # A name that only repeats the display (the model's default) is no plain name.
                   _NamedTest("62292-8", "http://loinc.org", "25-Hydroxyvitamin D2+25-Hydroxyvitamin D3 [Mass/volume] "
                              "in Serum or Plasma", "baseline", "hypervitaminosis D",
                              name="25-Hydroxyvitamin D2+25-Hydroxyvitamin D3 [Mass/volume] in Serum or Plasma"),
                   PanelTest("1990-0", "http://loinc.org", "Osteocalcin [Mass/volume] in Serum or Plasma", "baseline",
                             "bone turnover"),
                   PanelTest("", "", "Bone scintigraphy (bone scan)", "imaging", "extent"))
    (card,) = build_cards(metastatic_assessment(recommended=recommended), _context())
    # A name holding a comma: the list is separated by semicolons, so each test reads as one.
    assert ("**Missing work-up:** Parathyroid hormone, intact; 25-OH vitamin D; Osteocalcin; "
            "Bone scintigraphy (bone scan)") in card.card["detail"]
    descriptions = [a["description"] for s in card.card["suggestions"] for a in s["actions"]]
    assert descriptions == ["Propose Parathyroid hormone, intact", "Propose 25-OH vitamin D", "Propose Osteocalcin",
                            "Propose Bone scintigraphy (bone scan)"]
    assert limit_violations(card.card) == []


def test_tests_not_confirmed_and_not_proposed_are_one_short_line_each():
    unconfirmed = (UnconfirmedTest("17861-6", "http://loinc.org", "Calcium [Mass/volume] in Serum or Plasma", "baseline",
                                   "could not confirm: 1 calcium result within 365 days could not be read"),)
    omitted = tuple(OmittedTest(code, "http://loinc.org", display,
                                "kidney failure or dialysis on file (End-stage renal disease): a patient on dialysis "
                                "or with kidney failure may pass little or no urine, so no 24-hour urine collection "
                                "is proposed")
                    for code, display in (("6874-2", "Calcium [Mass/time] in 24 hour Urine"),
                                          ("2779-7", "Phosphate [Mass/time] in 24 hour Urine")))
    (card,) = build_cards(metastatic_assessment(unconfirmed=unconfirmed, omitted=omitted), _context())
    detail = card.card["detail"]
    assert ("**Could not confirm (not proposed):** Calcium (1 calcium result within 365 days could not be read). "
            "Check for a current result before ordering.") in detail
    assert ("**Not proposed:** 24-h urine calcium, 24-h urine phosphate (kidney failure or dialysis on file)."
            in detail)
    assert "[Mass/time]" not in detail


def test_the_source_is_one_short_line_naming_the_publication_and_section():
    citations = (Citation("statpearls-calcinosis-cutis", "Pathophysiology, Metastatic Calcification",
                          "Metastatic calcification is deposition of calcium salts ...", "Le C, Bedocs PM. Calcinosis "
                          "Cutis. StatPearls, 2019.", 'StatPearls "Calcinosis Cutis" (Le C, Bedocs PM, 2019)'),
                 Citation("statpearls-calcinosis-cutis", "Evaluation", "A basic metabolic panel ...",
                          "Le C, Bedocs PM. Calcinosis Cutis. StatPearls, 2019.",
                          'StatPearls "Calcinosis Cutis" (Le C, Bedocs PM, 2019)'),
                 Citation("kdigo-2012", "Chapter 1", "", "KDIGO 2012 ...", "KDIGO 2012 Clinical Practice Guideline"))
    grades = (TypeGrade("metastatic", "high", "Calcium and/or phosphate are high.", citations=citations),)
    (card,) = build_cards(metastatic_assessment(grades=grades), _context())
    assert card.card["detail"].endswith(
        '\n\n_Source: StatPearls "Calcinosis Cutis" (Le C, Bedocs PM, 2019), Pathophysiology, Metastatic Calcification_')
    assert "deposition of calcium salts" not in card.card["detail"]


def test_the_suggestion_proposes_each_missing_test_as_a_draft_service_request():
    (card,) = build_cards(metastatic_assessment(), _context())
    assert card.card["selectionBehavior"] == "at-most-one"
    (suggestion,) = card.card["suggestions"]
    assert suggestion["label"] == "Order 3 missing tests"
    resources = [a["resource"] for a in suggestion["actions"]]
    assert [r["code"]["coding"][0]["code"] for r in resources] == ["2731-8", "62292-8", "58410-2"]
    for resource in resources:
        ServiceRequest.model_validate(resource)
        assert (resource["status"], resource["intent"]) == ("draft", "proposal")
        assert resource["subject"] == {"reference": "Patient/pat-1"}


def test_the_card_proposes_the_work_up_the_core_left_missing_and_says_more_when_drafts_exist():
    """Whether a test is already ordered is the rule library's decision (draft orders are part of the
    data it assessed: tests/test_clinical_work_up.py and tests/test_cds_end_to_end.py); the card does
    not decide it again, and only words the suggestion as completing what is drafted."""
    context = _context(hook="order-sign", draft_order_codes=frozenset({("http://loinc.org", "17861-6")}))
    (card,) = build_cards(metastatic_assessment(), context)
    codes = [a["resource"]["code"]["coding"][0]["code"] for a in card.card["suggestions"][0]["actions"]]
    assert codes == ["2731-8", "62292-8", "58410-2"]
    assert card.card["suggestions"][0]["label"] == "Order 3 more tests"


def test_order_alerts_become_warning_cards_before_the_assessment():
    assessment = quiet_assessment(order_alerts=(calcium_gluconate_alert(),))
    (alert,) = build_cards(assessment, _context(hook="order-sign"))
    assert alert.card["indicator"] == "warning"
    assert alert.card["summary"] == "Iatrogenic calcinosis risk: Calcium gluconate 10% IV infusion"
    assert "extravasation" in alert.card["detail"] and "phosphate" in alert.card["detail"]
    assert alert.card_type == "order-alert:iatrogenic"
    assert card_violations(_body([alert])) == [] and limit_violations(alert.card) == []
    assert "MedicationRequest/" not in alert.card["detail"]
    assert alert.card["extension"]["calcinosis-cds.org/orders"] == ["MedicationRequest/draft-ca-gluconate"]


def test_order_select_alerts_only_on_the_orders_just_selected():
    alerts = (calcium_gluconate_alert("MedicationRequest/a"), calcium_gluconate_alert("MedicationRequest/b"))
    assessment = quiet_assessment(order_alerts=alerts)
    cards = build_cards(assessment, _context(hook="order-select", selections=("MedicationRequest/b",)))
    assert len(cards) == 1
    full_url_alert = quiet_assessment(order_alerts=(calcium_gluconate_alert("https://ehr/fhir/MedicationRequest/b"),))
    assert len(build_cards(full_url_alert, _context(hook="order-select", selections=("MedicationRequest/b",)))) == 1


def test_every_card_and_suggestion_has_its_own_uuid():
    assessment = metastatic_assessment(order_alerts=(calcium_gluconate_alert(),))
    cards = build_cards(assessment, _context()) + build_cards(assessment, _context())
    ids = [c.uuid for c in cards] + [s["uuid"] for c in cards for s in c.card.get("suggestions", [])]
    assert len(ids) == len(set(ids)) == 6


def test_override_reasons_are_codings_with_displays_and_links_point_to_the_rule_docs_of_the_type():
    (card,) = build_cards(metastatic_assessment(), _context())
    assert all(r["system"] and r["code"] and r["display"] for r in card.card["overrideReasons"])
    (link,) = card.card["links"]
    assert link["label"] == "Rule documentation: metastatic calcinosis"
    assert link["type"] == "absolute" and link["url"] == rule_docs_url(BASE, "metastatic")
    assert link["url"].startswith(f"{BASE}/docs/rules")
    assert card.card["source"]["url"] == f"{BASE}/docs/rules"
    assert card.card["extension"]["calcinosis-cds.org/rule-library"] == "CalcinosisCutis 1.0.0"


def test_the_rule_docs_link_points_to_the_heading_of_the_type_and_stays_valid_without_one():
    with_type = "# Rules\n\n## Metastatic calcinosis\n\ntext\n\n## The rules and their citations\n"
    assert rule_docs_url(BASE, "metastatic", with_type) == f"{BASE}/docs/rules#metastatic-calcinosis"
    assert rule_docs_url(BASE, "metastatic", "## Metastatic\n") == f"{BASE}/docs/rules#metastatic"
    assert rule_docs_url(BASE, "dystrophic", with_type) == f"{BASE}/docs/rules#the-rules-and-their-citations"
    assert rule_docs_url(BASE, "dystrophic", "# Rules\n") == f"{BASE}/docs/rules"
    assert rule_docs_url(BASE + "/", "idiopathic", '<a id="idiopathic"></a>\n# Rules\n') == \
        f"{BASE}/docs/rules#idiopathic"


def test_a_long_order_name_keeps_the_summary_under_140_characters():
    alert = replace(calcium_gluconate_alert(), display="Calcium gluconate " + "in sodium chloride 0.9% " * 10)
    (card,) = build_cards(quiet_assessment(order_alerts=(alert,)), _context(hook="order-sign"))
    assert len(card.card["summary"]) < 140
    assert card.card["summary"].endswith("…")


def test_truncation_leaves_short_summaries_alone():
    assert truncate_summary("Calciphylaxis likely: P 8.1 mg/dL (H)") == "Calciphylaxis likely: P 8.1 mg/dL (H)"


def test_without_a_product_from_the_core_the_card_names_calcium_and_never_computes_one():
    values = (ValueUsed("calcium", "Calcium (serum)", Decimal("2.8"), "mmol/L", None, "Observation/ca-1", flag="H"),
              ValueUsed("phosphate", "Phosphate (serum)", Decimal("2.4"), "mmol/L", None, "Observation/p-1"))
    (card,) = build_cards(metastatic_assessment(values_used=values), _context())
    assert card.card["summary"] == "Metastatic calcinosis likely: Ca 2.8 mmol/L (H)"
    assert "| Ca | 2.8 mmol/L (H) | date not recorded |" in card.card["detail"]
    assert "| Ca x P |" not in card.card["detail"]


def test_the_product_is_shown_with_one_decimal_in_the_unit_the_core_gave():
    (card,) = build_cards(metastatic_assessment(), _context())
    assert card.card["summary"].endswith("Ca x P 81.8 mg2/dL2")
    assert "| Ca x P | 81.8 mg2/dL2 (H) | 2026-11-01 |" in card.card["detail"]


def test_data_notes_are_clinician_lines_in_the_detail_and_located_notes_in_the_extension():
    located = (DataNote("warning", "prefetch 'labs' is only the first page of its search", "prefetch.labs.link"),
               DataNote("warning", "Calcium (serum) (LOINC 17861-6) not used: unit 'mg/furlong' cannot be converted",
                        "prefetch.labs.entry[2].resource.valueQuantity.code"))
    lines = ("Lab results were read only in part: any result may be missing", "1 result could not be read: unknown unit")
    (card,) = build_cards(metastatic_assessment(), _context(data_notes=located, note_lines=lines))
    assert data_note_lines(card.card["detail"]) == list(lines)
    assert card.card["extension"][DATA_NOTES_EXTENSION] == [
        {"severity": "warning", "text": "prefetch 'labs' is only the first page of its search",
         "location": "prefetch.labs.link"},
        {"severity": "warning", "text": "Calcium (serum) (LOINC 17861-6) not used: unit 'mg/furlong' cannot be converted",
         "location": "prefetch.labs.entry[2].resource.valueQuantity.code"}]
    assert "prefetch" not in card.card["detail"]
    assert limit_violations(card.card) == [] and card_violations(_body([card])) == []


def test_located_notes_that_changed_nothing_make_no_card_of_their_own():
    located = (DataNote("information", "not assessed (not read by the rules): Encounter 1"),)
    assert build_cards(quiet_assessment(), _context(data_notes=located)) == []
    (card,) = build_cards(quiet_assessment(), _context(data_notes=located, note_lines=("Conditions were read only in part",)))
    assert card.card["indicator"] == "info"
    assert data_note_lines(card.card["detail"]) == ["Conditions were read only in part"]
    assert card.card["extension"][DATA_NOTES_EXTENSION][0]["text"].startswith("not assessed")
    assert card_violations(_body([card])) == []


def test_the_biggest_work_up_still_fits_in_120_words():
    recommended = tuple(PanelTest(code, system, display, group, "reason") for code, system, display, group in (
        ("58410-2", "http://loinc.org", "Complete blood count (hemogram) panel - Blood by Automated count", "baseline"),
        ("24321-2", "http://loinc.org", "Basic metabolic 2000 panel - Serum or Plasma", "baseline"),
        ("17861-6", "http://loinc.org", "Calcium [Mass/volume] in Serum or Plasma", "baseline"),
        ("2777-1", "http://loinc.org", "Phosphate [Mass/volume] in Serum or Plasma", "baseline"),
        ("2885-2", "http://loinc.org", "Protein [Mass/volume] in Serum or Plasma", "baseline"),
        ("1751-7", "http://loinc.org", "Albumin [Mass/volume] in Serum or Plasma", "baseline"),
        ("2731-8", "http://loinc.org", "Parathyrin.intact [Mass/volume] in Serum or Plasma", "baseline"),
        ("62292-8", "http://loinc.org", "25-Hydroxyvitamin D2+25-Hydroxyvitamin D3 [Mass/volume] in Serum or Plasma",
         "baseline"),
        ("6874-2", "http://loinc.org", "Calcium [Mass/time] in 24 hour Urine", "baseline"),
        ("2779-7", "http://loinc.org", "Phosphate [Mass/time] in 24 hour Urine", "baseline"),
        ("2157-6", "http://loinc.org", "Creatine kinase [Enzymatic activity/volume] in Serum or Plasma", "myositis"),
        ("2532-0", "http://loinc.org", "Lactate dehydrogenase [Enzymatic activity/volume] in Serum or Plasma", "myositis"),
        ("1920-8", "http://loinc.org", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
         "myositis"),
        ("1742-6", "http://loinc.org", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
         "myositis"),
        ("1761-6", "http://loinc.org", "Aldolase [Enzymatic activity/volume] in Serum or Plasma", "myositis"),
        ("8061-4", "http://loinc.org", "Nuclear Ab [Presence] in Serum", "autoimmune"),
        ("5130-0", "http://loinc.org", "DNA double strand Ab [Units/volume] in Serum", "autoimmune"),
        ("43119-7", "http://loinc.org", "Extractable nuclear Ab panel - Serum", "autoimmune"),
        ("1963-8", "http://loinc.org", "Bicarbonate [Moles/volume] in Serum or Plasma", "milk-alkali"),
        ("2744-1", "http://loinc.org", "pH of Arterial blood", "milk-alkali"),
        ("168537006", "http://snomed.info/sct", "Plain X-ray", "imaging"),
        ("16310003", "http://snomed.info/sct", "Ultrasonography", "imaging"),
        ("77477000", "http://snomed.info/sct", "Computerized axial tomography", "imaging"),
        ("113091000", "http://snomed.info/sct", "Magnetic resonance imaging", "imaging"),
        ("", "", "Bone scintigraphy (bone scan)", "imaging"),
        ("240977001", "http://snomed.info/sct", "Biopsy of skin", "imaging")))
    lines = ("Lab results were read only in part: any result may be missing", "2 results could not be read: unknown unit",
             "Conditions were read only in part")
    assessment = metastatic_assessment(recommended=recommended, calcinosis_condition="Condition/calcinosis-1")
    (card,) = build_cards(assessment, _context(note_lines=lines, data_notes=(DataNote("warning", "x", "prefetch.labs"),)))
    assert len(rendered_words(card.card["detail"])) <= 120, card.card["detail"]
    assert limit_violations(card.card) == []
    labels = [s["label"] for s in card.card["suggestions"]]
    assert labels == ["Order 20 missing tests", "Order plain X-ray", "Order ultrasound", "Order CT", "Order MRI",
                      "Order bone scintigraphy (bone scan)", "Order skin biopsy"]


def test_a_broad_panel_value_set_does_not_make_its_members_the_same_test(tmp_path):
    import json

    from service.hooks.order_codes import LabTestGrouping

    def valueset(name, codes):
        contains = [{"system": "http://loinc.org", "code": c} for c in codes]
        (tmp_path / f"{name}.json").write_text(json.dumps(
            {"resourceType": "ValueSet", "url": f"urn:vs:{name}", "expansion": {"contains": contains}}))

    valueset("pth", ["2731-8", "14866-8"])
    valueset("calcium", ["17861-6"])
    valueset("bone-panel", ["2731-8", "14866-8", "17861-6"])
    grouping = LabTestGrouping(tmp_path)
    assert grouping.is_ordered("http://loinc.org", "2731-8", [("http://loinc.org", "14866-8")])
    assert not grouping.is_ordered("http://loinc.org", "2731-8", [("http://loinc.org", "17861-6")])
    assert grouping.is_ordered("http://loinc.org", "99999-9", [("http://loinc.org/", "99999-9")])


def test_a_work_up_too_long_to_list_is_cut_with_how_many_more_and_the_detail_stays_within_120_words():
    recommended = tuple(PanelTest("", "", f"Named study number {n}", "baseline", "reason") for n in range(40))
    (card,) = build_cards(metastatic_assessment(recommended=recommended), _context())
    detail = card.card["detail"]
    assert len(rendered_words(detail)) <= 120, detail
    assert "**Missing work-up:** Named study number 0, Named study number 1" in detail
    assert " more (all in the suggestion)" in detail
    assert len(card.card["suggestions"][0]["actions"]) == 40


def test_with_no_calcium_or_phosphate_the_why_says_they_are_unknown_once():
    long = ("Labs: no usable calcium result within 365 days; no usable phosphate result within 365 days; Ca x P cannot "
            "be computed: calcium and phosphate are unknown, not normal.")
    grades = (TypeGrade("metastatic", "low", long), TypeGrade("dystrophic", "low", "No tissue damage found."))
    assessment = quiet_assessment(grades=grades, values_used=(), recommended=metastatic_assessment().recommended)
    (card,) = build_cards(assessment, _context())
    detail = card.card["detail"]
    assert detail.startswith("**Why metastatic (low):** No calcium or phosphate result on file: unknown, not normal.")
    assert detail.count("unknown, not normal") == 1
    assert "| Test |" not in detail


def test_the_summary_names_the_number_that_drives_the_grade_an_abnormal_one_before_a_normal_one():
    values = (ValueUsed("calcium", "Calcium (serum)", Decimal("11.9"), "mg/dL", date(2026, 10, 2), "Observation/ca",
                        flag="H"),
              ValueUsed("phosphate", "Phosphate (serum)", Decimal("4.9"), "mg/dL", date(2026, 10, 2), "Observation/p",
                        flag="H"),
              ValueUsed("ca-x-p", "Calcium x phosphate product", Decimal("58.31"), "mg2/dL2", date(2026, 10, 2),
                        "Observation/ca", flag="N"),
              ValueUsed("pth", "Parathyroid hormone (intact)", Decimal("610"), "pg/mL", date(2026, 10, 2),
                        "Observation/pth", flag="H"))
    metastatic = (TypeGrade("metastatic", "moderate", "Calcium and/or phosphate are high."),)
    (card,) = build_cards(metastatic_assessment(grades=metastatic, values_used=values), _context())
    assert card.card["summary"] == "Metastatic calcinosis possible: Ca 11.9 mg/dL (H)"  # Ca x P 58.3 is below 70
    calciphylaxis = (TypeGrade("calciphylaxis", "high", "Kidney failure / dialysis: End-stage renal disease."),)
    (card,) = build_cards(metastatic_assessment(grades=calciphylaxis, values_used=values), _context())
    assert card.card["summary"] == "Calciphylaxis likely: PTH 610 pg/mL (H)"


def test_a_test_proposed_again_because_two_results_disagree_is_named_as_a_repeat():
    recommended = (PanelTest("17861-6", "http://loinc.org", "Calcium [Mass/volume] in Serum or Plasma", "baseline",
                             "Repeat: two calcium results at 2026-11-10T08:00 disagree (9.4 and 11.8 mg/dL)"),)
    (card,) = build_cards(metastatic_assessment(recommended=recommended), _context())
    assert "**Missing work-up:** Calcium (repeat)" in card.card["detail"]


def test_long_lists_of_every_kind_are_shortened_but_why_the_values_and_the_first_data_note_stay():
    why = " ".join(["word"] * 24) + "."
    grades = (TypeGrade("metastatic", "high", why), TypeGrade("calciphylaxis", "moderate", "ESRD on dialysis."))
    recommended = tuple(PanelTest("", "", f"Long named study {n}", "baseline", "r") for n in range(30))
    unconfirmed = tuple(UnconfirmedTest("", "", f"Unconfirmed study {n}", "baseline",
                                        f"could not confirm: reason number {n % 3} was long text here") for n in range(12))
    omitted = tuple(OmittedTest("", "", f"Omitted study {n}", f"reason {n % 4} is quite long in words: details")
                    for n in range(8))
    lines = ("Lab results were read only in part: any result may be missing",
             "Conditions were read only in part: a diagnosis may be missing",
             "Age unknown (no patient record): only values outside every age band are flagged")
    assessment = metastatic_assessment(grades=grades, recommended=recommended, unconfirmed=unconfirmed, omitted=omitted,
                                       incomplete_searches=("condition",), calcinosis_condition=None)
    (card,) = build_cards(assessment, _context(note_lines=lines))
    detail = card.card["detail"]
    assert len(rendered_words(detail)) <= 120, detail
    assert detail.startswith(f"**Why metastatic (high):** {why}")
    assert "No calcinosis cutis found among the conditions read (the condition search was incomplete)" in detail
    assert "| Ca x P | 81.8 mg2/dL2 (H) | 2026-11-01 |" in detail
    assert data_note_lines(detail)[0] == lines[0]
    assert "**Could not confirm (not proposed):** Unconfirmed study 0" in detail


def test_with_calcium_unreadable_and_no_phosphate_the_card_says_results_could_not_be_read_not_a_partial_search():
    assessment = quiet_assessment(values_used=(), incomplete_analytes=("calcium",),
                                  recommended=metastatic_assessment().recommended)
    (card,) = build_cards(assessment, _context())
    assert "No usable calcium or phosphate result: some could not be read, so unknown, not normal." in card.card["detail"]
    assert "search was incomplete" not in card.card["detail"]


def _compact_by_definition(value):
    """What `compact` must do, written as plainly as possible: leave out nulls, "" and whatever is
    empty once its own empty members are left out."""
    if isinstance(value, dict):
        kept = {key: _compact_by_definition(item) for key, item in value.items()}
        return {key: item for key, item in kept.items() if item not in (None, "", [], {})}
    if isinstance(value, list):
        return [item for item in map(_compact_by_definition, value) if item not in (None, "", [], {})]
    return value


_JSON_LEAVES = st.one_of(st.none(), st.just(""), st.just(" "), st.text(max_size=3), st.booleans(),
                         st.integers(-2, 2), st.floats(allow_nan=False), st.just(0), st.just(False))
_JSON_VALUES = st.recursive(_JSON_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3)),
    max_leaves=30)


@given(_JSON_VALUES)
@settings(max_examples=300, deadline=None)
def test_compact_leaves_out_exactly_nulls_blank_strings_and_what_is_empty_once_compacted(value):
    from service.hooks.cards import compact

    compacted = compact(value)
    assert compacted == _compact_by_definition(value)
    assert type(compacted) is type(value)  # zero and false stay, as what they are


def test_a_proposed_order_leaves_out_nulls_and_blank_texts():
    from service.hooks.cards import _service_request

    test = PanelTest(code="2777-1", system="http://loinc.org", display="Phosphate", group="baseline", reason="")
    resource = _service_request(test, _context(validate_outputs=True))
    assert "reasonCode" not in resource and "note" not in resource and None not in resource.values()
    assert resource["subject"] == {"reference": "Patient/pat-1"} and resource["code"]["coding"][0]["code"] == "2777-1"

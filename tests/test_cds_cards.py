"""Cards from an assessment: indicator, summary, detail, suggestions and spec conformance."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from fhir.resources.R4B.servicerequest import ServiceRequest

from service.assessment_model import TypeGrade, ValueUsed
from service.hooks.cards import CardContext, build_cards, truncate_summary
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
    assert "No calcinosis cutis is on file" not in card.card["detail"]
    assert card_violations(_body([card])) == []


def test_high_grade_metastatic_without_calcinosis_on_file_is_a_warning_that_says_so():
    (card,) = build_cards(metastatic_assessment(calcinosis_condition=None), _context())
    assert card.card["indicator"] == "warning"
    assert "No calcinosis cutis is on file: the grades say which type it would most likely be" in card.card["detail"]
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
    assert "unknown, not normal" in card.card["detail"]


def test_nothing_to_say_gives_no_cards():
    assert build_cards(quiet_assessment(), _context()) == []


def test_the_detail_lists_each_value_with_its_date_and_what_is_missing():
    (card,) = build_cards(metastatic_assessment(), _context())
    detail = card.card["detail"]
    assert "- Calcium (serum): 11.2 mg/dL (H) on 2026-11-01; range 8.5-10.2 mg/dL (lab)" in detail
    assert "- Phosphate (serum): 7.3 mg/dL (H) on 2026-11-01" in detail
    assert "(2731-8): hyperparathyroidism" in detail
    assert "Calcium [Mass/volume] in Serum or Plasma: 11.2 mg/dL on 2026-11-01" in detail


def test_the_suggestion_proposes_each_missing_test_as_a_draft_service_request():
    (card,) = build_cards(metastatic_assessment(), _context())
    assert card.card["selectionBehavior"] == "at-most-one"
    (suggestion,) = card.card["suggestions"]
    resources = [a["resource"] for a in suggestion["actions"]]
    assert [r["code"]["coding"][0]["code"] for r in resources] == ["2731-8", "62292-8", "58410-2"]
    for resource in resources:
        ServiceRequest.model_validate(resource)
        assert (resource["status"], resource["intent"]) == ("draft", "proposal")
        assert resource["subject"] == {"reference": "Patient/pat-1"}


def test_tests_already_in_draft_orders_are_never_suggested_again():
    context = _context(hook="order-sign", draft_order_codes=frozenset({("http://loinc.org", "2731-8")}))
    (card,) = build_cards(metastatic_assessment(), context)
    codes = [a["resource"]["code"]["coding"][0]["code"] for a in card.card["suggestions"][0]["actions"]]
    assert codes == ["62292-8", "58410-2"]
    assert card.card["suggestions"][0]["label"] == "Complete the calcinosis work-up (2 more tests)"


def test_order_alerts_become_warning_cards_before_the_assessment():
    assessment = quiet_assessment(order_alerts=(calcium_gluconate_alert(),))
    (alert,) = build_cards(assessment, _context(hook="order-sign"))
    assert alert.card["indicator"] == "warning"
    assert alert.card["summary"] == "Iatrogenic calcinosis risk: Calcium gluconate 10% IV infusion"
    assert "extravasation" in alert.card["detail"] and "phosphate" in alert.card["detail"]
    assert alert.card_type == "order-alert:iatrogenic"
    assert card_violations(_body([alert])) == []


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


def test_override_reasons_are_codings_with_displays_and_links_point_to_the_rule_docs():
    (card,) = build_cards(metastatic_assessment(), _context())
    assert all(r["system"] and r["code"] and r["display"] for r in card.card["overrideReasons"])
    assert card.card["links"] == [{"label": "Calcinosis rule documentation", "url": f"{BASE}/docs/rules",
                                   "type": "absolute"}]
    assert card.card["source"]["url"] == f"{BASE}/docs/rules"


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
    assert "date not recorded" in card.card["detail"]


def test_the_product_is_shown_with_one_decimal_in_the_unit_the_core_gave():
    (card,) = build_cards(metastatic_assessment(), _context())
    assert card.card["summary"].endswith("Ca x P 81.8 mg2/dL2")
    assert "- Calcium x phosphate product: 81.76 mg2/dL2 (H) on 2026-11-01" in card.card["detail"]


def test_a_test_drafted_under_another_code_of_the_same_value_set_is_not_suggested_again():
    context = _context(hook="order-sign", draft_order_codes=frozenset({("http://loinc.org", "14866-8")}))  # PTH, molar
    (card,) = build_cards(metastatic_assessment(), context)
    codes = [a["resource"]["code"]["coding"][0]["code"] for a in card.card["suggestions"][0]["actions"]]
    assert codes == ["62292-8", "58410-2"]


def test_a_loinc_system_with_a_trailing_slash_is_the_same_system():
    context = _context(hook="order-sign", draft_order_codes=frozenset({("http://loinc.org/", "2731-8")}))
    (card,) = build_cards(metastatic_assessment(), context)
    codes = [a["resource"]["code"]["coding"][0]["code"] for a in card.card["suggestions"][0]["actions"]]
    assert "2731-8" not in codes


def test_a_draft_of_another_analyte_does_not_hide_a_missing_test():
    context = _context(hook="order-sign", draft_order_codes=frozenset({("http://loinc.org", "17861-6")}))  # calcium
    (card,) = build_cards(metastatic_assessment(), context)
    codes = [a["resource"]["code"]["coding"][0]["code"] for a in card.card["suggestions"][0]["actions"]]
    assert codes == ["2731-8", "62292-8", "58410-2"]


def test_gathering_notes_are_listed_under_data_notes():
    context = _context(gathering_notes=("prefetch 'labs' is only the first page",))
    (card,) = build_cards(metastatic_assessment(), context)
    assert "**Data notes**\n- prefetch 'labs' is only the first page" in card.card["detail"]


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

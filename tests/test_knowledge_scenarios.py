"""Clinical scenarios for the CalcinosisCutis library, on hand-built normalized records.

Each scenario runs through the compiled rule library (the one place the clinical logic lives)
and checks the grades and wording a clinician expects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import pytest

from service.cql_like.quantity import Quantity
from service.cql_like.values import Code, Concept, Interval, Record
from tests.support.output_sweep import assert_clean_outputs

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KNOWLEDGE_DIR = PROJECT_ROOT / "service" / "knowledge"
NOW = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
TIE_BREAK = ("calciphylaxis", "metastatic", "iatrogenic", "dystrophic", "idiopathic")
RISK_ORDER = {"high": 3, "moderate": 2, "low": 1, "negligible": 0}
GRADE_DEFINES = ("Dystrophic", "Metastatic", "Idiopathic", "Iatrogenic", "Calciphylaxis")
OUTPUT_DEFINES: tuple[str, ...] = (
    "Dystrophic", "Metastatic", "Idiopathic", "Iatrogenic", "Calciphylaxis",
    "Recommended Tests", "Available Tests", "Tests Not Proposed", "Values Used", "Order Alerts", "Calcinosis Condition",
    "Notes",
)
# The output defines whose texts reach a reader, swept on every evaluation (tests/support/output_sweep.py).
SWEPT_DEFINES: tuple[str, ...] = OUTPUT_DEFINES + ("Unconfirmed Tests", "Tests Not Proposed")
BASELINE = ["58410-2", "24321-2", "17861-6", "2777-1", "2885-2", "1751-7", "2731-8", "62292-8", "6874-2", "2779-7"]


# ---- facts --------------------------------------------------------------------------------

@dataclass
class Facts:
    """A data provider over a list of records (the protocol the engine reads)."""

    records: list[Record] = field(default_factory=list)
    patient_record: Record | None = None

    def patient(self) -> Record | None:
        return self.patient_record

    def retrieve(self, type_name: str, codes: frozenset[Code] | None) -> list[Record]:
        found = [r for r in self.records if r.type_name == type_name]
        if codes is None:
            return found
        wanted = {(c.system, c.code) for c in codes}
        return [r for r in found if r.get("code") is not None
                and any((c.system, c.code) in wanted for c in r.get("code").codes)]


_counter = iter(range(1, 10_000))


def _concept(system: str | None, code: str | None, display: str | None) -> Concept:
    codes = (Code(code, system, display),) if code is not None else ()
    return Concept(codes, display)


def obs(code: str, value: str | None, unit: str, flag: str | None = "N", *, days_ago: int = 10, status: str = "final",
        low: str | None = None, high: str | None = None, range_source: str | None = None,
        value_text: str | None = None, display: str | None = None, issued_days_ago: float | None = None,
        effective: datetime | None = None) -> Record:
    n = next(_counter)
    rng = None
    if low is not None or high is not None:
        rng = Interval(Quantity(Decimal(low), unit) if low else None, Quantity(Decimal(high), unit) if high else None)
    return Record("Observation", {
        "id": f"obs{n}", "code": _concept(LOINC, code, display), "status": status,
        "value": Quantity(Decimal(value), unit) if value is not None else None, "valueText": value_text,
        "effective": effective if effective is not None else NOW - timedelta(days=days_ago),
        "issued": None if issued_days_ago is None else NOW - timedelta(days=issued_days_ago), "interpretation": flag,
        "interpretationSource": "lab" if flag else None, "referenceRange": rng,
        "referenceRangeSource": range_source if range_source else ("lab" if rng else None),
    }, source=f"Observation/obs{n}")


def condition(system: str | None, code: str | None, display: str, clinical: str | None = "active",
              verification: str | None = "confirmed", category: str | None = None) -> Record:
    n = next(_counter)
    return Record("Condition", {"id": f"cond{n}", "code": _concept(system, code, display),
                                "clinicalStatus": clinical, "verificationStatus": verification, "category": category},
                  source=f"Condition/cond{n}")


def medication(type_name: str, name: str, status: str, *, days_ago: int = 5, route: str | Concept | None = None,
               code: tuple[str, str] | None = None) -> Record:
    """A medication record; a string route is route text only, a Concept route is used as given."""
    n = next(_counter)
    date_field = "authoredOn" if type_name == "MedicationRequest" else "effective"
    return Record(type_name, {
        "id": f"med{n}", "code": _concept(code[0], code[1], name) if code else _concept(None, None, name),
        "status": status, date_field: NOW - timedelta(days=days_ago), "name": name,
        "route": route if isinstance(route, Concept) or route is None else _concept(SNOMED, None, route),
    }, source=f"{type_name}/med{n}")


def procedure(code: str | None, display: str, status: str = "completed", *, days_ago: int | None = 30) -> Record:
    """A SNOMED CT coded Procedure (`code` None: named only); `days_ago` None: no date recorded."""
    n = next(_counter)
    return Record("Procedure", {"id": f"proc{n}", "code": _concept(SNOMED, code, display), "status": status,
                                "performed": None if days_ago is None else NOW - timedelta(days=days_ago)},
                  source=f"Procedure/proc{n}")


def service_request(code: str | None, status: str, *, system: str = LOINC, display: str | None = None) -> Record:
    """An order for a test (LOINC by default; `code` None: named only by `display`)."""
    n = next(_counter)
    return Record("ServiceRequest", {"id": f"sr{n}", "code": _concept(system, code, display), "status": status,
                                     "intent": "order", "authoredOn": NOW - timedelta(days=1)},
                  source=f"ServiceRequest/sr{n}")


def patient(birth: date = date(1970, 5, 1)) -> Record:
    return Record("Patient", {"id": "p1", "birthDate": birth, "gender": "female"}, source="Patient/p1")


def calcium(value: str, flag: str = "N", **kw) -> Record:
    return obs("17861-6", value, "mg/dL", flag, **kw)


def phosphate(value: str, flag: str = "N", **kw) -> Record:
    return obs("2777-1", value, "mg/dL", flag, **kw)


# ---- the two evaluators -------------------------------------------------------------------

def _engine_library():
    from service.cql_like import load_library, load_model_info

    return load_library(KNOWLEDGE_DIR / "CalcinosisCutis.cql", model=load_model_info(KNOWLEDGE_DIR / "model.json"),
                        valueset_dir=KNOWLEDGE_DIR / "valuesets")


_LIBRARY: list[Any] = []


def engine_outputs(facts: Facts, lookback: Quantity | None = None) -> dict[str, Any]:
    if not _LIBRARY:
        _LIBRARY.append(_engine_library())
    parameters = {"Lookback": lookback} if lookback is not None else None
    result = _LIBRARY[0].evaluate(facts, parameters=parameters, now=NOW)
    outputs = {name: result[name].value for name in OUTPUT_DEFINES}
    assert_clean_outputs(facts.records, result.values_only(), SWEPT_DEFINES)  # every scenario's output is swept
    return outputs


def engine_evidence(facts: Facts) -> dict[str, tuple[str, ...]]:
    if not _LIBRARY:
        _LIBRARY.append(_engine_library())
    result = _LIBRARY[0].evaluate(facts, now=NOW)
    return {name: result[name].evidence for name in OUTPUT_DEFINES}


EVALUATORS: dict[str, Callable[[Facts], dict[str, Any]]] = {"engine": engine_outputs}


@pytest.fixture(params=sorted(EVALUATORS))
def assess(request) -> Callable[[Facts], dict[str, Any]]:
    return EVALUATORS[request.param]


def grades(out: dict[str, Any]) -> dict[str, str]:
    return {out[name]["type"]: out[name]["risk"] for name in GRADE_DEFINES}


def leading(out: dict[str, Any]) -> str:
    ranked = sorted(grades(out).items(), key=lambda kv: (-RISK_ORDER[kv[1]], TIE_BREAK.index(kv[0])))
    return ranked[0][0]


def recommended_codes(out: dict[str, Any]) -> list[str]:
    return [t["code"] for t in out["Recommended Tests"]]


def values_note(out: dict[str, Any]) -> str:
    """The one note listing the values used (the rationales name only the values that drove their grade)."""
    (note,) = [n for n in out["Notes"] if n.startswith("Values used: ")]
    return note


# ---- scenarios ------------------------------------------------------------------------------

def scenario_dystrophic_systemic_sclerosis_normal_labs() -> Facts:
    return Facts([condition(ICD10CM, "M34.1", "CR(E)ST syndrome"), calcium("9.4", low="8.5", high="10.2"),
                  phosphate("3.5", low="2.5", high="4.5")], patient())


def scenario_metastatic_ckd_high_product() -> Facts:
    return Facts([condition(SNOMED, "431857002", "Chronic kidney disease stage 4 (disorder)"),
                  calcium("10.8", "H", days_ago=44), phosphate("7.6", "H", days_ago=44)], patient())


def scenario_idiopathic_normal_labs_with_calcinosis_on_file() -> Facts:
    return Facts([condition(ICD10CM, "L94.2", "Calcinosis cutis"), calcium("9.6"), phosphate("3.8"),
                  obs("1751-7", "4.2", "g/dL", low="3.4", high="5.4", range_source="default adult")], patient())


def scenario_iatrogenic_iv_calcium_gluconate() -> Facts:
    return Facts([medication("MedicationAdministration", "10 ml calcium gluconate 100 mg/ml injection", "completed"),
                  calcium("9.1"), phosphate("3.9")], patient())


def scenario_calciphylaxis_esrd_with_ulcer_and_diabetes() -> Facts:
    return Facts([condition(ICD10CM, "N18.6", "End stage renal disease"),
                  condition(None, None, "Skin ulcer of lower leg"),
                  condition(ICD10CM, "E11.9", "Type 2 diabetes mellitus without complications"),
                  calcium("9.0"), phosphate("5.0", "H")], patient())


def scenario_esrd_high_product_without_necrosis() -> Facts:
    return Facts([condition(ICD10CM, "N18.6", "End stage renal disease"),
                  calcium("10.5", "H"), phosphate("7.5", "H")], patient())


def scenario_no_labs_at_all() -> Facts:
    return Facts([], patient())


def scenario_child_phosphate_within_child_range() -> Facts:
    child = patient(date(2020, 3, 1))
    return Facts([obs("2777-1", "5.5", "mg/dL", "N", low="3.7", high="5.8", range_source="default child 1-12 y"),
                  obs("17861-6", "9.8", "mg/dL", "N", low="8.8", high="10.8", range_source="default child 1-12 y")], child)


def scenario_stale_abnormal_results_only() -> Facts:
    return Facts([calcium("11.9", "H", days_ago=800), phosphate("8.1", "H", days_ago=800)], patient())


def scenario_current_normal_after_old_abnormal() -> Facts:
    return Facts([calcium("11.9", "H", days_ago=500), calcium("9.3", "N", days_ago=20),
                  phosphate("7.9", "H", days_ago=500), phosphate("3.6", "N", days_ago=20)], patient())


def scenario_panel_available_and_ordered() -> Facts:
    return Facts([obs("49765-1", "9.4", "mg/dL", "N", days_ago=44, display="Calcium [Mass/volume] in Blood"),  # as Synthea sends it
                  obs("14879-1", "3.4", "mg/dL", "N", days_ago=44),  # the moles code, normalized to mg/dL
                  obs("38483-4", "0.9", "mg/dL", "N", days_ago=44),  # creatinine in blood
                  obs("58410-2", None, "1", None, days_ago=44),  # CBC panel: no value of its own
                  service_request("2731-8", "draft"), service_request("62292-8", "revoked")], patient())


def scenario_entered_in_error_calcium_ignored() -> Facts:
    return Facts([calcium("13.0", "HH", status="entered-in-error"), phosphate("3.5")], patient())


def scenario_dermatomyositis() -> Facts:
    return Facts([condition(SNOMED, "396230008", "Dermatomyositis (disorder)"), calcium("9.2"), phosphate("4.0")], patient())


def scenario_draft_calcium_chloride_order() -> Facts:
    return Facts([medication("MedicationRequest", "calcium chloride 100 mg/ml injectable solution", "draft"),
                  medication("MedicationRequest", "calcium gluconate 500 mg oral tablet", "active"),
                  phosphate("4.9", "H", days_ago=3)], patient())


def scenario_milk_alkali_hypercalcemia_with_antacids() -> Facts:
    return Facts([medication("MedicationStatement", "calcium carbonate 500 mg chewable tablet", "active"),
                  calcium("11.6", "H"), phosphate("3.9")], patient())


def scenario_preliminary_result_used() -> Facts:
    return Facts([calcium("9.9", status="preliminary", days_ago=1), phosphate("3.1")], patient())


def scenario_albumin_corrected_calcium() -> Facts:
    return Facts([calcium("9.8", "N", low="8.5", high="10.2"), obs("1751-7", "2.5", "g/dL", "L"),
                  phosphate("4.0")], patient())


def scenario_warfarin_by_rxnorm_with_ckd_necrosis() -> Facts:
    return Facts([condition(ICD10CM, "Z99.2", "Dependence on renal dialysis"),
                  condition(None, None, "Necrosis of skin of abdominal wall"),
                  medication("MedicationStatement", "Warfarin Sodium 2 MG Oral Tablet", "active", code=(RXNORM, "855302")),
                  calcium("9.2"), phosphate("4.4")], patient())


def scenario_ckd_stage_5_without_necrosis() -> Facts:
    return Facts([condition(SNOMED, "433146000", "Chronic kidney disease stage 5 (disorder)"),
                  calcium("8.9"), phosphate("5.9", "H")], patient())


def scenario_look_alike_drugs_are_not_iatrogenic() -> Facts:
    return Facts([medication("MedicationAdministration", "dexamethasone sodium phosphate 4 mg/ml injectable solution", "completed"),
                  medication("MedicationStatement", "5-aminosalicylic acid 500 mg delayed release oral tablet", "active"),
                  medication("MedicationAdministration", "calcium gluconate 650 mg oral tablet", "completed"),
                  calcium("9.4"), phosphate("3.4")], patient())


def scenario_para_aminosalicylic_acid() -> Facts:
    return Facts([medication("MedicationStatement", "aminosalicylic acid 4000 mg delayed release oral granules", "active"),
                  calcium("9.4"), phosphate("3.4")], patient())


def scenario_tumor_lysis_and_transplant() -> Facts:
    return Facts([condition(ICD10CM, "E88.3", "Tumor lysis syndrome"), condition(ICD10CM, "Z94.4", "Liver transplant status"),
                  condition(ICD10CM, "C91.00", "Acute lymphoblastic leukemia not having achieved remission"),
                  calcium("9.0"), phosphate("6.1", "H")], patient())


def scenario_kidney_transplant_only() -> Facts:
    return Facts([condition(SNOMED, "161665007", "History of renal transplant (situation)"), calcium("9.4"), phosphate("3.4")],
                 patient())


def scenario_refuted_systemic_sclerosis() -> Facts:
    return Facts([condition(SNOMED, "89155008", "Systemic sclerosis (disorder)", verification="refuted"),
                  calcium("9.4"), phosphate("3.4")], patient())


def scenario_specific_icd_codes_and_uncoded_names() -> Facts:
    return Facts([condition(ICD10CM, "M34.81", "Systemic sclerosis with lung involvement"),
                  condition(None, None, "Polymyositis"), condition(None, None, "Lupus anticoagulant positive"),
                  calcium("9.4"), phosphate("3.4")], patient())


def scenario_phosphate_in_a_non_canonical_unit() -> Facts:
    return Facts([calcium("9.4"), obs("2777-1", "1.1", "mmol/L", "N")], patient())


V3_ROUTE = "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"


def coded_route(system: str, code: str) -> Concept:
    """A route as real data often sends it: a coding with no display and no text."""
    return Concept((Code(code, system),), None)


def scenario_iv_calcium_gluconate_route_coded_without_display() -> Facts:
    return Facts([medication("MedicationAdministration", "calcium gluconate", "completed",
                             route=coded_route(SNOMED, "47625008")),
                  calcium("9.1"), phosphate("3.9")], patient())


def scenario_potassium_phosphate_route_coded_v3_without_display() -> Facts:
    return Facts([medication("MedicationAdministration", "potassium phosphate", "completed",
                             route=coded_route(V3_ROUTE, "IVINJ")),
                  calcium("9.1"), phosphate("3.9")], patient())


def scenario_draft_calcium_gluconate_order_route_coded_without_display() -> Facts:
    return Facts([medication("MedicationRequest", "calcium gluconate", "draft", route=coded_route(SNOMED, "47625008")),
                  phosphate("4.9", "H", days_ago=3)], patient())


def scenario_calcium_gluconate_by_mouth_coded() -> Facts:
    return Facts([medication("MedicationAdministration", "calcium gluconate", "completed",
                             route=coded_route(SNOMED, "26643006")),
                  calcium("9.1"), phosphate("3.9")], patient())


def scenario_amended_result_issued_later_at_the_same_instant() -> Facts:
    taken = NOW - timedelta(days=14)
    first = calcium("12.5", "H", effective=taken, issued_days_ago=14)
    amended = calcium("9.5", "N", effective=taken, status="amended", issued_days_ago=12)
    return Facts([first, amended, phosphate("3.5")], patient())


def scenario_corrected_result_at_the_same_instant_without_issued() -> Facts:
    taken = NOW - timedelta(days=14)
    return Facts([calcium("9.5", "N", effective=taken, status="corrected"), calcium("12.5", "H", effective=taken),
                  phosphate("3.5")], patient())


def scenario_albumin_by_dye_binding_method_code() -> Facts:
    return Facts([calcium("8.0", "L", low="8.5", high="10.2"), obs("61151-7", "2.5", "g/dL", "L"), phosphate("3.5")],
                 patient())


def scenario_separately_reported_ena_antibody() -> Facts:
    return Facts([condition(ICD10CM, "M34.1", "CR(E)ST syndrome"), calcium("9.4"), phosphate("3.5"),
                  obs("5351-2", None, "1", None, value_text="Negative", days_ago=20)], patient())


def scenario_method_specific_ldh_and_vitamin_d_in_moles() -> Facts:
    return Facts([condition(SNOMED, "396230008", "Dermatomyositis (disorder)"), calcium("9.2"), phosphate("4.0"),
                  obs("14804-9", "180", "U/L"), obs("68438-1", "30", "ng/mL")], patient())


def scenario_albumin_sent_in_g_per_l_as_g_per_dl() -> Facts:
    return Facts([calcium("9.0", "N", low="8.5", high="10.2"), obs("1751-7", "40", "g/dL", "H"), phosphate("3.5")],
                 patient())


def scenario_albumin_of_zero() -> Facts:
    return Facts([calcium("9.0", "N", low="8.5", high="10.2"), obs("1751-7", "0", "g/dL", "L"), phosphate("3.5")],
                 patient())


def scenario_corrected_calcium_would_be_negative() -> Facts:
    return Facts([calcium("2.0", "LL", low="8.5", high="10.2"), obs("1751-7", "9.5", "g/dL", "H"), phosphate("3.5")],
                 patient())


SCENARIOS: dict[str, Callable[[], Facts]] = {
    name.removeprefix("scenario_"): fn for name, fn in globals().items() if name.startswith("scenario_")
}


# ---- one test per clinical distinction ---------------------------------------------------------

def test_connective_tissue_disease_with_normal_calcium_and_phosphate_is_dystrophic_not_metastatic(assess):
    out = assess(scenario_dystrophic_systemic_sclerosis_normal_labs())
    assert grades(out)["dystrophic"] == "high"
    assert grades(out)["metastatic"] == "negligible"
    assert leading(out) == "dystrophic"
    assert "CR(E)ST syndrome; calcium and phosphate are normal" in out["Dystrophic"]["rationale"]
    assert "Ca 9.4 mg/dL on 2026-11-05 (N)" in values_note(out)
    # The serology is "for lupus and systemic sclerosis": an established CREST does not bring it back.
    assert [t["group"] for t in out["Recommended Tests"]].count("autoimmune") == 0
    assert [t["code"] for t in out["Tests Not Proposed"]] == ["8061-4", "5130-0", "43119-7"]


def test_ckd_with_high_calcium_and_phosphate_is_metastatic_with_the_product_named(assess):
    out = assess(scenario_metastatic_ckd_high_product())
    assert grades(out)["metastatic"] == "high"
    assert leading(out) == "metastatic"
    rationale = out["Metastatic"]["rationale"]
    assert "Ca x P 82.1 mg2/dL2 exceeds 70 mg2/dL2" in rationale
    assert "Ca 10.8 mg/dL on 2026-10-02 (H)" in rationale and "P 7.6 mg/dL on 2026-10-02 (H)" in rationale
    # CKD stage 4 is not the "chronic kidney failure" the source names as a cause: the product decides.
    assert "causes of metastatic calcinosis: Chronic kidney disease stage 4" not in rationale
    assert grades(out)["dystrophic"] == "negligible"
    assert grades(out)["idiopathic"] == "negligible"
    caxp = next(v for v in out["Values Used"] if v["analyte"] == "ca-x-p")
    assert caxp["value"] == Quantity(Decimal("82.08"), "mg2/dL2") and caxp["flag"] == "H"


def test_normal_labs_without_any_cause_and_calcinosis_on_file_is_idiopathic(assess):
    out = assess(scenario_idiopathic_normal_labs_with_calcinosis_on_file())
    assert grades(out)["idiopathic"] == "high"
    assert leading(out) == "idiopathic"
    assert out["Calcinosis Condition"] is not None
    assert out["Calcinosis Condition"].get("code").codes[0].code == "L94.2"


def test_intravenous_calcium_gluconate_makes_iatrogenic_high_and_rules_out_idiopathic(assess):
    out = assess(scenario_iatrogenic_iv_calcium_gluconate())
    assert grades(out)["iatrogenic"] == "high"
    assert grades(out)["idiopathic"] == "negligible"
    assert leading(out) == "iatrogenic"
    assert "10 ml calcium gluconate 100 mg/ml injection" in out["Iatrogenic"]["rationale"]


def test_esrd_with_skin_ulcer_and_diabetes_is_calciphylaxis_even_below_product_70(assess):
    out = assess(scenario_calciphylaxis_esrd_with_ulcer_and_diabetes())
    assert grades(out)["calciphylaxis"] == "high"
    assert leading(out) == "calciphylaxis"
    rationale = out["Calciphylaxis"]["rationale"]
    assert "Skin ulcer of lower leg" in rationale and "Type 2 diabetes mellitus" in rationale
    # The product is named where it is weighed (metastatic, capped by this picture) and in the values note.
    assert "Ca x P 45 mg2/dL2 does not exceed 70 mg2/dL2" in out["Metastatic"]["rationale"]
    assert "points to calciphylaxis" in out["Metastatic"]["rationale"]
    assert "Ca x P 45 mg2/dL2 does not exceed 70 mg2/dL2" in values_note(out)


def test_esrd_with_product_above_70_and_no_necrosis_is_metastatic_first(assess):
    out = assess(scenario_esrd_high_product_without_necrosis())
    assert grades(out)["metastatic"] == "high"
    assert grades(out)["calciphylaxis"] == "low"
    assert leading(out) == "metastatic"


def test_no_labs_at_all_grades_no_lab_driven_type_high_and_recommends_the_baseline(assess):
    out = assess(scenario_no_labs_at_all())
    assert all(risk != "high" for risk in grades(out).values())
    assert grades(out)["idiopathic"] != "negligible" or grades(out)["metastatic"] != "negligible"
    assert recommended_codes(out) == BASELINE
    assert out["Available Tests"] == [] and out["Values Used"] == []
    assert "no usable calcium result within 1 year" in out["Metastatic"]["rationale"]
    assert "unknown, not normal" in out["Metastatic"]["rationale"]
    assert any("labs are unknown, not normal" in note for note in out["Notes"])


def test_child_phosphate_within_the_child_range_is_not_hyperphosphatemia(assess):
    out = assess(scenario_child_phosphate_within_child_range())
    assert grades(out)["metastatic"] == "negligible"
    assert "P 5.5 mg/dL on 2026-11-05 (N)" in out["Metastatic"]["rationale"]
    assert "Phosphate: default child 1-12 y reference range applied (3.7-5.8 mg/dL); the lab sent none." in out["Notes"]


def test_stale_abnormal_results_are_not_current_and_count_as_unknown(assess):
    out = assess(scenario_stale_abnormal_results_only())
    assert grades(out)["metastatic"] != "high"
    assert "17861-6" in recommended_codes(out) and "2777-1" in recommended_codes(out)
    assert out["Values Used"] == []


def test_the_latest_current_result_counts_not_an_older_abnormal_one(assess):
    out = assess(scenario_current_normal_after_old_abnormal())
    assert grades(out)["metastatic"] == "negligible"
    assert [v["value"] for v in out["Values Used"] if v["analyte"] == "calcium"] == [Quantity(Decimal("9.3"), "mg/dL")]


def test_panel_leaves_out_tests_with_a_current_result_of_any_code_of_the_analyte_and_tests_already_ordered(assess):
    out = assess(scenario_panel_available_and_ordered())
    recommended = recommended_codes(out)
    for available in ("17861-6", "2777-1", "24321-2", "58410-2"):
        assert available not in recommended
    assert "2731-8" not in recommended  # a draft order exists
    assert "62292-8" in recommended  # its order was revoked
    assert [t["code"] for t in out["Available Tests"]] == ["58410-2", "24321-2", "17861-6", "2777-1", "2731-8"]
    pth_entry = out["Available Tests"][-1]
    assert pth_entry["summary"] == "already ordered (ServiceRequest draft, 2026-11-14)"
    assert pth_entry["result"].type_name == "ServiceRequest"
    calcium_entry = next(t for t in out["Available Tests"] if t["code"] == "17861-6")
    assert calcium_entry["summary"] == "Calcium [Mass/volume] in Blood: 9.4 mg/dL on 2026-10-02"
    phosphate_entry = next(t for t in out["Available Tests"] if t["code"] == "2777-1")
    assert phosphate_entry["summary"] == "14879-1: 3.4 mg/dL on 2026-10-02"  # no display: the code names it
    assert calcium_entry["result"].get("code").codes[0].code == "49765-1"


def test_an_entered_in_error_result_is_ignored(assess):
    out = assess(scenario_entered_in_error_calcium_ignored())
    assert grades(out)["metastatic"] != "high"
    assert "17861-6" in recommended_codes(out)


def test_dermatomyositis_adds_the_myositis_panel(assess):
    out = assess(scenario_dermatomyositis())
    groups = [t["group"] for t in out["Recommended Tests"]]
    assert groups.count("myositis") == 5
    assert groups == sorted(groups, key=["baseline", "myositis", "autoimmune", "milk-alkali"].index)
    assert grades(out)["dystrophic"] == "high"


def test_a_draft_iv_calcium_chloride_order_raises_an_alert_but_an_oral_tablet_does_not(assess):
    out = assess(scenario_draft_calcium_chloride_order())
    alerts = out["Order Alerts"]
    assert [a["display"] for a in alerts] == ["calcium chloride 100 mg/ml injectable solution"]
    assert "extravasation" in alerts[0]["message"] and "dilute" in alerts[0]["message"]
    assert "P 4.9 mg/dL on 2026-11-12 (H)" in alerts[0]["message"]
    assert "lowering phosphorus levels before administration" in alerts[0]["citation"][0]["quote"]


def test_hypercalcemia_with_calcium_carbonate_adds_the_milk_alkali_tests(assess):
    out = assess(scenario_milk_alkali_hypercalcemia_with_antacids())
    assert [t["code"] for t in out["Recommended Tests"] if t["group"] == "milk-alkali"] == ["1963-8", "2744-1"]


def test_a_preliminary_result_is_used_and_said_so(assess):
    out = assess(scenario_preliminary_result_used())
    assert "Preliminary result used: Calcium (total) 9.9 mg/dL on 2026-11-14." in out["Notes"]


def test_albumin_corrected_calcium_is_computed_and_flagged_against_the_calcium_range(assess):
    out = assess(scenario_albumin_corrected_calcium())
    corrected = next(v for v in out["Values Used"] if v["analyte"] == "calcium-corrected")
    assert corrected["value"] == Quantity(Decimal("11.0"), "mg/dL")
    assert corrected["flag"] == "H"
    assert grades(out)["metastatic"] == "moderate"


def test_albumin_correction_is_not_used_in_kidney_disease(assess):
    facts = scenario_albumin_corrected_calcium()
    facts.records.append(condition(ICD10CM, "N18.4", "Chronic kidney disease, stage 4 (severe)"))
    out = assess(facts)
    assert not any(v["analyte"] == "calcium-corrected" for v in out["Values Used"])
    assert any("inaccurate in CKD/ESRD" in note for note in out["Notes"])


def test_dialysis_with_skin_necrosis_and_warfarin_by_rxnorm_code_is_moderate_calciphylaxis_naming_warfarin(assess):
    out = assess(scenario_warfarin_by_rxnorm_with_ckd_necrosis())
    assert grades(out)["calciphylaxis"] == "moderate"
    assert "warfarin on file: not scored by this service." in out["Calciphylaxis"]["rationale"]


def test_ckd_stage_5_alone_is_kidney_failure_with_low_calciphylaxis_and_high_metastatic(assess):
    out = assess(scenario_ckd_stage_5_without_necrosis())
    assert grades(out)["calciphylaxis"] == "low"
    assert "Kidney failure / dialysis: Chronic kidney disease stage 5 (disorder)." in out["Calciphylaxis"]["rationale"]
    assert grades(out)["metastatic"] == "high"
    assert leading(out) == "metastatic"


def test_steroid_phosphate_salts_mesalamine_and_oral_calcium_are_not_iatrogenic_causes(assess):
    out = assess(scenario_look_alike_drugs_are_not_iatrogenic())
    assert grades(out)["iatrogenic"] == "negligible"
    assert grades(out)["idiopathic"] == "moderate"


def test_para_aminosalicylic_acid_is_an_iatrogenic_cause(assess):
    out = assess(scenario_para_aminosalicylic_acid())
    assert grades(out)["iatrogenic"] == "high"
    assert "aminosalicylic acid 4000 mg" in out["Iatrogenic"]["rationale"]


def test_tumor_lysis_is_iatrogenic_high_and_a_site_coded_malignancy_is_a_metastatic_cause(assess):
    out = assess(scenario_tumor_lysis_and_transplant())
    assert grades(out)["iatrogenic"] == "high"
    assert "Tumor lysis syndrome: Tumor lysis syndrome; organ transplant: Liver transplant status." \
        in out["Iatrogenic"]["rationale"]
    # A malignancy with a high phosphate but Ca x P 54.9 (below the source's 70): moderate, not high.
    assert grades(out)["metastatic"] == "moderate"
    assert "Acute lymphoblastic leukemia" in out["Metastatic"]["rationale"]
    assert "Graded moderate, not high: Ca x P does not exceed 70 mg2/dL2" in out["Metastatic"]["rationale"]


def test_organ_transplant_alone_makes_iatrogenic_moderate(assess):
    out = assess(scenario_kidney_transplant_only())
    assert grades(out)["iatrogenic"] == "moderate"
    assert grades(out)["idiopathic"] == "negligible"


def test_a_refuted_connective_tissue_disease_does_not_count(assess):
    out = assess(scenario_refuted_systemic_sclerosis())
    assert grades(out)["dystrophic"] == "low"
    assert "No connective tissue disease" in out["Dystrophic"]["rationale"]


def test_specific_icd_codes_of_a_category_and_uncoded_names_count_as_tissue_damage(assess):
    out = assess(scenario_specific_icd_codes_and_uncoded_names())
    assert grades(out)["dystrophic"] == "high"
    rationale = out["Dystrophic"]["rationale"]
    assert "Systemic sclerosis with lung involvement" in rationale and "Polymyositis" in rationale
    assert "Lupus anticoagulant" not in rationale
    assert [t["group"] for t in out["Recommended Tests"]].count("myositis") == 5


def test_a_product_of_non_canonical_units_is_unknown_rather_than_wrong(assess):
    out = assess(scenario_phosphate_in_a_non_canonical_unit())
    assert "Ca x P cannot be computed" in out["Metastatic"]["rationale"]
    assert not any(v["analyte"] == "ca-x-p" for v in out["Values Used"])


@pytest.mark.parametrize("evaluator", sorted(EVALUATORS))
def test_a_shorter_lookback_makes_an_older_result_stale(evaluator: str):
    facts = scenario_metastatic_ckd_high_product()  # results 44 days old
    default = EVALUATORS[evaluator](facts)
    short = EVALUATORS[evaluator](facts, Quantity(Decimal(30), "days"))
    assert grades(default)["metastatic"] == "high"
    assert grades(short)["metastatic"] == "low"  # labs now unknown; CKD stage 4 is context, not a cause
    assert "no usable calcium result within 30 days" in short["Metastatic"]["rationale"]


def test_every_grade_cites_a_publication_a_section_and_a_sentence(assess):
    out = assess(scenario_no_labs_at_all())
    for name in GRADE_DEFINES:
        assert out[name]["citation"], name
        for citation in out[name]["citation"]:
            assert citation["source"] and citation["section"], name
            if not citation["source"].startswith(("kdigo", "ckd-epi", "schwartz")):  # guidelines: by section
                assert len(citation["quote"]) > 30, name


# ---- intravenous route coded without display or abbreviated ---------------------------------

def test_calcium_gluconate_with_the_snomed_intravenous_route_code_and_no_display_is_iatrogenic(assess):
    out = assess(scenario_iv_calcium_gluconate_route_coded_without_display())
    assert grades(out)["iatrogenic"] == "high"
    assert "calcium gluconate" in out["Iatrogenic"]["rationale"]


def test_potassium_phosphate_with_a_v3_intravenous_route_code_and_no_display_is_iatrogenic(assess):
    out = assess(scenario_potassium_phosphate_route_coded_v3_without_display())
    assert grades(out)["iatrogenic"] == "high"


@pytest.mark.parametrize("route_text", ["IV", "i.v.", "intravenous", "iv infusion", "Intravenously", "IV push"])
def test_calcium_gluconate_with_an_abbreviated_intravenous_route_text_is_iatrogenic(assess, route_text: str):
    facts = Facts([medication("MedicationAdministration", "calcium gluconate", "completed", route=route_text),
                   calcium("9.1"), phosphate("3.9")], patient())
    assert grades(assess(facts))["iatrogenic"] == "high"


# Medication names arrive lower-cased and whitespace-collapsed from the normalizer.
@pytest.mark.parametrize("name", ["calcium gluconate 10% inj", "calcium gluconate 1 g iv", "calcium gluconate i.v.",
                                  "potassium phosphate 15 mmol in 250 ml ivpb"])
def test_an_intravenous_abbreviation_in_the_medication_name_is_enough_without_a_route(assess, name: str):
    facts = Facts([medication("MedicationAdministration", name, "completed"), calcium("9.1"), phosphate("3.9")], patient())
    assert grades(assess(facts))["iatrogenic"] == "high"


@pytest.mark.parametrize("route_text", ["oral", "per os", "IVIG line", "PO"])
def test_calcium_gluconate_with_a_route_text_that_is_not_intravenous_is_not_iatrogenic(assess, route_text: str):
    facts = Facts([medication("MedicationAdministration", "calcium gluconate", "completed", route=route_text),
                   calcium("9.1"), phosphate("3.9")], patient())
    assert grades(assess(facts))["iatrogenic"] == "negligible"


def test_calcium_gluconate_with_the_oral_route_code_is_not_iatrogenic(assess):
    out = assess(scenario_calcium_gluconate_by_mouth_coded())
    assert grades(out)["iatrogenic"] == "negligible"


def test_a_draft_calcium_gluconate_order_with_a_coded_intravenous_route_raises_an_order_alert(assess):
    out = assess(scenario_draft_calcium_gluconate_order_route_coded_without_display())
    assert [a["display"] for a in out["Order Alerts"]] == ["calcium gluconate"]
    assert grades(out)["iatrogenic"] == "low"


# ---- results at the same instant -----------------------------------------------------------

def test_at_the_same_effective_instant_the_later_issued_result_counts_whatever_the_record_order(assess):
    facts = scenario_amended_result_issued_later_at_the_same_instant()
    for records in (facts.records, list(reversed(facts.records))):
        out = assess(Facts(records, facts.patient_record))
        used = [v for v in out["Values Used"] if v["analyte"] == "calcium"]
        assert [v["value"] for v in used] == [Quantity(Decimal("9.5"), "mg/dL")]
        assert grades(out)["metastatic"] == "negligible"


def test_at_the_same_instant_without_issued_dates_a_corrected_result_beats_the_final_one(assess):
    facts = scenario_corrected_result_at_the_same_instant_without_issued()
    for records in (facts.records, list(reversed(facts.records))):
        out = assess(Facts(records, facts.patient_record))
        assert [v["result"].get("status") for v in out["Values Used"] if v["analyte"] == "calcium"] == ["corrected"]


# ---- codes the terminology accepts are read by the rules ------------------------------------

def test_albumin_reported_under_a_dye_binding_method_code_corrects_the_calcium(assess):
    out = assess(scenario_albumin_by_dye_binding_method_code())
    corrected = next(v for v in out["Values Used"] if v["analyte"] == "calcium-corrected")
    assert corrected["value"] == Quantity(Decimal("9.2"), "mg/dL")
    assert "1751-7" not in recommended_codes(out)


def test_a_separately_reported_ena_antibody_makes_the_ena_panel_available(assess):
    out = assess(scenario_separately_reported_ena_antibody())
    assert "43119-7" not in recommended_codes(out)
    ena = next(t for t in out["Available Tests"] if t["code"] == "43119-7")
    assert ena["summary"] == "5351-2: Negative on 2026-10-26"


def test_method_specific_ldh_and_total_vitamin_d_codes_count_as_available(assess):
    out = assess(scenario_method_specific_ldh_and_vitamin_d_in_moles())
    available = [t["code"] for t in out["Available Tests"]]
    assert "2532-0" in available and "62292-8" in available
    assert any(v["analyte"] == "vitamin-d-25oh" for v in out["Values Used"])


# ---- implausible albumin: no corrected calcium ------------------------------------------------

def test_an_albumin_of_40_g_per_dl_is_implausible_and_no_corrected_calcium_is_used(assess):
    out = assess(scenario_albumin_sent_in_g_per_l_as_g_per_dl())
    assert not any(v["analyte"] == "calcium-corrected" for v in out["Values Used"])
    assert grades(out)["metastatic"] == "negligible"  # the total calcium (N) counts, not a corrected -19.8
    assert ("Albumin 40 g/dL on 2026-11-05 is implausible (g/L sent as g/dL?): "
            "albumin-corrected calcium not computed.") in out["Notes"]
    assert "albumin 40 g/dL on 2026-11-05 is implausible (g/L sent as g/dL?): corrected calcium not computed" \
        in values_note(out)
    assert "Ca 9 mg/dL on 2026-11-05 (N)" in out["Metastatic"]["rationale"]  # the total calcium, not a corrected one
    assert "Ca x P 31.5 mg2/dL2" in out["Metastatic"]["rationale"]


def test_an_albumin_of_zero_is_implausible_and_no_corrected_calcium_is_used(assess):
    out = assess(scenario_albumin_of_zero())
    assert not any(v["analyte"] == "calcium-corrected" for v in out["Values Used"])
    assert "Albumin 0 g/dL on 2026-11-05 is implausible: albumin-corrected calcium not computed." in out["Notes"]


def test_a_corrected_calcium_of_zero_or_less_is_not_used(assess):
    out = assess(scenario_corrected_calcium_would_be_negative())
    assert not any(v["analyte"] == "calcium-corrected" for v in out["Values Used"])
    assert any(note.startswith("Albumin-corrected calcium not computed: Ca 2 mg/dL with albumin 9.5 g/dL")
               for note in out["Notes"])
    assert grades(out)["metastatic"] == "low"  # total calcium LL: abnormal, not high


def test_albumin_at_the_edge_of_the_plausible_window_is_still_used(assess):
    facts = Facts([calcium("9.0", "N", low="8.5", high="10.2"), obs("1751-7", "10", "g/dL", "H"), phosphate("3.5")],
                  patient())
    out = assess(facts)
    corrected = next(v for v in out["Values Used"] if v["analyte"] == "calcium-corrected")
    assert corrected["value"] == Quantity(Decimal("4.2"), "mg/dL")


def test_a_grade_s_evidence_is_the_records_it_used():
    facts = scenario_esrd_high_product_without_necrosis()
    evidence = engine_evidence(facts)["Metastatic"]
    assert set(evidence) == {r.source for r in facts.records}
    unrelated = scenario_dystrophic_systemic_sclerosis_normal_labs()
    assert not any(e.startswith("Condition/") for e in engine_evidence(unrelated)["Metastatic"])


# ---- from FHIR JSON: a route coded without display reaches the rules as a code -----------------

def test_a_fhir_medication_administration_with_a_coded_route_and_no_display_is_iatrogenic_end_to_end():
    from service.pipeline.assess import assess_bundle

    def entry(resource: dict) -> dict:
        return {"fullUrl": f"http://example.org/fhir/{resource['resourceType']}/{resource['id']}", "resource": resource}

    administration = {
        "resourceType": "MedicationAdministration", "id": "ma1", "status": "completed",
        "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-11-10T10:00:00Z",
        "medicationCodeableConcept": {"text": "Calcium gluconate"},
        "dosage": {"route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]}},
    }
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        entry({"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01", "gender": "female"}),
        entry(administration)]}
    run = assess_bundle(bundle, now=NOW)
    grades_by_type = {g.type: g.risk for g in run.patients[0].grades}
    assert grades_by_type["iatrogenic"] == "high"


# ---- clinician review: wording and grades ----------------------------------------------------

def scenario_unflagged_high_vitamin_d_without_a_cause() -> Facts:
    return Facts([calcium("11.9", "H"), phosphate("4.9", "H"), obs("62292-8", "160", "ng/mL", None)], patient())


def test_an_unflagged_vitamin_d_at_the_toxic_level_counts_as_hypervitaminosis_d(assess):
    out = assess(scenario_unflagged_high_vitamin_d_without_a_cause())
    rationale = out["Metastatic"]["rationale"]
    # 160 ng/mL is above the level the cited review calls the hallmark of toxicity (150 ng/mL): a cause.
    assert ("25-OH vitamin D 160 ng/mL on 2026-11-05, at or above 150 ng/mL, the hallmark level of vitamin D "
            "toxicity (not flagged by the lab)") in rationale
    assert "hypervitaminosis D excluded" not in rationale
    assert "causes of metastatic calcinosis: 25-OH vitamin D 160 ng/mL" in rationale
    assert grades(out)["metastatic"] == "moderate"


def test_a_vitamin_d_flagged_high_is_a_cause_and_not_called_unknown(assess):
    out = assess(Facts([calcium("11.9", "H"), phosphate("4.9", "H"), obs("62292-8", "160", "ng/mL", "H")], patient()))
    rationale = out["Metastatic"]["rationale"]
    assert "causes of metastatic calcinosis: 25-OH vitamin D 160 ng/mL on 2026-11-05 (H)." in rationale
    assert "not excluded" not in rationale


def scenario_diabetic_foot_ulcer_with_normal_kidneys() -> Facts:
    """The reviewer's dfu.json picture: a diabetic heel ulcer, type 2 diabetes, normal labs and creatinine."""
    return Facts([condition(ICD10CM, "E11.9", "Type 2 diabetes mellitus without complications"),
                  condition(None, None, "Diabetic foot ulcer, right heel"),
                  calcium("9.4"), phosphate("3.6"), obs("2160-0", "0.8", "mg/dL", "N")], patient())


def test_a_diabetic_foot_ulcer_with_diabetes_and_normal_kidneys_keeps_calciphylaxis_low(assess):
    out = assess(scenario_diabetic_foot_ulcer_with_normal_kidneys())
    assert grades(out)["calciphylaxis"] == "low"
    assert "Diabetic foot ulcer, right heel" in out["Calciphylaxis"]["rationale"]


def test_retiform_purpura_with_diabetes_and_normal_kidneys_is_still_moderate_calciphylaxis(assess):
    out = assess(Facts([condition(ICD10CM, "E11.9", "Type 2 diabetes mellitus without complications"),
                        condition(None, None, "Retiform purpura of thigh"), calcium("9.4"), phosphate("3.6")], patient()))
    assert grades(out)["calciphylaxis"] == "moderate"


def test_a_skin_ulcer_with_chronic_kidney_disease_is_still_moderate_calciphylaxis(assess):
    out = assess(Facts([condition(SNOMED, "431857002", "Chronic kidney disease stage 4 (disorder)"),
                        condition(None, None, "Skin ulcer of lower leg"), calcium("9.4"), phosphate("3.6")], patient()))
    assert grades(out)["calciphylaxis"] == "moderate"


def test_warfarin_is_named_but_not_counted_as_a_calciphylaxis_risk_factor(assess):
    out = assess(scenario_warfarin_by_rxnorm_with_ckd_necrosis())
    assert grades(out)["calciphylaxis"] == "moderate"
    rationale = out["Calciphylaxis"]["rationale"]
    assert rationale.endswith("; warfarin on file: not scored by this service.")
    assert "No risk factor (obesity, diabetes, hyperparathyroidism, high PTH) found among the conditions and results read;" in rationale


def test_the_calciphylaxis_citation_quotes_the_statpearls_pearls_and_the_risk_factor_list(assess):
    pearls, risk_factors = assess(scenario_no_labs_at_all())["Calciphylaxis"]["citation"]
    assert (pearls["source"], pearls["section"]) == ("statpearls-calcinosis-cutis", "Pearls and Other Issues")
    assert pearls["quote"].startswith("Calciphylaxis is a disease")
    assert (risk_factors["source"], risk_factors["section"]) == ("symptoms-causes-and-treatment", "Calciphylaxis")
    assert risk_factors["quote"] == ("However, there is suspicion that calcification is associated with the following "
                                     "conditions: • Excess weight • Diabetes • Hyperparathyroidism • Chronic kidney failure")


def test_a_calcium_chloride_order_alert_says_dilute_and_watch_the_site_and_gives_the_current_calcium(assess):
    out = assess(Facts([medication("MedicationRequest", "calcium chloride 100 mg/ml injectable solution", "draft"),
                        calcium("10.9", "H", days_ago=3), phosphate("4.9", "H", days_ago=4)], patient()))
    (alert,) = out["Order Alerts"]
    message = alert["message"]
    assert "dilute the solution" in message and "extravasation" in message
    assert "Ca 10.9 mg/dL on 2026-11-12 (H)" in message
    assert "P 4.9 mg/dL on 2026-11-11 (H)" in message
    assert "Ca x P 53.4 mg2/dL2 does not exceed 70 mg2/dL2 (calcium of 2026-11-12, phosphate of 2026-11-11)" in message
    assert [(c["source"], c["section"]) for c in alert["citation"]] == [
        ("statpearls-calcinosis-cutis", "Pathophysiology, Iatrogenic Calcification")]


def test_a_calcium_gluconate_order_with_normal_calcium_names_calcium_but_not_the_product(assess):
    out = assess(Facts([medication("MedicationRequest", "calcium gluconate 10% injection", "active"),
                        calcium("9.1", days_ago=3), phosphate("3.9", days_ago=3)], patient()))
    message = out["Order Alerts"][0]["message"]
    assert "Ca 9.1 mg/dL on 2026-11-12 (N)" in message
    assert "Ca x P" not in message


def test_a_phosphate_infusion_alert_says_it_raises_phosphate_and_gives_phosphate_and_the_product(assess):
    out = assess(Facts([medication("MedicationRequest", "potassium phosphate 3 mmol/ml injection", "draft"),
                        calcium("9.0", days_ago=2), phosphate("5.1", "H", days_ago=2)], patient()))
    (alert,) = out["Order Alerts"]
    message = alert["message"]
    assert "raises phosphate" in message and "before giving it" in message
    assert "dilute" not in message
    assert "P 5.1 mg/dL on 2026-11-13 (H)" in message
    assert "Ca x P 45.9 mg2/dL2 does not exceed 70 mg2/dL2 (calcium of 2026-11-13, phosphate of 2026-11-13)" in message
    assert [(c["source"], c["section"]) for c in alert["citation"]] == [
        ("statpearls-calcinosis-cutis", "Pathophysiology, Iatrogenic Calcification")]


def test_a_phosphate_infusion_without_labs_says_no_usable_phosphate_result(assess):
    out = assess(Facts([medication("MedicationRequest", "sodium phosphate injection", "draft")], patient()))
    message = out["Order Alerts"][0]["message"]
    assert "no usable phosphate result within 1 year" in message and "Ca x P cannot be computed" in message


def test_missing_analytes_are_called_no_usable_result_since_a_result_may_have_been_skipped(assess):
    out = assess(scenario_no_labs_at_all())
    rationale = out["Metastatic"]["rationale"]
    assert "no usable calcium result within 1 year" in rationale
    assert "no usable phosphate result within 1 year" in rationale
    assert "; no usable creatinine, eGFR, PTH or 25-OH vitamin D result within 1 year." in values_note(out)
    assert "on file within 1 year" not in rationale
    assert any(note.startswith("No usable calcium or phosphate result within 1 year") for note in out["Notes"])


def test_kidney_failure_with_skin_necrosis_below_product_70_caps_metastatic_at_moderate(assess):
    out = assess(scenario_calciphylaxis_esrd_with_ulcer_and_diabetes())
    assert grades(out)["calciphylaxis"] == "high"
    assert grades(out)["metastatic"] == "moderate"
    assert "points to calciphylaxis" in out["Metastatic"]["rationale"]


def test_kidney_failure_with_skin_necrosis_above_product_70_keeps_metastatic_high(assess):
    facts = scenario_calciphylaxis_esrd_with_ulcer_and_diabetes()
    facts.records.append(calcium("10.8", "H", days_ago=1))
    facts.records.append(phosphate("7.6", "H", days_ago=1))
    out = assess(facts)
    assert grades(out)["metastatic"] == "high"


def test_the_egfr_unit_is_printed_for_readers(assess):
    out = assess(Facts([calcium("9.4"), phosphate("3.6"), obs("33914-3", "42", "mL/min/{1.73_m2}", "L")], patient()))
    rationale = out["Metastatic"]["rationale"]
    assert "eGFR 42 mL/min/1.73 m2 on 2026-11-05 (L)" in rationale
    assert "{1.73_m2}" not in rationale


def test_milk_alkali_tests_are_to_assess_it_when_the_syndrome_is_on_file(assess):
    out = assess(Facts([condition(SNOMED, "43258006", "Milk alkali syndrome (disorder)"), calcium("9.4"), phosphate("3.6")], patient()))
    reasons = [t["reason"] for t in out["Recommended Tests"] if t["group"] == "milk-alkali"]
    assert reasons and all(r.startswith(("Bicarbonate to assess milk-alkali syndrome", "Arterial pH to assess milk-alkali syndrome"))
                           for r in reasons)


def test_the_idiopathic_rationale_names_the_other_cause_found(assess):
    out = assess(scenario_dystrophic_systemic_sclerosis_normal_labs())
    assert out["Idiopathic"]["rationale"] == "Another cause is recorded: CR(E)ST syndrome."


def test_the_iatrogenic_rationale_gives_the_date_and_route_of_the_exposure(assess):
    out = assess(Facts([medication("MedicationAdministration", "calcium gluconate 100 mg/ml injection", "completed",
                                   days_ago=5, route="Intravenous route"), calcium("9.1"), phosphate("3.9")], patient()))
    assert "calcium gluconate 100 mg/ml injection (Intravenous route, 2026-11-10)" in out["Iatrogenic"]["rationale"]

"""Value sets that match real records: definitions (FHIR ValueSet.compose) expanded when the library is
compiled, the causes the sources name, and names matched whole rather than as part of a longer phrase.

The first half tests the expander on small definitions; the second runs clinical stories through the
shipped library (record builders from tests/test_knowledge_scenarios.py).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from service.cql_like import compile_library, load_model_info
from service.cql_like.errors import CqlCompilationError, CqlError
from service.cql_like.valuesets import ValueSet, load_valueset_dir, valueset_from_resource
from service.cql_like.values import Code, Record
from service.pipeline.facts import PatientFacts
from tests.test_knowledge_scenarios import (
    ICD10CM, KNOWLEDGE_DIR, SNOMED, Facts, calcium, condition, grades, patient, phosphate, procedure,
    recommended_codes,
)

MODEL = load_model_info(KNOWLEDGE_DIR / "model.json")
NOW = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)
VALUESET_DIR = KNOWLEDGE_DIR / "valuesets"


# ---- the expander -------------------------------------------------------------------------

def _valueset(compose: dict, url: str = "urn:test:vs") -> dict:
    return {"resourceType": "ValueSet", "url": url, "status": "active", "compose": compose}


def _is_a(*values: str) -> list[dict]:
    return [{"system": ICD10CM, "filter": [{"property": "concept", "op": "is-a", "value": v}]} for v in values]


def _expand(compose: dict) -> ValueSet:
    return valueset_from_resource(_valueset(compose), source="test.json")


def test_an_is_a_filter_holds_the_category_and_every_code_below_it_and_nothing_beside_it():
    burns_of_shoulder_and_arm = _expand({"include": _is_a("T22")})
    assert Code("T22.211A", ICD10CM) in burns_of_shoulder_and_arm
    assert Code("T22", ICD10CM) in burns_of_shoulder_and_arm
    assert Code("T22211A", ICD10CM) in burns_of_shoulder_and_arm        # sent without the dot
    assert Code("t22.211a", ICD10CM) in burns_of_shoulder_and_arm       # sent in lower case
    assert Code("T23.011A", ICD10CM) not in burns_of_shoulder_and_arm
    assert Code("T2", ICD10CM) not in burns_of_shoulder_and_arm
    assert Code("T22.211A", SNOMED) not in burns_of_shoulder_and_arm    # the filter is ICD-10-CM's


def test_a_subcategory_filter_holds_only_its_own_codes():
    sjogren = _expand({"include": _is_a("M35.0")})
    assert Code("M35.01", ICD10CM) in sjogren and Code("M35.0", ICD10CM) in sjogren
    assert Code("M35.1", ICD10CM) not in sjogren and Code("M35.9", ICD10CM) not in sjogren


def test_a_block_of_categories_holds_every_category_from_the_first_to_the_last():
    burns = _expand({"include": _is_a("T20-T32")})
    for code in ("T20.0", "T22.211A", "T30.0", "T32.99"):
        assert Code(code, ICD10CM) in burns, code
    for code in ("T19.9", "T33.011A", "S61.411A"):
        assert Code(code, ICD10CM) not in burns, code
    injuries = _expand({"include": _is_a("S00-T14")})
    for code in ("S00.01XA", "S61.411A", "T14.8XXA", "T14.90"):
        assert Code(code, ICD10CM) in injuries, code
    assert Code("T15.0", ICD10CM) not in injuries and Code("R99", ICD10CM) not in injuries
    malignancy = _expand({"include": _is_a("C00-C96")})
    assert Code("C4A.9", ICD10CM) in malignancy and Code("C91.00", ICD10CM) in malignancy
    assert Code("D03.9", ICD10CM) not in malignancy


def test_an_exclude_removes_codes_from_what_the_includes_hold():
    vs = _expand({"include": _is_a("M35"),
                  "exclude": _is_a("M35.1") + [{"system": ICD10CM, "concept": [{"code": "M35.9"}]}]})
    assert Code("M35.01", ICD10CM) in vs
    assert Code("M35.1", ICD10CM) not in vs and Code("M35.10", ICD10CM) not in vs
    assert Code("M35.9", ICD10CM) not in vs


def test_a_concept_list_holds_exactly_its_codes():
    vs = _expand({"include": [{"system": SNOMED, "concept": [{"code": "125666000", "display": "Burn"}]}]})
    assert Code("125666000", SNOMED) in vs
    assert Code("1256660001", SNOMED) not in vs and Code("125666000", ICD10CM) not in vs
    assert vs.codes == frozenset({Code("125666000", SNOMED)})
    assert not vs.has_filters


def test_expansion_contains_is_still_read_as_a_fixed_list():
    resource = {"resourceType": "ValueSet", "url": "urn:test:lab", "status": "active",
                "expansion": {"timestamp": "2026-01-01T00:00:00Z",
                              "contains": [{"system": "http://loinc.org", "code": "17861-6"}]}}
    vs = valueset_from_resource(resource, source="lab.json")
    assert Code("17861-6", "http://loinc.org") in vs


@pytest.mark.parametrize("compose,words", [
    ({"include": [{"system": ICD10CM, "filter": [{"property": "concept", "op": "regex", "value": "T2.*"}]}]},
     ["'regex'", "is-a"]),
    ({"include": [{"system": SNOMED, "filter": [{"property": "concept", "op": "is-a", "value": "125666000"}]}]},
     ["hierarchy", SNOMED]),
    ({"include": [{"system": ICD10CM, "filter": [{"property": "parent", "op": "is-a", "value": "T22"}]}]},
     ["'parent'", "concept"]),
    ({"include": [{"system": ICD10CM, "filter": [{"property": "concept", "op": "is-a", "value": "T32-T20"}]}]},
     ["T32-T20"]),
    ({"include": [{"system": ICD10CM, "filter": [{"property": "concept", "op": "is-a", "value": "burns"}]}]},
     ["'burns'"]),
    ({"include": [{"system": ICD10CM}]}, ["whole code system"]),
    ({"include": [{"system": ICD10CM, "concept": [{"code": "T30.0"}],
                   "filter": [{"property": "concept", "op": "is-a", "value": "T22"}]}]}, ["both"]),
    ({"include": [{"system": ICD10CM, "filter": [{"property": "concept", "op": "is-a", "value": "T22"},
                                                  {"property": "concept", "op": "is-a", "value": "T23"}]}]},
     ["one filter"]),
    ({"include": [{"valueSet": ["urn:other"]}]}, ["valueSet"]),
    ({"include": []}, ["no codes"]),
])
def test_a_definition_the_expander_cannot_honour_is_refused_naming_the_file(compose: dict, words: list[str]):
    with pytest.raises(CqlError) as caught:
        valueset_from_resource(_valueset(compose), source="burns.json")
    message = str(caught.value)
    assert message.startswith("burns.json: value set error: ")
    for word in words:
        assert word in message, (word, message)


_LIBRARY = """library T version '1.0.0'
using CalcinosisFacts version '1.0.0'
codesystem "ICD": 'http://hl7.org/fhir/sid/icd-10-cm'
valueset "Burns": 'urn:test:burns'
code "Forearm Burn": 'T22.211A' from "ICD"
code "Hand Laceration": 'S61.411A' from "ICD"
context Patient
define "Burn Records": [Condition: "Burns"]
define "Burn By In": [Condition] C where C.code in "Burns"
define "Code Member": "Forearm Burn" in "Burns"
define "Code Not Member": "Hand Laceration" in "Burns"
"""


def _write(directory: Path, name: str, resource: dict) -> None:
    (directory / name).write_text(json.dumps(resource), encoding="utf-8")


def _burns_dir(tmp_path: Path) -> Path:
    _write(tmp_path, "burns.json", _valueset({"include": _is_a("T20-T32") + [
        {"system": SNOMED, "concept": [{"code": "125666000", "display": "Burn"}]}]}, url="urn:test:burns"))
    return tmp_path


def _records() -> list[Record]:
    return [condition(ICD10CM, "T22.211A", "Burn of second degree of right forearm, initial encounter"),
            condition(SNOMED, "125666000", "Burn"),
            condition(ICD10CM, "S61.411A", "Laceration without foreign body of right hand, initial encounter")]


def test_an_unknown_filter_op_stops_the_library_from_compiling_with_the_file_named(tmp_path: Path):
    _write(tmp_path, "burns.json", _valueset({"include": [
        {"system": ICD10CM, "filter": [{"property": "concept", "op": "descendent-of-or-so", "value": "T20"}]}]},
        url="urn:test:burns"))
    with pytest.raises(CqlCompilationError) as caught:
        compile_library(_LIBRARY, model=MODEL, valueset_dir=tmp_path)
    assert str(tmp_path / "burns.json") in str(caught.value)
    assert "'descendent-of-or-so'" in str(caught.value)


@pytest.mark.parametrize("provider", ["scenario facts", "patient facts"])
def test_retrieve_and_in_both_find_a_burn_coded_at_its_site(tmp_path: Path, provider: str):
    library = compile_library(_LIBRARY, model=MODEL, valueset_dir=_burns_dir(tmp_path))
    records = _records()
    facts = (Facts(records, patient()) if provider == "scenario facts"
             else PatientFacts("p1", "Patient/p1", patient(), records))
    result = library.evaluate(facts, now=NOW)
    expected = [records[0], records[1]]
    assert result["Burn Records"].value == expected
    assert result["Burn By In"].value == expected
    assert result["Code Member"].value is True
    assert result["Code Not Member"].value is False


def test_exact_code_lookups_still_go_through_the_providers_index(tmp_path: Path):
    """A value set with no filter asks the provider for its codes (the fast, indexed path)."""
    _write(tmp_path, "burns.json", _valueset({"include": [
        {"system": SNOMED, "concept": [{"code": "125666000", "display": "Burn"}]}]}, url="urn:test:burns"))
    library = compile_library(_LIBRARY, model=MODEL, valueset_dir=tmp_path)
    asked: list[object] = []

    class Recording(Facts):
        def retrieve(self, type_name, codes):
            asked.append(codes)
            return super().retrieve(type_name, codes)

    result = library.evaluate(Recording(_records(), patient()), now=NOW)
    assert [r.get("code").codes[0].code for r in result["Burn Records"].value] == ["125666000"]
    assert frozenset({Code("125666000", SNOMED)}) in asked


# ---- the shipped value sets ---------------------------------------------------------------

SHIPPED = load_valueset_dir(VALUESET_DIR)
URL = "https://calcinosis-cds.org/fhir/ValueSet/"


@pytest.mark.parametrize("slug,member,not_member", [
    ("family-history", ["Z83.3", "Z80.0", "Z84.89", "Z82.49"], ["Z85.3", "E11.9", "Z79.4"]),
    ("personal-history", ["Z85.3", "Z86.39", "Z87.2", "Z87.891"], ["Z83.3", "Z88.0", "Z84.0"]),
    ("burns", ["T22.211A", "T30.0", "T31.10"], ["T33.011A", "S61.411A"]),
    ("injuries", ["S61.411A", "T14.8XXA", "S00.01XA"], ["T22.211A", "T15.0"]),
    ("lupus", ["M32.14", "M32.9", "L93.2"], ["L93.0", "M33.10"]),
    ("malignancy", ["C44.311", "C80.1", "C91.00"], ["D03.9", "Z85.3"]),
    ("organ-transplant", ["Z94.4", "Z94.0", "Z94.89"], ["Z95.1"]),
    ("diabetes", ["E11.65", "E11.9"], ["Z83.3", "E10.9"]),
    ("ehlers-danlos", ["Q79.60", "Q79.62"], ["Q79.59"]),
])
def test_shipped_value_sets_hold_a_real_records_site_specific_codes(slug: str, member: list[str], not_member: list[str]):
    vs = SHIPPED[URL + slug]
    for code in member:
        assert Code(code, ICD10CM) in vs, code
    for code in not_member:
        assert Code(code, ICD10CM) not in vs, code


def test_the_history_value_sets_are_declared_in_the_library():
    text = (KNOWLEDGE_DIR / "CalcinosisCutis.cql").read_text(encoding="utf-8")
    assert f"valueset \"Family History Codes\": '{URL}family-history'" in text
    assert f"valueset \"Personal History Codes\": '{URL}personal-history'" in text


def test_the_library_matches_icd_10_cm_categories_by_value_set_not_by_pattern():
    text = (KNOWLEDGE_DIR / "CalcinosisCutis.cql").read_text(encoding="utf-8")
    assert "Has ICD-10-CM Code" not in text


# ---- clinical stories through the library -------------------------------------------------

def _normal_labs() -> list[Record]:
    return [calcium("9.4", low="8.5", high="10.2"), phosphate("3.5", low="2.5", high="4.5")]


def _assess(*records: Record) -> dict:
    from tests.test_knowledge_scenarios import engine_outputs
    return engine_outputs(Facts(list(records), patient()))


def test_a_burn_coded_at_its_site_with_normal_minerals_is_dystrophic_high_not_idiopathic():
    burn = condition(ICD10CM, "T22.211A", "Burn of second degree of right forearm, initial encounter")
    out = _assess(burn, condition(ICD10CM, "L94.2", "Calcinosis cutis"), *_normal_labs())
    assert grades(out)["dystrophic"] == "high"
    assert ("Tissue damage recorded: Burn of second degree of right forearm, initial encounter; calcium and phosphate "
            "are normal." in out["Dystrophic"]["rationale"])
    assert grades(out)["idiopathic"] == "negligible"


def test_an_injury_coded_at_its_site_is_tissue_damage():
    out = _assess(condition(ICD10CM, "S61.411A", "Laceration without foreign body of right hand, initial encounter"),
                  *_normal_labs())
    assert grades(out)["dystrophic"] == "high"
    assert "Laceration without foreign body of right hand" in out["Dystrophic"]["rationale"]


def test_porphyria_cutanea_tarda_is_tissue_damage_by_its_exact_name():
    out = _assess(condition(None, None, "Porphyria cutanea tarda"), *_normal_labs())
    assert grades(out)["dystrophic"] == "high"
    assert "Tissue damage recorded: Porphyria cutanea tarda;" in out["Dystrophic"]["rationale"]


@pytest.mark.parametrize("name", [
    "Werner syndrome", "Panniculitis", "Pancreatic panniculitis", "Trichilemmal cyst", "Basal cell carcinoma", "Trichoepithelioma", "Onchocerciasis", "Cysticercosis",
    "Histoplasmosis", "Cryptococcosis", "Varicose veins", "Acne vulgaris",
    "Werner syndrome (disorder)", "  PORPHYRIA  CUTANEA TARDA. ", "Histoplasmosis, unspecified", "Panniculitis NOS",
    "Werner\u2019s syndrome",
])
def test_each_tissue_damage_cause_the_sources_name_counts(name: str):
    """codes.md verifies no code for these, so the whole normalized name is matched."""
    out = _assess(condition(None, None, name), *_normal_labs())
    assert grades(out)["dystrophic"] == "high", name
    assert name in out["Dystrophic"]["rationale"]


@pytest.mark.parametrize("system,code,name", [
    (ICD10CM, "Q79.62", "Hypermobile Ehlers-Danlos syndrome"),
    (SNOMED, "398114001", "Ehlers-Danlos syndrome (disorder)"),
    (ICD10CM, "E83.824", "ABCC6 deficiency causing pseudoxanthoma elasticum"),
    (SNOMED, "274901004", "Pilomatrixoma"),
])
def test_coded_tissue_damage_causes_count_by_code(system: str, code: str, name: str):
    out = _assess(condition(system, code, name), *_normal_labs())
    assert grades(out)["dystrophic"] == "high", code
    assert name in out["Dystrophic"]["rationale"]


@pytest.mark.parametrize("name", [
    "Family history of porphyria cutanea tarda", "History of burn", "Porphyria cutanea tarda ruled out",
    "Myositis ossificans", "Lupus anticoagulant positive", "Family history of systemic lupus erythematosus",
    "Werner syndrome of the left hand",
])
def test_a_longer_phrase_that_contains_a_cause_is_not_that_cause(name: str):
    out = _assess(condition(None, None, name), *_normal_labs())
    assert grades(out)["dystrophic"] == "low", name
    assert "No connective tissue disease or other tissue damage found among the conditions read." in out["Dystrophic"]["rationale"]


def test_a_lupus_coded_with_organ_involvement_counts():
    out = _assess(condition(ICD10CM, "M32.14", "Glomerular disease in systemic lupus erythematosus"), *_normal_labs())
    assert grades(out)["dystrophic"] == "high"
    assert "Glomerular disease in systemic lupus erythematosus" in out["Dystrophic"]["rationale"]
    # An established SLE: the serology that would diagnose it is listed as not proposed, with why.
    assert "8061-4" not in recommended_codes(out)
    assert any(t["code"] == "8061-4" and "already established" in t["reason"] for t in out["Tests Not Proposed"])


@pytest.mark.parametrize("system,code,name", [
    (ICD10CM, "M06.079", "Rheumatoid arthritis without rheumatoid factor, unspecified ankle and foot"),
    (ICD10CM, "M35.01", "Sjogren syndrome with keratoconjunctivitis"),
    (ICD10CM, "M34.81", "Systemic sclerosis with lung involvement"),
    (ICD10CM, "M35.1", "Other overlap syndromes"),
])
def test_connective_tissue_diseases_coded_within_their_verified_categories_count(system, code, name):
    out = _assess(condition(system, code, name), *_normal_labs())
    assert grades(out)["dystrophic"] == "high", code


def test_polymyositis_coded_within_m33_suggests_the_myositis_work_up():
    out = _assess(condition(ICD10CM, "M33.22", "Polymyositis with myopathy"), *_normal_labs())
    assert grades(out)["dystrophic"] == "high"
    assert "2157-6" in recommended_codes(out)  # creatine kinase


def test_pagets_disease_of_bone_is_a_metastatic_cause():
    out = _assess(condition(None, None, "Paget's disease of bone"), calcium("11.2", "H"), phosphate("3.5"))
    assert "causes of metastatic calcinosis: Paget's disease of bone." in out["Metastatic"]["rationale"]
    assert grades(out)["metastatic"] in ("moderate", "high")
    assert grades(out)["idiopathic"] == "negligible"


def test_a_paraneoplastic_syndrome_is_a_metastatic_cause():
    out = _assess(condition(None, None, "Paraneoplastic syndrome"), *_normal_labs())
    assert "causes of metastatic calcinosis: Paraneoplastic syndrome." in out["Metastatic"]["rationale"]
    assert grades(out)["metastatic"] != "negligible"


def test_extramammary_pagets_disease_is_not_a_bone_disease():
    out = _assess(condition(None, None, "Extramammary Paget's disease"), *_normal_labs())
    rationale = out["Metastatic"]["rationale"]
    # Paget's disease of bone is only named among the causes looked for, not found.
    assert "Extramammary" not in rationale and "causes of metastatic calcinosis" not in rationale
    assert "no cause of metastatic calcinosis found among" in rationale


def test_repeated_heel_sticks_in_a_newborn_are_an_iatrogenic_cause():
    from datetime import date
    from tests.test_knowledge_scenarios import engine_outputs
    out = engine_outputs(Facts([procedure(None, "Heel stick blood sampling"), *_normal_labs()],
                               patient(date(2026, 9, 1))))
    assert grades(out)["iatrogenic"] != "negligible"
    assert "Heel stick blood sampling" in out["Iatrogenic"]["rationale"]
    assert grades(out)["idiopathic"] == "negligible"


@pytest.mark.parametrize("name", ["Scrotal calcinosis", "Tumoral calcinosis", "Subepidermal calcified nodule",
                                  "Calcinosis cutis (disorder)"])
def test_an_idiopathic_subtype_is_calcinosis_cutis_on_file_and_idiopathic_names_it(name: str):
    out = _assess(condition(None, None, name), *_normal_labs())
    assert out["Calcinosis Condition"] is not None
    assert out["Calcinosis Condition"].get("code").display == name
    assert grades(out)["idiopathic"] == "high"
    if name != "Calcinosis cutis (disorder)":
        assert f"Idiopathic subtype of calcinosis cutis recorded: {name}." in out["Idiopathic"]["rationale"]


@pytest.mark.parametrize("name", ["Family history of calcinosis cutis", "Calcinosis cutis ruled out"])
def test_a_phrase_that_only_contains_calcinosis_cutis_is_not_a_calcinosis_diagnosis(name: str):
    out = _assess(condition(None, None, name), *_normal_labs())
    assert out["Calcinosis Condition"] is None


def _esrd_with_necrosis(*extra: Record) -> dict:
    return _assess(condition(ICD10CM, "N18.6", "End stage renal disease"),
                   condition(None, None, "Necrosis of skin of abdominal wall"), *extra, *_normal_labs())


def test_a_family_history_of_diabetes_is_not_diabetes_and_leaves_calciphylaxis_unchanged():
    without = _esrd_with_necrosis()
    with_family_history = _esrd_with_necrosis(condition(ICD10CM, "Z83.3", "Family history of diabetes mellitus"))
    assert grades(with_family_history)["calciphylaxis"] == grades(without)["calciphylaxis"] == "moderate"
    rationale = with_family_history["Calciphylaxis"]["rationale"]
    assert "No risk factor (obesity, diabetes, hyperparathyroidism, high PTH) found among the conditions and results read." in rationale
    assert "Family history" not in rationale


def test_diabetes_coded_within_e11_or_named_is_a_calciphylaxis_risk_factor():
    for record in (condition(ICD10CM, "E11.65", "Type 2 diabetes mellitus with hyperglycemia"),
                   condition(None, None, "Type 1 diabetes mellitus")):
        out = _esrd_with_necrosis(record)
        assert grades(out)["calciphylaxis"] == "high", record.get("code")
        assert "risk factors: " + record.get("code").display in out["Calciphylaxis"]["rationale"]


def test_a_calciphylaxis_rule_out_is_not_calciphylaxis_on_file():
    out = _assess(condition(None, None, "Calciphylaxis ruled out"), *_normal_labs())
    assert "Calciphylaxis is on file" not in out["Calciphylaxis"]["rationale"]
    assert grades(out)["calciphylaxis"] != "high"


def test_the_calciphylaxis_index_code_counts_only_with_the_name():
    named = _assess(condition(ICD10CM, "E83.59", "Calciphylaxis"), *_normal_labs())
    other = _assess(condition(ICD10CM, "E83.59", "Other disorders of calcium metabolism"), *_normal_labs())
    assert grades(named)["calciphylaxis"] == "high"
    assert grades(other)["calciphylaxis"] != "high"


def test_replace_matches_replaces_every_match_and_refers_to_groups():
    from service.cql_like.regex_guard import RegexRejected, replace_matches
    assert replace_matches("a  b\t c", "\\s+", " ") == "a b c"
    assert replace_matches("werner syndrome (disorder)", " ?\\((disorder|finding)\\)$", "") == "werner syndrome"
    assert replace_matches("2026-11-15", "(\\d+)-(\\d+)-(\\d+)", "$3/$2/$1") == "15/11/2026"
    with pytest.raises(RegexRejected):
        replace_matches("aaaa", "(a+)+", "")


def test_a_nested_quantifier_in_a_literal_replace_matches_pattern_is_refused_at_load():
    with pytest.raises(CqlCompilationError) as caught:
        compile_library("library T version '1.0.0'\nusing CalcinosisFacts version '1.0.0'\ncontext Patient\n"
                        "define \"X\": ReplaceMatches('aaa', '(a+)+', '')", model=MODEL)
    assert "ReplaceMatches pattern" in str(caught.value)


def test_tests_listed_in_a_compose_definition_group_as_the_same_test(tmp_path: Path):
    from service.hooks.order_codes import LabTestGrouping
    loinc = "http://loinc.org"
    _write(tmp_path, "pth.json", _valueset({"include": [{"system": loinc, "concept": [
        {"code": "2731-8", "display": "PTH intact"}, {"code": "14866-8", "display": "PTH intact, moles"}]}]},
        url="urn:test:pth"))
    grouping = LabTestGrouping(tmp_path)
    assert grouping.is_ordered(loinc, "2731-8", [(loinc, "14866-8")])
    assert not grouping.is_ordered(loinc, "2731-8", [(loinc, "17861-6")])


@pytest.mark.parametrize("name,family_history", [
    ("Family history of diabetes mellitus", True), ("FAMILY HISTORY OF  lupus (situation)", True),
    ("Family history", True), ("Diabetes mellitus", False), ("History of family therapy", False),
])
def test_a_family_history_is_recognized_by_the_start_of_its_name(name: str, family_history: bool):
    source = (KNOWLEDGE_DIR / "CalcinosisCutis.cql").read_text(encoding="utf-8")
    library = compile_library(source + '\ndefine "First Is Family History": "Named Family History"(First([Condition]).code)\n',
                              model=MODEL, valueset_dir=VALUESET_DIR)
    result = library.evaluate_define("First Is Family History", Facts([condition(None, None, name)], patient()), now=NOW)
    assert result.value is family_history


def test_the_same_test_grouping_reads_the_value_sets_as_the_rule_library_does_filters_and_excludes_included(
        tmp_path: Path):
    """One reading of the value-set files: a code selected by an is-a filter is a member for the hooks' grouping
    exactly as for the engine, and an excluded code is not."""
    from service.cql_like.valuesets import load_valueset_dir
    from service.hooks.order_codes import LabTestGrouping
    icd = "http://hl7.org/fhir/sid/icd-10-cm"
    _write(tmp_path, "burns.json", _valueset({
        "include": [{"system": icd, "filter": [{"property": "concept", "op": "is-a", "value": "T22"}]}],
        "exclude": [{"system": icd, "concept": [{"code": "T22.0"}]}]}, url="urn:test:forearm-burns"))
    grouping = LabTestGrouping(tmp_path, reread=True)
    assert grouping.is_ordered(icd, "T22.211A", [(icd, "T22.30XA")])  # both below T22, through the filter
    assert not grouping.is_ordered(icd, "T22.211A", [(icd, "T22.0")])  # excluded: only itself
    engine = load_valueset_dir(tmp_path)["urn:test:forearm-burns"]
    assert engine.contains(icd, "T22.211A") and not engine.contains(icd, "T22.0")


def test_the_hooks_have_no_value_set_reader_of_their_own():
    source = (Path(__file__).resolve().parents[1] / "service" / "hooks" / "order_codes.py").read_text(encoding="utf-8")
    assert "import json" not in source and "json.loads" not in source and "read_value_sets" in source

"""The assessment core: one patient's failure is reported and never fails the others."""

from __future__ import annotations

import orjson

from conftest import FIXTURE_NOW, assess_fixture
from service.pipeline.assess import get_assessor
from service.cql_like.errors import CqlEvaluationError


def test_a_rule_failing_on_one_patient_is_reported_and_the_others_are_assessed(monkeypatch):
    assessor = get_assessor()
    bundle = orjson.loads(assess_fixture("10").read_bytes())
    real_evaluate = assessor.library.evaluate
    calls = []

    def evaluate(provider, **kwargs):
        calls.append(provider.patient_reference)
        if len(calls) == 2:
            raise CqlEvaluationError("cannot compare 'mmol/L' with 'mg/dL'", define="Metastatic",
                                     filename="/srv/app/service/knowledge/CalcinosisCutis.cql", line=193, column=17)
        return real_evaluate(provider, **kwargs)

    monkeypatch.setattr(assessor.library, "evaluate", evaluate)
    run = assessor.assess(bundle, now=FIXTURE_NOW)
    assert len(calls) == 3
    assert [p.patient_reference for p in run.patients] == [calls[0], calls[2]]
    failure = next(issue for issue in run.issues if issue.code == "processing")
    assert calls[1] in failure.diagnostics
    assert 'rule "Metastatic"' in failure.diagnostics
    assert "/srv/app" not in failure.diagnostics and ".cql" not in failure.diagnostics


def test_resources_sent_without_id_or_full_url_are_cited_by_location_not_lost():
    from service.pipeline.assess import assess_bundle
    from service.fhir_outputs.result_bundle import build_result_bundle

    calcium = {"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6"}]},
               "effectiveDateTime": "2026-10-01T08:00:00Z",
               "valueQuantity": {"value": 12.0, "unit": "mg/dL", "system": "http://unitsofmeasure.org",
                                 "code": "mg/dL"}}
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": {"resourceType": "Patient", "gender": "female"}}, {"resource": calcium}]}
    run = assess_bundle(bundle, now=FIXTURE_NOW)
    result = build_result_bundle(run.patients, run.issues)
    risk = next(e["resource"] for e in result["entry"] if e["resource"]["resourceType"] == "RiskAssessment")
    assert "reference" not in risk["subject"]
    assert risk["subject"]["display"].startswith("Bundle.entry[0].resource")
    assert {"display": "Bundle.entry[1].resource (sent without id or fullUrl)"} in risk["basis"]
    assert "12" in " ".join(p["rationale"] for p in risk["prediction"])


# --- ingest and normalization seen through the whole assessment ---------------------------------------

def _lab_bundle(*observations, extra=()):
    from service.pipeline.assess import assess_bundle

    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01", "gender": "female"}
    resources = [patient, *observations, *extra]
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": f"urn:uuid:{r['resourceType']}-{r['id']}", "resource": r} for r in resources]}
    return assess_bundle(bundle, now=FIXTURE_NOW)


def _lab(resource_id, code, value, unit="mg/dL", system="http://loinc.org", **extra):
    resource = {"resourceType": "Observation", "id": resource_id, "status": "final",
                "code": {"coding": [{"system": system, "code": code}]}, "subject": {"reference": "Patient/p1"},
                "effectiveDateTime": "2026-11-01",
                "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}
    resource.update(extra)
    return resource


def _grades(run):
    (patient,) = run.patients
    return [(grade.type, grade.risk, grade.rationale) for grade in patient.grades]


def test_conflicting_calcium_results_at_the_same_instant_give_the_same_assessment_in_either_entry_order():
    normal, high, phosphate = _lab("ca-n", "17861-6", 9.0), _lab("ca-h", "17861-6", 11.5), _lab("p", "2777-1", 3.5)
    first, second = _lab_bundle(normal, high, phosphate), _lab_bundle(high, normal, phosphate)
    assert _grades(first) == _grades(second)
    metastatic = next(grade for grade in first.patients[0].grades if grade.type == "metastatic")
    assert "Ca 11.5 mg/dL" in metastatic.rationale
    (conflict,) = [issue for issue in first.patients[0].issues if issue.code == "conflict"]
    assert "the abnormal one (11.5 mg/dL, H) is used" in conflict.diagnostics


def test_calcium_coded_with_the_loinc_oid_drives_the_assessment():
    run = _lab_bundle(_lab("ca", "17861-6", 11.5, system="urn:oid:2.16.840.1.113883.6.1"), _lab("p", "2777-1", 3.5))
    metastatic = next(grade for grade in run.patients[0].grades if grade.type == "metastatic")
    assert "Ca 11.5 mg/dL" in metastatic.rationale
    assert any(issue.location == "Bundle.entry[1].resource.code.coding[0]" for issue in run.patients[0].issues)


def test_vitamin_d_far_above_its_lower_limit_is_shown_without_a_flag_not_as_normal():
    run = _lab_bundle(_lab("ca", "17861-6", 9.0), _lab("d", "62292-8", 180, unit="ng/mL"))
    assert "25-OH vitamin D 180 ng/mL on 2026-11-01 (no flag)" in run.patients[0].values_note
    assert "25-OH vitamin D 180 ng/mL on 2026-11-01, at or above 150 ng/mL" in _grade(run, "metastatic").rationale


def test_a_patient_with_very_long_names_and_displays_is_still_assessed():
    calcium = _lab("ca", "17861-6", 11.5)
    calcium["code"]["text"] = "Calcium " * 50_000
    statement = {"resourceType": "MedicationStatement", "id": "m1", "status": "active",
                 "medicationCodeableConcept": {"text": "calcium gluconate " + "q" * 300_000},
                 "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-10-01"}
    run = _lab_bundle(calcium, extra=(statement,))
    (patient,) = run.patients
    assert "Ca 11.5 mg/dL" in next(grade.rationale for grade in patient.grades if grade.type == "metastatic")
    cut = [issue.location for issue in patient.issues if issue.diagnostics.startswith("text longer than 1,000")]
    assert cut == ["Bundle.entry[1].resource.code.text", "Bundle.entry[2].resource.medicationCodeableConcept.text"]


# --- rule library behaviour seen through the whole assessment -----------------------------------------

def _statement(resource_id, name):
    return {"resourceType": "MedicationStatement", "id": resource_id, "status": "active",
            "medicationCodeableConcept": {"text": name}, "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2026-10-01"}


def _named_condition(resource_id, text):
    return {"resourceType": "Condition", "id": resource_id, "code": {"text": text},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "subject": {"reference": "Patient/p1"}}


def _grade(run, type_code):
    return next(grade for grade in run.patients[0].grades if grade.type == type_code)


def test_a_twelve_thousand_character_medication_name_and_condition_text_are_read_and_the_patient_assessed():
    # The medication name is searched; the condition text is compared whole (no accepted name is that long).
    run = _lab_bundle(_lab("ca", "17861-6", 9.4, interpretation=[{"coding": [{"code": "N"}]}]),
                      extra=(_statement("m1", "calcium gluconate injection " + "x" * 12_000),
                             _named_condition("c1", "Scleroderma " + "y" * 12_000)))
    assert len(run.patients) == 1
    assert _grade(run, "iatrogenic").risk == "high"
    assert "No connective tissue disease or other tissue damage found among the conditions read." in _grade(run, "dystrophic").rationale


def test_an_older_ionized_calcium_does_not_make_a_newer_high_total_calcium_normal():
    run = _lab_bundle(_lab("ion", "1995-0", 1.2, unit="mmol/L", effectiveDateTime="2026-01-10"),
                      _lab("ca", "17861-6", 13, effectiveDateTime="2026-11-10",
                           referenceRange=[{"low": {"value": 8.5, "unit": "mg/dL"}, "high": {"value": 10.2, "unit": "mg/dL"}}]),
                      extra=(_named_condition("c1", "Systemic sclerosis"),))
    dystrophic = _grade(run, "dystrophic")
    assert dystrophic.risk != "high"
    assert "but calcium is high and phosphate is unknown, not normal: Ca 13 mg/dL on 2026-11-10 (H)" in dystrophic.rationale
    assert "is older than total Ca 13 mg/dL on 2026-11-10: total used" in run.patients[0].values_note
    assert "within the applied ranges" not in _grade(run, "metastatic").rationale


def test_a_calcium_order_in_moles_is_not_proposed_again_and_the_care_plan_says_it_is_ordered():
    order = {"resourceType": "ServiceRequest", "id": "s1", "status": "active", "intent": "order",
             "code": {"coding": [{"system": "http://loinc.org", "code": "2000-8"}]},
             "subject": {"reference": "Patient/p1"}, "authoredOn": "2026-11-12"}
    run = _lab_bundle(extra=(order,))
    (patient,) = run.patients
    assert "17861-6" not in [test.code for test in patient.recommended]
    ordered = next(test for test in patient.available if test.code == "17861-6")
    assert ordered.summary == "already ordered (ServiceRequest active, 2026-11-12)"
    assert ordered.source.endswith("ServiceRequest-s1") or ordered.source.endswith("ServiceRequest/s1")


def test_the_milk_alkali_picture_is_named_and_its_medication_and_bicarbonate_are_evidence():
    high = [{"coding": [{"code": "H"}]}]
    run = _lab_bundle(_lab("ca", "17861-6", 11.8, interpretation=high), _lab("bic", "1963-8", 31, unit="mmol/L", interpretation=high),
                      extra=(_statement("m1", "Calcium carbonate 500 MG Chewable Tablet"),))
    metastatic = _grade(run, "metastatic")
    assert "milk-alkali picture: calcium 11.8 mg/dL (H) with calcium carbonate 500 mg chewable tablet intake" in metastatic.rationale
    evidence = " ".join(metastatic.evidence)
    assert "MedicationStatement" in evidence and "bic" in evidence


def test_a_childs_phosphate_without_birth_date_is_not_read_as_high_by_the_adult_range():
    from service.pipeline.assess import assess_bundle

    patient = {"resourceType": "Patient", "id": "p1", "gender": "female"}  # the child's birthDate is missing
    condition = _named_condition("c1", "Juvenile dermatomyositis")
    condition["code"]["coding"] = [{"system": "http://snomed.info/sct", "code": "1212005", "display": "Juvenile dermatomyositis"}]
    resources = [patient, condition, _lab("ca", "17861-6", 9.6), _lab("p", "2777-1", 5.4),
                 _lab("alb", "1751-7", 4.1, unit="g/dL")]
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": f"urn:uuid:{r['resourceType']}-{r['id']}", "resource": r} for r in resources]}
    run = assess_bundle(bundle, now=FIXTURE_NOW)
    metastatic, dystrophic = _grade(run, "metastatic"), _grade(run, "dystrophic")
    assert "P 5.4 mg/dL on 2026-11-01 (H)" not in metastatic.rationale
    assert "are high" not in metastatic.rationale
    assert metastatic.risk in ("low", "negligible")
    assert dystrophic.risk in ("moderate", "high")
    (patient_result,) = run.patients
    assert [grade.type for grade in patient_result.grades][0] == "dystrophic"


# --- clinician review: grades and wording through the whole assessment ------------------------------

def test_an_unflagged_vitamin_d_at_the_toxic_level_is_named_as_a_cause():
    run = _lab_bundle(_lab("ca", "17861-6", 9.0), _lab("d", "62292-8", 160, unit="ng/mL"))
    metastatic = _grade(run, "metastatic")
    assert ("25-OH vitamin D 160 ng/mL on 2026-11-01, at or above 150 ng/mL, the hallmark level of vitamin D "
            "toxicity (not flagged by the lab)") in metastatic.rationale
    assert "hypervitaminosis D excluded" not in metastatic.rationale


def test_a_diabetic_foot_ulcer_with_diabetes_and_normal_labs_keeps_calciphylaxis_low():
    normal = [{"coding": [{"code": "N"}]}]
    diabetes = {"resourceType": "Condition", "id": "dm", "subject": {"reference": "Patient/p1"},
                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}],
                         "text": "Type 2 diabetes mellitus without complications"},
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                               "code": "active"}]}}
    run = _lab_bundle(_lab("ca", "17861-6", 9.4, interpretation=normal), _lab("p", "2777-1", 3.6, interpretation=normal),
                      _lab("cr", "2160-0", 0.8, interpretation=normal),
                      extra=(diabetes, _named_condition("dfu", "Diabetic foot ulcer, right heel")))
    calciphylaxis = _grade(run, "calciphylaxis")
    assert calciphylaxis.risk == "low"
    assert "Diabetic foot ulcer, right heel" in calciphylaxis.rationale


def test_a_calcium_result_that_was_sent_but_skipped_is_called_unknown_not_absent():
    run = _lab_bundle(_lab("ca", "17861-6", 9.4, unit="furlong"), _lab("p", "2777-1", 3.6))
    metastatic = _grade(run, "metastatic")
    assert "calcium is unknown, not normal" in metastatic.rationale.lower()
    assert "1 calcium result within 365 days could not be read" in metastatic.rationale
    assert "no usable calcium result" not in metastatic.rationale
    assert "on file within" not in metastatic.rationale
    assert any("Bundle.entry[1]" in (issue.location or "") for issue in run.patients[0].issues)


def test_the_egfr_unit_reads_as_ml_per_min_per_1_73_m2_in_the_rationale():
    run = _lab_bundle(_lab("ca", "17861-6", 9.4), _lab("gfr", "33914-3", 42, unit="mL/min/{1.73_m2}"))
    rationale = _grade(run, "metastatic").rationale
    assert "eGFR 42 mL/min/1.73 m2 on 2026-11-01" in rationale
    assert "{1.73_m2}" not in rationale


def test_the_iatrogenic_rationale_gives_the_date_and_route_of_an_administration():
    administration = {"resourceType": "MedicationAdministration", "id": "ma1", "status": "completed",
                      "medicationCodeableConcept": {"text": "Calcium gluconate 100 mg/mL injection"},
                      "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-11-10T08:00:00Z",
                      "dosage": {"route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008",
                                                       "display": "Intravenous route"}]}}}
    run = _lab_bundle(_lab("ca", "17861-6", 9.1), extra=(administration,))
    iatrogenic = _grade(run, "iatrogenic")
    assert iatrogenic.risk == "high"
    assert "calcium gluconate 100 mg/ml injection (Intravenous route, 2026-11-10)" in iatrogenic.rationale


def test_corrected_calcium_is_not_called_normal_when_the_age_is_unknown():
    from service.pipeline.assess import assess_bundle

    def lab(code, value, unit):
        return {"resource": {"resourceType": "Observation", "id": f"o-{code}", "status": "final",
                             "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                             "subject": {"reference": "Patient/p-noage"}, "effectiveDateTime": "2026-11-01T08:00:00Z",
                             "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org",
                                               "code": unit}}}

    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p-noage", "gender": "male"}},
        lab("17861-6", 10.5, "mg/dL"), lab("1751-7", 4.0, "g/dL"), lab("2777-1", 3.6, "mg/dL")]}
    (patient,) = assess_bundle(bundle, now=FIXTURE_NOW).patients
    rationale = " ".join(g.rationale for g in patient.grades)
    assert "albumin-corrected Ca 10.5 mg/dL (albumin 4 g/dL on 2026-11-01) (no flag)" in patient.values_note
    assert "albumin-corrected Ca 10.5 mg/dL (albumin 4 g/dL on 2026-11-01) (N)" not in rationale + patient.values_note
    metastatic = next(grade for grade in patient.grades if grade.type == "metastatic")
    assert "calcium and phosphate are unknown, not normal" in metastatic.rationale.lower()
    assert "within the applied ranges" not in rationale

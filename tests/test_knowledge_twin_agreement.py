"""The engine running CalcinosisCutis.cql and the hand-written twin agree on generated patients.

The benchmark compares the two, so they must compute the same thing: here random mixes of the
facts the rules read (labs with every flag, status and age; coded and name-only conditions;
medications and orders) are evaluated both ways and every output define must be equal.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import handwritten_rules
from service.cql_like.quantity import Quantity
from service.cql_like.values import Code, Concept, Interval, Record
from test_knowledge_scenarios import NOW, Facts, engine_outputs, patient, twin_outputs

LOINC = "http://loinc.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"

LAB_CODES = {  # LOINC code -> canonical unit
    "17861-6": "mg/dL", "49765-1": "mg/dL", "1995-0": "mg/dL", "2777-1": "mg/dL", "1751-7": "g/dL",
    "2731-8": "pg/mL", "62292-8": "ng/mL", "2160-0": "mg/dL", "98979-8": "mL/min/{1.73_m2}",
    "2885-2": "g/dL", "6874-2": "mg/(24.h)", "2157-6": "U/L", "1963-8": "mmol/L", "58410-2": "1", "8061-4": "1",
    "61151-7": "g/dL", "14804-9": "U/L", "68438-1": "ng/mL", "5351-2": "1", "17792-3": "[arb'U]/mL",
}
V3_ROUTE = "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"
ROUTES = [
    None, Concept((Code("47625008", SNOMED),), None), Concept((Code("IVINJ", V3_ROUTE),), None),
    Concept((), "IV"), Concept((), "i.v."), Concept((), "iv infusion"), Concept((Code("26643006", SNOMED),), None),
    Concept((), "oral"), Concept((), "IVIG line"),
]
# A few shared instants so that results of one analyte often tie on effective (and issued) time.
SHARED_DAYS_AGO = (2, 10, 44)
CONDITIONS = [
    (ICD10CM, "M34.1", "CR(E)ST syndrome"), (SNOMED, "396230008", "Dermatomyositis (disorder)"),
    (ICD10CM, "M32.9", "Systemic lupus erythematosus, unspecified"), (ICD10CM, "N18.4", "Chronic kidney disease, stage 4 (severe)"),
    (ICD10CM, "N18.5", "Chronic kidney disease, stage 5"), (SNOMED, "46177005", "End-stage renal disease (disorder)"),
    (ICD10CM, "Z99.2", "Dependence on renal dialysis"), (ICD10CM, "E21.0", "Primary hyperparathyroidism"),
    (ICD10CM, "E67.3", "Hypervitaminosis D"), (ICD10CM, "D86.9", "Sarcoidosis, unspecified"),
    (SNOMED, "43258006", "Milk alkali syndrome (disorder)"), (ICD10CM, "C50.911", "Malignant neoplasm of right female breast"),
    (ICD10CM, "E88.3", "Tumor lysis syndrome"), (ICD10CM, "Z94.0", "Kidney transplant status"),
    (ICD10CM, "E11.9", "Type 2 diabetes mellitus without complications"), (ICD10CM, "E66.9", "Obesity, unspecified"),
    (SNOMED, "237900002", "Calciphylaxis"), (ICD10CM, "L94.2", "Calcinosis cutis"), (ICD10CM, "E83.52", "Hypercalcemia"),
    (None, None, "Venous ulcer of left leg"), (None, None, "Peptic ulcer"), (None, None, "Polymyositis"),
    (None, None, "Calcinosis cutis of fingers"), (SNOMED, "125666000", "Burn"),
    (ICD10CM, "M32.14", "Glomerular disease in systemic lupus erythematosus"), (None, None, "Scleroderma"),
    (ICD10CM, "M33.20", "Polymyositis, organ involvement unspecified"), (None, None, "Lupus anticoagulant positive"),
    (None, None, "Gangrenous cholecystitis"), (None, None, "Dry gangrene of toe"), (None, None, "Fat necrosis of breast"),
    (None, None, "Retiform purpura with central eschar"),
]
MEDICATIONS = [
    "calcium gluconate 100 mg/ml injectable solution", "calcium chloride 100 mg/ml injection",
    "potassium phosphate 3 mmol/ml injectable solution", "dexamethasone sodium phosphate 4 mg/ml injection",
    "aminosalicylic acid 4000 mg oral granules", "warfarin sodium 5 mg oral tablet", "calcium carbonate 500 mg chewable tablet",
    "ibuprofen 200 mg oral tablet", "calcium gluconate", "potassium phosphate", "calcium gluconate (iv) 10 %",
    "sodium glycerophosphate inj", "antacid " + "x" * 12_000,
]
ORDER_CODES = ["2731-8", "2000-8", "14879-1", "24323-8", "51990-0", "1989-3", "2744-1"]
FLAGS = st.sampled_from(["N", "H", "L", "HH", "A", None, "POS"])


@st.composite
def lab(draw, n: int) -> Record:
    code = draw(st.sampled_from(sorted(LAB_CODES)))
    unit = LAB_CODES[code]
    numeric = unit != "1"
    value = Quantity(Decimal(draw(st.integers(1, 400))) / 10, unit) if numeric else None
    with_range = numeric and draw(st.booleans())
    rng = Interval(Quantity(Decimal("2.5"), unit), Quantity(Decimal("10.2"), unit)) if with_range else None
    days_ago = draw(st.one_of(st.sampled_from(SHARED_DAYS_AGO), st.integers(-3, 500)))
    effective = NOW - timedelta(days=days_ago)
    issued_hours = draw(st.one_of(st.none(), st.sampled_from([1, 1, 30])))
    return Record("Observation", {
        "id": f"o{n}", "code": Concept((Code(code, LOINC),), None),
        "status": draw(st.sampled_from(["final", "final", "preliminary", "amended", "corrected", "entered-in-error",
                                        "cancelled"])),
        "value": value, "valueText": None if numeric else "Positive",
        "effective": effective,
        "issued": None if issued_hours is None else effective + timedelta(hours=issued_hours),
        "interpretation": draw(FLAGS), "referenceRange": rng,
        "referenceRangeSource": draw(st.sampled_from(["lab", "default adult", "default child 1-12 y"])) if with_range else None,
    }, source=f"Observation/o{n}")


@st.composite
def condition(draw, n: int) -> Record:
    system, code, display = draw(st.sampled_from(CONDITIONS))
    codes = (Code(code, system, display),) if code else ()
    return Record("Condition", {
        "id": f"c{n}", "code": Concept(codes, display),
        "clinicalStatus": draw(st.sampled_from(["active", "active", "resolved", None])),
        "verificationStatus": draw(st.sampled_from(["confirmed", "refuted", None])),
    }, source=f"Condition/c{n}")


@st.composite
def medication(draw, n: int) -> Record:
    type_name = draw(st.sampled_from(["MedicationRequest", "MedicationAdministration", "MedicationStatement"]))
    name = draw(st.sampled_from(MEDICATIONS))
    date_field = "authoredOn" if type_name == "MedicationRequest" else "effective"
    return Record(type_name, {
        "id": f"m{n}", "code": Concept((), name), "name": name,
        "status": draw(st.sampled_from(["active", "draft", "completed", "stopped", "in-progress"])),
        date_field: NOW - timedelta(days=draw(st.integers(0, 700))), "route": draw(st.sampled_from(ROUTES)),
    }, source=f"{type_name}/m{n}")


@st.composite
def tied_results(draw, n: int) -> list[Record]:
    """Two or three results of one analyte at one instant, differing in issued time, status and value."""
    code = draw(st.sampled_from(["17861-6", "2777-1"]))
    effective = NOW - timedelta(days=draw(st.sampled_from(SHARED_DAYS_AGO)))
    out = []
    for k in range(draw(st.integers(2, 3))):
        issued_hours = draw(st.sampled_from([None, 1, 1, 30]))
        out.append(Record("Observation", {
            "id": f"t{n}{k}", "code": Concept((Code(code, LOINC),), None),
            "status": draw(st.sampled_from(["final", "amended", "corrected", "preliminary"])),
            "value": Quantity(Decimal(draw(st.integers(20, 140))) / 10, "mg/dL"), "valueText": None,
            "effective": effective, "issued": None if issued_hours is None else effective + timedelta(hours=issued_hours),
            "interpretation": draw(FLAGS), "referenceRange": None, "referenceRangeSource": None,
        }, source=f"Observation/t{n}{k}"))
    return out


@st.composite
def facts(draw) -> Facts:
    records: list[Record] = []
    for n in range(draw(st.integers(0, 8))):
        records.append(draw(lab(n)))
    if draw(st.booleans()):
        records.extend(draw(tied_results(0)))
    for n in range(draw(st.integers(0, 4))):
        records.append(draw(condition(n)))
    for n in range(draw(st.integers(0, 3))):
        records.append(draw(medication(n)))
    if draw(st.booleans()):
        for n in range(draw(st.integers(1, 2))):
            authored = draw(st.one_of(st.none(), st.integers(0, 30)))
            records.append(Record("ServiceRequest", {
                "id": f"s{n}", "code": Concept((Code(draw(st.sampled_from(ORDER_CODES)), LOINC),), None),
                "status": draw(st.sampled_from(["draft", "active", "revoked"])),
                "authoredOn": None if authored is None else NOW - timedelta(days=authored)},
                source=f"ServiceRequest/s{n}"))
    return Facts(records, patient())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(facts())
def test_engine_and_twin_agree_on_generated_patients(generated: Facts):
    engine = engine_outputs(generated)
    twin = twin_outputs(generated)
    for name in handwritten_rules.OUTPUT_DEFINES:
        assert engine[name] == twin[name], name

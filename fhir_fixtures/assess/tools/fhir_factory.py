"""Small builders for the FHIR R4 resources the $assess fixtures are made of.

The fixtures are generated rather than hand-written so that twenty bundles stay
consistent (same coding systems, same displays, same reference style) and so
that the padded fixture can hold hundreds of resources without copy-paste.
Every code used here is one marked V or V2 in the project's code reference;
items without a verified code (IV calcium gluconate, skin necrosis, calcium
carbonate antacid) carry a readable name in `text` only.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from dataclasses import dataclass, field
from typing import Any

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
MRN_SYSTEM = "https://example.org/fhir/sid/mrn"
FHIR_BASE = "https://example.org/fhir"

# Fixed namespace so every generated uuid is the same on every run.
FIXTURE_NAMESPACE = uuid.UUID("6f1c2b8e-4f0a-5c3d-9e21-7a4b0c9d1e55")

# LOINC code -> (long common name as in the code reference, short text a lab prints).
LAB_CODES: dict[str, tuple[str, str]] = {
    "17861-6": ("Calcium [Mass/volume] in Serum or Plasma", "Calcium, serum"),
    "2000-8": ("Calcium [Moles/volume] in Serum or Plasma", "Calcium, serum"),
    "49765-1": ("Calcium [Mass/volume] in Blood", "Calcium"),
    "1995-0": ("Calcium.ionized [Moles/volume] in Serum or Plasma", "Ionized calcium"),
    "2777-1": ("Phosphate [Mass/volume] in Serum or Plasma", "Phosphorus, serum"),
    "14879-1": ("Phosphate [Moles/volume] in Serum or Plasma", "Phosphate, serum"),
    "2731-8": ("Parathyrin.intact [Mass/volume] in Serum or Plasma", "PTH, intact"),
    "14866-8": ("Parathyrin.intact [Moles/volume] in Serum or Plasma", "PTH, intact"),
    "62292-8": (
        "25-Hydroxyvitamin D2+25-Hydroxyvitamin D3 [Mass/volume] in Serum or Plasma",
        "Vitamin D, 25-hydroxy, total",
    ),
    "14635-7": ("Calcidiol [Moles/volume] in Serum or Plasma", "25-hydroxyvitamin D3"),
    "2160-0": ("Creatinine [Mass/volume] in Serum or Plasma", "Creatinine, serum"),
    "14682-9": ("Creatinine [Moles/volume] in Serum or Plasma", "Creatinine, serum"),
    "38483-4": ("Creatinine [Mass/volume] in Blood", "Creatinine"),
    "98979-8": (
        "Glomerular filtration rate [Volume Rate/Area] in Serum, Plasma or Blood by "
        "Creatinine-based formula (CKD-EPI 2021)/1.73 sq M",
        "eGFR (CKD-EPI 2021)",
    ),
    "1751-7": ("Albumin [Mass/volume] in Serum or Plasma", "Albumin, serum"),
    "2885-2": ("Protein [Mass/volume] in Serum or Plasma", "Total protein, serum"),
    "3094-0": ("Urea nitrogen [Mass/volume] in Serum or Plasma", "BUN"),
    "2028-9": ("Carbon dioxide, total [Moles/volume] in Serum or Plasma", "CO2, total"),
    "58410-2": ("Complete blood count (hemogram) panel - Blood by Automated count", "CBC"),
    "24321-2": ("Basic metabolic 2000 panel - Serum or Plasma", "Basic metabolic panel"),
    "6874-2": ("Calcium [Mass/time] in 24 hour Urine", "Calcium, 24 h urine"),
    "2779-7": ("Phosphate [Mass/time] in 24 hour Urine", "Phosphorus, 24 h urine"),
    "2157-6": ("Creatine kinase [Enzymatic activity/volume] in Serum or Plasma", "CK"),
    "2532-0": ("Lactate dehydrogenase [Enzymatic activity/volume] in Serum or Plasma", "LDH"),
    "1920-8": ("Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "AST"),
    "1742-6": ("Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "ALT"),
    "1761-6": ("Aldolase [Enzymatic activity/volume] in Serum or Plasma", "Aldolase"),
    "29463-7": ("Body weight", "Body Weight"),
    "8867-4": ("Heart rate", "Heart rate"),
}

INTERPRETATION_DISPLAY = {"N": "Normal", "H": "High", "L": "Low", "HH": "Critical high", "A": "Abnormal"}


def coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def quantity(value: float | int, unit: str, code: str | None = None) -> dict[str, Any]:
    """A UCUM quantity; `code` defaults to the printed unit (as most labs send it)."""
    return {"value": value, "unit": unit, "system": UCUM, "code": code if code is not None else unit}


@dataclass
class BundleBuilder:
    """Collects resources and hands out references in the style of the bundle type.

    Transaction and document bundles use `urn:uuid:` fullUrls and references (as
    Synthea exports do); collection, batch and searchset bundles use absolute
    server URLs as fullUrl and `Type/id` references.
    """

    fixture: str
    bundle_type: str
    urn_style: bool
    entries: list[dict[str, Any]] = field(default_factory=list)

    def new_id(self, name: str) -> str:
        if self.urn_style:
            return str(uuid.uuid5(FIXTURE_NAMESPACE, f"{self.fixture}/{name}"))
        return name

    def add(self, resource: dict[str, Any], *, search_mode: str | None = None) -> str:
        """Append the resource; return the reference other resources should use."""
        rtype, rid = resource["resourceType"], resource["id"]
        entry: dict[str, Any] = {}
        if self.urn_style:
            entry["fullUrl"] = f"urn:uuid:{rid}"
            reference = f"urn:uuid:{rid}"
        else:
            entry["fullUrl"] = f"{FHIR_BASE}/{rtype}/{rid}"
            reference = f"{rtype}/{rid}"
        entry["resource"] = resource
        if search_mode:
            entry["search"] = {"mode": search_mode}
        if self.bundle_type == "transaction":
            entry["request"] = {"method": "POST", "url": rtype}
        elif self.bundle_type == "batch":
            entry["request"] = {"method": "PUT", "url": f"{rtype}/{rid}"}
        self.entries.append(entry)
        return reference

    def bundle(self, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "resourceType": "Bundle",
            "id": f"fixture-{self.fixture}",
            "type": self.bundle_type,
        }
        body.update(extra)
        body["entry"] = self.entries
        return body


def patient(
    rid: str, mrn: str, family: str, given: list[str], gender: str, birth_date: str
) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": rid,
        "identifier": [
            {
                "use": "usual",
                "type": {
                    "coding": [
                        coding("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical record number")
                    ],
                    "text": "Medical record number",
                },
                "system": MRN_SYSTEM,
                "value": mrn,
            }
        ],
        "active": True,
        "name": [{"use": "official", "family": family, "given": given}],
        "gender": gender,
        "birthDate": birth_date,
    }


def reference_range(low: float | None, high: float | None, unit: str, text: str | None = None) -> dict[str, Any]:
    rng: dict[str, Any] = {}
    if low is not None:
        rng["low"] = quantity(low, unit)
    if high is not None:
        rng["high"] = quantity(high, unit)
    if text:
        rng["text"] = text
    return rng


def lab(
    rid: str,
    subject: str,
    loinc: str,
    effective: str,
    *,
    value: float | int | None = None,
    unit: str | None = None,
    unit_code: str | None = None,
    status: str = "final",
    ref_range: tuple[float | None, float | None] | None = None,
    range_text: str | None = None,
    interpretation: str | None = None,
    issued: str | None = None,
    category: str = "laboratory",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A lab Observation; range and interpretation only when the scenario gives them."""
    long_name, short_text = LAB_CODES[loinc]
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid,
        "status": status,
        "category": [
            {
                "coding": [
                    coding(OBS_CATEGORY, category, "Laboratory" if category == "laboratory" else "Vital Signs")
                ]
            }
        ],
        "code": {"coding": [coding(LOINC, loinc, long_name)], "text": short_text},
        "subject": {"reference": subject},
        "effectiveDateTime": effective,
        "issued": issued or _issued_after(effective),
    }
    if value is not None:
        assert unit is not None
        obs["valueQuantity"] = quantity(value, unit, unit_code)
    if interpretation:
        obs["interpretation"] = [
            {"coding": [coding(INTERPRETATION, interpretation, INTERPRETATION_DISPLAY[interpretation])]}
        ]
    if ref_range:
        assert unit is not None
        obs["referenceRange"] = [reference_range(ref_range[0], ref_range[1], unit_code or unit, range_text)]
    if extra:
        obs.update(extra)
    return obs


def _issued_after(effective: str) -> str:
    """Results are released a few hours after collection: here, 2 h 15 min later."""
    collected = datetime.fromisoformat(effective.replace("Z", "+00:00"))
    return (collected + timedelta(hours=2, minutes=15)).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    rid: str,
    subject: str,
    *,
    snomed: tuple[str, str] | None = None,
    icd: tuple[str, str] | None = None,
    text: str,
    onset: str,
    recorded: str,
    clinical_status: str = "active",
    verification: str = "confirmed",
    category: str = "problem-list-item",
    body_site_text: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    codings = []
    if snomed:
        codings.append(coding(SNOMED, snomed[0], snomed[1]))
    if icd:
        codings.append(coding(ICD10CM, icd[0], icd[1]))
    code: dict[str, Any] = {"text": text}
    if codings:
        code = {"coding": codings, "text": text}
    cond: dict[str, Any] = {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": {"coding": [coding(CONDITION_CLINICAL, clinical_status, clinical_status.capitalize())]},
        "verificationStatus": {
            "coding": [coding(CONDITION_VERIFICATION, verification, verification.capitalize())]
        },
        "category": [
            {
                "coding": [
                    coding(
                        CONDITION_CATEGORY,
                        category,
                        "Problem List Item" if category == "problem-list-item" else "Encounter Diagnosis",
                    )
                ]
            }
        ],
        "code": code,
        "subject": {"reference": subject},
        "onsetDateTime": onset,
        "recordedDate": recorded,
    }
    if body_site_text:
        cond["bodySite"] = [{"text": body_site_text}]
    if note:
        cond["note"] = [{"text": note}]
    return cond


def calcinosis_cutis(rid: str, subject: str, onset: str, recorded: str, site: str) -> dict[str, Any]:
    """Calcinosis cutis has no verified SNOMED CT concept: ICD-10-CM L94.2 only."""
    return condition(
        rid,
        subject,
        icd=("L94.2", "Calcinosis cutis"),
        text="Calcinosis cutis",
        onset=onset,
        recorded=recorded,
        body_site_text=site,
    )


def hemodialysis(rid: str, subject: str, performed: str) -> dict[str, Any]:
    """One four-hour hemodialysis session starting at `performed` (UTC, ...Z)."""
    start = datetime.fromisoformat(performed.replace("Z", "+00:00"))
    end = (start + timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "resourceType": "Procedure",
        "id": rid,
        "status": "completed",
        "code": {"coding": [coding(SNOMED, "302497006", "Hemodialysis")], "text": "Hemodialysis"},
        "subject": {"reference": subject},
        "performedPeriod": {"start": performed, "end": end},
    }


def warfarin_request(rid: str, subject: str, authored_on: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [coding(RXNORM, "855288", "Warfarin Sodium 1 MG Oral Tablet")],
            "text": "Warfarin Sodium 1 MG Oral Tablet",
        },
        "subject": {"reference": subject},
        "authoredOn": authored_on,
        "dosageInstruction": [
            {
                "text": "3 mg by mouth once daily, adjust to INR",
                "route": {"text": "oral"},
            }
        ],
    }


def iv_calcium_gluconate_administration(rid: str, subject: str, when: str, encounter: str) -> dict[str, Any]:
    """No verified RxNorm code exists for calcium gluconate: the name is given in text only."""
    return {
        "resourceType": "MedicationAdministration",
        "id": rid,
        "status": "completed",
        "medicationCodeableConcept": {"text": "Calcium gluconate 10% injection"},
        "subject": {"reference": subject},
        "context": {"reference": encounter},
        "effectiveDateTime": when,
        "dosage": {
            "text": "2 g in 100 mL 0.9% sodium chloride over 60 minutes via peripheral line, left forearm",
            "site": {"text": "Left forearm"},
            "route": {"coding": [coding(SNOMED, "47625008", "Intravenous route")], "text": "intravenous"},
            "dose": quantity(2, "g"),
        },
    }


def medication_statement(
    rid: str, subject: str, text: str, start: str, end: str | None, status: str, dosage_text: str
) -> dict[str, Any]:
    period: dict[str, str] = {"start": start}
    if end:
        period["end"] = end
    return {
        "resourceType": "MedicationStatement",
        "id": rid,
        "status": status,
        "medicationCodeableConcept": {"text": text},
        "subject": {"reference": subject},
        "effectivePeriod": period,
        "dosage": [
            {"text": dosage_text, "route": {"text": "oral"}}
        ],
    }

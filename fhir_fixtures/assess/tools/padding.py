"""Years of unrelated care history, shaped like a Synthea hospital export.

Real exports hold hundreds of encounters, claims and vital signs around a few
relevant labs; the padded fixture uses this to check that ingest skips what the
rules never read. Everything is derived from dates in a fixed loop: no randomness.
"""

from __future__ import annotations

from fhir_factory import BundleBuilder, coding, lab

CVX = "http://hl7.org/fhir/sid/cvx"
# CVX codes as they appear in the public Synthea R4 sample bundles.
FLU_VACCINE = ("140", "Influenza, seasonal, injectable, preservative free")
OTHER_VACCINES = {
    2018: ("113", "Td (adult) preservative free"),
    2023: ("133", "Pneumococcal conjugate PCV 13"),
    2024: ("33", "pneumococcal polysaccharide vaccine, 23 valent"),
}
VISIT_MONTHS = (1, 3, 5, 7, 9, 11)
ORGANIZATIONS = (("Riverside Family Practice", "4135550100"), ("Riverside Regional Hospital", "4135550199"))
PRACTITIONERS = (("Lindgren", "Astrid", "9990001601"), ("Mbeki", "Thabo", "9990001602"))
ADJUDICATION = "http://terminology.hl7.org/CodeSystem/adjudication"


def add_unrelated_history(b: BundleBuilder, patient_ref: str, first_year: int, last_year: int) -> None:
    """Add organizations, practitioners, visits with claims, EOBs and vitals, and vaccinations."""
    org_refs = [
        b.add(_organization(b.new_id(f"org-{n}"), name, phone))
        for n, (name, phone) in enumerate(ORGANIZATIONS)
    ]
    prac_refs = [
        b.add(_practitioner(b.new_id(f"prac-{n}"), family, given, npi))
        for n, (family, given, npi) in enumerate(PRACTITIONERS)
    ]
    for year in range(first_year, last_year + 1):
        for visit, month in enumerate(VISIT_MONTHS):
            day = f"{year}-{month:02d}-{5 + visit:02d}"
            start, end = f"{day}T09:00:00Z", f"{day}T09:30:00Z"
            org, prac = org_refs[visit % 2], prac_refs[visit % 2]
            enc_ref = b.add(_encounter(b.new_id(f"enc-{day}"), patient_ref, prac, org, start, end))
            claim_ref = b.add(_claim(b.new_id(f"claim-{day}"), patient_ref, org, enc_ref, end))
            b.add(_eob(b.new_id(f"eob-{day}"), patient_ref, prac, claim_ref, end))
            weight = round(71.0 + 0.3 * (year - first_year) + 0.1 * visit, 1)
            heart_rate = 68 + (year + visit) % 9
            for name, loinc, value, unit in (("weight", "29463-7", weight, "kg"), ("hr", "8867-4", heart_rate, "/min")):
                obs = lab(b.new_id(f"{name}-{day}"), patient_ref, loinc, start, value=value, unit=unit, category="vital-signs")
                obs["issued"] = start
                obs["encounter"] = {"reference": enc_ref}
                b.add(obs)
        b.add(_immunization(b.new_id(f"flu-{year}"), patient_ref, f"{year}-10-12T10:00:00Z", FLU_VACCINE))
        if year in OTHER_VACCINES:
            b.add(_immunization(b.new_id(f"vaccine-{year}"), patient_ref, f"{year}-06-20T10:00:00Z", OTHER_VACCINES[year]))


def _organization(rid: str, name: str, phone: str) -> dict:
    return {
        "resourceType": "Organization",
        "id": rid,
        "active": True,
        "type": [
            {
                "coding": [coding("http://terminology.hl7.org/CodeSystem/organization-type", "prov", "Healthcare Provider")],
                "text": "Healthcare Provider",
            }
        ],
        "name": name,
        "telecom": [{"system": "phone", "value": phone}],
    }


def _practitioner(rid: str, family: str, given: str, npi: str) -> dict:
    return {
        "resourceType": "Practitioner",
        "id": rid,
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}],
        "active": True,
        "name": [{"family": family, "given": [given], "prefix": ["Dr."]}],
    }


def _encounter(rid: str, patient_ref: str, prac: str, org: str, start: str, end: str) -> dict:
    return {
        "resourceType": "Encounter",
        "id": rid,
        "status": "finished",
        "class": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB", "ambulatory"),
        "type": [{"text": "Encounter for check up"}],
        "subject": {"reference": patient_ref},
        "participant": [{"individual": {"reference": prac}}],
        "period": {"start": start, "end": end},
        "serviceProvider": {"reference": org},
    }


def _claim(rid: str, patient_ref: str, org: str, enc_ref: str, created: str) -> dict:
    return {
        "resourceType": "Claim",
        "id": rid,
        "status": "active",
        "type": {"coding": [coding("http://terminology.hl7.org/CodeSystem/claim-type", "professional", "Professional")]},
        "use": "claim",
        "patient": {"reference": patient_ref},
        "created": created,
        "provider": {"reference": org},
        "priority": {"coding": [coding("http://terminology.hl7.org/CodeSystem/processpriority", "normal", "Normal")]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Medicare"}}],
        "item": [
            {
                "sequence": 1,
                "productOrService": {"text": "Encounter for check up"},
                "encounter": [{"reference": enc_ref}],
            }
        ],
    }


def _eob(rid: str, patient_ref: str, prac: str, claim_ref: str, created: str) -> dict:
    return {
        "resourceType": "ExplanationOfBenefit",
        "id": rid,
        "status": "active",
        "type": {"coding": [coding("http://terminology.hl7.org/CodeSystem/claim-type", "professional", "Professional")]},
        "use": "claim",
        "patient": {"reference": patient_ref},
        "created": created,
        "insurer": {"display": "Medicare"},
        "provider": {"reference": prac},
        "claim": {"reference": claim_ref},
        "outcome": "complete",
        "insurance": [{"focal": True, "coverage": {"display": "Medicare"}}],
        "total": [
            {
                "category": {"coding": [coding(ADJUDICATION, "submitted", "Submitted Amount")]},
                "amount": {"value": 125.0, "currency": "USD"},
            }
        ],
    }


def _immunization(rid: str, patient_ref: str, when: str, vaccine: tuple[str, str]) -> dict:
    return {
        "resourceType": "Immunization",
        "id": rid,
        "status": "completed",
        "vaccineCode": {"coding": [coding(CVX, vaccine[0], vaccine[1])], "text": vaccine[1]},
        "patient": {"reference": patient_ref},
        "occurrenceDateTime": when,
        "primarySource": True,
    }

"""The shape of a fixture and of the clinical expectations stated for it.

Expectations are written by hand from the project's clinical knowledge file,
independently of the pipeline, so that the pipeline's golden outputs can be
checked against what a clinician would accept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NOW = "2026-11-15T09:00:00Z"

BASELINE_PANEL: tuple[str, ...] = (
    "58410-2",  # CBC
    "24321-2",  # BMP
    "17861-6",  # calcium
    "2777-1",  # phosphate
    "2885-2",  # total protein
    "1751-7",  # albumin
    "2731-8",  # PTH intact
    "62292-8",  # 25-OH vitamin D
    "6874-2",  # 24 h urine calcium
    "2779-7",  # 24 h urine phosphate
)
MYOSITIS_GROUP: tuple[str, ...] = ("2157-6", "2532-0", "1920-8", "1742-6", "1761-6")
AUTOIMMUNE_GROUP: tuple[str, ...] = ("8061-4", "5130-0", "43119-7")
URINE_24H: tuple[str, ...] = ("6874-2", "2779-7")  # not proposed with kidney failure or dialysis
# SNOMED CT plain X-ray, ultrasonography, CT, MRI, skin biopsy: proposed once calcinosis cutis is on file
IMAGING_AND_BIOPSY: tuple[str, ...] = ("168537006", "16310003", "77477000", "113091000", "240977001")
MILK_ALKALI_GROUP: tuple[str, ...] = ("1963-8", "2744-1")

NOT_HIGH = "negligible|low|moderate"
LOW = "low|negligible"


@dataclass
class PatientExpectation:
    """What must hold for one patient of a fixture; absent keys are not asserted."""

    reference: str
    full_url: str
    label: str | None = None  # how the README names the patient in a multi-patient bundle
    leading: str | None = None
    risk: dict[str, str] = field(default_factory=dict)
    recommended_includes: list[str] = field(default_factory=list)
    recommended_excludes: list[str] = field(default_factory=list)
    issues_include: list[str] = field(default_factory=list)
    unconfirmed_includes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        expect: dict[str, Any] = {}
        if self.leading:
            expect["leading"] = self.leading
        if self.risk:
            expect["risk"] = self.risk
        expect["recommended_includes"] = self.recommended_includes
        expect["recommended_excludes"] = self.recommended_excludes
        if self.unconfirmed_includes:
            expect["unconfirmed_includes"] = self.unconfirmed_includes
        if self.issues_include:
            expect["issues_include"] = self.issues_include
        entry: dict[str, Any] = {"reference": self.reference, "fullUrl": self.full_url}
        if self.label:
            entry["label"] = self.label
        entry["expect"] = expect
        return entry


@dataclass
class Fixture:
    """One input bundle, the scenario it stands for and its expectations."""

    file: str
    scenario: str
    exercises: str
    bundle: dict[str, Any]
    patients: list[PatientExpectation]

    def manifest_entry(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "scenario": self.scenario,
            "exercises": self.exercises,
            "bundle_type": self.bundle["type"],
            "patients": [p.to_json() for p in self.patients],
        }

"""The assessment of one patient, as plain data.

This is the seam between the core (ingest -> normalize -> rule library) and
every surface that presents it: FHIR resources for `$assess`, cards for CDS
Hooks, the CLI summary. Keeping it free of FHIR and Flask types lets each
surface be built and tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

CalcinosisType = Literal["dystrophic", "metastatic", "idiopathic", "iatrogenic", "calciphylaxis"]
RiskLevel = Literal["negligible", "low", "moderate", "high"]
Severity = Literal["fatal", "error", "warning", "information"]

CALCINOSIS_TYPES: tuple[str, ...] = ("dystrophic", "metastatic", "idiopathic", "iatrogenic", "calciphylaxis")
RISK_ORDER: dict[str, int] = {"high": 3, "moderate": 2, "low": 1, "negligible": 0}
# FHIR R4 QuantityComparator as a reader says it ('<3 pg/mL' is 'below 3 pg/mL'); the rule library's
# "Bound Words" says the same.
COMPARATOR_WORDS: dict[str, str] = {"<": "below", "<=": "at most", ">=": "at least", ">": "above"}


@dataclass(frozen=True, slots=True)
class InputIssue:
    """Something in the caller's input that was skipped or is doubtful.

    `location` is FHIRPath-like and points into what the caller sent, e.g.
    ``Bundle.entry[3].resource.valueQuantity.unit``.
    """

    severity: Severity
    code: str  # FHIR issue-type code: invalid, structure, value, not-supported, code-invalid, processing ...
    diagnostics: str
    location: str | None = None


@dataclass(frozen=True, slots=True)
class TypeGrade:
    """One calcinosis type graded by the rule library."""

    type: str  # one of CALCINOSIS_TYPES
    risk: str  # one of RISK_ORDER
    rationale: str  # plain words, naming the numbers and dates used
    evidence: tuple[str, ...] = ()  # references of the input resources that drove the grade
    citation: str = ""  # the seed sentence(s) the rule rests on, "seed 002, Pathophysiology: ..."


@dataclass(frozen=True, slots=True)
class ValueUsed:
    """A lab value the rules used, in the unit it was assessed in."""

    analyte: str  # e.g. "calcium", "phosphate", "pth", "vitamin-d-25oh", "creatinine", "egfr"
    label: str  # readable name, e.g. "Calcium (serum)"
    value: Decimal
    unit: str  # canonical UCUM unit
    effective: datetime | date | None
    source: str  # reference of the Observation
    status: str = "final"
    flag: str | None = None  # "H", "L", "N" ... from the lab or from the range applied
    range_text: str | None = None  # e.g. "8.5-10.2 mg/dL (lab)" or "(default, adult)"
    comparator: str | None = None  # "<", "<=", ">=", ">": `value` is a bound, never a measured value

    @property
    def bound_words(self) -> str:
        """'below ' for '<3 pg/mL' (so a surface writes 'below 3 pg/mL'), '' for an exact value."""
        return f"{COMPARATOR_WORDS[self.comparator]} " if self.comparator in COMPARATOR_WORDS else ""


@dataclass(frozen=True, slots=True)
class PanelTest:
    """A test of the recommended work-up that has no current valid result."""

    code: str  # LOINC code (SNOMED CT for imaging/procedures)
    system: str  # "http://loinc.org" or "http://snomed.info/sct"
    display: str
    group: str  # "baseline", "myositis", "autoimmune", "milk-alkali", "imaging"
    reason: str  # why it is proposed, in plain words


@dataclass(frozen=True, slots=True)
class UnconfirmedTest:
    """A test of the work-up with no result read that may have one among data that was not read.

    It is not proposed as missing (no ServiceRequest, no card suggestion): the clinician is told it
    could not be confirmed, and why, so a result drawn days ago on an unread page is not re-ordered.
    """

    code: str
    system: str
    display: str
    group: str
    reason: str  # why it could not be confirmed: "could not confirm: the laboratory search was only partly read"
    purpose: str = ""  # why the work-up holds the test, as a PanelTest's reason


@dataclass(frozen=True, slots=True)
class DataGap:
    """A search the caller's data could give only in part, for the rules to see (not an input resource).

    The surfaces that gather data (CDS Hooks prefetch and fallback reads) hand these to
    `Assessor.assess`; `$assess` derives them from an incomplete searchset itself. Skipped resources
    become gaps inside the core, with their code and date.
    """

    resource_type: str  # the type whose search is incomplete: "Observation", "Condition" ...
    reason: str = "search-incomplete"
    location: str | None = None  # where, in what the caller sent: "prefetch.labs", "Bundle.link[1]"
    patient_id: str | None = None  # the patient it concerns; None: every patient of the bundle


@dataclass(frozen=True, slots=True)
class AvailableTest:
    """A test of the work-up that already has a current valid result, so it is not proposed."""

    code: str
    system: str
    display: str
    summary: str  # e.g. "9.1 mg/dL on 2026-10-02"
    source: str


@dataclass(frozen=True, slots=True)
class OrderAlert:
    """A draft or active order the rules flag (e.g. IV calcium gluconate: iatrogenic calcinosis risk)."""

    order_reference: str  # reference of the MedicationRequest / ServiceRequest
    display: str  # what was ordered, as the caller named it
    message: str  # the advice, in plain words (dilution, extravasation, check phosphate first ...)
    citation: str = ""


@dataclass(frozen=True, slots=True)
class PatientAssessment:
    """Everything the surfaces need to present one patient's assessment."""

    patient_id: str  # the Patient's logical id (or a stable surrogate when the bundle has none)
    patient_reference: str  # how the caller refers to the patient ("Patient/123" or "urn:uuid:...")
    assessed_at: datetime  # evaluation time: RiskAssessment.occurrenceDateTime
    library: str  # rule library name, e.g. "CalcinosisCutis"
    library_version: str
    grades: tuple[TypeGrade, ...]  # one per type, most likely first
    recommended: tuple[PanelTest, ...] = ()
    available: tuple[AvailableTest, ...] = ()
    values_used: tuple[ValueUsed, ...] = ()
    issues: tuple[InputIssue, ...] = ()
    order_alerts: tuple[OrderAlert, ...] = ()
    calcinosis_condition: str | None = None  # reference of an active calcinosis cutis Condition
    notes: tuple[str, ...] = field(default=())  # extra plain-language remarks (preliminary results, ranges applied)
    unconfirmed: tuple[UnconfirmedTest, ...] = ()  # tests that may have a result among data not read
    incomplete_analytes: tuple[str, ...] = ()  # analyte keys ("calcium", "phosphate" ...) whose results may be incomplete
    incomplete_searches: tuple[str, ...] = ()  # searches read only in part: "laboratory", "condition", "medication" ...

    @property
    def leading(self) -> TypeGrade:
        """The most likely type: grades are kept most likely first."""
        return self.grades[0]

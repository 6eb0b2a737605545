"""The assessment of one patient, as plain data.

This is the seam between the core (ingest -> normalize -> rule library) and
every surface that presents it: FHIR resources for `$assess`, cards for CDS
Hooks, the CLI summary. Keeping it free of FHIR and Flask types lets each
surface be built and tested on its own. `AssessBundle` and `AssessmentRun` are the
typed call and answer by which a surface that gathers its own data (CDS Hooks) asks the core.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable, Iterable, Literal, Mapping, Protocol, runtime_checkable

CalcinosisType = Literal["dystrophic", "metastatic", "idiopathic", "iatrogenic", "calciphylaxis"]
RiskLevel = Literal["negligible", "low", "moderate", "high"]
Severity = Literal["fatal", "error", "warning", "information"]

CALCINOSIS_TYPES: tuple[str, ...] = ("dystrophic", "metastatic", "idiopathic", "iatrogenic", "calciphylaxis")
RISK_ORDER: dict[str, int] = {"high": 3, "moderate": 2, "low": 1, "negligible": 0}
# FHIR R4 QuantityComparator as a reader says it ('<3 pg/mL' is 'below 3 pg/mL'); the rule library's
# "Bound Words" says the same.
COMPARATOR_WORDS: dict[str, str] = {"<": "below", "<=": "at most", ">=": "at least", ">": "above"}


# Where entry `index` of the assessed Bundle is, for a reader of another document (a CDS Hooks request):
# `path` is "" for the entry itself or "resource..." inside its resource; None when it cannot say.
EntryLocator = Callable[[int, str], "str | None"]


def entry_location_text(index: int, path: str = "") -> str:
    """'Bundle.entry[3]' and, with a path, 'Bundle.entry[3].resource.code': how an OperationOutcome writes it."""
    return f"Bundle.entry[{index}]" + (f".{path}" if path else "")


@dataclass(frozen=True, slots=True)
class EntryPlace:
    """A place inside one bundle entry: where an issue is, or another entry its diagnostics name
    ("... already used by Bundle.entry[0]")."""

    index: int
    path: str = ""  # "" for the entry, "resource" for its resource, "resource.valueQuantity.unit" ...

    @property
    def text(self) -> str:
        """The place as the core's own Bundle reads it."""
        return entry_location_text(self.index, self.path)

    def at(self, name: str) -> "EntryPlace":
        """The element `name` ("valueQuantity", "coding[0]") inside this place."""
        separator = "" if not self.path or name.startswith("[") else "."
        return EntryPlace(self.index, f"{self.path}{separator}{name}")


@dataclass(frozen=True, slots=True)
class InputIssue:
    """Something in the caller's input that was skipped or is doubtful.

    `location` is FHIRPath-like and points into what the caller sent, e.g.
    ``Bundle.entry[3].resource.valueQuantity.unit``: the text an OperationOutcome carries. An issue
    about a bundle entry is built with `InputIssue.at_entry`, which sets the same place structured,
    for a surface that must locate it in another document: `entry_index` (3) and `path` inside the
    entry ("resource.valueQuantity.unit"; "" for the entry itself). They are authoritative: the
    location text is written from them, so `dataclasses.replace(issue, entry_index=5)` moves both.
    `detail` is the diagnostics after any leading own location, as text and `EntryPlace`s of the
    other entries it names, so a surface writes those mentions where it found the entries without
    reading the text back.
    """

    severity: Severity
    code: str  # FHIR issue-type code: invalid, structure, value, not-supported, code-invalid, processing ...
    diagnostics: str
    location: str | None = None
    entry_index: int | None = None
    path: str | None = None
    detail: tuple[str | EntryPlace, ...] = ()
    prefix: str | None = None  # the path of the leading own location in `diagnostics`; None: no such lead

    def __post_init__(self) -> None:
        if self.entry_index is not None:
            object.__setattr__(self, "path", self.path or "")
            object.__setattr__(self, "location", entry_location_text(self.entry_index, self.path or ""))
        else:
            object.__setattr__(self, "path", None)
        if self.detail:
            lead = (f"{entry_location_text(self.entry_index, self.prefix)}: "
                    if self.prefix is not None and self.entry_index is not None else "")
            object.__setattr__(self, "diagnostics", lead + _render(self.detail, lambda index, path: None))

    @classmethod
    def at_entry(cls, index: int, path: str, severity: Severity, code: str, *detail: str | EntryPlace,
                 prefix: str | None = None) -> "InputIssue":
        """An issue at `path` inside bundle entry `index`; `detail` is the text, with the other entries it
        names as `EntryPlace`s; `prefix` (a path in the same entry) makes the diagnostics start with
        that location, as in "Bundle.entry[2]: ... already used by Bundle.entry[0]"."""
        return cls(severity, code, "", None, index, path, tuple(detail) or ("",), prefix)

    @classmethod
    def at(cls, place: EntryPlace, severity: Severity, code: str, *detail: str | EntryPlace,
           prefix: EntryPlace | None = None) -> "InputIssue":
        """`at_entry` for a place: an issue at `place`, its diagnostics led by `prefix` when given."""
        if prefix is not None and prefix.index != place.index:
            raise ValueError("an issue's diagnostics are led by a place in its own entry")
        return cls.at_entry(place.index, place.path, severity, code, *detail,
                            prefix=prefix.path if prefix is not None else None)

    @property
    def place(self) -> EntryPlace | None:
        """Where the issue is, structured; None when it is about no one entry."""
        return EntryPlace(self.entry_index, self.path or "") if self.entry_index is not None else None

    @property
    def mentions(self) -> tuple[EntryPlace, ...]:
        """The other bundle entries the diagnostics name."""
        return tuple(part for part in self.detail if isinstance(part, EntryPlace))

    def diagnostics_located(self, locate: EntryLocator) -> str:
        """The diagnostics without their own leading location (the issue carries it), each other bundle entry
        they mention written where `locate` says it is (left as written when `locate` cannot say)."""
        if not self.detail:
            return self.diagnostics
        return _render(self.detail, locate)


def _render(detail: tuple[str | EntryPlace, ...], locate: EntryLocator) -> str:
    return "".join(part if isinstance(part, str) else (locate(part.index, part.path) or part.text)
                   for part in detail)


@dataclass(frozen=True, slots=True)
class Citation:
    """One passage of a publication a rule rests on: what a clinician needs to check the rule.

    `source` is the publication's key in the bibliography, `reference` the publication as a reader
    cites it (rendered from the bibliography), `label` its short name.
    """

    source: str  # bibliography key, e.g. "statpearls-calcinosis-cutis"
    section: str  # the section quoted, e.g. "Pathophysiology"
    quote: str  # the exact sentence(s); " ... " marks words left out
    reference: str  # "Le C, Bedocs PM. Calcinosis Cutis. StatPearls, 2019."
    label: str = ""  # 'StatPearls "Calcinosis Cutis" (Le C, Bedocs PM, 2019)'
    url: str | None = None

    @property
    def text(self) -> str:
        """'Le C, Bedocs PM. Calcinosis Cutis. StatPearls, 2019. Pathophysiology: "..."'"""
        if not self.section and not self.quote:
            return self.reference
        if not self.quote:  # a publication the service cannot quote verbatim is cited by section only
            return f"{self.reference} {self.section}"
        return f'{self.reference} {self.section}: "{self.quote}"'


def citations_text(citations: tuple[Citation, ...]) -> str:
    """Several citations as one text, each once, in order."""
    return "; ".join(dict.fromkeys(c.text for c in citations))


@dataclass(frozen=True, slots=True)
class TypeGrade:
    """One calcinosis type graded by the rule library."""

    type: str  # one of CALCINOSIS_TYPES
    risk: str  # one of RISK_ORDER
    rationale: str  # plain words, naming the numbers and dates used
    evidence: tuple[str, ...] = ()  # references of the input resources that drove the grade
    citation: str = ""  # the passages the rule rests on, as text: 'Le C, Bedocs PM. ... Pathophysiology: "..."'
    citations: tuple[Citation, ...] = ()  # the same passages, structured (FHIR RelatedArtifact)


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


def _default_name(test: "PanelTest | OmittedTest | UnconfirmedTest | AvailableTest") -> None:
    """A test built without a plain name is named by its display, so `name` is always readable."""
    if not test.name:
        object.__setattr__(test, "name", test.display)


@dataclass(frozen=True, slots=True)
class PanelTest:
    """A test of the recommended work-up that has no current valid result."""

    code: str  # LOINC code (SNOMED CT for imaging/procedures); "" for a proposal by name only
    system: str  # "http://loinc.org" or "http://snomed.info/sct"; "" with no code
    display: str
    group: str  # "baseline", "myositis", "autoimmune", "milk-alkali", "imaging"
    reason: str  # why it is proposed, in plain words
    citations: tuple[Citation, ...] = ()  # the passages that name the test
    name: str = ""  # the plain name a clinician uses ("Parathyroid hormone, intact"); the display when not given

    def __post_init__(self) -> None:
        _default_name(self)

    @property
    def coded(self) -> bool:
        """False for a proposal by name only (no verified code: e.g. bone scintigraphy)."""
        return bool(self.code and self.system)


@dataclass(frozen=True, slots=True)
class OmittedTest:
    """A test of a suggested group deliberately not proposed for this patient, and why."""

    code: str
    system: str
    display: str
    reason: str  # e.g. "kidney failure on file: a 24-hour urine collection ..."
    name: str = ""  # plain name ("24-hour urine calcium"); the display when not given

    def __post_init__(self) -> None:
        _default_name(self)


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
    name: str = ""  # plain name ("Calcium"); the display when not given

    def __post_init__(self) -> None:
        _default_name(self)


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
    name: str = ""  # plain name ("Calcium"); the display when not given
    resource_type: str = ""  # what `source` is: "Observation" (a result) or "ServiceRequest" (an open order)

    def __post_init__(self) -> None:
        _default_name(self)
        if not self.resource_type and "/" in self.source and not self.source.startswith(("urn:", "http")):
            # "ServiceRequest/cbc-order" says what it is when the builder did not.
            object.__setattr__(self, "resource_type", self.source.split("/", 1)[0])

    @property
    def ordered(self) -> bool:
        """True when the test is available as an open order rather than a result."""
        return self.resource_type == "ServiceRequest"


def omitted_by_reason(omitted: tuple[OmittedTest, ...]) -> list[tuple[str, list[OmittedTest]]]:
    """Tests left out for the same reason together (the two 24-hour urine tests share one), in order."""
    groups: dict[str, list[OmittedTest]] = {}
    for test in omitted:
        groups.setdefault(test.reason, []).append(test)
    return list(groups.items())


@dataclass(frozen=True, slots=True)
class OrderAlert:
    """A draft or active order the rules flag (e.g. IV calcium gluconate: iatrogenic calcinosis risk)."""

    order_reference: str  # reference of the MedicationRequest / ServiceRequest
    display: str  # what was ordered, as the caller named it
    message: str  # the advice, in plain words (dilution, extravasation, check phosphate first ...)
    citation: str = ""  # the passages the advice rests on, as text
    citations: tuple[Citation, ...] = ()


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
    omitted: tuple[OmittedTest, ...] = ()  # tests of a suggested group left out on purpose, with why
    values_used: tuple[ValueUsed, ...] = ()
    issues: tuple[InputIssue, ...] = ()
    order_alerts: tuple[OrderAlert, ...] = ()
    calcinosis_condition: str | None = None  # reference of an active calcinosis cutis Condition
    notes: tuple[str, ...] = field(default=())  # extra plain-language remarks (preliminary results, ranges applied)
    unconfirmed: tuple[UnconfirmedTest, ...] = ()  # tests that may have a result among data not read
    incomplete_analytes: tuple[str, ...] = ()  # analyte keys ("calcium", "phosphate" ...) whose results may be incomplete
    incomplete_searches: tuple[str, ...] = ()  # searches read only in part: "laboratory", "condition", "medication" ...
    # The values the assessment used, listed once for every type ("Values used: Ca 10.8 mg/dL on 2026-11-09 (H);
    # ..."): also the first of `notes`, so a surface that shows the values another way can leave it out.
    values_note: str = ""

    @property
    def leading(self) -> TypeGrade:
        """The most likely type: grades are kept most likely first."""
        return self.grades[0]


@dataclass(frozen=True, slots=True)
class AssessmentRun:
    """The outcome of assessing one bundle: one assessment per patient, plus bundle-level issues."""

    patients: tuple[PatientAssessment, ...]
    issues: tuple[InputIssue, ...] = ()


@runtime_checkable
class AssessBundle(Protocol):
    """"Assess this bundle": the one way a surface that gathers its own data (CDS Hooks) asks the core.

    `config` is the service configuration, `now` the evaluation instant (None: the core's clock), and
    `data_gaps` the searches the caller could read only in part. The core's `core_assess` and the
    tests' fakes both answer it.
    """

    def __call__(self, bundle: Mapping[str, Any], *, config: Mapping[str, Any], now: datetime | None = None,
                 data_gaps: Iterable[DataGap] = ()) -> AssessmentRun: ...

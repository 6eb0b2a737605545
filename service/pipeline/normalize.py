"""Normalization: one patient's kept resources -> the facts model the rule library reads.

Each FHIR resource becomes a `Record` with the fields of the facts model
(Patient, Observation, Condition, MedicationRequest/Administration/Statement,
Procedure, ServiceRequest). Filtering that is a clinical choice (which
Condition statuses count, the latest result within the lookback, medication
name matching) is left to the rule library; this module delivers the fields
those choices need and drops only what can never be used (see
service.pipeline.observations for lab values).

Dates: FHIR dateTimes of partial precision ('2026-10') become the start of
the period, in UTC (for a lab result an information issue says so); a time
without an offset is read as UTC. Text is read up to 1,000 characters per
element, and an issue names each element that was cut.

Age: default ranges are chosen by the age at the date the sample was taken.
A partial birthDate ('1980', '1980-05') is read as the earliest day it allows
(the oldest possible age): the Patient record's birthDate is that day, and
when the youngest possible age would fall in another range band an issue
says so. Older is the conservative side here: adult ranges are the tighter
ones for phosphate. An unknown age (no or unusable birthDate) gets no band:
where the bands differ a value is flagged only outside every band (see
Terminology.default_range), and an information issue lists what was applied.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable

from ..assessment_model import DataGap, EntryPlace, InputIssue, Severity
from ..cql_like.quantity import Quantity
from ..cql_like.values import Concept, Record
from .facts import PatientFacts, counting_order_key
from ..fhir_reading.dates import parse_datetime, parse_partial_date
from ..fhir_reading.elements import (MAX_TEXT_LENGTH, categories_text, choice_datetime, concept, display_text, first_code,
                            normalized_name, reference_of, text_or_none)
from .ingest import MEDICATION_USERS, KeptResource, PatientResources
from .issue_lists import capped
from .records import RecordBuilder, shipped_record_builder
from .observations import ObservationNormalizer, PatientAgeContext, observation_date_location, skipped_result_gap
from ..fhir_reading.references import ReferenceIndex, reference_keys
from ..terminology import Terminology, load_terminology


def build_facts(patient: PatientResources, *, now: datetime, terminology: Terminology | None = None,
                gaps: tuple[DataGap, ...] = (), records: RecordBuilder | None = None) -> PatientFacts:
    """Normalize one patient's resources into `PatientFacts`.

    `now` is the evaluation time: an Observation dated after it is reported
    (a clock or data error) but still delivered. `.issues` holds only what
    normalization found; the ingest issues stay on `patient.issues`.
    `gaps` are the searches of this patient read only in part; with the resources
    that were skipped (`patient.skipped`, results whose value or unit cannot be
    used) they reach the rules as DataGap records, so what was not read is never
    taken as absent. `records` builds every record through the facts model (the configured model's
    when None).
    """
    return _Normalizer(patient, now, terminology or load_terminology(), gaps,
                       records or shipped_record_builder()).facts()


class _Normalizer:
    def __init__(self, patient: PatientResources, now: datetime, terminology: Terminology,
                 gaps: tuple[DataGap, ...], build: RecordBuilder) -> None:
        self.patient = patient
        self.build = build
        self.gaps = gaps
        self.now = now if now.tzinfo is not None else now.replace(tzinfo=timezone.utc)
        self.terminology = terminology
        self.issues: list[InputIssue] = []
        self.medications = self._medication_index(patient.resources)

    @property
    def _birth_date_location(self) -> EntryPlace | None:
        """The Patient's birthDate element, or the Patient resource when it has none; None without a Patient."""
        index, resource = self.patient.patient_entry, self.patient.patient_read
        if index is None or resource is None:
            return None
        return EntryPlace(index, "resource.birthDate" if "birthDate" in resource else "resource")

    @staticmethod
    def _patient_issue(severity: Severity, code: str, place: EntryPlace | None, diagnostics: str,
                       fallback: str | None = None) -> InputIssue:
        """An issue about the Patient at `place`; at `fallback` when the Patient is not in the bundle."""
        if place is None:
            return InputIssue(severity, code, diagnostics, fallback)
        return InputIssue.at(place, severity, code, diagnostics)

    def facts(self) -> PatientFacts:
        """The patient's facts for the rules; issues met on the way are collected in `self.issues`."""
        patient_record, age = self._patient_record()
        gap_records: list[Record] = [_search_gap(self.build, gap) for gap in self.gaps]
        observations = ObservationNormalizer(self.terminology, age, self.issues, self._birth_date_location,
                                             gap_records, self.build)
        builders: dict[str, Callable[[KeptResource], Record | None]] = {
            "Observation": observations.record,
            "Condition": self._condition,
            "MedicationRequest": self._medication_request,
            "MedicationAdministration": self._medication_administration,
            "MedicationStatement": self._medication_statement,
            "Procedure": self._procedure,
            "ServiceRequest": self._service_request,
        }
        records: list[Record] = []
        results: list[tuple[Record, KeptResource]] = []
        for kept in self.patient.resources:
            self._note_long_texts(kept)
            builder = builders.get(kept.resource_type)
            if builder is None:
                continue
            record = builder(kept)
            if record is not None:
                records.append(record)
                self._check_not_future(kept, record)
                if record.type_name == "Observation":
                    results.append((record, kept))
        self._check_same_instant_results(results)
        for skipped in self.patient.skipped:
            gap = (observations.skipped_gap(skipped) if skipped.resource_type == "Observation"
                   else _skipped_resource_gap(self.build, skipped))
            if gap is not None:
                gap_records.append(gap)
        records.extend(gap_records)
        if age.unknown_age_used:
            patient_entry = self.patient.patient_entry
            self.issues.append(self._patient_issue(
                "information", "informational",
                EntryPlace(patient_entry, "resource") if patient_entry is not None else None,
                self._age_unknown_text(age), fallback="Bundle.entry"))
        return PatientFacts(self.patient.patient_id, self.patient.patient_reference, patient_record, records,
                            capped(self.issues))

    def _age_unknown_text(self, age: PatientAgeContext) -> str:
        """'age unknown: ' and, per analyte, the default range applied instead of an age band."""
        parts = []
        for analyte, band in age.unknown_age_ranges.items():
            label = self.terminology.analyte(analyte).label
            if band.spans_every_age_band:
                parts.append(f"{label} flagged only outside every age band of its default range ({band.bounds_text})")
            else:
                parts.append(f"{label}: {band.source_label} range applied ({band.bounds_text})")
        return "age unknown: " + "; ".join(parts)

    def _note_long_texts(self, kept: KeptResource) -> None:
        """Text is read up to MAX_TEXT_LENGTH characters (fhir_elements.text_or_none); say where it was cut."""
        for path in kept.long_texts:
            self.issues.append(InputIssue.at(
                kept.at(path), "information", "informational",
                f"text longer than {MAX_TEXT_LENGTH:,} characters: only the first {MAX_TEXT_LENGTH:,} are read"))

    # --- Patient --------------------------------------------------------------------------------
    def _patient_record(self) -> tuple[Record, PatientAgeContext]:
        resource = self.patient.patient_read or {}
        birth_text = resource.get("birthDate")
        birth = parse_partial_date(birth_text)
        if birth_text is not None and birth is None:
            self.issues.append(self._patient_issue("warning", "value", self._birth_date_location,
                                                   f"birthDate {birth_text!r} is not understood: age unknown"))
        elif birth is not None and not birth.is_exact:
            self.issues.append(self._patient_issue(
                "information", "informational", self._birth_date_location,
                f"birthDate '{birth_text}' is partial: {birth.earliest.isoformat()} (the earliest day it allows) "
                "is used for the age"))
        gender = resource.get("gender")
        record = self.build("Patient", {
            "id": text_or_none(resource.get("id")) or self.patient.patient_id,
            "birthDate": birth.earliest if birth is not None else None,
            "gender": gender if isinstance(gender, str) else None,
        }, self.patient.patient_reference)
        return record, PatientAgeContext(birth, birth_text if isinstance(birth_text, str) else None,
                                         gender if isinstance(gender, str) else None)

    # --- other types ----------------------------------------------------------------------------
    def _condition(self, kept: KeptResource) -> Record:
        resource = kept.read
        onset, _ = choice_datetime(resource, "onset")
        abatement, _ = choice_datetime(resource, "abatement")
        return self.build("Condition", {
            "id": text_or_none(resource.get("id")),
            "code": concept(resource.get("code")),
            "clinicalStatus": first_code(resource.get("clinicalStatus")),
            "verificationStatus": first_code(resource.get("verificationStatus")),
            "category": categories_text(resource.get("category")),
            "onset": onset,
            "abatement": abatement,
            "recorded": parse_datetime(resource.get("recordedDate")),
        }, kept.source)

    def _medication_request(self, kept: KeptResource) -> Record:
        resource = kept.read
        code, name = self._medication(kept)
        return self.build("MedicationRequest", {
            "id": text_or_none(resource.get("id")),
            "code": code,
            "status": text_or_none(resource.get("status")),
            "intent": text_or_none(resource.get("intent")),
            "authoredOn": parse_datetime(resource.get("authoredOn")),
            "name": name,
            "route": _first_route(resource.get("dosageInstruction")),
        }, kept.source)

    def _medication_administration(self, kept: KeptResource) -> Record:
        resource = kept.read
        code, name = self._medication(kept)
        effective, _ = choice_datetime(resource, "effective")
        dosage = resource.get("dosage")
        return self.build("MedicationAdministration", {
            "id": text_or_none(resource.get("id")),
            "code": code,
            "status": text_or_none(resource.get("status")),
            "effective": effective,
            "name": name,
            "route": concept(dosage.get("route")) if isinstance(dosage, dict) else None,
        }, kept.source)

    def _medication_statement(self, kept: KeptResource) -> Record:
        resource = kept.read
        code, name = self._medication(kept)
        effective, _ = choice_datetime(resource, "effective")
        return self.build("MedicationStatement", {
            "id": text_or_none(resource.get("id")),
            "code": code,
            "status": text_or_none(resource.get("status")),
            "effective": effective,
            "name": name,
            "route": _first_route(resource.get("dosage")),
        }, kept.source)

    def _procedure(self, kept: KeptResource) -> Record:
        resource = kept.read
        performed, _ = choice_datetime(resource, "performed")
        return self.build("Procedure", {
            "id": text_or_none(resource.get("id")),
            "code": concept(resource.get("code")),
            "status": text_or_none(resource.get("status")),
            "performed": performed,
        }, kept.source)

    def _service_request(self, kept: KeptResource) -> Record:
        resource = kept.read
        return self.build("ServiceRequest", {
            "id": text_or_none(resource.get("id")),
            "code": _plain_systems(concept(resource.get("code"))),
            "status": text_or_none(resource.get("status")),
            "intent": text_or_none(resource.get("intent")),
            "authoredOn": parse_datetime(resource.get("authoredOn")),
        }, kept.source)

    # --- medications ----------------------------------------------------------------------------
    @staticmethod
    def _medication_index(resources: tuple[KeptResource, ...]) -> ReferenceIndex[int]:
        index: ReferenceIndex[int] = ReferenceIndex()
        for position, kept in enumerate(resources):
            if kept.resource_type == "Medication":
                resource_id = kept.read.get("id")
                keys = reference_keys("Medication", resource_id if isinstance(resource_id, str) else None, None)
                index.add(position, ([kept.reference] if kept.reference else []) + keys)
        return index

    def _medication(self, kept: KeptResource) -> tuple[Concept | None, str | None]:
        """The medication's code and matching name, from the CodeableConcept or the referenced Medication."""
        resource = kept.read
        if "medicationCodeableConcept" in resource:
            codeable = resource["medicationCodeableConcept"]
            return concept(codeable), normalized_name(display_text(codeable))
        reference_element = resource.get("medicationReference")
        reference = reference_of(reference_element)
        medication = self._referenced_medication(resource, reference)
        fallback = reference_element.get("display") if isinstance(reference_element, dict) else None
        if medication is None:
            return None, normalized_name(text_or_none(fallback))
        codeable = medication.get("code")
        return concept(codeable), normalized_name(display_text(codeable) or text_or_none(fallback))

    def _referenced_medication(self, resource: dict[str, Any], reference: str | None) -> dict[str, Any] | None:
        if reference is None:
            return None
        if reference.startswith("#"):
            contained = resource.get("contained")
            for item in contained if isinstance(contained, list) else ():
                if (isinstance(item, dict) and item.get("resourceType") == "Medication"
                        and item.get("id") == reference[1:]):
                    return item
            return None
        position = self.medications.resolve(reference)
        return self.patient.resources[position].read if position is not None else None

    def _check_not_future(self, kept: KeptResource, record: Record) -> None:
        if record.type_name != "Observation" or record.get("analyte") is None:
            return
        effective = record.get("effective")
        when = effective or record.get("issued")
        if when is not None and when > self.now:
            where = observation_date_location(kept) if effective is not None else kept.at("issued")
            self.issues.append(InputIssue.at(
                where, "warning", "value",
                f"dated {when.isoformat()}, after the evaluation time {self.now.isoformat()}", prefix=kept.place))

    def _check_same_instant_results(self, results: list[tuple[Record, KeptResource]]) -> None:
        """Warn when results of one analyte filed at the same instant disagree: all are kept, the rules
        use the one that counts (see facts.counting_order_key), and the warning says which and why.

        The results that disagree while none supersedes the others by status (a final one is replaced by
        its amendment or correction, a preliminary one by the final one) are marked
        `conflictingSameInstant`: the lab has not settled which is right, so the rules can propose a repeat."""
        groups: dict[tuple[str, object], list[tuple[Record, KeptResource]]] = {}
        for record, kept in results:
            analyte, effective = record.get("analyte"), record.get("effective")
            if analyte is not None and effective is not None:
                groups.setdefault((analyte, effective), []).append((record, kept))
        for (analyte, effective), members in groups.items():
            if len(members) < 2:
                continue  # alone at its instant: nothing to disagree with
            ordered = sorted(members, key=lambda member: counting_order_key(member[0]))
            used = ordered[0][0]
            runner_up = next((record for record, _ in ordered[1:] if not _same_result(used, record)), None)
            if runner_up is None:
                continue
            top = max(_supersession_rank(record) for record, _ in members)
            unsettled = [record for record, _ in members if _supersession_rank(record) == top]
            if any(not _same_result(unsettled[0], record) for record in unsettled[1:]):
                for record in unsettled:
                    record.fields["conflictingSameInstant"] = True
            listed: list[str | EntryPlace] = []
            for number, (record, kept) in enumerate(members):
                listed += [" and " if number else "", kept.place, f" ({_result_text(record)})"]
            self.issues.append(InputIssue.at(
                members[0][1].place, "warning", "conflict",
                f"{analyte}: conflicting results at the same time: the {_why_used(used, runner_up)} "
                f"({_result_text(used)}) is used; ", *listed,
                f" are filed at the same instant {effective.isoformat()}"))


def _search_gap(build: RecordBuilder, gap: DataGap) -> Record:
    """A search read only in part, as the facts model's DataGap (no code: any record of the type)."""
    return build("DataGap", {"resourceType": gap.resource_type, "reason": gap.reason, "code": None,
                              "effective": None, "location": gap.location})


def _skipped_resource_gap(build: RecordBuilder, kept: KeptResource) -> Record:
    """A skipped Condition, Procedure, order or medication, with its code when it can be read."""
    element = "medicationCodeableConcept" if kept.resource_type in MEDICATION_USERS else "code"
    return skipped_result_gap(build, kept, concept(kept.resource.get(element)), None)


def _why_used(used: Record, other: Record) -> str:
    """Which tie-break of counting_order_key chose `used` over `other`, in words."""
    used_key, other_key = counting_order_key(used), counting_order_key(other)
    if used_key[:2] != other_key[:2]:
        return "later issued one"
    if used_key[2] != other_key[2]:
        return f"{used.get('status')} one (it supersedes the {other.get('status')} one)"
    if used_key[3] != other_key[3]:
        flag = used.get("interpretation")
        return "critical one" if flag in ("HH", "LL", "AA") else ("abnormal one" if flag != "N" else "flagged one")
    if used_key[4:6] != other_key[4:6]:  # the same flag: the value farther out (lower for L/LL, else higher)
        return "lower one" if used.get("interpretation") in ("L", "LL") else "higher one"
    return "first one by source"


def _supersession_rank(record: Record) -> int:
    """amended/corrected 2, final 1, preliminary 0: the library's "Supersession Rank"."""
    status = record.get("status")
    return 2 if status in ("amended", "corrected") else (1 if status == "final" else 0)


def _same_result(first: Record, second: Record) -> bool:
    one, other = first.get("value"), second.get("value")
    if first.get("comparator") != second.get("comparator"):
        return False  # '<3' and '3' are not the same result
    if isinstance(one, Quantity) and isinstance(other, Quantity):
        return one.unit == other.unit and one.value == other.value
    return one is None and other is None and first.get("valueText") == second.get("valueText")


def _result_text(record: Record) -> str:
    """'11.5 mg/dL, H': the value and the flag the rules read (no flag part when there is none)."""
    value = record.get("value")
    text = record.get("valueText")
    comparator = record.get("comparator") or ""
    shown = f"{comparator}{value.value} {value.unit}" if isinstance(value, Quantity) else (
        str(text) if text is not None else "no value")
    flag = record.get("interpretation")
    return f"{shown}, {flag}" if isinstance(flag, str) else shown


def _first_route(dosages: Any) -> Concept | None:
    if isinstance(dosages, list):
        for dosage in dosages:
            if isinstance(dosage, dict) and dosage.get("route") is not None:
                return concept(dosage["route"])
    return None


def _plain_systems(value: Concept | None) -> Concept | None:
    """The concept with each code system written without a trailing slash ('http://loinc.org/' is LOINC), so
    the rule library's "... Order" defines recognise an order however the EHR wrote its system; they are the
    one place that decides which tests are already ordered."""
    if value is None or not any(c.system and c.system.endswith("/") for c in value.codes):
        return value
    codes = tuple(replace(c, system=c.system.rstrip("/")) if c.system else c for c in value.codes)
    return replace(value, codes=codes)

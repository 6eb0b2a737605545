"""Observation -> Record: analyte, canonical value, reference range and flag.

Clinical safety decides every branch here: a value is used only when it is an
exact number in a unit the analyte's table converts; anything else is
skipped with a warning naming where it is and why (never parsed from text,
never guessed). The lab's own reference range and interpretation win over the
built-in defaults, and the record says which range was applied; a lab range
restricted to an age or sex is used only when that restriction is known to
hold for the patient. A value converted from another unit keeps the precision
it was sent with (max(3, its significant digits)). A result sent without an
effective time is dated by `issued`, and an issue says so. A flag comes only
from a bound that was given: beyond a one-sided range's missing bound the
value gets no flag (unknown), never 'N'. A Quantity whose `unit` and UCUM
`code` name different units, or a lab range whose low is above its high, is
not used.

A bounded result ('<3 pg/mL', '>2500 pg/mL') is kept: `value` is the bound in
the canonical unit and `comparator` says which side; it is flagged only when
the bound settles the flag against the applied range ('<10' against 10-65 is
L, '<=10' is not settled), else it has no flag (the rules say "result not
quantified"). An information issue says so, at the comparator. A unit row
that carries a note (bare 'mL/min' for eGFR) is used with that note, at the
unit element read. A child whose age no default band covers gets no range:
`referenceRangeSource` says "no default range for this age".

A result skipped because its value or unit cannot be read was still there: it becomes a DataGap fact (its code and date), so the rules say "could not
confirm" rather than "missing" for its test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any
from weakref import WeakKeyDictionary

from ..assessment_model import COMPARATOR_WORDS, EntryPlace, InputIssue
from ..cql_like.quantity import Quantity, is_valid_unit, round_to_cql_decimal
from ..cql_like.values import Code, Concept, Interval, Record
from ..fhir_reading.dates import PartialDate, parse_datetime, parse_partial_date
from ..fhir_reading.elements import choice_datetime, codings, concept, display_text, first_code, text_or_none
from ..terminology.ages import Age, age_on
from ..terminology import (AGE_UNKNOWN_SOURCE_LABEL, NO_DEFAULT_RANGE_FOR_AGE, PANEL, QUANTITATIVE, UCUM, AnalyteCode, DefaultRange, Terminology,
                          UnitConversionError)
from .ingest import KeptResource
from .records import RecordBuilder, shipped_record_builder

# Statuses whose results count; 'preliminary' counts but is noted.
COUNTED_STATUSES = frozenset({"final", "amended", "corrected", "preliminary"})
VALUE_ELEMENTS = ("valueQuantity", "valueCodeableConcept", "valueString", "valueBoolean", "valueInteger",
                  "valueRange", "valueRatio", "valueSampledData", "valueTime", "valueDateTime", "valuePeriod")


@dataclass
class PatientAgeContext:
    """What the ranges need to know about the patient (age, sex), and notes to report once."""

    birth: PartialDate | None
    birth_text: str | None
    gender: str | None = None  # Patient.gender as sent: lab ranges restricted to a sex need it
    unknown_age_used: bool = False
    # The default range each analyte got because the age was unknown, in the order first applied.
    unknown_age_ranges: dict[str, DefaultRange] = field(default_factory=dict)
    ambiguous_bands: set[tuple[str, str, str]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class CodeReading:
    """What an Observation.code says, whatever resource it is sent in: the analyte row it names (None
    when the rules read no result of it), the code as a Concept (system aliases read as their
    canonical URI), and (path inside the resource, text) of the information notes on its code systems."""

    analyte_code: AnalyteCode | None
    concept: Concept | None
    notes: tuple[tuple[str, str], ...]


# The readings of the codes seen, per terminology (its lifetime), each code at most once.
_CODE_READINGS: "WeakKeyDictionary[Terminology, dict[tuple, CodeReading]]" = WeakKeyDictionary()
_REMEMBERED_CODES = 4096
_CODING_ELEMENTS_READ = ("system", "code", "display", "version")


def _code_key(codeable: Any) -> tuple | None:
    """The parts of a CodeableConcept a reading depends on (its text; each coding's system, code, display
    and version), when each is a plain string or absent and every coding is an object; None otherwise
    (the code is then read each time)."""
    if codeable.__class__ is not dict:
        return None
    text = codeable.get("text")
    items = codeable.get("coding")
    if (text is not None and text.__class__ is not str) or (items is not None and items.__class__ is not list):
        return None
    parts: list[Any] = [text]
    for item in items or ():
        if item.__class__ is not dict:
            return None
        for name in _CODING_ELEMENTS_READ:
            value = item.get(name)
            if value is not None and value.__class__ is not str:
                return None
            parts.append(value)
    return tuple(parts)


@dataclass(frozen=True)
class _Number:
    value: Decimal
    unit: str | None
    unit_location: EntryPlace
    comparator: str | None = None  # one of COMPARATOR_WORDS: the value is a bound


class ObservationNormalizer:
    """Turns one patient's Observations into Records, collecting issues."""

    def __init__(self, terminology: Terminology, age: PatientAgeContext, issues: list[InputIssue],
                 birth_date_location: EntryPlace | None = None, gaps: list[Record] | None = None,
                 build: RecordBuilder | None = None) -> None:
        self.terminology = terminology
        self.build = build or shipped_record_builder()
        self.age = age
        self.issues = issues
        self.birth_date_location = birth_date_location
        # DataGap records of results skipped because their value or unit cannot be read: a result that
        # exists but cannot be used is not an absent result (the rules say "could not confirm").
        self.gaps: list[Record] = gaps if gaps is not None else []
        self._value_unreadable = False
        # Default bands seen, by identity (the terminology holds them for its lifetime): their Intervals.
        self._band_intervals: dict[int, Interval] = {}
        # (analyte, Quantity system, code, unit) of plain strings -> `_unit_conflict`, which reads nothing else.
        self._unit_conflicts: dict[tuple[str, str | None, str | None, str | None], str | None] = {}

    # --- entry point ----------------------------------------------------------------------------
    def record(self, kept: KeptResource) -> Record | None:
        """One Observation as a Record, or None when unusable (an issue says why, for known analytes)."""
        resource = kept.read
        reading = self._code_reading(resource.get("code"))
        analyte_code = reading.analyte_code
        status = resource.get("status")
        if not isinstance(status, str) or status not in COUNTED_STATUSES:
            if analyte_code is not None:
                self._warn("business-rule", kept.at("status"),
                           f"{self._what(analyte_code)} not used: status '{status}'")
            return None
        effective, effective_element = choice_datetime(resource, "effective")
        issued = parse_datetime(resource.get("issued"))
        for path, diagnostics in reading.notes:
            self._note(kept.at(path), diagnostics)
        if analyte_code is not None:
            if effective is not None and effective_element is not None:
                self._note_partial_date(resource, kept.at(effective_element), effective_element)
            if effective is None and effective_element is not None:
                self._warn("value", kept.at(effective_element),
                           f"{self._what(analyte_code)}: date '{_shown(_raw_at(resource, effective_element))}' "
                           "is not understood")
            if effective is None and issued is None:
                self._warn("required", kept.place,
                           f"{self._what(analyte_code)} not used: no effective date and no issued date "
                           "(cannot tell whether it is current)")
                return None
        if effective is None and effective_element is None and issued is not None:
            # The report time is later than the sample, never earlier: using it cannot make a result look
            # older than it is, and the clinician is told which date was used.
            effective = issued
            what = self._what(analyte_code) if analyte_code is not None else "result"
            self._note(kept.place, f"{what}: dated by Observation.issued: no effective time was sent")
        self._warn_about_components(kept)
        if status == "preliminary" and analyte_code is not None:
            self._note(kept.at("status"), f"{self._what(analyte_code)}: preliminary result used")
        fields: dict[str, Any] = {
            "id": text_or_none(resource.get("id")),
            "code": reading.concept,
            "status": status,
            "category": self._category(resource),
            "analyte": analyte_code.analyte if analyte_code is not None else None,
            "value": None,
            "valueText": None,
            "effective": effective,
            "issued": issued,
            "interpretation": None,
            "interpretationSource": None,
            "referenceRange": None,
            "referenceRangeSource": None,
            "comparator": None,
            # Set by the normalizer once every result is read (normalize._check_same_instant_results).
            "conflictingSameInstant": False,
        }
        if analyte_code is None:
            self._fill_unconverted_value(resource, fields)
        else:
            analyte = self.terminology.analyte(analyte_code.analyte)
            if analyte.kind == QUANTITATIVE:
                self._value_unreadable = False
                if not self._fill_quantitative(kept, analyte_code, fields):
                    if self._value_unreadable:
                        self.gaps.append(skipped_result_gap(self.build, kept, fields["code"], fields["effective"]))
                    return None
            elif not self._fill_qualitative(kept, analyte_code, analyte.kind, fields):
                return None
        self._fill_lab_interpretation(resource, fields)
        if fields["comparator"] is not None and analyte_code is not None:
            self._note_bound(kept, analyte_code, fields)
        return self.build("Observation", fields, kept.source)

    def skipped_gap(self, kept: KeptResource) -> Record | None:
        """The DataGap of an Observation skipped before it was read (it fails R4 validation): a result of
        a known test, with its code and date; one with no coding at all, as a result of an unknown test.
        A result whose codes are all unknown here is no gap: the rules would never read it."""
        resource = kept.resource
        analyte_code = self._analyte_code(resource)
        if analyte_code is None and codings(resource.get("code")):
            return None
        code = self._observation_concept(resource.get("code")) if analyte_code is not None else None
        effective, _ = choice_datetime(resource, "effective")
        return skipped_result_gap(self.build, kept, code, effective or parse_datetime(resource.get("issued")))

    # --- code ---------------------------------------------------------------------------------------
    def _observation_concept(self, codeable: Any) -> Concept | None:
        """Observation.code as a Concept, codings sent with a system alias (the LOINC OID) under the
        canonical URI, so the rules' retrieves (which match system + code) find them."""
        found = concept(codeable)
        if found is None:
            return None
        system_alias = self.terminology.system_alias
        if all(system_alias(code.system) is None for code in found.codes):
            return found
        codes = tuple(Code(code.code, alias[0], code.display, code.version)
                      if (alias := self.terminology.system_alias(code.system)) is not None else code
                      for code in found.codes)
        return Concept(codes, found.display)

    def _code_reading(self, codeable: Any) -> CodeReading:
        """`read_code(codeable)`, remembered per terminology for codes of the plain shape (`_code_key`):
        a bundle repeats a few test codes over and over, and what a code says depends on nothing else."""
        key = _code_key(codeable)
        if key is None:
            return self.read_code(codeable)
        remembered = _CODE_READINGS.get(self.terminology)
        if remembered is None:
            remembered = _CODE_READINGS.setdefault(self.terminology, {})
        found = remembered.get(key)
        if found is None:
            found = self.read_code(codeable)
            if len(remembered) < _REMEMBERED_CODES:  # bounded: made-up codes cannot grow it without end
                remembered[key] = found
        return found

    def read_code(self, codeable: Any) -> CodeReading:
        """What an Observation.code says: its analyte row, its Concept, and the notes on its code systems."""
        analyte_code = self._analyte_of(codeable)
        return CodeReading(analyte_code, self._observation_concept(codeable),
                           tuple(self._code_system_notes(codeable, analyte_code)))

    def _code_system_notes(self, codeable: Any, analyte_code: AnalyteCode | None) -> list[tuple[str, str]]:
        """(path, text) of the notes that say when a result was matched through a system alias, and when
        its code cannot be read at all (no coding of a known system): such a result is silently
        irrelevant otherwise."""
        items = codeable.get("coding") if isinstance(codeable, dict) else None
        items = items if isinstance(items, list) else []
        notes: list[tuple[str, str]] = []
        if analyte_code is not None:
            for position, item in enumerate(items):
                if not isinstance(item, dict):
                    continue
                alias = self.terminology.system_alias(item.get("system"))
                if alias is not None and self.terminology.analyte_for(item.get("system"), item.get("code")):
                    notes.append((f"code.coding[{position}]",
                                  f"{self._what(analyte_code)}: {alias[1]} identified by its OID; "
                                  f"R4 expects {alias[0]}"))
            return notes
        if not any(isinstance(item, dict) and self.terminology.is_recognised_system(item.get("system"))
                   for item in items):
            notes.append(("code", "code not recognised: not used by the rules"))
        return notes

    def _note_partial_date(self, resource: dict[str, Any], where: EntryPlace, element: str) -> None:
        """A month- or year-precision date is ordered as the first day of its period; the clinician is
        told, because the day shown in a rationale was then not measured."""
        raw = _raw_at(resource, element)
        partial = parse_partial_date(raw)
        if partial is None or partial.is_exact:
            return
        self._note(where, f"date '{raw}' has {partial.precision} precision: treated as "
                          f"{partial.earliest.isoformat()} for ordering")

    # --- analyte and value ----------------------------------------------------------------------
    def _analyte_code(self, resource: dict[str, Any]) -> AnalyteCode | None:
        return self._analyte_of(resource.get("code"))

    def _analyte_of(self, codeable: Any) -> AnalyteCode | None:
        for item in codings(codeable):
            found = self.terminology.analyte_for(item.get("system"), item.get("code"))
            if found is not None:
                return found
        return None

    def _fill_quantitative(self, kept: KeptResource, analyte_code: AnalyteCode, fields: dict[str, Any]) -> bool:
        resource = kept.read
        what = self._what(analyte_code)
        if "valueQuantity" not in resource:
            present = next((name for name in VALUE_ELEMENTS if name in resource), None)
            if present is not None:
                shown = _shown(resource[present]) if present == "valueString" else None
                detail = f" '{shown}'" if shown is not None else ""
                self._unusable("value", kept.at(present),
                               f"{what} not used: {present}{detail} is not a Quantity (a number with a unit is needed)")
            else:
                reason = display_text(resource.get("dataAbsentReason"))
                because = f" (dataAbsentReason: {reason})" if reason else ""
                self._warn("required", kept.place, f"{what} not used: no value{because}")
            return False
        number = self._exact_number(resource["valueQuantity"], kept.at("valueQuantity"), what, analyte_code.analyte)
        if number is None:
            return False
        try:
            # A bound is judged on `exact`, unrounded: rounding '<10.004' to '<10.0' would settle a flag the
            # bound does not.
            canonical, exact, factor = self.terminology.measurement(analyte_code.analyte, number.value, number.unit)
        except UnitConversionError as error:
            self._unusable("code-invalid", number.unit_location, f"{what} not used: {error}")
            return False
        unit = self.terminology.analyte(analyte_code.analyte).canonical_unit
        assert unit is not None
        if factor.note:
            self._note(number.unit_location, f"{what}: unit '{_shown(number.unit)}' {factor.note}")
        fields["value"] = Quantity(_cql_decimal(canonical), unit)
        fields["comparator"] = number.comparator
        self._fill_range(kept, analyte_code, fields, exact)
        return True

    def _fill_qualitative(self, kept: KeptResource, analyte_code: AnalyteCode, kind: str,
                          fields: dict[str, Any]) -> bool:
        """Any value counts: text as valueText, quantities passed through in their own unit."""
        resource = kept.read
        self._fill_unconverted_value(resource, fields)
        if fields["value"] is not None or fields["valueText"] is not None:
            return True
        if kind == PANEL and any(isinstance(resource.get(part), list) and resource[part]
                                 for part in ("hasMember", "component")):
            return True  # a panel is reported by its member results or its components
        if kind == PANEL and any(name in resource for name in VALUE_ELEMENTS):
            return True
        self._warn("required", kept.place, f"{self._what(analyte_code)} not used: no value")
        return False

    def _fill_unconverted_value(self, resource: dict[str, Any], fields: dict[str, Any]) -> None:
        quantity = resource.get("valueQuantity")
        if isinstance(quantity, dict):
            fields["value"], fields["valueText"] = _passthrough_quantity(quantity)
            return
        if "valueCodeableConcept" in resource:
            fields["valueText"] = display_text(resource["valueCodeableConcept"]) or first_code(
                resource["valueCodeableConcept"])
        elif isinstance(resource.get("valueString"), str):
            fields["valueText"] = text_or_none(resource["valueString"])
        elif isinstance(resource.get("valueBoolean"), bool):
            fields["valueText"] = "true" if resource["valueBoolean"] else "false"
        elif isinstance(resource.get("valueInteger"), int) and not isinstance(resource.get("valueInteger"), bool):
            fields["valueText"] = str(resource["valueInteger"])
        elif isinstance(resource.get("valueRatio"), dict):
            fields["valueText"] = _ratio_text(resource["valueRatio"])

    def _exact_number(self, quantity: Any, where: EntryPlace, what: str, analyte_key: str) -> _Number | None:
        if not isinstance(quantity, dict):
            self._unusable("structure", where, f"{what} not used: valueQuantity is not an object")
            return None
        raw = quantity.get("value")
        comparator = quantity.get("comparator")
        if raw is None:
            self._warn("required", where.at("value"), f"{what} not used: the Quantity has no value")
            return None
        value = _json_decimal(raw)
        if value is None:
            self._unusable("value", where.at("value"), f"{what} not used: value {_shown(raw)} is not a JSON number within the "
                           "range the rules compute with (magnitude below 10^28)")
            return None
        if comparator is not None and (not isinstance(comparator, str) or comparator not in COMPARATOR_WORDS):
            self._unusable("value", where.at("comparator"),
                           f"{what} not used: comparator '{_shown(comparator)}' is not one of "
                           f"{', '.join(COMPARATOR_WORDS)}: what '{_shown(comparator)}{value}' means cannot be told")
            return None
        system, code, unit_text = quantity.get("system"), quantity.get("code"), quantity.get("unit")
        key = (analyte_key, system, code, unit_text)
        if all(part is None or part.__class__ is str for part in key):  # what the verdict depends on
            conflict = self._unit_conflicts.get(key, self)
            if conflict is self:
                conflict = self._unit_conflicts[key] = self._unit_conflict(analyte_key, quantity)
        else:
            conflict = self._unit_conflict(analyte_key, quantity)
        if conflict is not None:
            self._unusable("value", where, f"{what} not used: {conflict}")
            return None
        if system == UCUM and isinstance(code, str) and code.strip():
            return _Number(value, code.strip(), where.at("code"), comparator)
        if isinstance(unit_text, str) and unit_text.strip():
            return _Number(value, unit_text.strip(), where.at("unit"), comparator)
        if isinstance(code, str) and code.strip() and system is None:
            return _Number(value, code.strip(), where.at("code"), comparator)
        return _Number(value, None, where.at("unit"), comparator)

    def _unit_conflict(self, analyte_key: str, quantity: dict[str, Any]) -> str | None:
        """Why a Quantity's `unit` and UCUM `code` contradict each other, or None.

        They contradict when both name a unit this service reads (after alias normalisation) and the
        two are not the same unit for the analyte: which of them the sender meant cannot be told.
        """
        system, code, unit_text = quantity.get("system"), quantity.get("code"), quantity.get("unit")
        if system != UCUM or not isinstance(code, str) or not isinstance(unit_text, str):
            return None
        from_code, from_text = self._known_unit(code), self._known_unit(unit_text)
        if from_code is None or from_text is None or from_code == from_text:
            return None
        analyte = self.terminology.analyte(analyte_key)
        by_code = self.terminology.unit_factor(analyte, from_code) if analyte.is_quantitative else None
        by_text = self.terminology.unit_factor(analyte, from_text) if analyte.is_quantitative else None
        if by_code is not None and by_text is not None and by_code.factor == by_text.factor:
            return None
        return (f"unit '{_shown(unit_text)}' and UCUM code '{_shown(code)}' name different units "
                "(which one was meant cannot be told)")

    def _known_unit(self, spelling: str) -> str | None:
        """The UCUM unit a spelling names (through the aliases, else as valid UCUM), or None."""
        text = spelling.strip()
        if not text:
            return None
        aliased = self.terminology.ucum_unit(text)
        if aliased is not None:
            return aliased
        return text if is_valid_unit(text) else None

    # --- ranges and flags -----------------------------------------------------------------------
    def _fill_range(self, kept: KeptResource, analyte_code: AnalyteCode, fields: dict[str, Any],
                    exact: Decimal) -> None:
        when = fields["effective"] or fields["issued"]
        lab_range = self._lab_range(kept, analyte_code, when)
        band: DefaultRange | None = None
        if lab_range is not None:
            fields["referenceRange"], fields["referenceRangeSource"] = lab_range, "lab"
        else:
            band = self._default_band(kept, analyte_code, when)
            if band is not None:
                fields["referenceRange"] = self._band_interval(band)
                fields["referenceRangeSource"] = band.source_label
            elif self.terminology.default_ranges(analyte_code.analyte):
                # Bands exist, none covers this (known) age: no range is borrowed from another age.
                fields["referenceRangeSource"] = NO_DEFAULT_RANGE_FOR_AGE
        value, interval = fields["value"], fields["referenceRange"]
        if interval is not None and fields["comparator"] is not None:
            flag = _bounded_flag(fields["comparator"], exact, interval)
            if flag is not None:
                fields["interpretation"], fields["interpretationSource"] = flag, "range"
        elif interval is not None:
            flag = _flag(value.value, interval)
            if flag == "N" and band is not None and band.spans_every_age_band:
                flag = None  # inside the span of every age band: normal for some ages, not for others
            if flag is not None:
                fields["interpretation"], fields["interpretationSource"] = flag, "range"

    def _band_interval(self, band: DefaultRange) -> Interval:
        """A default band as an Interval of canonical Quantities, built once per band and normalizer
        (both are immutable, so the records of one patient may share it)."""
        interval = self._band_intervals.get(id(band))
        if interval is None:
            unit = band.unit
            interval = self._band_intervals[id(band)] = Interval(
                Quantity(band.low, unit) if band.low is not None else None,
                Quantity(band.high, unit) if band.high is not None else None)
        return interval

    def _note_bound(self, kept: KeptResource, analyte_code: AnalyteCode, fields: dict[str, Any]) -> None:
        """Say, at the comparator, that a bound was kept, how it reads and whether it settles the flag."""
        quantity = kept.read["valueQuantity"]
        comparator, bound = fields["comparator"], fields["value"]
        sent_unit = quantity.get("code") if quantity.get("system") == UCUM else None
        sent_unit = sent_unit if isinstance(sent_unit, str) and sent_unit.strip() else quantity.get("unit")
        sent = f"{comparator}{_json_decimal(quantity.get('value'))}" + (
            f" {_shown(sent_unit.strip())}" if isinstance(sent_unit, str) and sent_unit.strip() else "")
        kept_as = f"{COMPARATOR_WORDS[comparator]} {bound_text(bound)}"
        flag, source = fields["interpretation"], fields["interpretationSource"]
        interval, range_source = fields["referenceRange"], fields["referenceRangeSource"]
        against = ""
        if interval is not None:
            against = (f"every age band of the default range ({_interval_text(interval)})"
                       if range_source == AGE_UNKNOWN_SOURCE_LABEL
                       else f"the {range_source} range {_interval_text(interval)}")
        if flag is not None and source == "lab":
            verdict = f"flagged {flag} by the lab"
        elif flag is not None:
            verdict = f"flagged {flag} against {against}"
        elif interval is not None:
            verdict = f"not flagged: the bound does not settle it against {against} (result not quantified)"
        else:
            verdict = "not flagged: no reference range applies (result not quantified)"
        self._note(kept.at("valueQuantity.comparator"),
                   f"{self._what(analyte_code)}: '{sent}' is a bound, not a measured value: kept as '{kept_as}', "
                   f"{verdict}; never used in a product or ratio")

    def _lab_range(self, kept: KeptResource, analyte_code: AnalyteCode, when: datetime | None) -> Interval | None:
        """The first of the lab's normal ranges that applies to this patient (age, sex), in the canonical unit.

        A range restricted to an age or sex that cannot be checked (unknown birthDate or gender, an
        appliesTo this service cannot read) is not used: a range meant for someone else would give
        a wrong flag, and the default band is the documented fallback.
        """
        ranges = kept.read.get("referenceRange")
        if not isinstance(ranges, list):
            return None
        offered = False
        for position, item in enumerate(ranges):
            if not isinstance(item, dict) or not _is_normal_range(item):
                continue
            if item.get("low") is None and item.get("high") is None:
                continue  # text-only range: nothing to compare with
            offered = True
            if not self._range_applies(item, when):
                continue
            where = kept.at(f"referenceRange[{position}]")
            bounds: list[Quantity | None] = []
            for bound in ("low", "high"):
                quantity = item.get(bound)
                if quantity is None:
                    bounds.append(None)
                    continue
                converted = self._range_bound(quantity, where.at(bound), analyte_code)
                if converted is None:
                    return None
                bounds.append(converted)
            low, high = bounds
            if low is not None and high is not None and low.value > high.value:
                self._warn("value", where,
                           f"{self._what(analyte_code)}: lab reference range not used: low {low.value} {low.unit} "
                           f"is above high {high.value} {high.unit}; default range used instead")
                return None
            return Interval(low, high)
        if offered:
            self._note(kept.at("referenceRange"),
                       f"{self._what(analyte_code)}: the lab's reference ranges do not apply to this patient "
                       "(restricted to another age or sex, or to one that is not known); default range used instead")
        return None

    def _range_applies(self, item: dict[str, Any], when: datetime | None) -> bool:
        """True when every restriction of a referenceRange (age, appliesTo) is known to hold for the patient."""
        age_range = item.get("age")
        if age_range is not None and not self._age_inside(age_range, when):
            return False
        applies_to = item.get("appliesTo")
        if applies_to is None:
            return True
        if not isinstance(applies_to, list):
            return False
        for codeable in applies_to:  # several appliesTo: all must hold
            sex = self.terminology.sex_of_range_concept(codeable)
            if sex is None or sex != self.age.gender:
                return False
        return True

    def _age_inside(self, age_range: Any, when: datetime | None) -> bool:
        """True when the patient's age at the sample is surely inside `age_range` (both ends inclusive)."""
        if not isinstance(age_range, dict) or self.age.birth is None or when is None:
            return False
        bounds = [(age_range.get(name), name) for name in ("low", "high")]
        if all(quantity is None for quantity, _ in bounds):
            return False
        ages = [age_on(self.age.birth.earliest, when.date()), age_on(self.age.birth.latest, when.date())]
        for age in ages:  # the oldest and the youngest the birthDate allows: both must be inside
            if age is None:
                return False
            for quantity, name in bounds:
                if quantity is None:
                    continue
                completed = self._completed_age(age, quantity)
                if completed is None:
                    return False
                limit = _json_decimal(quantity.get("value"))
                assert limit is not None  # checked by _completed_age
                if (name == "low" and completed < limit) or (name == "high" and completed > limit):
                    return False
        return True

    def _completed_age(self, age: Age, quantity: Any) -> int | None:
        """The age in the unit of `quantity` (completed years, months, weeks or days); None if not comparable."""
        if not isinstance(quantity, dict):
            return None
        limit = _json_decimal(quantity.get("value"))
        if limit is None or limit != limit.to_integral_value() or quantity.get("comparator") is not None:
            return None  # fractional ages would need a finer age than completed units
        code = quantity.get("code") if quantity.get("system") in (UCUM, None) else None
        unit = self.terminology.age_unit(code if isinstance(code, str) else quantity.get("unit"))
        if unit == "years":
            return age.years
        if unit == "months":
            return age.months
        if unit == "weeks":
            return age.days // 7
        if unit == "days":
            return age.days
        return None

    def _range_bound(self, quantity: Any, where: EntryPlace, analyte_code: AnalyteCode) -> Quantity | None:
        what = self._what(analyte_code)
        value = _json_decimal(quantity.get("value")) if isinstance(quantity, dict) else None
        if value is None:
            self._note(where, f"{what}: lab reference range bound has no usable value; default range used instead")
            return None
        conflict = self._unit_conflict(analyte_code.analyte, quantity)
        if conflict is not None:
            self._warn("value", where, f"{what}: lab reference range not used: {conflict}; default range used instead")
            return None
        system, code, unit_text = quantity.get("system"), quantity.get("code"), quantity.get("unit")
        unit = code if system == UCUM and isinstance(code, str) and code.strip() else unit_text
        try:
            canonical = self.terminology.convert_measurement(analyte_code.analyte, value,
                                                             unit if isinstance(unit, str) else None)
        except UnitConversionError as error:
            self._note(where, f"{what}: lab reference range not used ({error}); default range used instead")
            return None
        canonical_unit = self.terminology.analyte(analyte_code.analyte).canonical_unit
        assert canonical_unit is not None
        return Quantity(_cql_decimal(canonical), canonical_unit)

    def _default_band(self, kept: KeptResource, analyte_code: AnalyteCode,
                      when: datetime | None) -> DefaultRange | None:
        analyte = analyte_code.analyte
        birth = self.age.birth
        on: date | None = when.date() if when is not None else None
        if birth is None or on is None:
            band = self.terminology.default_range(analyte, None)
            if band is not None and birth is None:
                self.age.unknown_age_used = True
                self.age.unknown_age_ranges.setdefault(analyte, band)
            return band
        oldest = age_on(birth.earliest, on)
        youngest = oldest if birth.latest == birth.earliest else age_on(birth.latest, on)
        if oldest is None:
            band = self.terminology.default_range(analyte, None)
            applied = ("flagged only outside every age band of the default range"
                       if band is not None and band.spans_every_age_band else "adult default range applied")
            self._warn("value", observation_date_location(kept),
                       f"{self._what(analyte_code)}: taken before the patient's birthDate; {applied}")
            return band
        band = self.terminology.default_range(analyte, oldest)
        other = (band if youngest is oldest else  # a birthDate of day precision: one age
                 self.terminology.default_range(analyte, youngest) if youngest is not None else None)
        if other is not None and band is not None and other is not band and other != band:
            key = (analyte, band.label, other.label)
            if key not in self.age.ambiguous_bands:
                self.age.ambiguous_bands.add(key)
                self._warn("value", self.birth_date_location or observation_date_location(kept),
                           f"age band ambiguous for {self.terminology.analyte(analyte).label}: birthDate "
                           f"'{self.age.birth_text}' allows '{other.label}' or '{band.label}'; "
                           f"the '{band.label}' range (the older age) is applied")
        return band

    def _fill_lab_interpretation(self, resource: dict[str, Any], fields: dict[str, Any]) -> None:
        interpretations = resource.get("interpretation")
        if not isinstance(interpretations, list):
            return
        for codeable in interpretations:
            for item in codings(codeable):
                found = self.terminology.interpretation_code(text_or_none(item.get("system")), item.get("code"))
                if found is not None:
                    fields["interpretation"], fields["interpretationSource"] = found, "lab"
                    return

    def _warn_about_components(self, kept: KeptResource) -> None:
        """A lab result sent as a component of another Observation is not read: the component has no
        status, range or identity of its own the rules could cite, so the sender is told to send it alone."""
        components = kept.read.get("component")
        if not isinstance(components, list):
            return
        for position, component in enumerate(components):
            if not isinstance(component, dict):
                continue
            found = self._analyte_code(component)
            if found is not None:
                self._warn("not-supported", kept.at(f"component[{position}]"),
                           f"{self.terminology.analyte(found.analyte).label} (LOINC {found.code}) sent as a "
                           "component of a panel is not used: send it as its own Observation")

    # --- small helpers --------------------------------------------------------------------------
    def _category(self, resource: dict[str, Any]) -> str | None:
        categories = resource.get("category")
        if isinstance(categories, list):
            for codeable in categories:
                code = first_code(codeable)
                if code is not None:
                    return code
        return None

    def _what(self, analyte_code: AnalyteCode) -> str:
        return f"{analyte_code.label} (LOINC {analyte_code.code})"

    def _warn(self, code: str, location: EntryPlace, diagnostics: str) -> None:
        self.issues.append(InputIssue.at(location, "warning", code, diagnostics))

    def _unusable(self, code: str, location: EntryPlace, diagnostics: str) -> None:
        """Warn about a result whose value or unit cannot be read, and remember it was there."""
        self._value_unreadable = True
        self._warn(code, location, diagnostics)

    def _note(self, location: EntryPlace, diagnostics: str) -> None:
        self.issues.append(InputIssue.at(location, "information", "informational", diagnostics))


def skipped_result_gap(build: RecordBuilder, kept: KeptResource, code: Concept | None,
                       effective: datetime | None) -> Record:
    """A DataGap record for a resource that was there but could not be used (see service/knowledge/model.json)."""
    return build("DataGap", {
        "resourceType": kept.resource_type, "reason": "resource-skipped", "code": code,
        "effective": effective, "location": kept.location,
    })


def observation_date_location(kept: KeptResource) -> EntryPlace:
    """Where the date a result is filed under comes from: the effective[x] element sent, else issued."""
    _, element = choice_datetime(kept.read, "effective")
    if element is not None:
        return kept.at(element)
    return kept.at("issued") if "issued" in kept.read else kept.place


def _is_normal_range(item: dict[str, Any]) -> bool:
    """A referenceRange with no type, or coded as type 'normal', is the lab's normal range."""
    kind = item.get("type")
    if kind is None:
        return True
    return any(text_or_none(coding.get("code")) == "normal" for coding in codings(kind))


def _flag(value: Decimal, interval: Interval) -> str | None:
    """'L' below the low bound, 'H' above the high bound, 'N' only between two known bounds; None
    (no flag) on the side of a missing bound: a bound nobody gave cannot make a value normal."""
    low, high = interval.low, interval.high
    if low is not None and value < low.value:
        return "L"
    if high is not None and value > high.value:
        return "H"
    if low is None or high is None:
        return None
    return "N"


def _bounded_flag(comparator: str, bound: Decimal, interval: Interval) -> str | None:
    """The flag a bound settles against `interval`, or None: '<10' (every value below 10) is L against a
    low limit of 10, '<=10' is not (10 itself is normal); '>65' is H against a high limit of 65. A bound
    never settles 'N' (nothing says how far below the bound the value lies)."""
    low, high = interval.low, interval.high
    if comparator in ("<", "<="):
        if low is not None and (bound < low.value or (comparator == "<" and bound == low.value)):
            return "L"
        return None
    if high is not None and (bound > high.value or (comparator == ">" and bound == high.value)):
        return "H"
    return None


def bound_text(quantity: Quantity) -> str:
    """'3 pg/mL', '2.83 pg/mL': a canonical value as a clinician reads it (no exponent, no trailing zeros)."""
    text = format(quantity.value.normalize(), "f")
    return f"{text} {_UNIT_TEXT.get(quantity.unit, quantity.unit)}"


# Units as a reader writes them (the library's "Unit Text" says the same).
_UNIT_TEXT = {"mL/min/{1.73_m2}": "mL/min/1.73 m2"}


def _interval_text(interval: Interval) -> str:
    """'10-65 pg/mL', '>= 20 ng/mL', '<= 5 mg/dL'."""
    low, high = interval.low, interval.high
    if low is not None and high is not None:
        return f"{format(low.value.normalize(), 'f')}-{bound_text(high)}"
    if low is not None:
        return f">= {bound_text(low)}"
    if high is not None:
        return f"<= {bound_text(high)}"
    return "no bounds"


# CQL Decimal holds magnitudes below 10^28; a lab value beyond that is a data error, not a result.
_CQL_DECIMAL_LIMIT = Decimal(10) ** 28


# Rounding to CQL's 8 decimal places in Decimal arithmetic, wide enough to be exact for every value
# below 10^28 (what `_json_decimal` admits, times any unit factor).
_EIGHT_PLACES = Decimal(1).scaleb(-8)
_ROUNDING = Context(prec=80, rounding=ROUND_HALF_UP)


def _cql_decimal(value: Decimal) -> Decimal:
    """`round_to_cql_decimal(value)` for a finite Decimal without going through Fractions (which cost
    about 30 us a result): half away from zero at 8 places, then trailing zeros dropped."""
    if not value.is_finite() or value.adjusted() > 40:
        return round_to_cql_decimal(value)
    rounded = value.quantize(_EIGHT_PLACES, context=_ROUNDING)
    if not rounded:
        return Decimal(0)
    normalized = rounded.normalize(_ROUNDING)
    return normalized.quantize(Decimal(1), context=_ROUNDING) if normalized.as_tuple().exponent > 0 else normalized


def _json_decimal(raw: Any) -> Decimal | None:
    """A JSON number as an exact Decimal within CQL's Decimal range; None for anything else
    (strings are not parsed)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        value = Decimal(raw)
    elif isinstance(raw, float):
        if not math.isfinite(raw):
            return None
        value = Decimal(repr(raw))
    elif isinstance(raw, Decimal):
        value = raw
    else:
        return None
    return value if value.is_finite() and abs(value) < _CQL_DECIMAL_LIMIT else None


def _passthrough_quantity(quantity: dict[str, Any]) -> tuple[Quantity | None, str | None]:
    """A Quantity kept in its own unit (no analyte table); a comparator makes it text ('<10 [IU]/mL')."""
    value = _json_decimal(quantity.get("value"))
    if value is None:
        return None, None
    system, code, unit_text = quantity.get("system"), quantity.get("code"), quantity.get("unit")
    unit = code if system == UCUM and isinstance(code, str) and code.strip() else None
    comparator = quantity.get("comparator")
    if isinstance(comparator, str):
        shown_unit = unit or (unit_text if isinstance(unit_text, str) else "")
        return None, f"{comparator}{value} {shown_unit}".strip()
    if unit is None and isinstance(unit_text, str) and is_valid_unit(unit_text.strip()):
        unit = unit_text.strip()
    if unit is None or not is_valid_unit(unit):
        shown_unit = unit_text if isinstance(unit_text, str) else (unit or "")
        return None, f"{value} {shown_unit}".strip()
    try:
        return Quantity(value, unit), None
    except (ValueError, TypeError, InvalidOperation):
        return None, None


def _ratio_text(ratio: dict[str, Any]) -> str | None:
    numerator, denominator = ratio.get("numerator"), ratio.get("denominator")
    top = _json_decimal(numerator.get("value")) if isinstance(numerator, dict) else None
    bottom = _json_decimal(denominator.get("value")) if isinstance(denominator, dict) else None
    if top is None or bottom is None:
        return None
    return f"{top}:{bottom}"


def _raw_at(resource: dict[str, Any], dotted: str) -> Any:
    current: Any = resource
    for part in dotted.split("."):
        current = current.get(part) if isinstance(current, dict) else None
    return current


def _shown(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

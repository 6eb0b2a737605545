"""The typed read model: the elements of each resource the rules read, checked against FHIR R4 once.

Only what the rules read is validated, and the result of a validation is the *projection*: a
resource's read elements, typed as the R4 JSON format says (a decimal is a JSON number, a
dateTime matches the spec's regular expression and names a real day, a code has no leading or
doubled whitespace ...). The normalizer reads that projection and nothing else. Elements the rules
never read are neither validated nor copied; inside an element that is read, an element name R4
does not define for its data type is an error (a misspelt `unti` would otherwise hide a unit).

Each resource type has one pydantic `TypeAdapter`, built once at import. Errors carry their path
inside the resource (`valueQuantity.value`) so ingest reports them at
`Bundle.entry[3].resource.valueQuantity.value`. R4 is checked with the R4 JSON rules for the primitives
involved, not with a full R4 model: the `fhir.resources` R4B models the test suite holds outputs to
are never imported here.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping

from pydantic import AfterValidator, ConfigDict, PlainValidator, Strict, StringConstraints, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError
from typing_extensions import Annotated, NotRequired, Required, TypedDict

from .dates import parse_partial_date

__all__ = ["READ_TYPES", "ReadError", "read_elements"]

# --- R4 primitives (http://hl7.org/fhir/R4/datatypes.html), as the JSON format carries them ----------

_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_DATE_RE = re.compile(rf"{_YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?")
_DATETIME_RE = re.compile(rf"{_YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T{_TIME}{_ZONE})?)?)?")
_INSTANT_RE = re.compile(rf"{_YEAR}-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T{_TIME}{_ZONE}")
_TIME_RE = re.compile(_TIME)
# Temporal strings up to this length have their verdicts remembered (the longest valid instant is about 40).
_REMEMBERED_LENGTH = 64


def _real_day(text: str) -> object:
    """The calendar check of a date, dateTime or instant: its date part names a day that exists. The time
    is held to the regular expression only (R4 allows a leap second, which the readers then report)."""
    return parse_partial_date(text[:10] if len(text) > 10 else text)


def _temporal(kind: str, pattern: re.Pattern[str], parses: Callable[[str], object]) -> Callable[[str], str]:
    """The check of one temporal type. Its verdicts on short strings are
    remembered: a Bundle repeats its dates, and the verdict depends on the text alone (a longer string,
    valid only with a long fraction of a second, is checked each time)."""
    def valid(value: str) -> bool:
        return pattern.fullmatch(value) is not None and parses(value) is not None

    remembered = lru_cache(maxsize=8192)(valid)

    def check(value: str) -> str:
        if not (remembered(value) if len(value) <= _REMEMBERED_LENGTH else valid(value)):
            raise PydanticCustomError("fhir_primitive", f"'{{value}}' is not a valid FHIR {kind}",
                                      {"value": value[:40]})
        return value
    return check


def _json_number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("fhir_primitive", "not a JSON number (an R4 decimal is sent as a number)")
    return value


String = Annotated[str, Strict(), StringConstraints(pattern=r"^[ \r\n\t\S]+$")]
Code = Annotated[str, Strict(), StringConstraints(pattern=r"^[^\s]+( [^\s]+)*$")]
Uri = Annotated[str, Strict(), StringConstraints(pattern=r"^\S*$")]
# R4 caps an id at 64 characters; a longer one is not refused here: ingest reports it and identifies the
# resource by its fullUrl instead (see fhir_reading.references.is_valid_id).
Id = Annotated[str, Strict(), StringConstraints(pattern=r"^[A-Za-z0-9\-.]+$")]
Date = Annotated[str, Strict(), AfterValidator(_temporal("date", _DATE_RE, _real_day))]
DateTime = Annotated[str, Strict(), AfterValidator(_temporal("dateTime", _DATETIME_RE, _real_day))]
Instant = Annotated[str, Strict(), AfterValidator(_temporal("instant", _INSTANT_RE, _real_day))]
Time = Annotated[str, Strict(), AfterValidator(_temporal("time", _TIME_RE, lambda text: text))]
Decimal = Annotated[Any, PlainValidator(_json_number)]  # a JSON number; a bool is no number
Integer = Annotated[int, Strict()]
Boolean = Annotated[bool, Strict()]
Json = Any  # an R4 element this service does not read: allowed, neither validated nor traversed
JsonObject = Annotated[dict, Strict()]


def _element(name: str, read: Mapping[str, Any], other: Iterable[str] = ("id", "extension")) -> type:
    """A data type as read: the elements read, typed; its other R4 elements allowed unvalidated; any other
    name an error. A primitive element `x` may carry its extensions in `_x`."""
    fields: dict[str, Any] = {key: NotRequired[kind] for key, kind in read.items()}
    for key in (*read, *other):
        fields.setdefault(key, NotRequired[Json])
        fields.setdefault(f"_{key}", NotRequired[Json])
    kind = TypedDict(name, fields)  # type: ignore[misc]
    kind.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    return kind


def _resource(name: str, read: Mapping[str, Any], required: Iterable[str] = ()) -> type:
    """A resource as read: only the elements read are validated and kept; the rest is not looked at."""
    needed = set(required)
    fields = {key: (Required[kind] if key in needed else NotRequired[kind]) for key, kind in read.items()}
    kind = TypedDict(name, fields)  # type: ignore[misc]
    kind.__pydantic_config__ = ConfigDict(extra="ignore")  # type: ignore[attr-defined]
    return kind


Coding = _element("Coding", {"system": Uri, "version": String, "code": Code, "display": String},
                  ("id", "extension", "userSelected"))
CodeableConcept = _element("CodeableConcept", {"coding": list[Coding], "text": String})
Quantity = _element("Quantity", {"value": Decimal, "comparator": Code, "unit": String, "system": Uri, "code": Code})
Range = _element("Range", {"low": Quantity, "high": Quantity})
Ratio = _element("Ratio", {"numerator": Quantity, "denominator": Quantity})
Period = _element("Period", {"start": DateTime, "end": DateTime})
Reference = _element("Reference", {"reference": String, "display": String}, ("id", "extension", "type", "identifier"))
ReferenceRange = _element("ObservationReferenceRange",
                          {"low": Quantity, "high": Quantity, "type": CodeableConcept,
                           "appliesTo": list[CodeableConcept], "age": Range},
                          ("id", "extension", "modifierExtension", "text"))
_OBSERVATION_VALUES = ("valueQuantity", "valueCodeableConcept", "valueString", "valueBoolean", "valueInteger",
                       "valueRange", "valueRatio", "valueSampledData", "valueTime", "valueDateTime", "valuePeriod")
Component = _element("ObservationComponent", {"code": CodeableConcept},
                     ("id", "extension", "modifierExtension", *_OBSERVATION_VALUES, "dataAbsentReason",
                      "interpretation", "referenceRange"))
Dosage = _element("Dosage", {"route": CodeableConcept},
                  ("id", "extension", "modifierExtension", "sequence", "text", "additionalInstruction",
                   "patientInstruction", "timing", "asNeededBoolean", "asNeededCodeableConcept", "site", "method",
                   "doseAndRate", "maxDosePerPeriod", "maxDosePerAdministration", "maxDosePerLifetime"))
AdministrationDosage = _element("MedicationAdministrationDosage", {"route": CodeableConcept},
                                ("id", "extension", "modifierExtension", "text", "site", "method", "dose",
                                 "rateRatio", "rateQuantity"))

# Choice elements ([x]): every R4 alternative, the read ones typed. At most one may be present.
_MEDICATION = {"medicationCodeableConcept": CodeableConcept, "medicationReference": Reference}
_CONTAINED = {"contained": list[JsonObject]}  # each checked by ingest: a contained Medication is read

_READ: dict[str, tuple[dict[str, Any], tuple[str, ...], dict[str, tuple[str, ...]]]] = {
    # type: (elements read, required elements, choice groups {group: alternatives})
    "Patient": ({"id": Id, "birthDate": Date, "gender": Code}, (), {}),
    "Observation": (
        {"id": Id, "status": Code, "code": CodeableConcept, "category": list[CodeableConcept], "subject": Reference,
         "effectiveDateTime": DateTime, "effectivePeriod": Period, "effectiveInstant": Instant,
         "effectiveTiming": Json, "issued": Instant,
         "valueQuantity": Quantity, "valueCodeableConcept": CodeableConcept, "valueString": String,
         "valueBoolean": Boolean, "valueInteger": Integer, "valueRange": Range, "valueRatio": Ratio,
         "valueSampledData": JsonObject, "valueTime": Time, "valueDateTime": DateTime, "valuePeriod": Period,
         "dataAbsentReason": CodeableConcept, "interpretation": list[CodeableConcept],
         "referenceRange": list[ReferenceRange], "component": list[Component], "hasMember": list[Reference]},
        ("status", "code"),
        {"effective[x]": ("effectiveDateTime", "effectivePeriod", "effectiveTiming", "effectiveInstant"),
         "value[x]": _OBSERVATION_VALUES}),
    "Condition": (
        {"id": Id, "code": CodeableConcept, "clinicalStatus": CodeableConcept,
         "verificationStatus": CodeableConcept, "category": list[CodeableConcept], "subject": Reference,
         "onsetDateTime": DateTime, "onsetPeriod": Period, "onsetAge": Json, "onsetRange": Json, "onsetString": Json,
         "abatementDateTime": DateTime, "abatementPeriod": Period, "abatementAge": Json, "abatementRange": Json,
         "abatementString": Json, "recordedDate": DateTime},
        ("subject",),
        {"onset[x]": ("onsetDateTime", "onsetAge", "onsetPeriod", "onsetRange", "onsetString"),
         "abatement[x]": ("abatementDateTime", "abatementAge", "abatementPeriod", "abatementRange",
                          "abatementString")}),
    "MedicationRequest": (
        {"id": Id, "status": Code, "intent": Code, **_MEDICATION, "subject": Reference, "authoredOn": DateTime,
         "dosageInstruction": list[Dosage], **_CONTAINED},
        ("status", "intent", "subject"), {"medication[x]": tuple(_MEDICATION)}),
    "MedicationAdministration": (
        {"id": Id, "status": Code, **_MEDICATION, "subject": Reference, "effectiveDateTime": DateTime,
         "effectivePeriod": Period, "dosage": AdministrationDosage, **_CONTAINED},
        ("status", "subject"),
        {"medication[x]": tuple(_MEDICATION), "effective[x]": ("effectiveDateTime", "effectivePeriod")}),
    "MedicationStatement": (
        {"id": Id, "status": Code, **_MEDICATION, "subject": Reference, "effectiveDateTime": DateTime,
         "effectivePeriod": Period, "dosage": list[Dosage], **_CONTAINED},
        ("status", "subject"),
        {"medication[x]": tuple(_MEDICATION), "effective[x]": ("effectiveDateTime", "effectivePeriod")}),
    "Procedure": (
        {"id": Id, "status": Code, "code": CodeableConcept, "subject": Reference, "performedDateTime": DateTime,
         "performedPeriod": Period, "performedString": Json, "performedAge": Json, "performedRange": Json},
        ("status", "subject"),
        {"performed[x]": ("performedDateTime", "performedPeriod", "performedString", "performedAge",
                          "performedRange")}),
    "ServiceRequest": (
        {"id": Id, "status": Code, "intent": Code, "code": CodeableConcept, "subject": Reference,
         "authoredOn": DateTime},
        ("status", "intent", "subject"), {}),
    "Medication": ({"id": Id, "code": CodeableConcept}, (), {}),
}
# The choice groups R4 requires one alternative of (1..1).
_REQUIRED_CHOICES = {
    "MedicationRequest": ("medication[x]",), "MedicationAdministration": ("medication[x]", "effective[x]"),
    "MedicationStatement": ("medication[x]",),
}

READ_TYPES = frozenset(_READ)


class ReadError:
    """One element that is not valid R4: its path inside the resource and what is wrong."""

    __slots__ = ("path", "message")

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message

    def __repr__(self) -> str:
        return f"ReadError({self.path!r}, {self.message!r})"


def _adapter(name: str) -> TypeAdapter:
    read, required, _ = _READ[name]
    return TypeAdapter(_resource(name, read, required))


_ADAPTERS: dict[str, TypeAdapter] = {name: _adapter(name) for name in _READ}


def read_elements(resource_type: str, resource: dict[str, Any]) -> tuple[dict[str, Any] | None, list[ReadError]]:
    """The read elements of `resource` (a decoded JSON object of `resource_type`, one of READ_TYPES) as
    validated, or None and what is wrong (every error pydantic finds, then the choice rules)."""
    try:
        projection: dict[str, Any] = _ADAPTERS[resource_type].validate_python(resource)
    except ValidationError as error:
        return None, [ReadError(_path(item["loc"]), _message(item)) for item in error.errors(include_url=False)]
    problems = _choice_errors(resource_type, projection)
    return (None, problems) if problems else (projection, [])


def _choice_errors(resource_type: str, projection: dict[str, Any]) -> list[ReadError]:
    _, _, groups = _READ[resource_type]
    problems = []
    for group, alternatives in groups.items():
        present = [name for name in alternatives if name in projection]
        if len(present) > 1:
            problems.append(ReadError("", f"{group}: only one of {', '.join(present)} may be present"))
        elif not present and group in _REQUIRED_CHOICES.get(resource_type, ()):
            problems.append(ReadError("", f"{group} is required (one of {', '.join(alternatives)})"))
    return problems


def _path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and part and not part.startswith("function-"):
            path += f".{part}" if path else part
    return path


_MESSAGES = {
    "missing": "required element is missing",
    "extra_forbidden": "not an element of this R4 data type",
}


def _message(item: Mapping[str, Any]) -> str:
    """The pydantic error in FHIR words where they differ (a missing element, an unknown one)."""
    return _MESSAGES.get(str(item.get("type")), str(item.get("msg", "invalid value")))

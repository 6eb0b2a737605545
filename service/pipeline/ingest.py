"""Bundle ingest: decoded JSON -> the resources the rules read, grouped by patient.

What to read is decided before anything is validated: the resource types the
rule library reads, and among Observations those whose code (or a component's
code) is one the library or the terminology reads (see `selection`).
Everything else (claims, encounters, vital signs ...) is counted in one
information issue and never modelled, so a large hospital export stays cheap;
a nested Bundle or Observations contained in a DiagnosticReport (lab results
the rules would never see) get a warning each. What is read is validated once,
and only in the elements the rules read (`fhir_reading.read_model`): the
normalizer reads that validated projection, never the JSON again. Entries are the same resource only when their fullUrls are
equal (bdl-7); an unusable fullUrl or Patient id is reported and not used.
A single bad entry never sinks the request: it becomes an `InputIssue` whose
location points into the Bundle, and the rest is still assessed. Only a
payload that is not a usable Bundle at all raises `InputError`.

What could not be read is kept apart from what is absent: a resource that fails
validation is listed on its patient (`PatientResources.skipped`), and a searchset
that holds only part of its search (a `next` link, a `total` above its matches)
gives `IngestedBundle.gaps`, so the rules never read either as "not on file".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, cast

from ..assessment_model import DataGap, EntryPlace, InputIssue, Severity, entry_location_text
from ..errors import InputError
from ..fhir_reading.elements import scan_resource
from ..fhir_reading.read_model import ReadError, read_elements
from .bundle_stream import StreamedBundle
from .issue_lists import capped
from .selection import ReadSelection, default_selection
from ..fhir_reading.references import (ReferenceIndex, Resolution, is_valid_id, is_valid_uri, preferred_reference, reference_keys,
                         relative_reference, server_base)

SUPPORTED_BUNDLE_TYPES = ("collection", "batch", "transaction", "searchset", "document")

# Resource types the rule library reads (Medication only to resolve medicationReference).
KEPT_TYPES = frozenset({
    "Patient", "Observation", "Condition", "MedicationRequest", "MedicationAdministration",
    "MedicationStatement", "Procedure", "ServiceRequest", "Medication",
})
MEDICATION_USERS = frozenset({"MedicationRequest", "MedicationAdministration", "MedicationStatement"})
# The kept types whose searches the rules read (a Patient or Medication search holds no clinical data).
CLINICAL_TYPES = ("Observation", "Condition", "MedicationRequest", "MedicationAdministration", "MedicationStatement",
                  "Procedure", "ServiceRequest")

# The types the rules do not read whose content the reader still looks at (`_note_not_read` warns about
# the Observations a DiagnosticReport contains).
LOOKED_INTO_WHEN_NOT_READ = frozenset({"DiagnosticReport"})

_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z]{0,63}$")

# Deeper JSON than this in a kept resource is refused before validation: real resources nest a
# few levels (extensions of extensions, contained resources); pathological depth would exhaust
# the validator's recursion.
MAX_RESOURCE_DEPTH = 64
# Validation errors reported per resource; the rest are summarised in one issue.
MAX_ISSUES_PER_RESOURCE = 20


@dataclass(frozen=True)
class KeptResource:
    """A validated resource the rules may read, with where it sits in the Bundle.

    `read` is what the normalizer reads: the elements the rules read, validated (see
    `fhir_reading.read_model`); a KeptResource built without it (a test's) is read as sent.
    """

    resource_type: str
    resource: dict  # the JSON as sent
    entry_index: int  # its entry in the Bundle
    reference: str | None  # "Observation/123" or the entry's "urn:uuid:..." fullUrl
    read: dict = None  # type: ignore[assignment]  # the validated projection (set from `resource` when not given)
    long_texts: tuple[str, ...] = ()  # paths of text elements cut to MAX_TEXT_LENGTH, found by the one scan

    def __post_init__(self) -> None:
        if self.read is None:
            object.__setattr__(self, "read", self.resource)

    @property
    def location(self) -> str:
        """'Bundle.entry[3].resource': how an OperationOutcome names the resource."""
        return entry_location_text(self.entry_index, "resource")

    @property
    def place(self) -> EntryPlace:
        """The resource's place in the Bundle, for issues about it and its elements."""
        return EntryPlace(self.entry_index, "resource")

    def at(self, path: str) -> EntryPlace:
        """The place of element `path` ("valueQuantity.unit") inside the resource; "" for the resource."""
        if not path:
            return self.place
        # `self.place.at(path)` in one step: results ask for a few places each, most never used in an issue
        return EntryPlace(self.entry_index, f"resource{'' if path.startswith('[') else '.'}{path}")

    @property
    def source(self) -> str:
        """How outputs cite this resource: its reference, or its location when it has neither
        id nor fullUrl (a basis must not lose an input just because it cannot be referenced)."""
        return self.reference or self.location


@dataclass(frozen=True)
class PatientResources:
    """One patient's kept resources (and the Medications they reference)."""

    patient_id: str
    patient_reference: str
    patient: dict | None  # the Patient JSON; None when the patient is only referenced
    resources: tuple[KeptResource, ...]
    issues: tuple[InputIssue, ...] = ()
    patient_entry: int | None = None  # the Patient's entry when it is in the bundle
    # Resources of this patient skipped because they fail R4 validation: data not read, not absent.
    skipped: tuple[KeptResource, ...] = ()
    patient_read: dict | None = None  # the Patient's validated read elements (`patient` as sent when not given)

    def __post_init__(self) -> None:
        if self.patient_read is None and self.patient is not None:
            object.__setattr__(self, "patient_read", self.patient)

    @property
    def patient_location(self) -> str | None:
        """'Bundle.entry[0].resource' when the Patient is in the bundle."""
        return entry_location_text(self.patient_entry, "resource") if self.patient_entry is not None else None


@dataclass(frozen=True)
class IngestedBundle:
    """A read Bundle: the resources grouped per patient, and the issues that belong to no one patient."""

    patients: tuple[PatientResources, ...]
    issues: tuple[InputIssue, ...]  # bundle-level: not tied to one patient
    bundle_type: str
    gaps: tuple[DataGap, ...] = ()  # searches this searchset holds only in part (every patient's)


def read_bundle(data: object, selection: ReadSelection | None = None) -> IngestedBundle:
    """Split a decoded FHIR Bundle into per-patient resources; raises InputError if it is no usable Bundle.

    `selection` says which Observations the rules read (the shipped library's when None). `data` may
    be a `StreamedBundle`: its entries are then decoded one at a time, and an entry the rules do not
    read is dropped once counted, so only what is kept stays in memory."""
    streamed = isinstance(data, StreamedBundle)
    bundle_type, entries = _check_bundle(data.members if streamed else data)
    reader = _BundleReader(bundle_type, selection or default_selection())
    ingested = reader.read(data.entries() if streamed else entries)
    if bundle_type != "searchset":
        return ingested
    gaps, issue = _searchset_gaps(data.members if streamed else cast(dict, data), reader.matches,
                                  reader.match_types)
    if not gaps or issue is None:
        return ingested
    return IngestedBundle(ingested.patients, ingested.issues + (issue,), bundle_type, gaps)


def not_read_stand_in(resource: dict[str, Any]) -> dict[str, Any] | None:
    """All the reader reads of `resource` when the rules never read its type: its resourceType and id.

    An entry holding the stand-in is read exactly as one holding the whole resource (counted as not
    read, indexed for the references that may name it, told apart from a repeat by its id), so a
    caller that has decoded the resource already (the screening partition) can pass this on instead.
    None when the resource must be read whole: a type the rules read, or one the reader looks into."""
    kind = resource.get("resourceType")
    if not isinstance(kind, str) or kind in KEPT_TYPES or kind in LOOKED_INTO_WHEN_NOT_READ:
        return None
    stand_in: dict[str, Any] = {"resourceType": kind}
    if "id" in resource:
        stand_in["id"] = resource["id"]
    return stand_in


def _searchset_gaps(bundle: dict[str, Any], matches: int,
                    present: set[str | None]) -> tuple[tuple[DataGap, ...], InputIssue | None]:
    """The searches a searchset holds only in part: it has a `next` link, or a `total` above its matches.

    A partial search says nothing about what its other pages hold, so the types concerned are those
    present among its matches plus the type its `self` link searches; with neither, every type the
    rules read. Each becomes a DataGap for every patient, and one warning says so. `matches` and
    `present` (their resource types) were counted as the entries were read.
    """
    links = bundle.get("link")
    where: str | None = None
    why = ""
    for position, link in enumerate(links if isinstance(links, list) else ()):
        if isinstance(link, dict) and link.get("relation") == "next":
            where, why = f"Bundle.link[{position}]", "it is only one page of its search (it has a next link)"
            break
    total = bundle.get("total")
    if where is None and isinstance(total, int) and not isinstance(total, bool) and total > matches:
        where, why = "Bundle.total", f"it holds {matches} of the {total} matches its total reports"
    if where is None:
        return (), None
    searched = _self_link_type(links)
    types = [name for name in CLINICAL_TYPES if name in present or name == searched] or list(CLINICAL_TYPES)
    issue = InputIssue(
        "warning", "incomplete",
        f"the searchset is incomplete: {why}; {', '.join(types)} resources not in it were not read, "
        "and what they may hold is not taken as absent (tests they may hold are not proposed as missing)", where)
    return tuple(DataGap(name, location=where) for name in types), issue


def _is_match(entry: dict[str, Any], resource: dict[str, Any]) -> bool:
    """A search match: search.mode 'match' (or no mode), not an OperationOutcome."""
    search = entry.get("search")
    mode = search.get("mode", "match") if isinstance(search, dict) else "match"
    return mode == "match" and resource.get("resourceType") != "OperationOutcome"


def _self_link_type(links: Any) -> str | None:
    """The resource type a searchset's `self` link searches ("…/Observation?patient=1" -> "Observation")."""
    for link in links if isinstance(links, list) else ():
        url = link.get("url") if isinstance(link, dict) else None
        if isinstance(link, dict) and link.get("relation") == "self" and isinstance(url, str):
            path = url.split("?", 1)[0].rstrip("/")
            name = path.rsplit("/", 1)[-1]
            return name if name in CLINICAL_TYPES else None
    return None


def _check_bundle(data: object) -> tuple[str, list[Any]]:
    if not isinstance(data, dict):
        raise InputError.single(
            f"the request body must be a JSON object holding a FHIR Bundle, not {_json_kind(data)}",
            location="Bundle", code="structure")
    resource_type = data.get("resourceType")
    if resource_type is None:
        raise InputError.single("resourceType is missing: a FHIR Bundle is expected",
                                location="Bundle.resourceType", code="required")
    if resource_type != "Bundle":
        shown = f"a {resource_type}" if isinstance(resource_type, str) else _json_kind(resource_type)
        raise InputError.single(f"a FHIR Bundle is expected, got {shown} (resourceType)",
                                location="Bundle.resourceType", code="invalid")
    bundle_type = data.get("type")
    if bundle_type is None:
        raise InputError.single("Bundle.type is missing; supported: " + ", ".join(SUPPORTED_BUNDLE_TYPES),
                                location="Bundle.type", code="required")
    if bundle_type not in SUPPORTED_BUNDLE_TYPES:
        shown = f"'{bundle_type}'" if isinstance(bundle_type, str) else _json_kind(bundle_type)
        raise InputError.single(
            f"Bundle.type {shown} is not supported; supported: " + ", ".join(SUPPORTED_BUNDLE_TYPES),
            location="Bundle.type", code="not-supported")
    if "entry" not in data:
        return bundle_type, []
    entries = data["entry"]
    if not isinstance(entries, list):
        raise InputError.single(f"Bundle.entry must be an array, not {_json_kind(entries)}",
                                location="Bundle.entry", code="structure")
    return bundle_type, entries


# A usable entry as read from the Bundle: (resourceType, resource, fullUrl). A plain tuple, because most
# entries are of types the rules never read: they are counted and let go without becoming an `_Entry`.
_Usable = tuple[str, dict, str | None]


@dataclass(slots=True)
class _Entry:
    """A usable entry: an object with a resource that has a resourceType."""

    index: int
    resource_type: str
    resource: dict
    full_url: str | None
    valid: bool = True  # False: a kept type that failed validation
    issues: list[InputIssue] = field(default_factory=list)
    read: dict | None = None  # the validated read elements
    long_texts: tuple[str, ...] = ()

    def issue(self, severity: Severity, code: str, path: str, *detail: str | EntryPlace,
              prefix: str | None = None) -> InputIssue:
        """An issue at `path` inside the entry ("resource.subject"; "" for the entry itself)."""
        return InputIssue.at_entry(self.index, path, severity, code, *detail, prefix=prefix)

    @property
    def location(self) -> str:
        """Where the entry's resource is, for issues about it."""
        return entry_location_text(self.index, "resource")

    @property
    def reference(self) -> str | None:
        """How other resources would refer to this entry: Type/id, else derived from its fullUrl."""
        resource_id = self.resource.get("id")
        return preferred_reference(self.resource_type, resource_id if isinstance(resource_id, str) else None,
                                   self.full_url)


@dataclass
class _PatientGroup:
    patient_id: str
    patient_reference: str
    patient_entry: _Entry | None
    members: dict[int, _Entry] = field(default_factory=dict)
    issues: list[InputIssue] = field(default_factory=list)
    skipped: list[_Entry] = field(default_factory=list)  # resources failing R4 validation


class _BundleReader:
    """One pass over the entries, then grouping; holds the state of reading one Bundle."""

    def __init__(self, bundle_type: str, selection: ReadSelection) -> None:
        self.bundle_type = bundle_type
        self.selection = selection
        self.issues: list[InputIssue] = []
        self.index: ReferenceIndex[int] = ReferenceIndex()
        # (reference, server base) -> what it names; filled while grouping, once the index is complete.
        self.resolved: dict[tuple[str, str | None], Resolution[int]] = {}
        self.full_urls: dict[str, int] = {}  # fullUrl -> entry: equal fullUrls are the same resource (bdl-7)
        self.unnamed: dict[str, int] = {}  # Type/id of entries without fullUrl -> entry
        self.not_read: dict[str, int] = {}  # resource type -> entries the rules do not read
        self.type_names: dict[str, str] = {}  # resourceType as sent -> the name it is counted under
        # Every usable entry's resourceType, for the references that name it; only the entries read are
        # held whole (`entries`): one not read is counted and let go, never built into an `_Entry`.
        self.types: dict[int, str] = {}
        self.entries: dict[int, _Entry] = {}
        self.groups: dict[object, _PatientGroup] = {}
        # Entries that are not FHIR at all (not an object, no resourceType): the Bundle is malformed.
        self.malformed: list[InputIssue] = []
        # A searchset's matches (search.mode match or none, not an OperationOutcome) and their types.
        self.matches = 0
        self.match_types: set[str | None] = set()

    def read(self, raw_entries: Iterable[Any]) -> IngestedBundle:
        """One pass over the entries (index, validate kept types), then grouping per patient.

        An entry the rules do not read keeps only its type and place (references may name it): its
        JSON is let go as soon as it is counted."""
        kept: list[_Entry] = []
        searchset = self.bundle_type == "searchset"
        for position, raw in enumerate(raw_entries):
            if searchset:
                self._count_match(raw)
            usable = self._entry(position, raw)
            if usable is None:
                continue
            resource_type, resource, full_url = usable
            self.types[position] = resource_type
            if self._is_read(resource_type, resource):
                entry = self.entries[position] = _Entry(position, resource_type, resource, full_url)
                self._validate(entry)
                kept.append(entry)
            else:
                self._note_not_read(position, resource_type, resource)
        if self.malformed:
            # Guessing what a typeless resource was could assess the wrong data: refuse the Bundle,
            # naming every malformed entry at once so the sender can fix them in one go.
            raise InputError(capped(self.malformed), status=422)
        self._group(kept)
        patients = tuple(self._patient_resources(group) for group in self.groups.values())
        issues = capped(self.issues)
        if self.not_read:  # after the cap, so a flood of other issues never hides it
            issues += (self._not_read_summary(),)
        return IngestedBundle(patients, issues, self.bundle_type)

    # --- entries --------------------------------------------------------------------------------
    def _count_match(self, raw: Any) -> None:
        resource = raw.get("resource") if isinstance(raw, dict) else None
        if isinstance(resource, dict) and _is_match(raw, resource):
            self.matches += 1
            kind = resource.get("resourceType")
            self.match_types.add(kind if isinstance(kind, str) else None)  # a malformed one is refused later

    def _entry(self, position: int, raw: Any) -> _Usable | None:
        """The entry indexed, and (resourceType, resource, fullUrl) when it is usable; None (and an issue
        when one is due) when it is not."""
        plain = self._plain_entry(position, raw)
        return plain if plain is not None else self._any_entry(position, raw)

    def _plain_entry(self, position: int, raw: Any) -> _Usable | None:
        """`_any_entry` for the entry nearly every Bundle is made of, or None for any other: an object
        whose resource has a type and an id (a plain string or none), whose fullUrl is a `urn:uuid:` or
        `urn:oid:` uri, used by no earlier entry. Its keys are its fullUrl and its `Type/id`."""
        if raw.__class__ is not dict:
            return None
        resource = raw.get("resource")
        full_url = raw.get("fullUrl")
        if resource.__class__ is not dict or full_url.__class__ is not str or not full_url.startswith("urn:"):
            return None
        resource_type = resource.get("resourceType")
        resource_id = resource.get("id")
        if (resource_type.__class__ is not str or not resource_type or not full_url.isprintable() or " " in full_url
                or (resource_id is not None and resource_id.__class__ is not str) or full_url in self.full_urls):
            return None
        self.full_urls[full_url] = position
        keys = [full_url]
        if is_valid_id(resource_id):
            named = f"{resource_type}/{resource_id}"
            if named != full_url:
                keys.append(named)
        self.index.add(position, keys)
        return resource_type, resource, full_url

    def _any_entry(self, position: int, raw: Any) -> _Usable | None:
        if not isinstance(raw, dict):
            self.malformed.append(InputIssue.at_entry(position, "", "error", "structure",
                                                      f"entry is {_json_kind(raw)}, not an object", prefix=""))
            return None
        resource = raw.get("resource")
        if resource is None:
            request = raw.get("request")
            method = request.get("method") if isinstance(request, dict) else None
            if isinstance(method, str):
                self.issues.append(InputIssue.at_entry(
                    position, "", "information", "informational",
                    f"no resource ({method} request entry); nothing to assess", prefix=""))
            else:
                self.issues.append(InputIssue.at_entry(position, "resource", "warning", "required",
                                                       "entry has no resource; skipped", prefix=""))
            return None
        if not isinstance(resource, dict):
            self.malformed.append(InputIssue.at_entry(
                position, "resource", "error", "structure", f"resource is {_json_kind(resource)}, not an object",
                prefix="resource"))
            return None
        resource_type = resource.get("resourceType")
        if not isinstance(resource_type, str) or not resource_type:
            problem = ("has no resourceType" if resource_type is None else
                       f"has a resourceType that is {_json_kind(resource_type)}, not a name"
                       if not isinstance(resource_type, str) else "has a resourceType that is not a name")
            self.malformed.append(InputIssue.at_entry(position, "resource.resourceType", "error", "required",
                                                      f"resource {problem}", prefix="resource"))
            return None
        full_url = self._full_url(raw, position)
        resource_id = resource.get("id")
        keys = reference_keys(resource_type, resource_id if isinstance(resource_id, str) else None, full_url)
        first = self._same_resource(resource_type, resource_id, full_url)
        if first is not None:
            if resource_type in KEPT_TYPES:
                same = f"fullUrl '{_clip(full_url)}'" if full_url else f"'{resource_type}/{_clip(str(resource_id))}'"
                self.issues.append(InputIssue.at_entry(
                    position, "fullUrl" if full_url else "resource.id", "warning", "duplicate",
                    f"{same} is already used by ", EntryPlace(first), "; this entry is skipped", prefix=""))
                return None
            return resource_type, resource, full_url  # an unread type: not indexed, counted as not read
        if full_url:
            self.full_urls[full_url] = position
        elif is_valid_id(resource_id):
            self.unnamed[f"{resource_type}/{resource_id}"] = position
        self.index.add(position, keys)
        return resource_type, resource, full_url

    def _full_url(self, raw: dict, position: int) -> str | None:
        """The entry's fullUrl if it is a usable R4 uri; otherwise None and a warning."""
        full_url = raw.get("fullUrl")
        if full_url is None:
            return None
        if not isinstance(full_url, str):
            self.issues.append(InputIssue.at_entry(position, "fullUrl", "warning", "structure",
                                                   "not a string; ignored", prefix="fullUrl"))
            return None
        if not is_valid_uri(full_url):
            problem = "is empty" if not full_url else "contains whitespace or control characters"
            self.issues.append(InputIssue.at_entry(
                position, "fullUrl", "warning", "value", f"{problem}, so it is not a valid uri; ignored",
                prefix="fullUrl"))
            return None
        return full_url

    def _same_resource(self, resource_type: str, resource_id: Any, full_url: str | None) -> int | None:
        """The earlier entry holding the same resource: equal fullUrls, or (without fullUrls) equal Type/id."""
        if full_url:
            return self.full_urls.get(full_url)
        if not is_valid_id(resource_id):
            return None
        return self.unnamed.get(f"{resource_type}/{resource_id}")

    def _note_not_read(self, position: int, resource_type: str, resource: dict[str, Any]) -> None:
        """Count a resource the rules do not read; warn when it may hold lab results that are then lost."""
        name = self.type_names.get(resource_type)
        if name is None:
            name = resource_type if _TYPE_NAME.match(resource_type) else "(not a resource type name)"
            self.type_names[resource_type] = name
        self.not_read[name] = self.not_read.get(name, 0) + 1
        if resource_type == "Bundle":
            self.issues.append(InputIssue.at_entry(
                position, "resource", "warning", "not-supported",
                "a Bundle nested in an entry is not assessed: send its entries in the outer Bundle",
                prefix="resource"))
        elif resource_type == "DiagnosticReport":
            contained = resource.get("contained")
            count = sum(1 for item in contained if isinstance(item, dict)
                        and item.get("resourceType") == "Observation") if isinstance(contained, list) else 0
            if count:
                self.issues.append(InputIssue.at_entry(
                    position, "resource.contained", "warning", "not-supported",
                    f"{count} Observation(s) contained in a DiagnosticReport are not assessed: "
                    "send each as its own entry", prefix="resource"))

    def _not_read_summary(self) -> InputIssue:
        counts = sorted(self.not_read.items(), key=lambda item: (-item[1], item[0]))
        listed = ", ".join(f"{name} {count}" for name, count in counts)
        return InputIssue("information", "informational", f"not assessed (not read by the rules): {listed}",
                          "Bundle.entry")

    def _is_read(self, resource_type: str, resource: dict[str, Any]) -> bool:
        """A type the rules read; an Observation only when its code is one they read (see `selection`)."""
        if resource_type not in KEPT_TYPES:
            return False
        return resource_type != "Observation" or self.selection.reads_observation(resource)

    def _validate(self, entry: _Entry) -> None:
        """One scan of the JSON as sent (depth, long texts), then the read elements validated once."""
        too_deep, entry.long_texts = _scan(entry.resource)
        if too_deep:
            entry.valid = False
            entry.issues.append(entry.issue(
                "error", "structure", "resource",
                f"nested more than {MAX_RESOURCE_DEPTH} levels deep; the resource is not assessed", prefix="resource"))
            return
        projection, errors = read_elements(entry.resource_type, entry.resource)
        if projection is not None and "contained" in projection:
            projection["contained"] = _read_contained(projection["contained"], errors)
        if errors:
            entry.valid = False
            entry.issues.extend(_validation_issues(entry, errors))
            return
        entry.read = projection

    # --- grouping -------------------------------------------------------------------------------
    def _group(self, kept: list[_Entry]) -> None:
        without_subject: list[_Entry] = []
        medication_users: list[tuple[_Entry, _PatientGroup]] = []
        for entry in kept:
            if entry.resource_type == "Patient":
                group = self._group_for_patient_entry(entry)
                if not entry.valid:
                    group.issues.extend(entry.issues)
                continue
            if entry.resource_type == "Medication":
                continue
            if not entry.valid:
                continue  # attributed after grouping, so invalid resources create no patient
            outcome = self._subject_group(entry, create=True)
            if outcome is None:
                without_subject.append(entry)
            elif isinstance(outcome, _PatientGroup):
                outcome.members[entry.index] = entry
                if entry.resource_type in MEDICATION_USERS:
                    medication_users.append((entry, outcome))
            else:
                self.issues.append(outcome)
        self._place_without_subject(without_subject)
        for entry, group in medication_users:
            self._link_medication(entry, group)
        for entry in kept:
            if not entry.valid and entry.resource_type != "Patient":
                outcome = self._subject_group(entry, create=False)
                target = outcome.issues if isinstance(outcome, _PatientGroup) else self.issues
                target.extend(entry.issues)
                owner = outcome if isinstance(outcome, _PatientGroup) else None
                if owner is None and entry.resource.get("subject") is None and len(self.groups) == 1:
                    owner = next(iter(self.groups.values()))  # no subject: the only patient's, as when valid
                if owner is not None and entry.resource_type in CLINICAL_TYPES:
                    owner.skipped.append(entry)

    def _group_for_patient_entry(self, entry: _Entry) -> _PatientGroup:
        group = self.groups.get(entry.index)
        if group is not None:
            if entry.valid:
                group.patient_entry = entry
            return group
        resource_id = entry.resource.get("id")
        id_issues: list[InputIssue] = []
        if is_valid_id(resource_id):
            patient_id = resource_id
        else:
            if resource_id is not None:
                id_issues.append(entry.issue(
                    "warning", "value", "resource.id",
                    f"'{_clip(str(resource_id), 80)}' is not a valid FHIR id; "
                    "the patient is identified by the entry's fullUrl instead", prefix="resource.id"))
            tail = relative_reference(entry.full_url) if entry.full_url else None
            if entry.full_url and entry.full_url.startswith("urn:uuid:") and is_valid_id(entry.full_url[9:]):
                patient_id = entry.full_url[len("urn:uuid:"):]
            elif tail is not None and tail[0] == "Patient":
                patient_id = tail[1]
            else:
                patient_id = f"entry-{entry.index}"
        group = _PatientGroup(patient_id, self._reference(entry) or entry.location, entry if entry.valid else None,
                              issues=id_issues)
        self.groups[entry.index] = group
        return group

    def _subject_group(self, entry: _Entry, *, create: bool) -> _PatientGroup | InputIssue | None:
        """The group of the patient `entry` is about; None if it names none; an issue if it cannot be used."""
        subject = (entry.read or entry.resource).get("subject")
        if subject is None:
            return None
        reference = subject.get("reference") if isinstance(subject, dict) else None
        if not isinstance(reference, str) or not reference:
            return None if isinstance(subject, dict) else entry.issue(
                "warning", "structure", "resource.subject", "not a Reference; the resource is not assessed",
                prefix="resource.subject")
        found = self._lookup(reference, entry.full_url)
        if found.ambiguous:
            return entry.issue("warning", "multiple-matches", "resource.subject.reference",
                               *_ambiguous(reference, found), "; the resource is not assessed",
                               prefix="resource.subject")
        target = found.target
        if target is not None:
            target_type = self.types.get(target)
            if target_type is None:
                return None
            if target_type != "Patient":
                return entry.issue(
                    "warning", "not-supported", "resource.subject.reference",
                    f"refers to a {target_type}, not a Patient; the resource is not assessed",
                    prefix="resource.subject")
            if target not in self.groups and not create:
                return None
            return self._group_for_patient_entry(self.entries[target])  # a Patient is always read
        named = relative_reference(reference)
        if named is not None and named[0] == "Patient":
            key = f"Patient/{named[1]}"
            group = self.groups.get(key)
            if group is None and create:
                group = self.groups[key] = _PatientGroup(named[1], key, None)
            return group
        if named is not None:
            return entry.issue("warning", "not-supported", "resource.subject.reference",
                               f"refers to a {named[0]}, not a Patient; the resource is not assessed",
                               prefix="resource.subject")
        return entry.issue(
            "warning", "not-found", "resource.subject.reference",
            f"reference '{_clip(reference)}' cannot be resolved in the bundle; the resource is not assessed",
            prefix="resource.subject")

    def _lookup(self, reference: str, full_url: str | None) -> Resolution[int]:
        """`self.index.lookup(reference, server_base(full_url))`, each (reference, base) resolved once: the
        index is complete once the entries are read, and a bundle's resources name a few patients over
        and over."""
        base = server_base(full_url)
        key = (reference, base)
        found = self.resolved.get(key)
        if found is None:
            found = self.resolved[key] = self.index.lookup(reference, base)
        return found

    def _place_without_subject(self, entries: list[_Entry]) -> None:
        """Resources with no subject belong to the bundle's only patient; with several, to none."""
        if not entries:
            return
        if len(self.groups) == 1:
            group = next(iter(self.groups.values()))
            for entry in entries:
                group.members[entry.index] = entry
                if entry.resource_type in MEDICATION_USERS:
                    self._link_medication(entry, group)
            return
        reason = ("the bundle has no Patient" if not self.groups
                  else f"the bundle has {len(self.groups)} patients")
        for entry in entries:
            self.issues.append(entry.issue(
                "warning", "required", "resource.subject",
                f"has no subject and {reason}; it cannot be tied to a patient and is not assessed",
                prefix="resource"))

    def _link_medication(self, entry: _Entry, group: _PatientGroup) -> None:
        medication = (entry.read or {}).get("medicationReference")
        if not isinstance(medication, dict):
            return
        reference = medication.get("reference")
        where = "resource.medicationReference.reference"
        if not isinstance(reference, str) or not reference or reference.startswith("#"):
            return  # display-only or contained: read from the resource itself
        found = self._lookup(reference, entry.full_url)
        if found.ambiguous:
            group.issues.append(entry.issue(
                "warning", "multiple-matches", where,
                *_ambiguous(reference, found), "; the medication's code is unknown", prefix=where))
            return
        target = found.target
        target_entry = self.entries.get(target) if target is not None else None
        if target_entry is None or target_entry.resource_type != "Medication":
            group.issues.append(entry.issue(
                "warning", "not-found", where,
                f"Medication '{_clip(reference)}' is not in the bundle; the medication's code is unknown",
                prefix=where))
            return
        if not target_entry.valid:
            group.issues.extend(target_entry.issues)
            return
        group.members[target_entry.index] = target_entry

    def _reference(self, entry: _Entry) -> str | None:
        """How outputs cite the entry: its `Type/id`, or its fullUrl when other entries share that `Type/id`."""
        reference = entry.reference
        if reference is not None and entry.full_url and self.index.is_ambiguous(reference):
            return entry.full_url
        return reference

    def _patient_resources(self, group: _PatientGroup) -> PatientResources:
        members = [group.members[index] for index in sorted(group.members)]
        kept = tuple(KeptResource(m.resource_type, m.resource, m.index, self._reference(m), m.read, m.long_texts)
                     for m in members)
        patient_entry = group.patient_entry
        patient = patient_entry.resource if patient_entry is not None else None
        issues = capped(tuple(dict.fromkeys(group.issues)))  # a Medication shared by several orders: once
        skipped = tuple(KeptResource(m.resource_type, m.resource, m.index, self._reference(m), {}, ())
                        for m in group.skipped)
        return PatientResources(group.patient_id, group.patient_reference, patient, kept, issues,
                                patient_entry.index if patient_entry is not None else None, skipped,
                                patient_entry.read if patient_entry is not None else None)


# --- helpers ---------------------------------------------------------------------------------------

def _scan(resource: dict[str, Any]) -> tuple[bool, tuple[str, ...]]:
    too_deep, long_texts = scan_resource(resource, MAX_RESOURCE_DEPTH)
    return too_deep, tuple(long_texts)


def _read_contained(contained: list[dict[str, Any]], errors: list[ReadError]) -> list[dict[str, Any]]:
    """The contained resources the rules read (Medications, for a `#id` medicationReference), validated;
    a contained resource whose resourceType is no name is an error like any invalid element."""
    read: list[dict[str, Any]] = []
    for position, item in enumerate(contained):
        where = f"contained[{position}]"
        kind = item.get("resourceType")
        if not isinstance(kind, str) or not kind:
            errors.append(ReadError(f"{where}.resourceType", f"the resourceType is {_json_kind(kind)}, not a name"))
            continue
        if kind != "Medication":
            continue
        projection, problems = read_elements("Medication", item)
        errors.extend(ReadError(f"{where}.{problem.path}" if problem.path else where, problem.message)
                      for problem in problems)
        if projection is not None:
            read.append(dict(projection, resourceType="Medication"))
    return read


def _validation_issues(entry: _Entry, errors: list[ReadError]) -> list[InputIssue]:
    issues = []
    for error in errors[:MAX_ISSUES_PER_RESOURCE]:
        path = f"resource.{error.path}" if error.path else "resource"
        issues.append(entry.issue(
            "error", "invalid", path,
            f"{_clip(error.message, 200)} (not a valid R4 {entry.resource_type}; the resource is not assessed)",
            prefix=path))
    if len(errors) > MAX_ISSUES_PER_RESOURCE:
        issues.append(entry.issue(
            "error", "invalid", "resource",
            f"{len(errors) - MAX_ISSUES_PER_RESOURCE} more validation errors not listed", prefix="resource"))
    return issues


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _ambiguous(reference: str, found: Resolution[int]) -> tuple[str | EntryPlace, ...]:
    """'reference ... is ambiguous: Bundle.entry[1] and Bundle.entry[2] are ...', the entries as mentions."""
    parts: list[str | EntryPlace] = [f"reference '{_clip(reference)}' is ambiguous: "]
    for number, position in enumerate(sorted(found.candidates)):
        if number:
            parts.append(" and ")
        parts.append(EntryPlace(position))
    parts.append(" are different resources (different fullUrls) that it could name")
    return tuple(parts)


def _clip(text: str, limit: int = 120) -> str:
    """`text` shortened to `limit`, control characters escaped (diagnostics must stay valid FHIR strings)."""
    shown = "".join(char if char.isprintable() else f"\\u{ord(char):04x}" for char in text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."

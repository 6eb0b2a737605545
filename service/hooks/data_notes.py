"""The "Data notes" of a card: what was skipped or doubtful in the data, located in the caller's request.

The core reports issues against the collection Bundle it was handed ("Bundle.entry[3].resource...");
the EHR integrator only knows the request it sent, so each location is translated back through
the entry map `prefetch.gather_bundle` builds ("prefetch.labs.entry[0].resource...",
"context.draftOrders.entry[2].resource..."). The list is bounded so a noisy record cannot bury
the card.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping, Sequence

from ..assessment_model import InputIssue
from .cards import CARD_DATA

# (entry location, resource location) in the caller's request, one per collection Bundle entry.
EntryLocations = Sequence[tuple[str, str]]

_BUNDLE_ENTRY = re.compile(r"Bundle\.entry\[(\d+)\](\.resource)?")
_AGE_UNKNOWN = "age unknown"


def caller_location(location: str | None, entry_locations: EntryLocations) -> str | None:
    """`location` with its "Bundle.entry[i]" prefix replaced by where entry i came from; unchanged otherwise."""
    if not location:
        return location
    match = _BUNDLE_ENTRY.match(location)
    if match is None:
        return location
    index = int(match.group(1))
    if index >= len(entry_locations):
        return location
    entry_location, resource_location = entry_locations[index]
    prefix = resource_location if match.group(2) else entry_location
    return prefix + location[match.end():]


def _issue_line(issue: InputIssue, entry_locations: EntryLocations) -> str:
    where = caller_location(issue.location, entry_locations)
    text = issue.diagnostics
    # Some diagnostics start with their own Bundle location; it is given once, translated, at the end.
    prefix = _BUNDLE_ENTRY.match(text)
    if prefix is not None:
        head, _, rest = text.partition(": ")
        if rest and " " not in head:
            text = rest
    return f"{text} ({where})" if where else text


def data_note_lines(gathering_notes: Iterable[str], run_issues: Iterable[InputIssue],
                    patient_issues: Iterable[InputIssue], entry_locations: EntryLocations, *,
                    patient_provided: bool, wording: Mapping[str, object] = CARD_DATA["data_notes"]) -> tuple[str, ...]:
    """Gathering notes, then the run's and the patient's input issues; at most `limit` lines, then "N more".

    Without a Patient resource the core's "age unknown" remark becomes the plain statement that
    adult default reference ranges were applied.
    """
    lines = list(gathering_notes)
    for issue in (*run_issues, *patient_issues):
        if not patient_provided and issue.diagnostics.startswith(_AGE_UNKNOWN):
            line = str(wording["demographics_missing"])
        else:
            line = _issue_line(issue, entry_locations)
        if line not in lines:
            lines.append(line)
    limit = int(wording["limit"])  # type: ignore[arg-type]
    if len(lines) <= limit:
        return tuple(lines)
    return tuple(lines[:limit]) + (str(wording["more"]).format(count=len(lines) - limit),)

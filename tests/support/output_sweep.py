"""What no output of the service may say, checked on every output the tests produce.

Two things: no output names a seed article, a team file or a repository path (a reader cannot open
them); and where a search was read only in part (a DataGap among the facts), no text claims that
what it would have found is absent ("not on file", "no usable ... result").
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Iterator

# The team's own files and notes ...
TEAM_FILES = [
    re.compile(r"\bseeds?\b", re.IGNORECASE),
    re.compile(r"codes\.md", re.IGNORECASE),
    re.compile(r"KNOWLEDGE"),
    re.compile(r"knowledge\.md", re.IGNORECASE),
    re.compile(r"clinical notes", re.IGNORECASE),
    re.compile(r"\.\./shared|(?<![\w.])shared/(seeds|clinical)"),
]
# ... nor, in a clinical output, a path or file of this repository.
REPOSITORY_PATHS = [
    re.compile(r"(?<![\w/.-])(service|tests|fhir_fixtures|bench)/[\w.-]+"),
    re.compile(r"\b[\w-]+\.(cql|py|md)\b"),
]
# Claims of absence that data read only in part cannot support: "not on file" whatever was not read;
# "no usable ... result" when the laboratory search was partial; "no ... coded" when the condition
# search was.
ABSENCE_CLAIMS = re.compile(r"\b(?:not|no|none)\b[^.;:]*\bon file\b|\bno usable\b", re.IGNORECASE)
NOT_ON_FILE = re.compile(r"\b(?:not|no|none)\b[^.;:]*\bon file\b", re.IGNORECASE)
NO_USABLE_RESULT = re.compile(r"\bno usable\b", re.IGNORECASE)
NONE_CODED = re.compile(r"\bno\b[^.;:]*\bcoded\b", re.IGNORECASE)

# The input records an output carries (a result, an order): the caller's data, not output text.
_RECORD_KEYS = frozenset({"result", "order"})


def forbidden_in(text: str, patterns: list[re.Pattern[str]] = TEAM_FILES + REPOSITORY_PATHS) -> list[str]:
    """Every forbidden phrase found in `text`, with a little context."""
    found = []
    for pattern in patterns:
        for match in pattern.finditer(text):
            found.append(text[max(0, match.start() - 40): match.end() + 40])
    return found


def texts_in(value: Any) -> Iterator[str]:
    """Every string of an output define's value (Tuples, lists), leaving the input records out."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in _RECORD_KEYS:
                yield from texts_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from texts_in(item)
    elif hasattr(value, "items") and callable(value.items) and not hasattr(value, "type_name"):
        yield from texts_in(dict(value.items()))


def _gap_searches(records: Iterable[Any]) -> set[str]:
    """The resource types whose search was read only in part ('Observation' for a partial lab search only)."""
    found = set()
    for record in records:
        if getattr(record, "type_name", None) != "DataGap":
            continue
        kind = record.get("resourceType")
        if kind != "Observation" or record.get("reason") == "search-incomplete":
            found.add(kind)
    return found


def has_data_gap(records: Iterable[Any]) -> bool:
    return any(getattr(record, "type_name", None) == "DataGap" for record in records)


def absence_claims(records: Iterable[Any], texts: Iterable[str]) -> list[str]:
    """Texts that call absent what a search read only in part could have found."""
    records = list(records)
    if not has_data_gap(records):
        return []
    searches = _gap_searches(records)
    patterns = [NOT_ON_FILE]
    if "Observation" in searches:
        patterns.append(NO_USABLE_RESULT)
    if "Condition" in searches:
        patterns.append(NONE_CODED)
    return [text for text in texts if any(pattern.search(text) for pattern in patterns)]


def assert_clean_outputs(records: Iterable[Any], outputs: dict[str, Any], defines: Iterable[str]) -> None:
    """Fail when an output names a team file or repository path, or, with data not read, claims an absence."""
    texts = [text for name in defines if name in outputs for text in texts_in(outputs[name])]
    leaks = [leak for text in texts for leak in forbidden_in(text)]
    assert leaks == [], leaks
    claims = absence_claims(records, texts)
    assert claims == [], claims

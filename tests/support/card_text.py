"""What a clinician reads on a card, and the limits it must keep.

A card is read in a few seconds: the summary carries the message, the detail is short, and the
locations of data notes (for the EHR's developers) stay out of the text, in the card's extension.
`limit_violations` checks one card against those limits and returns every violation, so a sweep
can show all of them at once.
"""

from __future__ import annotations

import re
from typing import Any

SUMMARY_LIMIT = 140  # CDS Hooks 2.0: "<140 characters"
DETAIL_WORD_LIMIT = 120
DATA_NOTE_LINE_LIMIT = 3
DATA_NOTES_HEADING = "**Data notes**"
DATA_NOTES_EXTENSION = "calcinosis-cds.org/data-notes"

# Locations and identifiers that mean something to an integrator, never to a clinician.
MACHINE_LOCATIONS = ("Bundle.entry[", "prefetch.", "urn:uuid:", "context.draftOrders")
# A LOINC long name: its property in brackets ("[Mass/volume]", "[Presence]", "[Enzymatic
# activity/volume]") or its system axis written out.
LOINC_LONG_NAME = re.compile(r"\[(?:[A-Z][a-z]+(?: [a-z]+)?)(?:/[a-z]+)?\]|\bin Serum or Plasma\b|\bby Automated count\b")

_TABLE_DELIMITER = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_WORD = re.compile(r"\w")


def rendered_text(markdown: str) -> str:
    """The text a Markdown renderer shows: no emphasis marks, bullets, heading marks, table rules or
    link targets; a table's cells are kept (they are read)."""
    lines = []
    for line in markdown.splitlines():
        if _TABLE_DELIMITER.match(line):
            continue
        line = _LINK.sub(r"\1", line)
        line = re.sub(r"^\s*(?:[-*+]|\d+\.)\s+", "", line)
        line = re.sub(r"^\s*#{1,6}\s+", "", line)
        line = line.replace("|", " ").replace("**", "").replace("__", "")
        line = re.sub(r"(?<!\w)_|_(?!\w)", "", line)
        lines.append(line)
    return "\n".join(lines)


def rendered_words(markdown: str) -> list[str]:
    """The words of the rendered text (a token with at least one letter or digit)."""
    return [token for token in rendered_text(markdown).split() if _WORD.search(token)]


def data_note_lines(detail: str) -> list[str]:
    """The bullet lines under the detail's "Data notes" heading."""
    if DATA_NOTES_HEADING not in detail:
        return []
    section = detail.split(DATA_NOTES_HEADING, 1)[1].lstrip("\n")
    lines = []
    for line in section.splitlines():
        if not line.strip():
            break
        if line.lstrip().startswith("- "):
            lines.append(line.strip()[2:])
    return lines


def card_texts(card: dict[str, Any]) -> list[str]:
    """Every text of a card a person reads: summary, detail, source and link labels, suggestion labels
    and action descriptions (the proposed resources themselves are for the EHR and keep their codings)."""
    texts = [card.get("summary", ""), card.get("detail", ""), (card.get("source") or {}).get("label", "")]
    texts += [link.get("label", "") for link in card.get("links", [])]
    for suggestion in card.get("suggestions", []):
        texts.append(suggestion.get("label", ""))
        texts += [action.get("description", "") for action in suggestion.get("actions", [])]
    texts += [reason.get("display", "") for reason in card.get("overrideReasons", [])]
    return [text for text in texts if text]


def limit_violations(card: dict[str, Any]) -> list[str]:
    """Every way `card` breaks the limits of a card read in five seconds."""
    problems = []
    summary = card.get("summary", "")
    if len(summary) >= SUMMARY_LIMIT:
        problems.append(f"summary has {len(summary)} characters: {summary!r}")
    detail = card.get("detail", "")
    words = len(rendered_words(detail))
    if words > DETAIL_WORD_LIMIT:
        problems.append(f"detail has {words} words (limit {DETAIL_WORD_LIMIT}):\n{detail}")
    for text in card_texts(card):
        for location in MACHINE_LOCATIONS:
            if location in text:
                problems.append(f"{location!r} in card text: {text!r}")
        for match in LOINC_LONG_NAME.finditer(text):
            problems.append(f"LOINC long name {match.group(0)!r} in card text: {text!r}")
    notes = data_note_lines(detail)
    if len(notes) > DATA_NOTE_LINE_LIMIT:
        problems.append(f"{len(notes)} data-note lines (limit {DATA_NOTE_LINE_LIMIT}): {notes}")
    if notes and len((card.get("extension") or {}).get(DATA_NOTES_EXTENSION, [])) == 0:
        problems.append("data notes shown without the located list in the card's extension")
    return problems

"""The publications the rule library cites, read from `knowledge/bibliography.json`.

The library names a publication by its key, with the section and the exact sentence quoted;
this module turns that into the reference a clinician reads ("Le C, Bedocs PM. Calcinosis Cutis.
StatPearls, 2019.") and a FHIR RelatedArtifact, so each publication is written once, in data.
It holds no clinical logic and imports neither Flask nor the rule engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from .assessment_model import Citation
from .errors import ConfigError

SHIPPED_BIBLIOGRAPHY = Path(__file__).resolve().parent / "knowledge" / "bibliography.json"
RELATED_ARTIFACT_EXTENSION = "http://hl7.org/fhir/StructureDefinition/cqf-relatedArtifact"


@dataclass(frozen=True, slots=True)
class Publication:
    """One bibliography entry: what a reader needs to find the publication."""

    key: str
    label: str
    reference: str
    url: str | None = None


def reference_text(entry: Mapping[str, Any]) -> str:
    """The publication as a clinician cites it, from whichever fields the entry has.

    Journal articles: "Inker LA, Eneanya ND, Coresh J, et al. Title. N Engl J Med 2021;385(19):1737-1749."
    Others: "Le C, Bedocs PM. Calcinosis Cutis. StatPearls, 2019." A title alone (no author, site or
    date given) is quoted and named by its kind: '"Title". Consumer health article.'
    """
    authors = [str(a) for a in entry.get("authors") or () if str(a).strip()]
    title = str(entry.get("title") or entry.get("key") or "").strip().rstrip(".")
    year = entry.get("year")
    parts: list[str] = []
    if authors:
        parts.append(", ".join(authors).rstrip(".") + ".")
    date = f" {year}" if year is not None else ""
    where = entry.get("container") or entry.get("site")
    if entry.get("journal"):
        issue = f"({entry['issue']})" if entry.get("issue") else ""
        pages = f":{entry['pages']}" if entry.get("pages") else ""
        volume = f";{entry['volume']}{issue}" if entry.get("volume") else ""
        parts += [f"{title}.", f"{entry['journal']}{date}{volume}{pages}."]
    elif where:
        parts += [f"{title}.", f"{where},{date}." if date else f"{where}."]
    elif authors:
        parts.append(f"{title}.{date}." if date else f"{title}.")
    else:
        kind = str(entry.get("kind") or "")
        parts += [f'"{title}".', kind[:1].upper() + kind[1:] + "." if kind else ""]
    return " ".join(p for p in parts if p)


class Bibliography:
    """The entries by key; unknown keys render as themselves rather than failing an assessment."""

    def __init__(self, entries: Mapping[str, Publication]) -> None:
        self._entries = dict(entries)

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> "Bibliography":
        """Build from the decoded JSON document ({"entries": [...]})."""
        entries: dict[str, Publication] = {}
        for entry in document.get("entries") or ():
            key = str(entry["key"])
            entries[key] = Publication(
                key=key,
                label=str(entry.get("label") or entry.get("title") or key),
                reference=reference_text(entry),
                url=entry.get("url"),
            )
        return cls(entries)

    def publication(self, key: str) -> Publication | None:
        """The entry for `key`, or None when the bibliography has none."""
        return self._entries.get(key)

    def citation(self, source: str, section: str, quote: str) -> Citation:
        """A resolved citation: the library's key, section and quote with the publication's reference."""
        publication = self._entries.get(source)
        if publication is None:
            return Citation(source=source, section=section, quote=quote, reference=source, label=source)
        return Citation(source=source, section=section, quote=quote, reference=publication.reference,
                        label=publication.label, url=publication.url)


def read_bibliography(path: str | Path = SHIPPED_BIBLIOGRAPHY) -> Bibliography:
    """The bibliography file at `path` (the shipped one by default), read now (an app reads its own).

    A file that is not a bibliography stops the service at start (ConfigError naming the file),
    rather than failing every assessment; a missing file is the OSError of reading it.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        return Bibliography.from_document(json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(f"configuration BIBLIOGRAPHY: {path} is not a bibliography "
                          f"(a JSON object with entries that have a key): {error!r}") from None


@lru_cache(maxsize=8)
def load_bibliography(path: str | Path = SHIPPED_BIBLIOGRAPHY) -> Bibliography:
    """`read_bibliography`, read once per path and process (for callers without an app or Assessor)."""
    return read_bibliography(path)


def related_artifact(citation: Citation) -> dict[str, Any]:
    """A FHIR R4 RelatedArtifact (type citation) for one citation."""
    artifact: dict[str, Any] = {"type": "citation", "label": citation.section, "display": citation.label,
                                "citation": citation.text}
    if citation.url:
        artifact["url"] = citation.url
    return {key: value for key, value in artifact.items() if value}


def related_artifact_extensions(citations: tuple[Citation, ...]) -> list[dict[str, Any]]:
    """The core `cqf-relatedArtifact` extensions for citations, for elements with no relatedArtifact of their own."""
    return [{"url": RELATED_ARTIFACT_EXTENSION, "valueRelatedArtifact": related_artifact(c)} for c in citations]

"""How the data files state where a code, factor or range comes from: a verification mark and a
public source a reviewer can open, never a note of the project's own.

A mark is V (verified against the named source), V2 (verified only through secondary or derived
sources) or U (unverified). The public sources below are those the codes were checked against; a
provenance text must name at least one for every code system it speaks for.
"""

from __future__ import annotations

import re

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
V3_ROUTE = "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"

# Where each code system's codes were verified, as the provenance texts name it.
PUBLIC_SOURCES: dict[str, tuple[str, ...]] = {
    LOINC: ("LOINC Top 2000", "LOINC release table", "LOINC-to-UCUM unit table", "miracum/loinc-conversion",
            "VSAC", "hl7ch/ch-lab-report", "napkon-geccoplus", "OHDSI", "Synthea", "FHIR R4 Body Height profile"),
    SNOMED: ("VSAC", "MONDO", "Disease Ontology", "VisualDx", "5MinuteConsult", "OHDSI", "Synthea",
             "FHIR R4 route-codes"),
    ICD10CM: ("CMS ICD-10-CM tabular",),
    RXNORM: ("VSAC", "independent public files"),
    V3_ROUTE: ("HL7 v3 RouteOfAdministration",),
}

# Names of notes a reader of the product cannot open.
INTERNAL_NOTES = ("seed 00", "codes.md", "knowledge.md", "../shared")

_MARK = re.compile(r"(?<![\w/.-])(V2?|U)(?=[\s:;,)(]|$)")


def marks(text: str) -> set[str]:
    """The verification marks a text states ('V', 'V2', 'U')."""
    return set(_MARK.findall(text))


def provenance_problems(text: str, systems: set[str]) -> list[str]:
    """What a provenance text lacks: a mark, a public source for each code system, or it names a note."""
    problems = []
    if not marks(text):
        problems.append("states no verification mark (V, V2 or U)")
    for system in sorted(systems):
        names = PUBLIC_SOURCES.get(system, ())
        if not any(name in text for name in names):
            problems.append(f"names no public source for {system} (one of {names})")
    lowered = text.lower()
    problems += [f"names the internal note {note!r}" for note in INTERNAL_NOTES if note in lowered]
    return problems

"""The product's data and code name the public sources they were checked against, never the team's notes.

A reviewer or a clinician can open LOINC, VSAC, the CMS ICD-10-CM tabular or a publication; they
cannot open the project's background notes, so no data file, module or document of the service
may point to them. (The rule library is checked by tests/test_citations.py; the golden outputs are
regenerated from the data and checked with the outputs.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.provenance import INTERNAL_NOTES

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SERVICE = PROJECT_ROOT / "service"


def _product_files() -> list[Path]:
    files = [path for pattern in ("*.json", "*.py", "*.md") for path in SERVICE.rglob(pattern)]
    return sorted(files) + [PROJECT_ROOT / "README.md"]


def _hits(text: str) -> list[tuple[int, str]]:
    """(line number, note) of every line naming a note the reader cannot open."""
    return [(number, note) for number, line in enumerate(text.splitlines(), start=1)
            for note in INTERNAL_NOTES if note in line.lower()]


def test_the_scan_covers_the_terminology_the_value_sets_the_code_and_the_readme():
    names = {path.relative_to(PROJECT_ROOT).as_posix() for path in _product_files()}
    assert {"README.md", "service/terminology/analytes.json", "service/terminology/reference_ranges.json",
            "service/terminology/__init__.py", "service/knowledge/valuesets/systemic-sclerosis.json",
            "service/knowledge/README.md", "service/knowledge/bibliography.json"} <= names
    assert not any(name.endswith(".cql") for name in names)


@pytest.mark.parametrize("text", [
    '"source": "codes.md B: total Ca mmol/L x 4.008"',
    '"source": "KNOWLEDGE.md (secondary sources): calcium 8.8-10.8 mg/dL"',
    "the antibodies Seed 002 names",
    "see ../shared/clinical/ for the codes",
])
def test_the_scan_finds_a_note_named_in_any_case(text: str):
    assert _hits(text)


@pytest.mark.parametrize("path", _product_files(), ids=lambda p: p.relative_to(PROJECT_ROOT).as_posix())
def test_no_product_file_names_the_projects_own_notes(path: Path):
    assert _hits(path.read_text(encoding="utf-8")) == []

"""The rule library's value sets: valid FHIR R4 ValueSets, and only codes codes.md verifies."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from fhir.resources.R4B.valueset import ValueSet

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VALUESET_DIR = PROJECT_ROOT / "service" / "knowledge" / "valuesets"
LIBRARY = PROJECT_ROOT / "service" / "knowledge" / "CalcinosisCutis.cql"
URL_BASE = "https://calcinosis-cds.org/fhir/ValueSet/"
KNOWN_SYSTEMS = {
    "http://loinc.org",
    "http://snomed.info/sct",
    "http://hl7.org/fhir/sid/icd-10-cm",
    "http://www.nlm.nih.gov/research/umls/rxnorm",
}
VALUESET_FILES = sorted(VALUESET_DIR.glob("*.json"))


def _codes_md() -> Path:
    shared = Path(os.environ.get("CALCINOSIS_SHARED_DIR", PROJECT_ROOT.parent / "shared"))
    return shared / "clinical" / "codes.md"


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_library_has_a_value_set_file_for_each_condition_and_analyte_group():
    assert len(VALUESET_FILES) >= 40


@pytest.mark.parametrize("path", VALUESET_FILES, ids=lambda p: p.stem)
def test_value_set_file_is_a_valid_r4_valueset_with_its_canonical_url(path: Path):
    data = _load(path)
    resource = ValueSet.model_validate(data)
    assert resource.url == URL_BASE + path.stem
    assert resource.status == "active"
    assert resource.name and re.fullmatch(r"[A-Z][A-Za-z0-9]*", resource.name)
    assert resource.title
    assert "codes.md" in resource.description
    contains = resource.expansion.contains
    assert contains, "an empty value set would silently match nothing"
    for entry in contains:
        assert entry.system in KNOWN_SYSTEMS
        assert entry.code and entry.display


@pytest.mark.parametrize("path", VALUESET_FILES, ids=lambda p: p.stem)
def test_value_set_has_no_duplicate_codes(path: Path):
    pairs = [(c["system"], c["code"]) for c in _load(path)["expansion"]["contains"]]
    assert len(pairs) == len(set(pairs))


def test_every_value_set_file_is_declared_in_the_library_and_every_declared_url_has_a_file():
    text = LIBRARY.read_text(encoding="utf-8")
    declared = set(re.findall(r"^valueset \"[^\"]+\": '([^']+)'", text, flags=re.MULTILINE))
    on_disk = {_load(p)["url"] for p in VALUESET_FILES}
    assert declared == on_disk


# ---- codes.md: every shipped code sits in a row whose status for it is V or V2 ---------------

_STATUS_CELL = re.compile(r"(^|[\s*:(])(V2?|U)([\s*;,(]|$|-weak)")


def _table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"^\|[-| ]+\|$", line):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _code_pattern(code: str) -> re.Pattern[str]:
    return re.compile(r"(?<![0-9A-Za-z.])" + re.escape(code) + r"(?![0-9A-Za-z]|\.[0-9])")


def _status_for(row: list[str], index: int) -> str | None:
    """The status cell that qualifies the code in cell `index`: the next one after it, else the nearest before."""
    after = [c for c in row[index + 1:] if _STATUS_CELL.search(c)]
    if after:
        return after[0]
    before = [c for c in row[:index] if _STATUS_CELL.search(c)]
    return before[-1] if before else None


def _verified(status: str) -> bool:
    return re.search(r"(^|[\s:(*])V2?([\s(;,*]|$|-weak)", status) is not None


def _shipped_codes() -> list[tuple[str, str, str]]:
    return [(p.stem, c["system"], c["code"]) for p in VALUESET_FILES for c in _load(p)["expansion"]["contains"]]


@pytest.mark.parametrize("slug,system,code", _shipped_codes(), ids=lambda v: str(v))
def test_every_shipped_code_is_marked_v_or_v2_in_codes_md(slug: str, system: str, code: str):
    codes_md = _codes_md()
    if not codes_md.exists():
        pytest.skip(f"shared background material not found at {codes_md}")
    pattern = _code_pattern(code)
    statuses = []
    for row in _table_rows(codes_md.read_text(encoding="utf-8")):
        for index, cell in enumerate(row):
            if pattern.search(cell):
                status = _status_for(row, index)
                if status is not None:
                    statuses.append(status)
    assert statuses, f"{code} ({slug}) does not appear in any codes.md table row"
    assert any(_verified(s) for s in statuses), f"{code} ({slug}) is only marked {statuses} in codes.md"


def test_the_codes_md_check_rejects_a_code_marked_unverified():
    codes_md = _codes_md()
    if not codes_md.exists():
        pytest.skip(f"shared background material not found at {codes_md}")
    rows = _table_rows(codes_md.read_text(encoding="utf-8"))
    # 68438-1: "code exists (S3); **name U**" and 41747008 (bone scan) is U: neither may pass.
    for code in ("68438-1", "41747008"):
        pattern = _code_pattern(code)
        statuses = [_status_for(row, i) for row in rows for i, cell in enumerate(row) if pattern.search(cell)]
        assert statuses and not any(s and _verified(s) for s in statuses)

"""The rule library's value sets: valid FHIR R4 ValueSets, and only codes codes.md verifies.

A value set file is a definition (`compose`: concept lists and ICD-10-CM is-a filters, see
service/cql_like/valuesets.py) or a fixed list (`expansion.contains`). Listed codes must sit in a
codes.md row marked V or V2; a filter's category or block must be one codes.md verifies.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from fhir.resources.R4B.valueset import ValueSet

from tests.support.provenance import provenance_problems

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VALUESET_DIR = PROJECT_ROOT / "service" / "knowledge" / "valuesets"
LIBRARY = PROJECT_ROOT / "service" / "knowledge" / "CalcinosisCutis.cql"
URL_BASE = "https://calcinosis-cds.org/fhir/ValueSet/"
ANALYTES = PROJECT_ROOT / "service" / "terminology" / "analytes.json"
V3_ROUTE = "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"
KNOWN_SYSTEMS = {
    "http://loinc.org",
    "http://snomed.info/sct",
    "http://hl7.org/fhir/sid/icd-10-cm",
    "http://www.nlm.nih.gov/research/umls/rxnorm",
    V3_ROUTE,
}
VALUESET_FILES = sorted(VALUESET_DIR.glob("*.json"))

# Value sets whose codes codes.md does not cover (it has no routes of administration); their
# codes were checked against the FHIR R4 specification instead, and the description says so.
CHECKED_AGAINST_FHIR_SPEC = {
    "intravenous-route": "FHIR R4 route-codes (SNOMED CT 47625008) and HL7 v3 RouteOfAdministration (IV* codes)",
    # codes.md does not list it: the rules also match the name, and the description says so.
    "body-height": "FHIR R4 Body Height profile (Observation.code fixed to LOINC 8302-2)",
}

# LOINC codes the terminology accepts that no value set of the library includes, on purpose.
NOT_READ_BY_THE_RULES = {
    "29265-6": "lab-reported albumin-corrected calcium (mmol/L): the rules compute the correction from total "
               "calcium and albumin and say so; a second, lab-computed corrected value would compete with it",
    "1649-3": "1,25-dihydroxyvitamin D3: not the 25-OH vitamin D level the seed asks for, so it must not stand in for it",
    "14566-4": "1,25-dihydroxyvitamin D3 (moles): as 1649-3",
    "62290-2": "1,25-dihydroxyvitamin D total: as 1649-3",
    "3094-0": "urea nitrogen: part of the basic metabolic panel, whose availability comes from a panel result or "
              "creatinine; urea alone does not show kidney function",
    "6299-2": "urea nitrogen in blood: as 3094-0",
    "14937-7": "urea nitrogen (moles): as 3094-0",
    "53982-5": "anti-centromere B: not among the antibodies seed 002 names (ANA, anti-dsDNA, anti-ENA: Ro, La, Sm, "
               "RNP, Scl-70, Jo-1)",
}


# Value sets whose ICD-10-CM categories codes.md has no row for; they were checked against the CMS
# ICD-10-CM tabular (April 2026), the source codes.md cites as S8, and the description says so.
CHECKED_AGAINST_CMS_TABULAR = {
    "family-history": {"Z80-Z84"},
    "personal-history": {"Z85-Z87"},
}


def _codes_md() -> Path:
    shared = Path(os.environ.get("CALCINOSIS_SHARED_DIR", PROJECT_ROOT.parent / "shared"))
    return shared / "clinical" / "codes.md"


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _listed(data: dict) -> list[dict]:
    """Every listed code of a value set file: compose include concepts and expansion.contains, as
    {system, code, display}."""
    listed = [{"system": inc["system"], "code": c["code"], "display": c.get("display")}
              for inc in (data.get("compose") or {}).get("include", []) for c in inc.get("concept", [])]
    listed += [{"system": c["system"], "code": c["code"], "display": c.get("display")}
               for c in (data.get("expansion") or {}).get("contains", [])]
    return listed


def _filters(data: dict) -> list[tuple[str, str, str]]:
    """(system, op, value) of every include and exclude filter."""
    compose = data.get("compose") or {}
    return [(entry["system"], f["op"], f["value"]) for side in ("include", "exclude")
            for entry in compose.get(side, []) for f in entry.get("filter", [])]


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
    systems = {entry["system"] for entry in _listed(data)} | {system for system, _, _ in _filters(data)}
    assert provenance_problems(resource.description, systems) == []
    if path.stem in CHECKED_AGAINST_FHIR_SPEC:
        assert "FHIR" in resource.description
    listed, filters = _listed(data), _filters(data)
    assert listed or filters, "an empty value set would silently match nothing"
    for entry in listed:
        assert entry["system"] in KNOWN_SYSTEMS
        assert entry["code"] and entry["display"]
    for system, op, _ in filters:
        assert (system, op) == ("http://hl7.org/fhir/sid/icd-10-cm", "is-a")
    if filters:
        assert "every code below" in resource.description


@pytest.mark.parametrize("description, systems", [
    ("Phosphate for Ca x P.", {"http://loinc.org"}),
    ("Phosphate for Ca x P. Every code listed is V or V2.", {"http://loinc.org"}),
    ("Phosphate for Ca x P (LOINC Top 2000 US list, Regenstrief/NLM).", {"http://loinc.org"}),
    ("Sarcoidosis. SNOMED CT 31541009 is V2 (MONDO exact); ICD-10-CM D86 is V.",
     {"http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm"}),
    ("Phosphate. codes.md A: V (LOINC Top 2000 US list, Regenstrief/NLM).", {"http://loinc.org"}),
])
def test_a_description_without_a_mark_or_a_public_source_for_each_code_system_is_refused(description, systems):
    assert provenance_problems(description, systems) != []


def test_a_description_with_a_mark_and_a_public_source_for_each_code_system_is_accepted():
    assert provenance_problems(
        "Systemic sclerosis. SNOMED CT 89155008 (V2: MONDO and Disease Ontology cross-references); ICD-10-CM M34 "
        "and every code below it (V: CMS ICD-10-CM tabular, FY2026).",
        {"http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm"}) == []


@pytest.mark.parametrize("path", VALUESET_FILES, ids=lambda p: p.stem)
def test_value_set_has_no_duplicate_codes(path: Path):
    pairs = [(c["system"], c["code"]) for c in _listed(_load(path))]
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
    """V or V2, or a code codes.md says exists in a LOINC release ("code exists (S3); name U",
    "code V (S3); name U"): an unverified name does not stop matching by code."""
    return (re.search(r"(^|[\s:(*])V2?([\s(;,*]|$|-weak)", status) is not None
            or re.search(r"\bexists? \(S\d+", status) is not None)


def _statuses_in_codes_md(text: str, code: str) -> list[str]:
    """The status cells that qualify `code` in every codes.md row that names it. When the code is
    named inside the status cell itself ("V (S1); 14804-9 (L->P method) exists (S3), name U"),
    the clause naming it is its status."""
    pattern = _code_pattern(code)
    statuses = []
    for row in _table_rows(text):
        for index, cell in enumerate(row):
            match = pattern.search(cell)
            if match is None:
                continue
            if _STATUS_CELL.search(cell) and index == len(row) - 1:
                statuses.append(cell[match.start():].split(";")[0])
                continue
            status = _status_for(row, index)
            if status is not None:
                statuses.append(status)
    return statuses


def _shipped_codes() -> list[tuple[str, str, str]]:
    return [(p.stem, c["system"], c["code"]) for p in VALUESET_FILES if p.stem not in CHECKED_AGAINST_FHIR_SPEC
            for c in _listed(_load(p))]


@pytest.mark.parametrize("slug,system,code", _shipped_codes(), ids=lambda v: str(v))
def test_every_shipped_code_is_marked_v_or_v2_in_codes_md(slug: str, system: str, code: str):
    codes_md = _codes_md()
    if not codes_md.exists():
        pytest.skip(f"shared background material not found at {codes_md}")
    statuses = _statuses_in_codes_md(codes_md.read_text(encoding="utf-8"), code)
    assert statuses, f"{code} ({slug}) does not appear in any codes.md table row"
    assert any(_verified(s) for s in statuses), f"{code} ({slug}) is only marked {statuses} in codes.md"


def test_the_codes_md_check_rejects_a_code_marked_unverified():
    codes_md = _codes_md()
    if not codes_md.exists():
        pytest.skip(f"shared background material not found at {codes_md}")
    text = codes_md.read_text(encoding="utf-8")
    # 41747008 (bone scan) and 1901 (calcium chloride RxNorm candidate) are U: neither may pass.
    for code in ("41747008", "1901"):
        statuses = _statuses_in_codes_md(text, code)
        assert statuses and not any(_verified(s) for s in statuses), (code, statuses)


def test_the_codes_md_check_accepts_a_code_that_exists_although_its_name_is_unverified():
    codes_md = _codes_md()
    if not codes_md.exists():
        pytest.skip(f"shared background material not found at {codes_md}")
    text = codes_md.read_text(encoding="utf-8")
    # "code exists (S3); **name U**", "code V (S3); name U" and a code named inside the LDH status cell.
    for code in ("68438-1", "61151-7", "14804-9"):
        statuses = _statuses_in_codes_md(text, code)
        assert statuses and any(_verified(s) for s in statuses), (code, statuses)


# ---- filters: every is-a category or block is one codes.md verifies -----------------------------

_ICD_TOKEN = re.compile(r"(?<![0-9A-Za-z.])[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]+)?")


def _icd_rows(text: str) -> list[tuple[str, str]]:
    """(ICD-10-CM cell, its status) of every codes.md row with a V or V2 status after the cell."""
    rows = []
    for row in _table_rows(text):
        for index, cell in enumerate(row):
            if _ICD_TOKEN.search(cell) and not _STATUS_CELL.search(cell):
                status = _status_for(row, index)
                if status is not None and _verified(status):
                    rows.append((cell, status))
    return rows


def _category_verified(text: str, value: str) -> bool:
    """A block (T20-T32) is verified when a V/V2 row writes it; a category when a V/V2 row names it
    (M35.1, "M05.x", "M35.0- family", "Q79.6x"), or, for a three-character category, names a verified
    code below it (M32 through M32.9: in ICD-10-CM a code's first three characters are its category)."""
    rows = _icd_rows(text)
    if "-" in value:
        first, last = value.split("-")
        return any(re.search(re.escape(first) + r"\s*[-\u2013]\s*" + re.escape(last), cell) for cell, _ in rows)
    named = re.compile(r"(?<![0-9A-Za-z.])" + re.escape(value) + r"(?:\.?x|-(?![A-Z0-9])|(?![0-9A-Za-z]|\.[0-9]))")
    if any(named.search(cell) for cell, _ in rows):
        return True
    return len(value) == 3 and any(token.startswith(value + ".") for cell, _ in rows for token in _ICD_TOKEN.findall(cell))


def _shipped_filters() -> list[tuple[str, str]]:
    return [(p.stem, value) for p in VALUESET_FILES for _, _, value in _filters(_load(p))]


@pytest.mark.parametrize("slug,value", _shipped_filters(), ids=lambda v: str(v))
def test_every_filter_category_or_block_is_verified_by_codes_md(slug: str, value: str):
    if value in CHECKED_AGAINST_CMS_TABULAR.get(slug, ()):
        assert "CMS ICD-10-CM tabular" in _load(VALUESET_DIR / f"{slug}.json")["description"]
        return
    codes_md = _codes_md()
    if not codes_md.exists():
        pytest.skip(f"shared background material not found at {codes_md}")
    assert _category_verified(codes_md.read_text(encoding="utf-8"), value), f"{value} ({slug}) is not verified in codes.md"


def test_the_filter_check_rejects_categories_codes_md_does_not_verify():
    codes_md = _codes_md()
    if not codes_md.exists():
        pytest.skip(f"shared background material not found at {codes_md}")
    text = codes_md.read_text(encoding="utf-8")
    for value in ("M3", "Z80-Z84", "E10", "D23", "T20-T33", "M35.2"):
        assert not _category_verified(text, value), value
    for value in ("T20-T32", "S00-T14", "C00-C96", "M05", "M32", "M35.0", "Q79.6", "E11", "Z94"):
        assert _category_verified(text, value), value


# ---- every LOINC code the terminology accepts is read by some value set, or listed as not read ----

def _analyte_loinc_codes() -> dict[str, str]:
    data = _load(ANALYTES)
    return {c["code"]: c["analyte"] for c in data["codes"] if c["system"] == "http://loinc.org"}


def _declared_loinc_codes() -> set[str]:
    """LOINC codes the library reads: through its value sets, or declared as a single code."""
    text = LIBRARY.read_text(encoding="utf-8")
    declared = set(re.findall(r"^valueset \"[^\"]+\": '([^']+)'", text, flags=re.MULTILINE))
    single = set(re.findall(r"^code \"[^\"]+\": '([^']+)' from \"LOINC\"", text, flags=re.MULTILINE))
    return single | {c["code"] for p in VALUESET_FILES if _load(p)["url"] in declared
                     for c in _listed(_load(p)) if c["system"] == "http://loinc.org"}


def _codes_written_in_the_library() -> set[str]:
    """Codes the library text names outside its value sets: `code` declarations, the SNOMED CT codes
    of the work-up panel and the codes compared with "Has Code"."""
    text = LIBRARY.read_text(encoding="utf-8")
    codes = set(re.findall(r"^code \"[^\"]+\": '([^']+)'", text, flags=re.MULTILINE))
    codes |= set(re.findall(r"code: '([^']+)', system: 'http://snomed.info/sct'", text))
    codes |= set(re.findall(r"\"Has Code\"\([^,]+, '[^']+', '([^']+)'\)", text))
    codes |= set(re.findall(r"\"Procedure (?:Done|Order)\"\('([^']+)'\)", text))
    return codes


def test_every_code_written_in_the_library_is_verified():
    codes_md = _codes_md()
    if not codes_md.exists():
        pytest.skip(f"shared background material not found at {codes_md}")
    text = codes_md.read_text(encoding="utf-8")
    written = _codes_written_in_the_library()
    assert {"168537006", "16310003", "77477000", "113091000", "240977001", "65754-4"} <= written
    for code in written:
        statuses = _statuses_in_codes_md(text, code)
        assert statuses and any(_verified(s) for s in statuses), (code, statuses)


def test_every_loinc_code_the_terminology_accepts_is_in_a_value_set_or_deliberately_not_read():
    unread = {code: analyte for code, analyte in _analyte_loinc_codes().items()
              if code not in _declared_loinc_codes() and code not in NOT_READ_BY_THE_RULES}
    assert unread == {}, "accepted by the terminology but read by no rule: add to a value set or to NOT_READ_BY_THE_RULES"


def test_a_code_listed_as_not_read_is_accepted_by_the_terminology_and_in_no_value_set():
    accepted = _analyte_loinc_codes()
    declared = _declared_loinc_codes()
    for code in NOT_READ_BY_THE_RULES:
        assert code in accepted, f"{code} is not in analytes.json: drop it from the list"
        assert code not in declared, f"{code} is in a value set, so it is read"


def test_separately_reported_ena_antibodies_are_in_the_ena_panel_value_set():
    ena = {c["code"] for c in _listed(_load(VALUESET_DIR / "ena-panel.json"))}
    antibodies = {code for code, analyte in _analyte_loinc_codes().items() if analyte.startswith("ena-")}
    assert {"5351-2", "17792-3", "5353-8", "11090-8", "29374-6", "27416-7", "11565-9"} <= antibodies
    assert antibodies <= ena


@pytest.mark.parametrize("slug,codes", [("albumin", {"61151-7", "61152-5"}), ("vitamin-d-25oh", {"68438-1"}),
                                        ("lactate-dehydrogenase", {"14804-9"})])
def test_codes_that_exist_in_loinc_with_unverified_names_are_matched_by_code_and_said_so(slug: str, codes: set[str]):
    data = _load(VALUESET_DIR / f"{slug}.json")
    assert codes <= {c["code"] for c in _listed(data)}
    assert "name" in data["description"] and "by code" in data["description"]


def test_the_intravenous_route_value_set_holds_the_snomed_and_v3_intravenous_codes():
    data = _load(VALUESET_DIR / "intravenous-route.json")
    pairs = {(c["system"], c["code"]) for c in _listed(data)}
    assert ("http://snomed.info/sct", "47625008") in pairs
    assert {(V3_ROUTE, code) for code in ("IV", "IVINJ", "IVINJBOL", "IVFLUSH")} <= pairs
    assert not any(code in {"26643006", "PO", "IM", "SQ"} for _, code in pairs)

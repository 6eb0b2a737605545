"""The $assess fixtures use only codes the project's code reference verifies.

The reference lives in the shared background beside the repository (it is not shipped); the check
is skipped where it is not available.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_dir

TOOLS_DIR = Path(__file__).resolve().parents[1] / "fhir_fixtures" / "assess" / "tools"
sys.path.insert(0, str(TOOLS_DIR))

from validate_fixtures import input_fixtures  # noqa: E402

FIXTURE_FILES = input_fixtures()
CODES_REFERENCE = shared_dir() / "clinical" / "codes.md"

# Codes the scenarios need although codes.md does not list them (vital signs padding,
# the intravenous route), and vocabularies codes.md does not cover.
CODES_OUTSIDE_REFERENCE = {"29463-7", "8867-4", "47625008"}
CLINICAL_SYSTEMS = {
    "http://loinc.org",
    "http://snomed.info/sct",
    "http://hl7.org/fhir/sid/icd-10-cm",
    "http://www.nlm.nih.gov/research/umls/rxnorm",
}
# LOINC (nnnn-n), SNOMED CT / RxNorm (digits) and ICD-10-CM (A00.xx) tokens of the code reference.
CODE_TOKEN = re.compile(r"\b[0-9]{1,9}-[0-9]\b|\b[0-9]{4,18}\b|\b[A-Z][0-9]{2}(?:\.[0-9A-Z]{1,4})?\b")
# Candidate codes the reference marks unverified: none may appear in a fixture.
UNVERIFIED_CODES = {
    "237881004", "6595006", "105502003", "68438-1", "41747008", "298285004", "299276009",
    "128459005", "1894", "4450", "1901", "56466", "62290-2", "61151-7", "61152-5", "14937-7", "14804-9",
}


def _codings(node: object):
    if isinstance(node, dict):
        if "system" in node and "code" in node and isinstance(node["code"], str):
            yield node["system"], node["code"]
        for value in node.values():
            yield from _codings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _codings(item)


def test_clinical_codes_come_from_the_verified_code_reference() -> None:
    if not CODES_REFERENCE.exists():
        pytest.skip(f"code reference {CODES_REFERENCE} is not available on this machine")
    listed = set(CODE_TOKEN.findall(CODES_REFERENCE.read_text(encoding="utf-8")))
    used = {
        (path.name, code)
        for path in FIXTURE_FILES
        for system, code in _codings(json.loads(path.read_text(encoding="utf-8")))
        if system in CLINICAL_SYSTEMS
    }
    assert used
    for name, code in used:
        assert code not in UNVERIFIED_CODES, (name, code)
        assert code in listed or code in CODES_OUTSIDE_REFERENCE, (name, code)

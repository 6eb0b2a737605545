"""Write the $assess fixture bundles, MANIFEST.json and README.md.

Run from the repository root:  .venv/bin/python fhir_fixtures/assess/tools/build_fixtures.py
The output is deterministic, so re-running it on an unchanged script leaves git clean.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS_DIR))

from expectations import NOW, Fixture  # noqa: E402
from scenarios import ALL_FIXTURES  # noqa: E402

FIXTURE_DIR = TOOLS_DIR.parent

README_HEAD = """# $assess fixture bundles

Input bundles for `POST /fhir/$assess`, one scenario per file, with clinical
expectations in `MANIFEST.json`. Each input's golden output sits beside it as
`<name>.expected.json`, compared strictly by the tests; the expectations here are
stated independently, from the clinical knowledge, and must hold for those outputs.

Evaluation instant for every fixture: **{now}** (pass it as `now`). Results
dated before 2025-11-15 are outside the default one-year lookback.

## MANIFEST.json

`{{"now": ..., "fixtures": [{{"file", "scenario", "exercises", "bundle_type", "patients": [...]}}]}}`.
Each patient has `reference` (`Patient/<id>`), `fullUrl` (the entry's fullUrl,
`urn:uuid:...` in transaction and document bundles) and `expect`:

| key | meaning |
|---|---|
| `leading` | code of the first `RiskAssessment.prediction`. Absent when the picture does not decide it (no or incomplete labs). |
| `risk` | type -> acceptable `qualitativeRisk` codes, alternatives separated by `\\|`. Types not listed are not asserted. |
| `recommended_includes` | LOINC codes that must be proposed (`ServiceRequest.code`). |
| `recommended_excludes` | LOINC codes that must not be proposed: a current valid result exists, or the picture does not call for that group. |
| `unconfirmed_includes` | LOINC codes that must be listed as "could not confirm" (a `CarePlan.activity.detail`, no `ServiceRequest`): a result of the test was sent but could not be read, so the test is not proposed as missing. |
| `issues_include` | each item must match at least one `OperationOutcome.issue` for the patient: one of its `\\|`-separated alternatives occurs, case-insensitively, in the issue's diagnostics, code or expression/location. |

Panel and group codes are those of the service's work-up panel. Equivalent results
count for a panel code: the SI code of the same analyte (2000-8 for 17861-6,
14879-1 for 2777-1, 14866-8 for 2731-8) and the Blood calcium code 49765-1. Whether
25-OH vitamin D3 alone (14635-7, fixtures 02 and 05) satisfies the total 25-OH D
test (62292-8) is left to the service and not asserted.

## Coding choices

- Only codes verified against a published source, with their displays. Calcinosis cutis
  is ICD-10-CM L94.2 only (no verified SNOMED CT concept). IV calcium gluconate,
  cholecalciferol, calcium carbonate and the calciphylaxis skin lesion have no verified
  code and are named in `text` only. Warfarin uses RxNorm 855288; the intravenous route
  SNOMED CT 47625008 "Intravenous route". Unrelated padding (fixture 16) uses CVX vaccine
  codes as they appear in the public Synthea samples, and text-only encounter types.
- Some results carry `referenceRange`/`interpretation`, others do not, so both lab ranges
  and the built-in (age-banded) defaults are exercised.
- Every file is valid FHIR R4 (checked with `fhir.resources.R4B`, see
  `tools/validate_fixtures.py`); the deliberately wrong parts of 14 (unknown unit) and 15
  (value as a string) are clinically unusable but structurally valid FHIR.

## Regenerating

`.venv/bin/python fhir_fixtures/assess/tools/build_fixtures.py` rewrites the bundles,
this README and the manifest; `.venv/bin/python fhir_fixtures/assess/tools/validate_fixtures.py`
validates every resource and every bundle; `.venv/bin/python -m pytest fhir_fixtures/assess/tools -q`
also checks that the files are reproducible and that each fixture really contains what its
scenario claims (SI values convert back, Ca x P on the intended side of 70, the
entered-in-error result is the latest one, dates inside or outside the lookback ...).

## Fixtures

| fixture | scenario | what it exercises | expected leading type |
|---|---|---|---|
"""


def _leading_cell(fixture: Fixture) -> str:
    cells = []
    for p in fixture.patients:
        leading = p.leading or "not asserted (labs missing or incomplete)"
        cells.append(f"{p.label or p.reference}: {leading}" if len(fixture.patients) > 1 else leading)
    return "; ".join(cells)


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def build(out_dir: Path = FIXTURE_DIR) -> list[Fixture]:
    """Write every fixture, the manifest and the README into `out_dir`."""
    fixtures = [make() for make in ALL_FIXTURES]
    for fixture in fixtures:
        path = out_dir / fixture.file
        path.write_text(json.dumps(fixture.bundle, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    manifest = {"now": NOW, "fixtures": [f.manifest_entry() for f in fixtures]}
    (out_dir / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    rows = [
        f"| `{f.file}` | {_escape(f.scenario)} | {_escape(f.exercises)} | {_escape(_leading_cell(f))} |" for f in fixtures
    ]
    (out_dir / "README.md").write_text(README_HEAD.format(now=NOW) + "\n".join(rows) + "\n", encoding="utf-8")
    return fixtures


if __name__ == "__main__":
    written = build()
    print(f"wrote {len(written)} fixtures, MANIFEST.json and README.md to {FIXTURE_DIR}")

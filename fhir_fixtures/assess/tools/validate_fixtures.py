"""Validate every $assess fixture as FHIR R4 and check the manifest against the files.

Each resource is validated on its own (so an error names the entry) and then the
Bundle as a whole, with `fhir.resources.R4B` (the package top level is R5).
Also checks that every reference inside a bundle resolves and that each
manifest patient exists in its file. Exit status 1 on any problem.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fhir.resources.R4B import get_fhir_model_class

FIXTURE_DIR = Path(__file__).resolve().parent.parent

# Required value-set bindings that fhir.resources does not enforce (FHIR R4 value sets).
REQUIRED_CODES: dict[tuple[str, str], set[str]] = {
    ("Observation", "status"): {
        "registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"
    },
    ("Condition", "clinicalStatus"): {"active", "recurrence", "relapse", "inactive", "remission", "resolved"},
    ("Condition", "verificationStatus"): {
        "unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"
    },
    ("MedicationRequest", "status"): {
        "active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"
    },
    ("MedicationAdministration", "status"): {
        "in-progress", "not-done", "on-hold", "completed", "entered-in-error", "stopped", "unknown"
    },
    ("MedicationStatement", "status"): {
        "active", "completed", "entered-in-error", "intended", "stopped", "on-hold", "unknown", "not-taken"
    },
    ("Procedure", "status"): {
        "preparation", "in-progress", "not-done", "on-hold", "stopped", "completed", "entered-in-error", "unknown"
    },
    ("Encounter", "status"): {
        "planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled", "entered-in-error", "unknown"
    },
    ("Composition", "status"): {"preliminary", "final", "amended", "entered-in-error"},
}


def _status_code(resource: dict, element: str) -> str | None:
    value = resource.get(element)
    if isinstance(value, dict):  # CodeableConcept (Condition statuses)
        return value["coding"][0]["code"]
    return value


def _references(node: object) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_references(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_references(item))
    return found


def validate_bundle(path: Path) -> list[str]:
    problems: list[str] = []
    bundle = json.loads(path.read_text(encoding="utf-8"))
    known: set[str] = set()
    for index, entry in enumerate(bundle.get("entry", [])):
        resource = entry["resource"]
        if entry["fullUrl"] in known:
            problems.append(f"{path.name}: Bundle.entry[{index}].fullUrl duplicated: {entry['fullUrl']}")
        for (rtype, element), allowed in REQUIRED_CODES.items():
            if resource["resourceType"] == rtype and element in resource:
                code = _status_code(resource, element)
                if code not in allowed:
                    problems.append(f"{path.name}: Bundle.entry[{index}].resource.{element}: {code!r} not allowed")
        known.add(entry["fullUrl"])
        known.add(f"{resource['resourceType']}/{resource['id']}")
        try:
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        except Exception as exc:  # report every invalid entry, not just the first
            problems.append(f"{path.name}: Bundle.entry[{index}].resource ({resource['resourceType']}): {exc}")
    try:
        get_fhir_model_class("Bundle").model_validate(bundle)
    except Exception as exc:
        problems.append(f"{path.name}: Bundle: {exc}")
    for ref in _references(bundle):
        if ref.startswith("#"):
            continue
        if ref not in known:
            problems.append(f"{path.name}: unresolved reference {ref}")
    return problems


def input_fixtures() -> list[Path]:
    """The input bundles, without the golden outputs (`*.expected.json`) that sit beside them."""
    return sorted(p for p in FIXTURE_DIR.glob("[0-9][0-9]-*.json") if not p.name.endswith(".expected.json"))


def validate_manifest() -> list[str]:
    problems: list[str] = []
    manifest = json.loads((FIXTURE_DIR / "MANIFEST.json").read_text(encoding="utf-8"))
    listed = {f["file"] for f in manifest["fixtures"]}
    on_disk = {p.name for p in input_fixtures()}
    if listed != on_disk:
        problems.append(f"MANIFEST files differ from disk: {sorted(listed ^ on_disk)}")
    for fixture in manifest["fixtures"]:
        bundle = json.loads((FIXTURE_DIR / fixture["file"]).read_text(encoding="utf-8"))
        patients = {
            (f"Patient/{e['resource']['id']}", e["fullUrl"])
            for e in bundle.get("entry", [])
            if e["resource"]["resourceType"] == "Patient"
        }
        for p in fixture["patients"]:
            if (p["reference"], p["fullUrl"]) not in patients:
                problems.append(f"{fixture['file']}: manifest patient {p['reference']} not in bundle")
            expect = p["expect"]
            both = set(expect["recommended_includes"]) & set(expect["recommended_excludes"])
            if both:
                problems.append(f"{fixture['file']}: {p['reference']} both includes and excludes {sorted(both)}")
        if len(fixture["patients"]) != len(patients):
            problems.append(f"{fixture['file']}: {len(patients)} patients in bundle, {len(fixture['patients'])} in manifest")
    return problems


def main() -> int:
    problems: list[str] = []
    files = input_fixtures()
    for path in files:
        problems.extend(validate_bundle(path))
    problems.extend(validate_manifest())
    for problem in problems:
        print(problem)
    print(f"{len(files)} fixture files checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""The CDS Hooks example requests in fhir_fixtures/cds-hooks and their expected responses.

Responses carry fresh uuids and the host they were served from; `comparable` masks both so a
golden file can be compared strictly otherwise. Regenerate the golden files after an intended
change with:  python -m tests.support.cds_fixtures --write
"""

from __future__ import annotations

import json
from contextlib import contextmanager
import re
import sys
from pathlib import Path
from typing import Any, Iterator

FIXTURES = Path(__file__).resolve().parents[2] / "fhir_fixtures" / "cds-hooks"
HOOKS = ("patient-view", "order-select", "order-sign")
FIXTURE_BASE_URL = "https://cds.example.org"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def request_for(hook: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{hook}-request.json").read_text(encoding="utf-8"))


def expected_response_for(hook: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{hook}-response.json").read_text(encoding="utf-8"))


def comparable(value: Any) -> Any:
    """The response with every uuid replaced by '<uuid>'."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if isinstance(value, str) and _UUID.match(value):
        return "<uuid>"
    return value


def fixture_app(tmp_dir: Path):
    from tests.support.cds_app import make_app

    return make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_dir / "feedback.sqlite3"),
                     "PUBLIC_BASE_URL": FIXTURE_BASE_URL})


def fixture_now():
    from tests.conftest import FIXTURE_NOW

    return FIXTURE_NOW


@contextmanager
def core_at_fixture_time() -> Iterator[None]:
    """Hook calls assessed by the real core at the fixtures' instant, so answers compare over time."""
    from service.hooks import hook_call

    original = hook_call.core_assess

    def at_fixture_time(bundle, *, config, now=None, **options):
        return original(bundle, config=config, now=fixture_now(), **options)

    hook_call.core_assess = at_fixture_time
    try:
        yield
    finally:
        hook_call.core_assess = original


def responses_through_the_core(tmp_dir: Path) -> dict[str, dict[str, Any]]:
    """Each example request answered by the real assessment core at the fixtures' instant."""
    with core_at_fixture_time():
        client = fixture_app(tmp_dir).test_client()
        answers = {}
        for hook in HOOKS:
            response = client.post(f"/cds-services/calcinosis-{hook}", json=request_for(hook))
            answers[hook] = {"status": response.status_code, "body": response.get_json()}
        return answers


ASSESS_FIXTURES = FIXTURES.parent / "assess"
# Where each resource type of an $assess bundle goes in a patient-view prefetch (services.json's keys).
_PREFETCH_KEY_OF_TYPE = {"Observation": "labs", "Condition": "conditions", "MedicationRequest": "medications",
                         "MedicationAdministration": "medications", "MedicationStatement": "medications",
                         "Medication": "medications", "Procedure": "procedures", "ServiceRequest": "procedures"}


def assess_fixture_paths() -> list[Path]:
    return sorted(p for p in ASSESS_FIXTURES.glob("[0-9]*.json") if not p.name.endswith(".expected.json"))


def _with_references(value: Any, references: dict[str, str]) -> Any:
    """`value` with every reference that names a bundle entry by its fullUrl rewritten as Type/id."""
    if isinstance(value, dict):
        rewritten = {k: _with_references(v, references) for k, v in value.items()}
        if isinstance(rewritten.get("reference"), str) and rewritten["reference"] in references:
            rewritten["reference"] = references[rewritten["reference"]]
        return rewritten
    if isinstance(value, list):
        return [_with_references(v, references) for v in value]
    return value


def _owner(resource: dict[str, Any]) -> str | None:
    for element in ("subject", "patient"):
        value = resource.get(element)
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            return value["reference"]
    return None


def patient_view_requests_from_assess_fixtures() -> list[tuple[str, dict[str, Any]]]:
    """Each patient of each $assess fixture bundle as a patient-view call whose prefetch holds that
    patient's resources (by type, under the service's prefetch keys), with no fhirServer to read more.

    References by fullUrl become Type/id, as an EHR's search results would carry them; resources of
    types the service does not prefetch (Encounter, Claim ...) are left out, as a search would.
    """
    requests = []
    template = request_for("patient-view")
    for path in assess_fixture_paths():
        bundle = json.loads(path.read_text(encoding="utf-8"))
        entries = [e for e in bundle.get("entry", []) if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
        references = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries
                      if isinstance(e.get("fullUrl"), str) and e["resource"].get("id")}
        resources = [_with_references(e["resource"], references) for e in entries]
        for patient in (r for r in resources if r.get("resourceType") == "Patient"):
            reference = f"Patient/{patient['id']}"
            prefetch: dict[str, Any] = {"patient": patient}
            for key in ("labs", "conditions", "medications", "procedures"):
                prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "entry": []}
            for resource in resources:
                key = _PREFETCH_KEY_OF_TYPE.get(resource.get("resourceType"))
                owner = _owner(resource)
                if key is None or (owner is not None and owner != reference):
                    continue
                if owner is None and resource.get("resourceType") != "Medication":
                    continue
                prefetch[key]["entry"].append({"resource": resource, "search": {"mode": "match"}})
            body = {k: v for k, v in template.items() if k not in ("fhirServer", "fhirAuthorization")}
            body["context"] = {"userId": template["context"]["userId"], "patientId": patient["id"]}
            body["prefetch"] = prefetch
            requests.append((f"{path.stem}:{patient['id']}", body))
    return requests


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for hook, answer in responses_through_the_core(Path(tmp)).items():
            assert answer["status"] == 200, (hook, answer)
            path = FIXTURES / f"{hook}-response.json"
            path.write_text(json.dumps(answer["body"], indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            print(f"wrote {path}")

"""`calcinosis-cds fixtures load`: post every fixture into a FHIR server, one transaction Bundle per file.

Integration testers get a FHIR server holding the same patients as the golden files: the `$assess`
example Bundles (`fhir_fixtures/assess/*.json`, not their `.expected` outputs), and the Patient and
prefetched resources of each CDS Hooks example request (`fhir_fixtures/cds-hooks/*-request.json`), so
a CDS Hooks call without prefetch finds them on the server. A resource with an id is PUT under it (a
reload replaces it, and fixtures that share a patient keep one); one without is POSTed under its
`urn:uuid:` fullUrl, which the server resolves in the other entries' references. Entries that are
not data (OperationOutcomes of a search) are left out, and so are resources that fail R4
validation: some fixtures hold them on purpose, to show how `$assess` skips them, and a server
would refuse the whole transaction for one of them. Each is named in the report.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson
import requests
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

NOT_DATA = frozenset({"OperationOutcome", "Bundle"})
FHIR_JSON = "application/fhir+json"


@dataclass
class FixtureLoad:
    """What happened to one fixture file."""

    name: str
    sent: int = 0
    status: int | None = None
    error: str | None = None
    left_out: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300

    def line(self) -> str:
        outcome = f"HTTP {self.status}" if self.status is not None else "not sent"
        text = f"{self.name}: {self.sent} resources, {outcome}"
        if self.left_out:
            text += f"; left out {len(self.left_out)} ({', '.join(self.left_out[:3])}{', ...' if len(self.left_out) > 3 else ''})"
        return text + (f": {self.error}" if self.error else "")


def fixture_files(root: Path) -> list[Path]:
    """The fixture inputs under `root` (the repository's `fhir_fixtures`), in name order."""
    files = [path for path in sorted((root / "assess").glob("*.json"))
             if not path.name.endswith(".expected.json") and path.name != "MANIFEST.json"]
    return files + sorted((root / "cds-hooks").glob("*-request.json"))


def resources_of(document: Any) -> Iterator[tuple[str, dict[str, Any], str | None]]:
    """(where, resource, fullUrl) of every resource of a fixture: a Bundle's entries, or a CDS Hooks
    request's prefetched Patient and searchset entries."""
    if not isinstance(document, dict):
        return
    if document.get("resourceType") == "Bundle":
        for index, entry in enumerate(document.get("entry") or ()):
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                yield f"Bundle.entry[{index}]", entry["resource"], entry.get("fullUrl")
        return
    for key, value in (document.get("prefetch") or {}).items():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            for index, entry in enumerate(value.get("entry") or ()):
                if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                    yield f"prefetch.{key}.entry[{index}]", entry["resource"], entry.get("fullUrl")
        elif isinstance(value, dict) and isinstance(value.get("resourceType"), str):
            yield f"prefetch.{key}", value, None


def r4_problem(resource: dict[str, Any]) -> str | None:
    """None when the resource validates as R4 (the R4B models, as the service reads inputs); else why not."""
    try:
        get_fhir_model_class(str(resource.get("resourceType"))).model_validate(resource)
    except (KeyError, ValueError, ValidationError) as error:
        return type(error).__name__
    return None


def transaction_of(document: Any, name: str, base: str) -> tuple[dict[str, Any], FixtureLoad]:
    """The transaction Bundle posting a fixture's resources to the server at `base`, and its report.

    An entry keeps a `urn:uuid:` fullUrl (other entries refer to it); an absolute one of the server
    the fixture was exported from becomes this server's own URL of the resource.
    """
    report = FixtureLoad(name)
    entries = []
    seen: set[tuple[str, str]] = set()
    for where, resource, full_url in resources_of(document):
        kind = resource.get("resourceType")
        if not isinstance(kind, str) or kind in NOT_DATA:
            report.left_out.append(f"{where} ({kind if isinstance(kind, str) else 'no resourceType'})")
            continue
        if r4_problem(resource) is not None:
            report.left_out.append(f"{where} (not valid R4)")
            continue
        resource_id = resource.get("id")
        if isinstance(resource_id, str) and resource_id:
            if (kind, resource_id) in seen:
                continue  # the same resource twice in one fixture (a CDS Hooks draft order and its prefetch)
            seen.add((kind, resource_id))
            request = {"method": "PUT", "url": f"{kind}/{resource_id}"}
            if not (isinstance(full_url, str) and full_url.startswith("urn:uuid:")):
                full_url = f"{base.rstrip('/')}/{kind}/{resource_id}"
        else:
            request = {"method": "POST", "url": kind}
            if not (isinstance(full_url, str) and full_url.startswith("urn:uuid:")):
                full_url = f"urn:uuid:{uuid.uuid4()}"
        entries.append({"fullUrl": full_url, "resource": resource, "request": request})
    report.sent = len(entries)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}, report


def wait_for_server(base: str, seconds: float, session: requests.Session, *, poll: float = 2.0) -> None:
    """Return once `base`/metadata answers 200; RuntimeError after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if session.get(f"{base}/metadata", headers={"Accept": FHIR_JSON}, timeout=10).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() >= deadline:
            raise RuntimeError(f"the FHIR server at {base} did not answer /metadata within {seconds:g} s")
        time.sleep(poll)


def load_fixtures(base: str, files: Iterable[Path], *, session: requests.Session | None = None,
                  timeout: float = 60) -> list[FixtureLoad]:
    """Post each file as a transaction to the FHIR server at `base`; one report per file, in order."""
    base = base.rstrip("/")
    session = session or requests.Session()
    reports = []
    for path in files:
        try:
            document = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as error:
            reports.append(FixtureLoad(path.name, error=f"cannot read: {type(error).__name__}"))
            continue
        bundle, report = transaction_of(document, path.name, base)
        reports.append(report)
        if not bundle["entry"]:
            report.error = "no resources to send"
            continue
        try:
            response = session.post(base, data=orjson.dumps(bundle), timeout=timeout,
                                    headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON})
        except requests.RequestException as error:
            report.error = f"the server could not be reached ({type(error).__name__})"
            continue
        report.status = response.status_code
        if not 200 <= response.status_code < 300:
            report.error = _outcome_text(response)
    return reports


def _outcome_text(response: requests.Response) -> str:
    """The first diagnostics of the server's OperationOutcome, short; else the status."""
    try:
        outcome = response.json()
        issue = (outcome.get("issue") or [{}])[0]
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
    except (ValueError, AttributeError):
        text = None
    return (text or f"the server answered HTTP {response.status_code}")[:200]

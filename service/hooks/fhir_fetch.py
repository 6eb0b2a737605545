"""Reads what prefetch left out from the CDS client's FHIR server.

The client's access token is a credential for patient data, so it is only ever sent to a server
on the configured allowlist, and paging links are only followed on that same server. Timeouts
bound how long a clinician's screen waits; a page cap bounds how much is read. Nothing here logs a
token or a response body.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

import requests

log = logging.getLogger(__name__)


class FetchError(Exception):
    """The FHIR server could not give the data: the reason is safe to show (no token, no body)."""


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A resource read, or the entries of every searchset page read."""

    resources: tuple[dict[str, Any], ...]
    truncated: bool = False
    notes: tuple[str, ...] = field(default=())


def _normalize_base(url: str) -> str:
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def is_allowlisted(fhir_server: str, allowlist: Iterable[str]) -> bool:
    """True when `fhir_server` is one of the allowlisted bases or lies under one of them."""
    server = _normalize_base(fhir_server)
    for allowed in allowlist:
        base = _normalize_base(allowed)
        if server == base or server.startswith(base + "/"):
            return True
    return False


class FhirFetcher:
    """A small FHIR REST reader bound to one allowlist and one set of limits."""

    def __init__(self, *, allowlist: Iterable[str], connect_timeout: float, read_timeout: float, max_pages: int,
                 session: requests.Session | None = None) -> None:
        self.allowlist = tuple(allowlist)
        self.timeout = (float(connect_timeout), float(read_timeout))
        self.max_pages = max(1, int(max_pages))
        self.session = session or requests.Session()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "FhirFetcher":
        return cls(
            allowlist=config.get("CDS_FHIR_SERVER_ALLOWLIST") or (),
            connect_timeout=config.get("CDS_FHIR_CONNECT_TIMEOUT_SECONDS", 3.05),
            read_timeout=config.get("CDS_FHIR_READ_TIMEOUT_SECONDS", 10.0),
            max_pages=config.get("CDS_FHIR_MAX_PAGES", 10),
        )

    def check_server(self, fhir_server: str) -> None:
        """FetchError unless the server may be contacted (and given the client's token)."""
        if not is_allowlisted(fhir_server, self.allowlist):
            raise FetchError(f"FHIR server {_normalize_base(fhir_server)} is not on this service's allowlist "
                             "(CDS_FHIR_SERVER_ALLOWLIST), so it was not queried")

    def fetch(self, fhir_server: str, query: str, access_token: str | None) -> FetchResult:
        """Read `query` (e.g. "Patient/1" or "Observation?patient=1") relative to `fhir_server`."""
        self.check_server(fhir_server)
        url = f"{fhir_server.rstrip('/')}/{query.lstrip('/')}"
        first = self._get_json(url, access_token, query)
        if first.get("resourceType") != "Bundle" or first.get("type") != "searchset":
            if first.get("resourceType") == "OperationOutcome":
                raise FetchError(f"the FHIR server answered {query.split('?')[0]} with an OperationOutcome")
            return FetchResult((first,))
        resources: list[dict[str, Any]] = []
        page, pages = first, 1
        while True:
            resources.extend(_match_entries(page))
            next_url = _next_link(page)
            if not next_url:
                return FetchResult(tuple(resources))
            if not is_allowlisted(next_url, (fhir_server,)):
                raise FetchError(f"the FHIR server's next page for {query.split('?')[0]} points to another server")
            if pages >= self.max_pages:
                note = (f"only the first {pages} pages of {query.split('?')[0]} were read "
                        f"(CDS_FHIR_MAX_PAGES); older or further results were not considered")
                return FetchResult(tuple(resources), truncated=True, notes=(note,))
            page = self._get_json(next_url, access_token, query)
            pages += 1

    def _get_json(self, url: str, access_token: str | None, query: str) -> dict[str, Any]:
        what = query.split("?")[0]
        headers = {"Accept": "application/fhir+json"}
        if access_token:
            headers["Authorization"] = f"Bearer {access_token}"
        try:
            response = self.session.get(url, headers=headers, timeout=self.timeout, allow_redirects=False)
        except requests.Timeout:
            raise FetchError(f"the FHIR server did not answer {what} in time") from None
        except requests.RequestException as error:
            raise FetchError(f"the FHIR server could not be reached for {what} ({type(error).__name__})") from None
        log.info("FHIR fetch %s -> %s", what, response.status_code)
        if response.status_code in (401, 403):
            raise FetchError(f"the FHIR server refused access to {what} (HTTP {response.status_code})")
        if response.status_code != 200:
            raise FetchError(f"the FHIR server answered {what} with HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise FetchError(f"the FHIR server's answer to {what} is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
            raise FetchError(f"the FHIR server's answer to {what} is not a FHIR resource")
        return data


def _match_entries(bundle: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Resources of a searchset page; included resources and OperationOutcome notes are left out."""
    resources = []
    for entry in bundle.get("entry") or ():
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            continue
        mode = (entry.get("search") or {}).get("mode", "match") if isinstance(entry.get("search"), dict) else "match"
        if mode != "match" or entry["resource"].get("resourceType") == "OperationOutcome":
            continue
        resources.append(entry["resource"])
    return resources


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in bundle.get("link") or ():
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None

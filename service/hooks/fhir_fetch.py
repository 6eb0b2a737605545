"""Reads what prefetch left out from the CDS client's FHIR server.

The client's access token is a credential for patient data, so it is only ever sent to a server
on the configured allowlist, compared in canonical form (see `safe_urls`), and paging links are
only followed under that same server and allowlist. Redirects are never followed, since the token
would travel with them. A total deadline per hook call (besides the per-read timeouts, which a
server trickling bytes never trips) bounds how long a clinician's screen waits, and a thread:
a timer cuts the connection when it passes, whether the server is silent, trickles its headers or
trickles its body (`deadline_http`). At most CDS_FHIR_MAX_CONCURRENT_READS_PER_SERVER reads wait on
one server at once (`bulkheads`); one more is refused at once as "busy", so a hanging server holds
a few threads, not all of them. A page cap and a size cap per page, enforced while streaming,
bound how much is read. Nothing here logs a token, an id, a query string or a response body.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import orjson
import requests
import urllib3

from ..config import setting
from ..errors import CalcinosisError
from .bulkheads import ServerBulkheads, ServerBusy
from .deadline_http import DeadlineAdapter, Watch, hard_deadline
from .safe_urls import SafeUrl, is_under_any, parse_safe_url

log = logging.getLogger(__name__)

# Called after every read from a FHIR server with (server origin, seconds, outcome: "ok", "busy" or
# "failure"), so the HTTP layer can export upstream latency and failures without this module
# knowing how they are exported.
READ_OBSERVERS: list[Callable[[str, float, str], None]] = []

PAGE_CAP_NOTE = ("only the first {pages} pages of {what} were read (CDS_FHIR_MAX_PAGES); "
                 "further pages were not read; they may hold more recent results")


class FetchError(CalcinosisError):
    """The FHIR server could not give the data: the reason is safe to show (no token, no id, no body)."""


class FetchLimitExceeded(FetchError):
    """The call's total time or a page's size cap was exceeded: the data cannot be had within bounds."""


class FetchServerBusy(FetchError):
    """Every read slot for the server is taken by reads still waiting on it: this one was not attempted."""


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A resource read, or the entries of every searchset page read."""

    resources: tuple[dict[str, Any], ...]
    truncated: bool = False
    notes: tuple[str, ...] = field(default=())


def resource_type_of(query: str) -> str:
    """'Observation' for 'Observation?patient=1' or 'Patient/1': what may be logged and shown."""
    return query.split("?")[0].strip("/").split("/")[0] or "resource"


def is_allowlisted(fhir_server: str, allowlist: Iterable[str]) -> bool:
    """True when `fhir_server` parses safely and lies under one of the allowlisted bases."""
    server = parse_safe_url(fhir_server)
    return server is not None and is_under_any(server, allowlist)


def match_entries(bundle: Mapping[str, Any], what: str) -> list[dict[str, Any]]:
    """Resources of a searchset page; included resources and outcome entries are left out.

    An entry that is not a FHIR resource makes the page unusable (FetchError): dropping it would
    present partial data as complete.
    """
    return [resource for _index, resource in indexed_match_entries(bundle, what)]


def indexed_match_entries(bundle: Mapping[str, Any], what: str) -> list[tuple[int, dict[str, Any]]]:
    """`match_entries` with each resource's index in Bundle.entry (to say where an issue lies)."""
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise FetchError(f"the FHIR server's searchset for {what} has an entry list that is not an array")
    resources = []
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise FetchError(f"the FHIR server's searchset for {what} has an entry that is not a FHIR resource")
        search = entry.get("search")
        mode = search.get("mode", "match") if isinstance(search, dict) else "match"
        if mode != "match" or resource["resourceType"] == "OperationOutcome":
            continue
        resources.append((index, resource))
    return resources


def outcome_diagnostics(bundle: Mapping[str, Any]) -> list[str]:
    """The texts of OperationOutcome entries (search.mode outcome): the server saying it left something out."""
    texts = []
    entries = bundle.get("entry")
    for entry in entries if isinstance(entries, list) else ():
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != "OperationOutcome":
            continue
        issues = resource.get("issue")
        for issue in issues if isinstance(issues, list) else ():
            if not isinstance(issue, dict):
                continue
            text = issue.get("diagnostics")
            if not isinstance(text, str) or not text.strip():
                details = issue.get("details")
                text = details.get("text") if isinstance(details, dict) else None
            if isinstance(text, str) and text.strip():
                texts.append(text.strip()[:300])
            elif isinstance(issue.get("code"), str):
                texts.append(f"the server reported '{issue['code']}'")
    return texts


def next_link(bundle: Mapping[str, Any]) -> str | None:
    """The `next` paging link's URL as given (a non-string URL counts as one that cannot be parsed)."""
    links = bundle.get("link")
    for link in links if isinstance(links, list) else ():
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            return url if isinstance(url, str) else repr(url)
    return None


class FhirFetcher:
    """A small FHIR REST reader bound to one allowlist and one set of limits.

    The app holds one; each hook call reads through `for_one_call()`, whose total deadline starts then.
    """

    def __init__(self, *, allowlist: Iterable[str], connect_timeout: float, read_timeout: float, max_pages: int,
                 total_timeout: float = 20.0, max_response_bytes: int = 10 * 1024 * 1024,
                 max_concurrent_reads: int = 4, session: requests.Session | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.allowlist = tuple(allowlist)
        self.timeout = (float(connect_timeout), float(read_timeout))
        self.max_pages = max(1, int(max_pages))
        self.total_timeout = float(total_timeout)
        self.max_response_bytes = max(1, int(max_response_bytes))
        self.session = session or requests.Session()
        if isinstance(self.session, requests.Session):
            adapter = DeadlineAdapter()
            self.session.mount("http://", adapter)
            self.session.mount("https://", adapter)
        # Shared by every per-call copy: the bound holds across all threads of the process.
        self.bulkheads = ServerBulkheads(max_concurrent_reads)
        self._clock = clock
        self._deadline: float | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "FhirFetcher":
        """A fetcher with the CDS_FHIR_* allowlist and limits from settings, the model's defaults where unset."""
        allowlist = setting(config, "CDS_FHIR_SERVER_ALLOWLIST") or ()
        return cls(
            allowlist=[allowlist] if isinstance(allowlist, str) else allowlist,
            connect_timeout=setting(config, "CDS_FHIR_CONNECT_TIMEOUT_SECONDS"),
            read_timeout=setting(config, "CDS_FHIR_READ_TIMEOUT_SECONDS"),
            max_pages=setting(config, "CDS_FHIR_MAX_PAGES"),
            total_timeout=setting(config, "CDS_FHIR_TOTAL_TIMEOUT_SECONDS"),
            max_response_bytes=setting(config, "CDS_FHIR_MAX_RESPONSE_BYTES"),
            max_concurrent_reads=setting(config, "CDS_FHIR_MAX_CONCURRENT_READS_PER_SERVER"),
        )

    def for_one_call(self) -> "FhirFetcher":
        """A reader sharing this one's session and limits, whose total deadline starts now."""
        reader = copy.copy(self)
        reader._deadline = self._clock() + self.total_timeout
        return reader

    def _time_left(self, what: str) -> float | None:
        """Seconds left before the call's deadline (None without one), or FetchLimitExceeded once it has passed."""
        if self._deadline is None:
            return None
        left = self._deadline - self._clock()
        if left <= 0:
            raise self._too_slow(what)
        return left

    def _too_slow(self, what: str) -> FetchLimitExceeded:
        return FetchLimitExceeded(f"reading {what} from the FHIR server took longer than the "
                                  f"{self.total_timeout:g} s allowed per call (CDS_FHIR_TOTAL_TIMEOUT_SECONDS)")

    def _check_cut(self, what: str, watch: Watch | None) -> None:
        """FetchLimitExceeded when the deadline has passed or cut the connection (a read that failed because of it)."""
        if watch is not None and watch.expired:
            raise self._too_slow(what)
        self._time_left(what)

    def may_contact(self, fhir_server: str) -> bool:
        """True when `fhir_server` is on the allowlist, so it may be queried and sent the access token."""
        return is_allowlisted(fhir_server, self.allowlist)

    def check_server(self, fhir_server: str) -> SafeUrl:
        """The server in canonical form, or FetchError unless it may be contacted (and given the token)."""
        server = parse_safe_url(fhir_server)
        if server is None:
            raise FetchError("the fhirServer URL cannot be parsed safely, so it was not queried")
        if not is_under_any(server, self.allowlist):
            raise FetchError(f"FHIR server {server.base} is not on this service's allowlist "
                             "(CDS_FHIR_SERVER_ALLOWLIST), so it was not queried")
        return server

    def fetch(self, fhir_server: str, query: str, access_token: str | None) -> FetchResult:
        """Read `query` (e.g. "Patient/1" or "Observation?patient=1") relative to `fhir_server`."""
        server = self.check_server(fhir_server)
        what = resource_type_of(query)
        first = self._get_json(server, f"{server.base}/{query.lstrip('/')}", access_token, what)
        if first.get("resourceType") != "Bundle" or first.get("type") != "searchset":
            if first.get("resourceType") == "OperationOutcome":
                raise FetchError(f"the FHIR server answered {what} with an OperationOutcome")
            return FetchResult((first,))
        resources = match_entries(first, what)
        notes = [f"the FHIR server noted for {what}: {text}" for text in outcome_diagnostics(first)]
        if next_link(first) is None:
            return FetchResult(tuple(resources), notes=tuple(notes))
        rest = self.read_further_pages(fhir_server, first, access_token, what, pages_read=1)
        return FetchResult(tuple(resources) + rest.resources, rest.truncated, tuple(notes) + rest.notes)

    def read_further_pages(self, fhir_server: str, page: Mapping[str, Any], access_token: str | None, what: str,
                           *, pages_read: int) -> FetchResult:
        """The pages after `page`, following `next` links up to the cap.

        A next link that cannot be parsed or leaves the server is never requested: FetchError.
        """
        server = self.check_server(fhir_server)
        resources: list[dict[str, Any]] = []
        notes: list[str] = []
        pages = pages_read
        while True:
            url = next_link(page)
            if url is None:
                return FetchResult(tuple(resources), notes=tuple(notes))
            target = parse_safe_url(url)
            if target is None:
                raise FetchError(f"the FHIR server's next page link for {what} cannot be parsed safely, "
                                 "so it was not followed")
            if not target.is_under(server) or not is_under_any(target, self.allowlist):
                raise FetchError(f"the FHIR server's next page for {what} points to another server")
            if pages >= self.max_pages:
                notes.append(PAGE_CAP_NOTE.format(pages=pages, what=what))
                return FetchResult(tuple(resources), truncated=True, notes=tuple(notes))
            page = self._get_json(server, target.text, access_token, what)
            if page.get("resourceType") != "Bundle":
                raise FetchError(f"the FHIR server's next page for {what} is not a Bundle")
            pages += 1
            resources.extend(match_entries(page, what))
            notes.extend(f"the FHIR server noted for {what}: {text}" for text in outcome_diagnostics(page))

    def _get_json(self, server: SafeUrl, url: str, access_token: str | None, what: str) -> dict[str, Any]:
        """One GET holding one of the server's read slots, cut off at the call's deadline."""
        left = self._time_left(what)
        started, outcome = time.perf_counter(), "failure"
        try:
            # Slots per origin: paths under one allowlisted base all reach the same server.
            with self.bulkheads.slot(server.origin), hard_deadline(left) as watch:
                data = self._get_json_within(url, access_token, what, left, watch)
                outcome = "ok"
                return data
        except ServerBusy:
            outcome = "busy"
            raise FetchServerBusy(f"the FHIR server {server.origin} is busy: {self.bulkheads.max_in_flight} reads "
                                  "from this service are still waiting on it (CDS_FHIR_MAX_CONCURRENT_READS_PER_SERVER), "
                                  f"so {what} was not requested; try again shortly") from None
        finally:
            for observer in READ_OBSERVERS:
                observer(server.origin, time.perf_counter() - started, outcome)

    def _get_json_within(self, url: str, access_token: str | None, what: str, left: float | None,
                         watch: Watch | None) -> dict[str, Any]:
        headers = {"Accept": "application/fhir+json"}
        if access_token:
            headers["Authorization"] = f"Bearer {access_token}"
        timeout = self.timeout if left is None else (min(self.timeout[0], left), min(self.timeout[1], left))
        try:
            # Never follow a redirect: the token would go wherever the Location header says.
            response = self.session.get(url, headers=headers, timeout=timeout, allow_redirects=False, stream=True)
        except requests.Timeout:
            self._check_cut(what, watch)
            raise FetchError(f"the FHIR server did not answer {what} in time") from None
        except requests.RequestException as error:
            self._check_cut(what, watch)
            raise FetchError(f"the FHIR server could not be reached for {what} ({type(error).__name__})") from None
        with response:
            log.info("FHIR fetch %s -> %s", what, response.status_code)
            if response.status_code in (401, 403):
                raise FetchError(f"the FHIR server refused access to {what} (HTTP {response.status_code})")
            if 300 <= response.status_code < 400:
                raise FetchError(f"the FHIR server redirected the {what} request (HTTP {response.status_code}); "
                                 "redirects are not followed with the access token")
            if response.status_code != 200:
                raise FetchError(f"the FHIR server answered {what} with HTTP {response.status_code}")
            body = self._read_capped(response, what, watch)
        self._check_cut(what, watch)  # a body cut short by the deadline must not be read as a whole one
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise FetchError(f"the FHIR server's answer to {what} is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
            raise FetchError(f"the FHIR server's answer to {what} is not a FHIR resource")
        return data

    def _too_large(self, what: str) -> FetchLimitExceeded:
        return FetchLimitExceeded(f"the FHIR server's answer to {what} is larger than the "
                                  f"{self.max_response_bytes} bytes allowed per page (CDS_FHIR_MAX_RESPONSE_BYTES)")

    def _read_capped(self, response: requests.Response, what: str, watch: Watch | None = None) -> bytes:
        """The (decoded) body, read in pieces so the size cap and the deadline hold while it arrives.

        `read1` returns whatever has arrived instead of waiting for a full chunk (as iter_content
        does), so a server sending a byte at a time still meets the deadline between pieces.
        """
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            raise self._too_large(what)
        pieces: list[bytes] = []
        size = 0
        try:
            while True:
                self._time_left(what)
                piece = response.raw.read1(64 * 1024, decode_content=True)
                if not piece:
                    break
                size += len(piece)
                if size > self.max_response_bytes:
                    raise self._too_large(what)
                pieces.append(piece)
        except (urllib3.exceptions.HTTPError, OSError, requests.RequestException):
            self._check_cut(what, watch)
            raise FetchError(f"the FHIR server's answer to {what} could not be read completely") from None
        return b"".join(pieces)

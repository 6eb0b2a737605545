"""A FHIR Bulk Data `$export` client: kick-off, status polling, download of the NDJSON files.

What a screen of a FHIR server needs first, per the Bulk Data Access IG (v2): a `Patient/$export`
or `Group/{id}/$export` kick-off asking for NDJSON of only the resource types the rules read
(`pipeline.ingest.KEPT_TYPES`, so a hospital does not ship its claims and encounters), then the
status URL polled as the server asks (`Retry-After` in seconds or as an HTTP date, each wait capped
and the whole export under one deadline), then every output file streamed to disk as
`<Type>.ndjson`, `<Type>.2.ndjson`, ... (the layout of an export folder the screen reads) and the
server's error files under `errors/`, whose OperationOutcomes become issues. Finally the status
URL is deleted, so the server can drop the files.

The server is contacted with the hooks' rules for FHIR reads, not new ones: it, the status URL and
every file URL must be on CDS_FHIR_SERVER_ALLOWLIST (compared in canonical form, `hooks.safe_urls`),
nothing is requested before the server is checked, redirects are never followed (the token would
travel with them), every request has the CDS_FHIR_* connect and read timeouts and a hard deadline
(`hooks.deadline_http`) so a trickling server cannot hold the run, and the JSON answers are capped at
CDS_FHIR_MAX_RESPONSE_BYTES. Files have caps of their own per file and in all. A download cut off
half-way (fewer bytes than Content-Length, a dropped connection, a last line cut mid-way) is tried
again a bounded number of times, then stops the export with an error saying which file. The bearer
token (SCREEN_EXPORT_BEARER_TOKEN) goes to the kick-off and status URLs, and to file URLs only when
the manifest says they require it; no token, query string or body is ever printed or logged.
What the server's headers and OperationOutcomes say is read in `export_answers`; what the folder
holds (files, issues, the record written last) in `export_folder`.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import quote, urlencode, urljoin

import orjson
import requests
import urllib3

from ..config import setting
from ..errors import CalcinosisError
from ..hooks.deadline_http import DeadlineAdapter, Watch, hard_deadline
from ..hooks.fhir_fetch import is_allowlisted
from ..hooks.safe_urls import SafeUrl, parse_safe_url
from ..pipeline.ingest import KEPT_TYPES
from .export_answers import outcome_text, progress_text, retry_after_seconds
from .export_folder import (ERROR_FOLDER, MANIFEST_FILE, DownloadedFile, ExportResult, clear_unfinished_export, error_file_issues, export_issue, read_finished_export,
                            write_export_record)

log = logging.getLogger(__name__)

NDJSON_FORMAT = "application/fhir+ndjson"
_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z]{0,63}$")
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%")
_CHUNK = 64 * 1024
_FIRST_BACKOFF_SECONDS = 1.0  # a 202 without Retry-After: 1, 2, 4 ... s up to the cap
_MIN_POLL_WAIT_SECONDS = 0.5  # "Retry-After: 0" again and again must not become a busy loop
_PROGRESS_EVERY_SECONDS = 2.0


class ExportError(CalcinosisError):
    """The export could not be had; the message is safe to show (no token, query string or body)."""


class ExportRefused(ExportError):
    """A URL may not be contacted (not on the allowlist, or not safely parsed): nothing was sent to it."""


class ExportFailed(ExportError):
    """The server reported that the export failed (an OperationOutcome on the kick-off or status URL)."""


class ExportExpired(ExportError):
    """The status URL (or a file) is gone: the server no longer knows the export (404 or 410)."""


class ExportLimitExceeded(ExportError):
    """The export's deadline or a size cap was reached."""


class DownloadIncomplete(ExportError):
    """A file kept arriving cut off half-way after every try."""


class _CutOff(Exception):
    """One try of a download ended early (worth another try)."""


def export_types() -> tuple[str, ...]:
    """The resource types asked for in `_type`: those the rule library reads, nothing more."""
    return tuple(sorted(KEPT_TYPES))


@dataclass(frozen=True)
class ExportLimits:
    """The allowlist, timeouts and caps of one export (from the CDS_FHIR_* and SCREEN_EXPORT_* settings)."""

    allowlist: tuple[str, ...]
    connect_timeout: float = 3.05
    read_timeout: float = 10.0
    request_timeout: float = 20.0  # one kick-off, status or delete request, from first byte to last
    max_response_bytes: int = 10 * 1024 * 1024
    total_timeout: float = 6 * 3600.0
    max_poll_wait: float = 120.0
    max_file_bytes: int = 4 * 1024 ** 3
    max_total_bytes: int = 32 * 1024 ** 3
    attempts: int = 3

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "ExportLimits":
        allowlist = setting(config, "CDS_FHIR_SERVER_ALLOWLIST") or ()
        return cls(
            allowlist=tuple([allowlist] if isinstance(allowlist, str) else allowlist),
            connect_timeout=float(setting(config, "CDS_FHIR_CONNECT_TIMEOUT_SECONDS")),
            read_timeout=float(setting(config, "CDS_FHIR_READ_TIMEOUT_SECONDS")),
            request_timeout=float(setting(config, "CDS_FHIR_TOTAL_TIMEOUT_SECONDS")),
            max_response_bytes=int(setting(config, "CDS_FHIR_MAX_RESPONSE_BYTES")),
            total_timeout=float(setting(config, "SCREEN_EXPORT_TIMEOUT_SECONDS")),
            max_poll_wait=float(setting(config, "SCREEN_EXPORT_MAX_POLL_WAIT_SECONDS")),
            max_file_bytes=int(setting(config, "SCREEN_EXPORT_MAX_FILE_BYTES")),
            max_total_bytes=int(setting(config, "SCREEN_EXPORT_MAX_TOTAL_BYTES")),
            attempts=int(setting(config, "SCREEN_EXPORT_ATTEMPTS")),
        )


def stderr_progress(line: str) -> None:
    """The default progress: one line per step on standard error, for a person watching."""
    print(f"export: {line}", file=sys.stderr, flush=True)


def _check_since(since: str | None) -> str | None:
    """A FHIR instant for `_since` (with its time zone), refused before anything is sent."""
    if since is None:
        return None
    try:
        moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        raise ExportRefused(f"--since {since!r} is not an instant such as 2026-10-01T00:00:00Z") from None
    if moment.tzinfo is None:
        raise ExportRefused(f"--since {since!r} has no time zone; an instant such as 2026-10-01T00:00:00Z is needed")
    return since


class BulkExportClient:
    """Runs one export at a time against allowlisted servers with `limits`, writing into a folder."""

    def __init__(self, limits: ExportLimits, *, token: str | None = None, session: requests.Session | None = None,
                 progress: Callable[[str], None] | None = stderr_progress,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 resource_types: Iterable[str] | None = None) -> None:
        self.limits = limits
        self._token = token
        self.session = session or requests.Session()
        if isinstance(self.session, requests.Session):
            adapter = DeadlineAdapter()
            self.session.mount("http://", adapter)
            self.session.mount("https://", adapter)
        self._progress = progress or (lambda line: None)
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self.resource_types = tuple(resource_types) if resource_types is not None else export_types()
        self._deadline = float("inf")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **options: Any) -> "BulkExportClient":
        return cls(ExportLimits.from_config(config), token=setting(config, "SCREEN_EXPORT_BEARER_TOKEN"), **options)

    # --- the steps --------------------------------------------------------------------------------

    def run(self, base_url: str, dest: Path, *, group: str | None = None, since: str | None = None) -> ExportResult:
        """Export from `base_url` into `dest` (created; must hold no NDJSON yet) and return what was written."""
        server = self._allowed(base_url, "the FHIR server")
        url = self.kick_off_url(server, group=group, since=since)
        dest = Path(dest)
        self._prepare(dest)
        self._deadline = self._clock() + self.limits.total_timeout
        result = ExportResult(folder=dest, request=url)
        status_url = self.kick_off(url, group=group, since=since)
        expired = False
        try:
            manifest = self.wait_for_manifest(status_url, result)
            self.download_all(manifest, dest, result)
            write_export_record(dest, manifest, result)
            return result
        except ExportExpired:
            expired = True
            raise
        finally:
            if not expired:
                self.delete(status_url)

    def kick_off_url(self, server: SafeUrl, *, group: str | None, since: str | None) -> str:
        """The kick-off request (no token in it), or ExportRefused for a group or instant that is not one."""
        since = _check_since(since)
        if group is not None and not _FHIR_ID.match(group):
            raise ExportRefused(f"--group {group!r} is not a FHIR id (letters, digits, '-' and '.', at most 64)")
        path = f"Group/{quote(group, safe='')}/$export" if group is not None else "Patient/$export"
        query = {"_outputFormat": NDJSON_FORMAT, "_type": ",".join(self.resource_types)}
        if since is not None:
            query["_since"] = since
        return f"{server.base}/{path}?{urlencode(query, safe=',:$')}"

    def kick_off(self, url: str, *, group: str | None, since: str | None) -> SafeUrl:
        """Start the export; the status URL the server gives (checked against the allowlist)."""
        path = f"Group/{group}/$export" if group is not None else "Patient/$export"
        what = f"the {path} kick-off"
        self._progress(f"kick-off {path} at {parse_safe_url(url).origin} for {len(self.resource_types)} resource "
                       "types" + (f" changed since {since}" if since else ""))
        status, headers, body = self._call("GET", url, what, accept="application/fhir+json",
                                           extra={"Prefer": "respond-async"})
        if status != 202:
            raise self._answer_error(status, body, what)
        location = headers.get("Content-Location")
        if not location:
            raise ExportError(f"the FHIR server accepted {what} but gave no Content-Location status URL")
        return self._allowed(urljoin(url, location.strip()), "the export's status URL")

    def wait_for_manifest(self, status_url: SafeUrl, result: ExportResult) -> dict[str, Any]:
        """Poll the status URL until the completion manifest, waiting as the server asks (capped)."""
        backoff = _FIRST_BACKOFF_SECONDS
        unreachable = 0
        while True:
            self._left("waiting for the export")
            try:
                status, headers, body = self._call("GET", status_url.text, "the export's status",
                                                   accept="application/json")
            except _CutOff as error:
                unreachable += 1
                if unreachable >= self.limits.attempts:
                    raise ExportError(f"the export's status URL could not be read {unreachable} times in a row "
                                      f"({error})") from None
                wait = backoff
                self._progress(f"status poll failed ({error}); trying again in {wait:g} s")
            else:
                unreachable = 0
                result.polls += 1
                told = retry_after_seconds(headers.get("Retry-After"), self._wall_clock())
                if status == 200:
                    self._progress(f"export complete after {result.polls} status polls")
                    return self._manifest(body)
                if status == 202:
                    shown = progress_text(headers.get("X-Progress"))
                    percent = _PERCENT.search(shown or "")
                    wait = told if told is not None else backoff
                    self._progress(f"status poll {result.polls}: in progress"
                                   + (f" ({percent.group(1)}%)" if percent else "")
                                   + (f", server says: {shown}" if shown and not percent else "")
                                   + f"; next poll in {min(wait, self.limits.max_poll_wait):g} s")
                elif status == 429 or (status == 503 and told is not None):
                    wait = told if told is not None else backoff
                    self._progress(f"status poll {result.polls}: the server is busy (HTTP {status}); "
                                   f"next poll in {min(wait, self.limits.max_poll_wait):g} s")
                elif status in (404, 410):
                    raise ExportExpired(f"the export's status URL is gone (HTTP {status}): the server no longer "
                                        "knows this export (expired or deleted); start a new one")
                else:
                    raise self._answer_error(status, body, "the export's status")
            backoff = min(backoff * 2, self.limits.max_poll_wait)
            self._wait(max(_MIN_POLL_WAIT_SECONDS, min(wait, self.limits.max_poll_wait)))

    def download_all(self, manifest: Mapping[str, Any], dest: Path, result: ExportResult) -> None:
        """Every output file (of the types asked for) and every error file, streamed into `dest`."""
        outputs = self._entries(manifest, "output")
        errors = self._entries(manifest, "error")
        for _type, url, _count in outputs + errors:  # all checked before the first download
            self._allowed(url, "a file URL of the export manifest")
        send_token = manifest.get("requiresAccessToken") is True
        wanted = set(self.resource_types)
        skipped = sorted({kind for kind, _url, _count in outputs if kind not in wanted})
        if skipped:
            result.issues.append(export_issue("information", "informational", None, None,
                                        f"the export also listed {', '.join(skipped)}, not asked for: not downloaded"))
        outputs = [entry for entry in outputs if entry[0] in wanted]
        per_type: dict[str, int] = {}
        total = len(outputs) + len(errors)
        for number, (kind, url, count) in enumerate(outputs, start=1):
            per_type[kind] = per_type.get(kind, 0) + 1
            name = f"{kind}.ndjson" if per_type[kind] == 1 else f"{kind}.{per_type[kind]}.ndjson"
            item = self._download(url, dest, name, kind, send_token, result, f"file {number} of {total}")
            result.files.append(item)
            if count is not None and count != item.lines:
                result.issues.append(export_issue("warning", "incomplete", name, None,
                                            f"the manifest gives {count} resources for {name}; {item.lines} lines "
                                            "arrived"))
        if errors:
            (dest / ERROR_FOLDER).mkdir(exist_ok=True)
        for number, (kind, url, _count) in enumerate(errors, start=len(outputs) + 1):
            name = f"{ERROR_FOLDER}/{kind}.ndjson" if number == len(outputs) + 1 else \
                f"{ERROR_FOLDER}/{kind}.{number - len(outputs)}.ndjson"
            try:
                item = self._download(url, dest, name, kind, send_token, result, f"file {number} of {total}")
            except ExportLimitExceeded:
                raise
            except ExportError as error:  # the data arrived whole; only the server's account of its errors is lost
                result.issues.append(export_issue("warning", "incomplete", name, None,
                                            f"the server's error file could not be downloaded: {error}"))
                continue
            result.error_files.append(item)
            result.issues.extend(error_file_issues(dest / name, name))
        self._progress(f"downloaded {len(result.files)} files and {len(result.error_files)} error files, "
                       f"{_size(result.total_bytes)} in all"
                       + (f"; {len(result.issues)} issues reported" if result.issues else ""))

    def delete(self, status_url: SafeUrl) -> None:
        """Tell the server the files may go (the IG's cleanup); a failure is reported, never raised."""
        try:
            status, _headers, _body = self._call("DELETE", status_url.text, "the export's cleanup",
                                                 accept="application/fhir+json", within=self.limits.request_timeout)
        except (ExportError, _CutOff) as error:
            self._progress(f"cleanup: the status URL could not be deleted ({error})")
            return
        if status in (200, 202, 204, 404, 410):
            self._progress("cleanup: the server was told the export's files may be deleted")
        else:
            self._progress(f"cleanup: deleting the status URL answered HTTP {status}")

    # --- helpers ----------------------------------------------------------------------------------

    def _allowed(self, url: str, what: str) -> SafeUrl:
        parsed = parse_safe_url(url)
        if parsed is None:
            raise ExportRefused(f"{what} cannot be parsed safely as an http(s) URL, so it was not contacted")
        if not is_allowlisted(url, self.limits.allowlist):
            raise ExportRefused(f"{what} ({parsed.origin}) is not on this service's allowlist "
                                "(CDS_FHIR_SERVER_ALLOWLIST), so it was not contacted")
        return parsed

    def _prepare(self, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        if any(dest.glob("*.ndjson")) or (dest / MANIFEST_FILE).exists():
            raise ExportError(f"{dest} already holds an export; give an empty folder")
        for stale in dest.glob("*.part"):
            stale.unlink()

    def _left(self, what: str) -> float:
        left = self._deadline - self._clock()
        if left <= 0:
            raise ExportLimitExceeded(f"{what} passed the {self.limits.total_timeout:g} s allowed for the whole "
                                      "export (SCREEN_EXPORT_TIMEOUT_SECONDS)")
        return left

    def _wait(self, seconds: float) -> None:
        left = self._left("waiting for the export")
        if seconds >= left:
            raise ExportLimitExceeded(f"the export was not ready within the {self.limits.total_timeout:g} s allowed "
                                      "(SCREEN_EXPORT_TIMEOUT_SECONDS)")
        self._sleep(max(0.0, seconds))

    def _headers(self, accept: str, send_token: bool = True) -> dict[str, str]:
        headers = {"Accept": accept}
        if send_token and self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _timeouts(self, left: float) -> tuple[float, float]:
        return (min(self.limits.connect_timeout, left), min(self.limits.read_timeout, left))

    def _call(self, method: str, url: str, what: str, *, accept: str, extra: Mapping[str, str] | None = None,
              within: float | None = None) -> tuple[int, Mapping[str, str], bytes]:
        """One JSON request, read whole under the response cap; _CutOff when the server cannot be reached."""
        left = within if within is not None else min(self.limits.request_timeout, self._left(what))
        headers = self._headers(accept) | dict(extra or {})
        with hard_deadline(left) as watch:
            try:
                response = self.session.request(method, url, headers=headers, timeout=self._timeouts(left),
                                                allow_redirects=False, stream=True)
            except requests.RequestException as error:
                self._check_watch(watch, what)
                raise _CutOff(f"{what}: {type(error).__name__}") from None
            with response:
                log.info("bulk export %s %s -> %s", method, what, response.status_code)
                if 300 <= response.status_code < 400:
                    raise ExportRefused(f"the FHIR server redirected {what} (HTTP {response.status_code}); "
                                        "redirects are not followed with the access token")
                body = self._read_capped(response, what, watch)
            return response.status_code, response.headers, body

    def _check_watch(self, watch: Watch | None, what: str) -> None:
        if watch is not None and watch.expired:
            raise ExportLimitExceeded(f"{what} took longer than allowed (CDS_FHIR_TOTAL_TIMEOUT_SECONDS, "
                                      "SCREEN_EXPORT_TIMEOUT_SECONDS)")

    def _read_capped(self, response: requests.Response, what: str, watch: Watch | None) -> bytes:
        cap = self.limits.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise ExportLimitExceeded(f"the answer to {what} is larger than the {cap} bytes allowed "
                                      "(CDS_FHIR_MAX_RESPONSE_BYTES)")
        pieces, size = [], 0
        try:
            while piece := response.raw.read1(_CHUNK, decode_content=True):
                size += len(piece)
                if size > cap:
                    raise ExportLimitExceeded(f"the answer to {what} is larger than the {cap} bytes allowed "
                                              "(CDS_FHIR_MAX_RESPONSE_BYTES)")
                pieces.append(piece)
        except (urllib3.exceptions.HTTPError, OSError, requests.RequestException):
            self._check_watch(watch, what)
            raise _CutOff(f"the answer to {what} could not be read completely") from None
        return b"".join(pieces)

    def _answer_error(self, status: int, body: bytes, what: str) -> ExportError:
        if status in (401, 403):
            return ExportError(f"the FHIR server refused access to {what} (HTTP {status}); check "
                               "SCREEN_EXPORT_BEARER_TOKEN")
        reason = outcome_text(body)
        if status >= 400:
            return ExportFailed(f"the FHIR server reported that {what} failed (HTTP {status})"
                                + (f": {reason}" if reason else " with no OperationOutcome"))
        return ExportError(f"the FHIR server answered {what} with HTTP {status}, not what the Bulk Data IG gives"
                           + (f": {reason}" if reason else ""))

    def _manifest(self, body: bytes) -> dict[str, Any]:
        try:
            manifest = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ExportError("the export's completion manifest is not JSON") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), list):
            raise ExportError("the export's completion manifest has no output list")
        return manifest

    def _entries(self, manifest: Mapping[str, Any], key: str) -> list[tuple[str, str, int | None]]:
        entries = manifest.get(key) or []
        if not isinstance(entries, list):
            raise ExportError(f"the export's completion manifest has a {key} that is not a list")
        found = []
        for index, entry in enumerate(entries):
            kind = entry.get("type") if isinstance(entry, dict) else None
            url = entry.get("url") if isinstance(entry, dict) else None
            if not isinstance(kind, str) or not _TYPE_NAME.match(kind) or not isinstance(url, str):
                raise ExportError(f"the export's completion manifest has {key}[{index}] without a resource type "
                                  "and a url")
            count = entry.get("count")
            found.append((kind, url, count if isinstance(count, int) and not isinstance(count, bool) else None))
        return found

    def _download(self, url: str, dest: Path, name: str, kind: str, send_token: bool, result: ExportResult,
                  label: str) -> DownloadedFile:
        """One file, tried again when cut off, written as `<name>.part` then renamed (never half a file)."""
        target = dest / name
        partial = target.with_name(target.name + ".part")
        budget = self.limits.max_total_bytes - result.total_bytes
        last = ""
        for attempt in range(1, self.limits.attempts + 1):
            try:
                size, lines = self._download_once(url, partial, name, send_token, budget, label)
            except _CutOff as error:
                last = str(error)
                if attempt < self.limits.attempts:
                    self._progress(f"{name}: {last}; trying again (try {attempt + 1} of {self.limits.attempts})")
                continue
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            partial.replace(target)
            self._progress(f"{name}: {_size(size)}, {lines} lines ({label}; {_size(result.total_bytes + size)} "
                           "downloaded in all)")
            return DownloadedFile(kind, name, size, lines)
        partial.unlink(missing_ok=True)
        raise DownloadIncomplete(f"{name} ({label}) arrived cut off in each of {self.limits.attempts} tries "
                                 f"(SCREEN_EXPORT_ATTEMPTS): {last}")

    def _download_once(self, url: str, partial: Path, name: str, send_token: bool, budget: int,
                       label: str) -> tuple[int, int]:
        what = f"{name} ({label})"
        left = self._left(f"downloading {what}")
        with hard_deadline(left) as watch:
            try:
                response = self.session.get(url, headers=self._headers(NDJSON_FORMAT, send_token),
                                            timeout=self._timeouts(left), allow_redirects=False, stream=True)
            except requests.RequestException as error:
                self._check_watch(watch, f"downloading {what}")
                raise _CutOff(f"the file server could not be reached ({type(error).__name__})") from None
            with response:
                self._check_file_status(response.status_code, what)
                return self._stream_to(response, partial, name, budget, watch)

    def _check_file_status(self, status: int, what: str) -> None:
        if status == 200:
            return
        if status in (401, 403):
            raise ExportError(f"the file server refused access to {what} (HTTP {status}); check "
                              "SCREEN_EXPORT_BEARER_TOKEN")
        if status in (404, 410):
            raise ExportExpired(f"{what} is gone from the file server (HTTP {status}); the export has expired")
        if 300 <= status < 400:
            raise ExportRefused(f"the file server redirected {what} (HTTP {status}); redirects are not followed")
        if status in (429, 500, 502, 503, 504):
            raise _CutOff(f"the file server answered HTTP {status}")
        raise ExportError(f"the file server answered {what} with HTTP {status}")

    def _stream_to(self, response: requests.Response, partial: Path, name: str, budget: int,
                   watch: Watch | None) -> tuple[int, int]:
        """Stream the body to disk under the caps; _CutOff unless every byte announced arrived."""
        encoded = response.headers.get("Content-Encoding", "").strip().lower() not in ("", "identity")
        declared_text = response.headers.get("Content-Length", "")
        declared = int(declared_text) if declared_text.isdigit() else None
        if declared is not None and not encoded and declared > min(self.limits.max_file_bytes, budget):
            raise self._too_large(name, declared)
        size = lines = 0
        tail = b""  # what follows the last newline so far
        shown_at = self._clock()
        try:
            with partial.open("wb") as out:
                while piece := response.raw.read1(_CHUNK, decode_content=True):
                    size += len(piece)
                    if size > self.limits.max_file_bytes or size > budget:
                        raise self._too_large(name, size)
                    out.write(piece)
                    newlines = piece.count(b"\n")
                    lines += newlines
                    tail = piece[piece.rfind(b"\n") + 1:] if newlines else tail + piece
                    if self._clock() - shown_at >= _PROGRESS_EVERY_SECONDS:
                        shown_at = self._clock()
                        of = f" of {_size(declared)}" if declared is not None and not encoded else ""
                        self._progress(f"{name}: {_size(size)}{of} so far")
        except (urllib3.exceptions.HTTPError, OSError, requests.RequestException):
            self._check_watch(watch, f"downloading {name}")
            of = f" of {_size(declared)}" if declared is not None and not encoded else ""
            raise _CutOff(f"the connection dropped after {_size(size)}{of}") from None
        received = response.raw.tell()
        if declared is not None and received != declared:
            raise _CutOff(f"{received} of the {declared} bytes announced arrived")
        if tail.strip():
            try:
                orjson.loads(tail)
            except orjson.JSONDecodeError:
                raise _CutOff("it ends in the middle of a line") from None
            lines += 1
        return size, lines

    def _too_large(self, name: str, size: int) -> ExportLimitExceeded:
        return ExportLimitExceeded(f"{name} is larger ({_size(size)}) than the cap per file "
                                   f"(SCREEN_EXPORT_MAX_FILE_BYTES, {_size(self.limits.max_file_bytes)}) or what is "
                                   f"left of the cap for the export (SCREEN_EXPORT_MAX_TOTAL_BYTES, "
                                   f"{_size(self.limits.max_total_bytes)})")

def _size(size: int | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"  # pragma: no cover


def fetch_export(base_url: str, dest: Path, *, group: str | None = None, since: str | None = None,
                 settings: Mapping[str, Any] | None = None, resume: bool = False,
                 progress: Callable[[str], None] | None = stderr_progress) -> ExportResult:
    """`download_export`; with `resume`, the export `dest` already holds when it finished for the same request
    (else what an interrupted download left is cleared and the export starts over)."""
    if resume:
        try:
            done = read_finished_export(dest)
        except (OSError, ValueError):
            raise ExportError(f"{Path(dest) / MANIFEST_FILE} cannot be read; remove the folder to download "
                              "again") from None
        if done is not None:
            client = BulkExportClient.from_config(settings or {}, progress=progress)
            expected = client.kick_off_url(client._allowed(base_url, "the FHIR server"), group=group, since=since)
            if done.request != expected:
                raise ExportError(f"{dest} holds an export made with another request (server, --group or --since); "
                                  "give another --out")
            if progress:
                progress(f"reusing the export already downloaded into {dest} ({len(done.files)} files)")
            return done
        clear_unfinished_export(dest)
    return download_export(base_url, dest, group=group, since=since, settings=settings, progress=progress)


def download_export(base_url: str, dest: Path, *, group: str | None = None, since: str | None = None,
                    settings: Mapping[str, Any] | None = None,
                    progress: Callable[[str], None] | None = stderr_progress) -> ExportResult:
    """Run a Bulk Data export of `base_url` into `dest` with the configured allowlist, limits and token."""
    client = BulkExportClient.from_config(settings or {}, progress=progress)
    with client.session:
        return client.run(base_url, Path(dest), group=group, since=since)

"""The `$export` client's decisions, with HTTP mocked (`responses`) and time faked: where a process is overkill.

Waits are recorded by a fake sleep that moves a fake clock, so Retry-After, the cap on each wait, the
backoff and the overall deadline are checked exactly without waiting.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import orjson
import pytest
import requests
import responses

from service.screening.bulk_export import (BulkExportClient, DownloadIncomplete, ExportError, ExportFailed,
                                           ExportLimitExceeded, ExportLimits, ExportRefused, export_types,
                                           fetch_export)
from service.screening.export_answers import retry_after_seconds
from service.screening.export_folder import error_file_issues

BASE = "https://ehr.example.org/fhir"
KICK_OFF = f"{BASE}/Patient/$export"
STATUS = f"{BASE}/bulkstatus/job-1"
FILES = "https://ehr.example.org/fhir/bulkfiles"
TOKEN = "tok-3f9c-secret"
START = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)


class FakeTime:
    """A monotonic clock that moves only when the client sleeps, and a wall clock moving with it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def wall(self) -> datetime:
        return START + timedelta(seconds=self.now - 1000.0)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def progress() -> list[str]:
    return []


def _client(fake_time: FakeTime, progress: list[str], **limits: object) -> BulkExportClient:
    return BulkExportClient(ExportLimits(allowlist=(BASE,), **limits), token=TOKEN, progress=progress.append,
                            sleep=fake_time.sleep, clock=fake_time.clock, wall_clock=fake_time.wall)


def _line(kind: str, rid: str) -> bytes:
    return orjson.dumps({"resourceType": kind, "id": rid, "subject": {"reference": "Patient/p1"}}) + b"\n"


def _manifest(outputs: list[tuple[str, str]], *, errors: list[str] = (), requires_token: bool = True,
              counts: dict[str, int] | None = None) -> dict:
    return {"transactionTime": "2026-11-15T09:00:00Z", "request": KICK_OFF, "requiresAccessToken": requires_token,
            "output": [{"type": kind, "url": url, **({"count": counts[url]} if counts and url in counts else {})}
                       for kind, url in outputs],
            "error": [{"type": "OperationOutcome", "url": url} for url in errors]}


def _kick_off_accepted(location: str = STATUS) -> None:
    responses.get(KICK_OFF, status=202, headers={"Content-Location": location})


def _ready(manifest: dict) -> None:
    responses.get(STATUS, json=manifest)
    responses.delete(STATUS, status=202)


def _calls(method: str, prefix: str) -> list[responses.Call]:
    return [call for call in responses.calls if call.request.method == method and call.request.url.startswith(prefix)]


# --- Retry-After ---------------------------------------------------------------------------------

def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_seconds("5", START) == 5.0
    assert retry_after_seconds(format_datetime(START + timedelta(seconds=30), usegmt=True), START) == 30.0
    assert retry_after_seconds(format_datetime(START - timedelta(seconds=30), usegmt=True), START) == 0.0
    assert retry_after_seconds("soon", START) is None
    assert retry_after_seconds(None, START) is None


@responses.activate
def test_the_wait_is_what_the_server_asks_in_seconds_or_as_a_date(fake_time, progress, tmp_path):
    _kick_off_accepted()
    responses.get(STATUS, status=202, headers={"Retry-After": "7", "X-Progress": "Exporting: 10% done"})
    told_date = format_datetime(START + timedelta(seconds=7 + 25), usegmt=True)  # 25 s after the second poll
    responses.get(STATUS, status=202, headers={"Retry-After": told_date})
    _ready(_manifest([]))

    result = _client(fake_time, progress).run(BASE, tmp_path / "out")

    assert fake_time.waits == [7.0, 25.0]
    assert result.polls == 3
    assert any("status poll 1: in progress (10%); next poll in 7 s" in line for line in progress)


@responses.activate
def test_a_long_retry_after_is_capped_and_no_retry_after_backs_off(fake_time, progress, tmp_path):
    _kick_off_accepted()
    responses.get(STATUS, status=202, headers={"Retry-After": "3600"})
    for _ in range(4):
        responses.get(STATUS, status=202)
    _ready(_manifest([]))

    _client(fake_time, progress, max_poll_wait=5).run(BASE, tmp_path / "out")

    assert fake_time.waits == [5.0, 2.0, 4.0, 5.0, 5.0]


@responses.activate
def test_a_busy_server_429_is_waited_out_not_taken_for_a_failure(fake_time, progress, tmp_path):
    _kick_off_accepted()
    responses.get(STATUS, status=429, headers={"Retry-After": "11"})
    _ready(_manifest([]))

    _client(fake_time, progress).run(BASE, tmp_path / "out")

    assert fake_time.waits == [11.0]


@responses.activate
def test_an_export_never_ready_stops_at_the_overall_deadline_and_is_cleaned_up(fake_time, progress, tmp_path):
    _kick_off_accepted()
    responses.get(STATUS, status=202, headers={"Retry-After": "30"})
    responses.delete(STATUS, status=202)

    with pytest.raises(ExportLimitExceeded, match="SCREEN_EXPORT_TIMEOUT_SECONDS"):
        _client(fake_time, progress, total_timeout=100).run(BASE, tmp_path / "out")

    assert sum(fake_time.waits) < 100
    assert len(_calls("DELETE", STATUS)) == 1


@responses.activate
def test_status_polls_that_cannot_reach_the_server_are_tried_again_a_bounded_number_of_times(fake_time, progress,
                                                                                             tmp_path):
    _kick_off_accepted()
    responses.get(STATUS, body=requests.ConnectionError("refused"))
    responses.get(STATUS, body=requests.ConnectionError("refused"))
    _ready(_manifest([]))

    _client(fake_time, progress).run(BASE, tmp_path / "out")  # two failures, then the manifest
    assert len(_calls("GET", STATUS)) == 3

    responses.reset()
    _kick_off_accepted()
    responses.get(STATUS, body=requests.ConnectionError("refused"))
    responses.delete(STATUS, status=202)
    with pytest.raises(ExportError, match="could not be read 3 times in a row"):
        _client(fake_time, progress).run(BASE, tmp_path / "out2")


# --- what may be contacted -----------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    ({"group": "no spaces"}, "is not a FHIR id"),
    ({"since": "yesterday"}, "is not an instant"),
    ({"since": "2026-10-01T00:00:00"}, "has no time zone"),
])
@responses.activate
def test_bad_options_are_refused_before_any_request(fake_time, progress, tmp_path, options, message):
    with pytest.raises(ExportRefused, match=message):
        _client(fake_time, progress).run(BASE, tmp_path / "out", **options)
    assert len(responses.calls) == 0


@responses.activate
def test_a_folder_already_holding_an_export_is_refused_before_any_request(fake_time, progress, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "Patient.ndjson").write_text("{}\n")
    with pytest.raises(ExportError, match="already holds an export"):
        _client(fake_time, progress).run(BASE, tmp_path / "out")
    assert len(responses.calls) == 0


@pytest.mark.parametrize("server", ["https://ehr.example.org/other", "https://ehr.example.org/fhir/../admin",
                                    "https://evil.example.org/fhir", "ftp://ehr.example.org/fhir"])
@responses.activate
def test_a_server_off_the_allowlist_is_never_contacted(fake_time, progress, tmp_path, server):
    with pytest.raises(ExportRefused):
        _client(fake_time, progress).run(server, tmp_path / "out")
    assert len(responses.calls) == 0


@responses.activate
def test_a_status_url_on_another_server_is_never_polled(fake_time, progress, tmp_path):
    _kick_off_accepted("https://collector.example.net/status/1")

    with pytest.raises(ExportRefused, match="status URL .* not on this service's allowlist"):
        _client(fake_time, progress).run(BASE, tmp_path / "out")

    assert [call.request.url.split("?")[0] for call in responses.calls] == [KICK_OFF]


@responses.activate
def test_a_relative_status_url_is_read_against_the_kick_off_url(fake_time, progress, tmp_path):
    _kick_off_accepted("../bulkstatus/job-1")
    _ready(_manifest([]))

    _client(fake_time, progress).run(BASE, tmp_path / "out")

    assert len(_calls("GET", STATUS)) == 1


@responses.activate
def test_a_file_url_off_the_allowlist_stops_the_export_before_any_download(fake_time, progress, tmp_path):
    _kick_off_accepted()
    _ready(_manifest([("Patient", f"{FILES}/1.ndjson"), ("Observation", "https://cdn.example.net/2.ndjson")]))

    with pytest.raises(ExportRefused, match="file URL .* not on this service's allowlist"):
        _client(fake_time, progress).run(BASE, tmp_path / "out")

    assert not _calls("GET", FILES) and len(_calls("DELETE", STATUS)) == 1


@responses.activate
def test_a_redirected_kick_off_is_not_followed(fake_time, progress, tmp_path):
    responses.get(KICK_OFF, status=302, headers={"Location": "https://evil.example.org/steal"})

    with pytest.raises(ExportRefused, match="redirected"):
        _client(fake_time, progress).run(BASE, tmp_path / "out")

    assert len(responses.calls) == 1


@responses.activate
def test_a_refused_kick_off_carries_the_servers_outcome(fake_time, progress, tmp_path):
    responses.get(KICK_OFF, status=400, json={"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "not-supported", "diagnostics": "_type ServiceRequest is not supported"}]})

    with pytest.raises(ExportFailed, match=r"kick-off failed \(HTTP 400\): _type ServiceRequest is not supported"):
        _client(fake_time, progress).run(BASE, tmp_path / "out")


@responses.activate
def test_the_kick_off_asks_for_ndjson_of_the_types_the_rules_read(fake_time, progress, tmp_path):
    _kick_off_accepted()
    _ready(_manifest([]))

    _client(fake_time, progress).run(BASE, tmp_path / "out", since="2026-10-01T00:00:00+02:00")

    request = responses.calls[0].request
    assert request.headers["Accept"] == "application/fhir+json" and request.headers["Prefer"] == "respond-async"
    assert request.params == {"_outputFormat": "application/fhir+ndjson", "_type": ",".join(export_types()),
                              "_since": "2026-10-01T00:00:00+02:00"}
    assert {"Patient", "Observation", "Condition", "MedicationRequest", "Procedure"} <= set(export_types())
    assert "Encounter" not in export_types() and "Claim" not in export_types()


# --- downloads -----------------------------------------------------------------------------------

@responses.activate
def test_a_body_shorter_than_its_content_length_is_fetched_again(fake_time, progress, tmp_path):
    whole = _line("Patient", "p1") + _line("Patient", "p2")
    _kick_off_accepted()
    _ready(_manifest([("Patient", f"{FILES}/1.ndjson")]))
    responses.get(f"{FILES}/1.ndjson", body=whole[:30], headers={"Content-Length": str(len(whole))},
                  auto_calculate_content_length=False)
    responses.get(f"{FILES}/1.ndjson", body=whole)

    result = _client(fake_time, progress).run(BASE, tmp_path / "out")

    assert (tmp_path / "out" / "Patient.ndjson").read_bytes() == whole
    assert result.files[0].lines == 2
    assert any("trying again (try 2 of 3)" in line for line in progress)


@responses.activate
def test_a_last_line_cut_mid_way_without_a_length_is_fetched_again_then_refused(fake_time, progress, tmp_path):
    whole = _line("Patient", "p1") + _line("Patient", "p2")
    _kick_off_accepted()
    _ready(_manifest([("Patient", f"{FILES}/1.ndjson")]))
    responses.get(f"{FILES}/1.ndjson", body=whole[:-20])

    with pytest.raises(DownloadIncomplete, match=r"Patient\.ndjson .*each of 3 tries.*middle of a line"):
        _client(fake_time, progress).run(BASE, tmp_path / "out")

    assert len(_calls("GET", FILES)) == 3
    assert list((tmp_path / "out").iterdir()) == []


@responses.activate
def test_a_last_line_without_newline_but_whole_is_kept(fake_time, progress, tmp_path):
    whole = _line("Patient", "p1") + _line("Patient", "p2").rstrip(b"\n")
    _kick_off_accepted()
    _ready(_manifest([("Patient", f"{FILES}/1.ndjson")]))
    responses.get(f"{FILES}/1.ndjson", body=whole)

    result = _client(fake_time, progress).run(BASE, tmp_path / "out")

    assert result.files[0].lines == 2 and len(_calls("GET", FILES)) == 1


@responses.activate
def test_the_cap_per_file_and_in_total_stop_the_export_and_leave_no_part(fake_time, progress, tmp_path):
    line = _line("Observation", "o1")
    _kick_off_accepted()
    _ready(_manifest([("Patient", f"{FILES}/1.ndjson"), ("Observation", f"{FILES}/2.ndjson")]))
    responses.get(f"{FILES}/1.ndjson", body=line * 2)
    responses.get(f"{FILES}/2.ndjson", body=line * 2)

    with pytest.raises(ExportLimitExceeded, match="SCREEN_EXPORT_MAX_TOTAL_BYTES"):
        _client(fake_time, progress, max_total_bytes=len(line) * 3).run(BASE, tmp_path / "out")
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["Patient.ndjson"]

    with pytest.raises(ExportLimitExceeded, match="SCREEN_EXPORT_MAX_FILE_BYTES"):
        _client(fake_time, progress, max_file_bytes=len(line)).run(BASE, tmp_path / "out2")
    assert list((tmp_path / "out2").iterdir()) == []


@pytest.mark.parametrize("requires_token", [True, False])
@responses.activate
def test_the_token_goes_to_files_only_when_the_manifest_requires_it_and_is_never_shown(
        fake_time, progress, tmp_path, caplog, requires_token):
    caplog.set_level(logging.DEBUG)
    _kick_off_accepted()
    _ready(_manifest([("Patient", f"{FILES}/1.ndjson")], requires_token=requires_token))
    responses.get(f"{FILES}/1.ndjson", body=_line("Patient", "p1"))

    _client(fake_time, progress).run(BASE, tmp_path / "out")

    assert all(call.request.headers["Authorization"] == f"Bearer {TOKEN}"
               for call in responses.calls if not call.request.url.startswith(FILES))
    (download,) = _calls("GET", FILES)
    assert ("Authorization" in download.request.headers) is requires_token
    assert TOKEN not in "\n".join(progress) + caplog.text
    assert TOKEN not in "".join(path.read_text() for path in (tmp_path / "out").glob("*.json"))


@responses.activate
def test_types_not_asked_for_are_skipped_and_a_count_mismatch_is_reported(fake_time, progress, tmp_path):
    _kick_off_accepted()
    _ready(_manifest([("Patient", f"{FILES}/1.ndjson"), ("Encounter", f"{FILES}/2.ndjson")],
                     counts={f"{FILES}/1.ndjson": 3}))
    responses.get(f"{FILES}/1.ndjson", body=_line("Patient", "p1") * 2)

    result = _client(fake_time, progress).run(BASE, tmp_path / "out")

    assert [item.name for item in result.files] == ["Patient.ndjson"]
    assert not _calls("GET", f"{FILES}/2.ndjson")
    assert [(issue["severity"], issue.get("source")) for issue in result.issues] == [
        ("information", None), ("warning", "Patient.ndjson")]
    assert "Encounter" in result.issues[0]["diagnostics"] and "gives 3 resources" in result.issues[1]["diagnostics"]


@responses.activate
def test_a_file_gone_from_the_server_says_the_export_expired(fake_time, progress, tmp_path):
    _kick_off_accepted()
    _ready(_manifest([("Patient", f"{FILES}/1.ndjson")]))
    responses.get(f"{FILES}/1.ndjson", status=404)

    with pytest.raises(ExportError, match=r"Patient\.ndjson .*gone from the file server \(HTTP 404\)"):
        _client(fake_time, progress).run(BASE, tmp_path / "out")


def test_error_file_lines_become_issues_each_with_its_line(tmp_path):
    path = tmp_path / "errors.ndjson"
    path.write_bytes(b"\n".join([
        orjson.dumps({"resourceType": "OperationOutcome", "issue": [
            {"severity": "warning", "code": "processing", "details": {"text": "Observation/o1 has no code"}},
            {"severity": "bogus", "code": 7}]}),
        b"not json",
        orjson.dumps({"resourceType": "Patient", "id": "p1"}),
    ]) + b"\n")

    issues = error_file_issues(path, "errors/OperationOutcome.ndjson")

    assert [(issue["source"], issue["severity"], issue["code"]) for issue in issues] == [
        ("errors/OperationOutcome.ndjson:1", "warning", "processing"), ("errors/OperationOutcome.ndjson:1", "error", "exception"),
        ("errors/OperationOutcome.ndjson:2", "error", "structure"), ("errors/OperationOutcome.ndjson:3", "error", "structure")]
    assert issues[0]["diagnostics"] == "the FHIR server reported: Observation/o1 has no code"


# --- a resumed screen reuses a finished download -------------------------------------------------

def _serve_one_file_export() -> None:
    _kick_off_accepted()
    _ready(_manifest([("Patient", f"{FILES}/1.ndjson")], errors=[f"{FILES}/err.ndjson"]))
    responses.get(f"{FILES}/1.ndjson", body=_line("Patient", "p1"))
    responses.get(f"{FILES}/err.ndjson", body=orjson.dumps({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "processing", "diagnostics": "Observation/o9 failed"}]}) + b"\n")


@responses.activate
def test_resume_reuses_a_finished_export_for_the_same_request_without_contacting_the_server(tmp_path, progress):
    settings = {"CDS_FHIR_SERVER_ALLOWLIST": [BASE], "SCREEN_EXPORT_BEARER_TOKEN": TOKEN}
    _serve_one_file_export()
    first = fetch_export(BASE, tmp_path / "export", since="2026-10-01T00:00:00Z", settings=settings, progress=None)
    calls = len(responses.calls)

    again = fetch_export(BASE, tmp_path / "export", since="2026-10-01T00:00:00Z", settings=settings, resume=True,
                         progress=progress.append)

    assert len(responses.calls) == calls
    assert again.files == first.files and again.issues == first.issues and len(again.issues) == 1
    assert again.request == first.request and "_since=2026-10-01T00:00:00Z" in again.request
    assert "reusing the export" in progress[-1]
    with pytest.raises(ExportError, match="another request"):
        fetch_export(BASE, tmp_path / "export", group="g1", settings=settings, resume=True, progress=None)
    with pytest.raises(ExportError, match="already holds an export"):
        fetch_export(BASE, tmp_path / "export", since="2026-10-01T00:00:00Z", settings=settings, progress=None)


@responses.activate
def test_resume_after_an_interrupted_download_starts_it_over(tmp_path):
    dest = tmp_path / "export"
    (dest / "errors").mkdir(parents=True)
    (dest / "Patient.ndjson").write_bytes(b'{"resourceType": "Patient", "id": "stale"}\n')
    (dest / "Observation.ndjson.part").write_bytes(b'{"resourceType": "Obs')
    (dest / "errors" / "OperationOutcome.ndjson").write_bytes(b"{}\n")
    (dest / "notes.txt").write_text("kept")
    _serve_one_file_export()

    fetch_export(BASE, dest, settings={"CDS_FHIR_SERVER_ALLOWLIST": [BASE]}, resume=True, progress=None)

    assert (dest / "Patient.ndjson").read_bytes() == _line("Patient", "p1")
    assert not (dest / "Observation.ndjson.part").exists() and (dest / "notes.txt").exists()
    assert b"Observation/o9" in (dest / "errors" / "OperationOutcome.ndjson").read_bytes()


@responses.activate
def test_retry_after_zero_again_and_again_is_not_a_busy_loop(fake_time, progress, tmp_path):
    _kick_off_accepted()
    for _ in range(3):
        responses.get(STATUS, status=202, headers={"Retry-After": "0"})
    _ready(_manifest([]))

    _client(fake_time, progress).run(BASE, tmp_path / "out")

    assert fake_time.waits == [0.5, 0.5, 0.5]


@responses.activate
def test_an_error_file_that_cannot_be_had_is_an_issue_not_a_lost_export(fake_time, progress, tmp_path):
    _kick_off_accepted()
    _ready(_manifest([("Patient", f"{FILES}/1.ndjson")], errors=[f"{FILES}/err.ndjson"]))
    responses.get(f"{FILES}/1.ndjson", body=_line("Patient", "p1"))
    responses.get(f"{FILES}/err.ndjson", status=410)

    result = _client(fake_time, progress).run(BASE, tmp_path / "out")

    assert [item.name for item in result.files] == ["Patient.ndjson"] and result.error_files == []
    (issue,) = result.issues
    assert issue["severity"] == "warning" and issue["source"] == "errors/OperationOutcome.ndjson"
    assert "error file could not be downloaded" in issue["diagnostics"] and "HTTP 410" in issue["diagnostics"]
    assert (tmp_path / "out" / "export-manifest.json").exists()

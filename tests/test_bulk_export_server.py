"""The `$export` client against a Bulk Data server running as a real process on 127.0.0.1.

The server (`tests/support/bulk_data_server.py`) serves an export folder and misbehaves as each test
configures it: slow (202 with Retry-After), a failed export, an expired status URL, a download cut off
half-way, a bearer token required. It records every request, so the tests check what the client
sent and when, not only what it returned. No timing assertions: waits are checked as an order (the
client never polled before the instant it was told), with slack for clock granularity only.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from service.screening.bulk_export import (DownloadIncomplete, ExportError, ExportExpired, ExportFailed,
                                           ExportRefused, download_export, export_types)
from tests.support.bulk_data_server import BulkServers, RunningServer

ROOT = Path(__file__).resolve().parents[1]
TOOLS_DIR = ROOT / "fhir_fixtures" / "assess" / "tools"
if str(TOOLS_DIR) not in sys.path:
    sys.path.insert(0, str(TOOLS_DIR))

from synthetic_export import write_export  # noqa: E402
CLOCK_SLACK_SECONDS = 0.05  # time.time() of one process against the sleeps of another: only granularity


def _line(resource: dict[str, Any]) -> str:
    return json.dumps(resource, separators=(",", ":"))


def write_small_export(folder: Path) -> dict[str, list[str]]:
    """A hand-written export folder: three patients, labs, a condition, and an Encounter the rules never read."""
    folder.mkdir(parents=True, exist_ok=True)
    patients = [{"resourceType": "Patient", "id": f"p{n}", "meta": {"lastUpdated": f"2026-0{n}-01T00:00:00Z"}}
                for n in (1, 2, 3)]
    observations = [
        {"resourceType": "Observation", "id": f"o{n}", "status": "final", "subject": {"reference": f"Patient/p{n % 3 + 1}"},
         "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6"}]},
         "effectiveDateTime": "2026-10-0{0}".format(n % 9 + 1),
         "valueQuantity": {"value": 9 + n / 10, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}}
        for n in range(7)]
    conditions = [{"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p2"},
                   "code": {"coding": [{"system": "http://snomed.info/sct", "code": "46177005"}]}}]
    encounters = [{"resourceType": "Encounter", "id": "e1", "status": "finished", "subject": {"reference": "Patient/p1"}}]
    served = {"Patient": patients, "Observation": observations, "Condition": conditions, "Encounter": encounters}
    for kind, resources in served.items():
        (folder / f"{kind}.ndjson").write_text("".join(_line(item) + "\n" for item in resources), encoding="utf-8")
    return {kind: [_line(item) for item in resources] for kind, resources in served.items()}


@pytest.fixture
def served_data(tmp_path: Path) -> tuple[Path, dict[str, list[str]]]:
    folder = tmp_path / "served"
    return folder, write_small_export(folder)


@pytest.fixture
def bulk_server(tmp_path: Path, served_data) -> Iterator[Callable[..., RunningServer]]:
    """Start a server with the given configuration (the small export served unless `data` is given)."""
    servers = BulkServers(tmp_path, served_data[0])
    yield servers.start
    servers.stop_all()


def _downloaded_lines(folder: Path, kind: str) -> list[str]:
    """The lines of `<kind>.ndjson`, `<kind>.2.ndjson`, ... in their numbered order."""
    names = [f"{kind}.ndjson"] + [f"{kind}.{n}.ndjson" for n in range(2, 100)]
    lines: list[str] = []
    for name in names:
        path = folder / name
        if not path.exists():
            break
        lines.extend(path.read_text("utf-8").splitlines())
    return lines


def _polls(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in log if entry["method"] == "GET" and "/_export-status/" in entry["path"]]


def test_the_whole_export_is_downloaded_as_served_split_into_numbered_files_per_type(bulk_server, served_data, tmp_path):
    _folder, served = served_data
    server = bulk_server(polls_before_ready=2, retry_after=1, lines_per_file=3)
    dest = tmp_path / "export"

    result = download_export(server.base, dest, settings=server.settings(), progress=None)

    for kind in ("Patient", "Observation", "Condition"):
        assert _downloaded_lines(dest, kind) == served[kind], kind
    assert (dest / "Observation.3.ndjson").exists()  # 7 lines in files of 3
    assert not list(dest.glob("Encounter*")), "a type the rules never read is not even asked for"
    assert not list(dest.glob("*.part"))
    assert sorted(item.name for item in result.files) == sorted(path.name for path in dest.glob("*.ndjson"))
    assert sum(item.lines for item in result.files) == 3 + 7 + 1
    recorded = json.loads((dest / "export-manifest.json").read_text("utf-8"))
    assert [entry["file"] for entry in recorded["output"]] == [item.name for item in result.files]
    assert "url" not in json.dumps(recorded)

    log = server.log()
    kick_off = log[0]
    assert kick_off["path"] == "/fhir/Patient/$export"
    assert kick_off["accept"] == "application/fhir+json" and kick_off["prefer"] == "respond-async"
    assert kick_off["query"] == {"_outputFormat": "application/fhir+ndjson", "_type": ",".join(export_types())}
    assert "Encounter" not in kick_off["query"]["_type"].split(",")
    assert [entry["status"] for entry in _polls(log)] == [202, 202, 200]
    assert log[-1]["method"] == "DELETE" and "/_export-status/" in log[-1]["path"]


@pytest.mark.parametrize("as_date", [False, True], ids=["seconds", "http-date"])
def test_the_client_never_polls_before_the_retry_after_it_was_given(bulk_server, tmp_path, as_date):
    server = bulk_server(polls_before_ready=3, retry_after=1, retry_after_as_date=as_date)

    result = download_export(server.base, tmp_path / "export", settings=server.settings(), progress=None)

    polls = _polls(server.log())
    assert result.polls == len(polls) == 4
    for told, then in zip(polls, polls[1:]):
        assert told["not_before"] is not None
        assert then["at"] >= told["not_before"] - CLOCK_SLACK_SECONDS, (told, then)


def test_progress_a_person_can_watch_names_polls_percent_and_bytes(bulk_server, tmp_path):
    server = bulk_server(polls_before_ready=2, retry_after=1)
    lines: list[str] = []

    download_export(server.base, tmp_path / "export", settings=server.settings(), progress=lines.append)

    text = "\n".join(lines)
    assert "status poll 1: in progress (0%)" in text and "status poll 2: in progress (50%)" in text
    assert "next poll in 1 s" in text
    assert any(re.fullmatch(r"Observation\.ndjson: [\d.]+ (B|KiB), 7 lines \(file 2 of 3; [\d.]+ KiB downloaded in all\)",
                            line) for line in lines), lines
    assert "cleanup" in lines[-1]


def test_a_failed_export_is_reported_with_the_servers_diagnostics_and_leaves_no_files(bulk_server, tmp_path):
    server = bulk_server(polls_before_ready=1, retry_after=0, fail_on_status=True)
    dest = tmp_path / "export"

    with pytest.raises(ExportFailed, match=r"HTTP 500.*the database went away"):
        download_export(server.base, dest, settings=server.settings(), progress=None)

    assert not list(dest.glob("*.ndjson")) and not (dest / "export-manifest.json").exists()
    log = server.log()
    assert not [entry for entry in log if "/_export-files/" in entry["path"]]
    assert log[-1]["method"] == "DELETE", "the failed export is still cleaned up"


@pytest.mark.parametrize("code", [404, 410])
def test_an_expired_status_url_says_so_and_is_not_deleted(bulk_server, tmp_path, code):
    server = bulk_server(expire_status=code)

    with pytest.raises(ExportExpired, match=rf"status URL is gone \(HTTP {code}\).*expired"):
        download_export(server.base, tmp_path / "export", settings=server.settings(), progress=None)

    assert [entry["method"] for entry in server.log()] == ["GET", "GET"]


def test_a_download_cut_off_half_way_is_tried_again_and_then_arrives_whole(bulk_server, served_data, tmp_path):
    _folder, served = served_data
    server = bulk_server(cut_off={"1.Observation.ndjson": 1})
    dest = tmp_path / "export"
    lines: list[str] = []

    download_export(server.base, dest, settings=server.settings(), progress=lines.append)

    assert _downloaded_lines(dest, "Observation") == served["Observation"]
    fetched = [entry for entry in server.log() if entry["path"].endswith("/1.Observation.ndjson")]
    assert len(fetched) == 2
    assert any("Observation.ndjson: the connection dropped after" in line and "try 2 of 3" in line for line in lines)


def test_a_download_cut_off_every_time_stops_the_export_naming_the_file(bulk_server, tmp_path):
    server = bulk_server(cut_off={"1.Observation.ndjson": -1})
    dest = tmp_path / "export"

    with pytest.raises(DownloadIncomplete, match=r"Observation\.ndjson .*cut off in each of 2 tries"):
        download_export(server.base, dest, settings=server.settings(SCREEN_EXPORT_ATTEMPTS=2), progress=None)

    fetched = [entry for entry in server.log() if entry["path"].endswith("/1.Observation.ndjson")]
    assert len(fetched) == 2
    assert not list(dest.glob("Observation*")) and not list(dest.glob("*.part"))
    assert not (dest / "export-manifest.json").exists()
    assert server.log()[-1]["method"] == "DELETE"


def test_a_server_not_on_the_allowlist_is_refused_before_any_request(bulk_server, tmp_path):
    server = bulk_server()

    with pytest.raises(ExportRefused, match="not on this service's allowlist"):
        download_export(server.base, tmp_path / "export",
                        settings={"CDS_FHIR_SERVER_ALLOWLIST": [server.root + "/other-fhir"]}, progress=None)

    assert server.log() == []


def test_the_bearer_token_is_sent_to_every_url_that_requires_it(bulk_server, served_data, tmp_path):
    _folder, served = served_data
    server = bulk_server(bearer="s3cret-token", polls_before_ready=1, retry_after=0)
    dest = tmp_path / "export"
    lines: list[str] = []

    download_export(server.base, dest, settings=server.settings(SCREEN_EXPORT_BEARER_TOKEN="s3cret-token"),
                    progress=lines.append)

    log = server.log()
    assert _downloaded_lines(dest, "Patient") == served["Patient"]
    assert len(log) >= 6 and all(entry["bearer"] for entry in log)
    assert "s3cret-token" not in "\n".join(lines)
    assert "s3cret-token" not in (dest / "export-manifest.json").read_text("utf-8")


def test_a_wrong_bearer_token_is_a_clear_refusal(bulk_server, tmp_path):
    server = bulk_server(bearer="s3cret-token")

    with pytest.raises(ExportError, match=r"refused access .*HTTP 401.*SCREEN_EXPORT_BEARER_TOKEN") as caught:
        download_export(server.base, tmp_path / "export",
                        settings=server.settings(SCREEN_EXPORT_BEARER_TOKEN="wrong-token"), progress=None)
    assert "wrong-token" not in str(caught.value)


def test_files_not_requiring_a_token_are_fetched_without_it(bulk_server, tmp_path):
    server = bulk_server()

    download_export(server.base, tmp_path / "export", settings=server.settings(SCREEN_EXPORT_BEARER_TOKEN="tok"),
                    progress=None)

    log = server.log()
    files = [entry for entry in log if "/_export-files/" in entry["path"]]
    assert files and not any(entry["bearer"] for entry in files)
    assert all(entry["bearer"] for entry in log if entry not in files)


def test_the_servers_error_files_become_issues_with_file_and_line(bulk_server, tmp_path):
    server = bulk_server(error_outcomes=["Observation/o9 could not be exported", "Condition/c7 is unreadable"])
    dest = tmp_path / "export"

    result = download_export(server.base, dest, settings=server.settings(), progress=None)

    assert (dest / "errors" / "OperationOutcome.ndjson").exists()
    assert not list(dest.glob("OperationOutcome*")), "error files stay apart from the data"
    assert [(issue["source"], issue["diagnostics"]) for issue in result.issues] == [
        ("errors/OperationOutcome.ndjson:1", "the FHIR server reported: Observation/o9 could not be exported"),
        ("errors/OperationOutcome.ndjson:2", "the FHIR server reported: Condition/c7 is unreadable"),
    ]
    assert all(issue["severity"] == "error" for issue in result.issues)


def test_a_group_export_since_an_instant_sends_both_and_gets_the_groups_changed_patients(bulk_server, tmp_path):
    server = bulk_server(groups={"dialysis-unit": ["p2", "p3"]})
    dest = tmp_path / "export"

    download_export(server.base, dest, group="dialysis-unit", since="2026-02-15T00:00:00Z",
                    settings=server.settings(), progress=None)

    kick_off = server.log()[0]
    assert kick_off["path"] == "/fhir/Group/dialysis-unit/$export"
    assert kick_off["query"]["_since"] == "2026-02-15T00:00:00Z"
    assert kick_off["query"]["_type"] == ",".join(export_types())
    patients = [json.loads(line)["id"] for line in _downloaded_lines(dest, "Patient")]
    assert patients == ["p3"]  # p2 last changed before _since; p1 not in the group
    subjects = {json.loads(line)["subject"]["reference"] for line in _downloaded_lines(dest, "Observation")}
    assert subjects == {"Patient/p2", "Patient/p3"}  # lab results carry no lastUpdated: all of the group's


def test_an_unknown_group_is_a_failed_kick_off_with_the_servers_words(bulk_server, tmp_path):
    server = bulk_server(groups={})

    with pytest.raises(ExportFailed, match=r"Group/nope/\$export kick-off failed \(HTTP 404\): Group/nope is not known"):
        download_export(server.base, tmp_path / "export", group="nope", settings=server.settings(), progress=None)


def _lines_by_type(folder: Path) -> dict[str, list[bytes]]:
    """The served folder's lines by file type (`Observation.ndjson.gz` -> Observation), decompressed."""
    found: dict[str, list[bytes]] = {}
    for path in sorted(folder.iterdir()):
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        found[path.name.split(".", 1)[0]] = [line for line in raw.splitlines() if line.strip()]
    return found


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip-files-and-transfer"])
def test_a_synthetic_export_arrives_byte_for_byte_as_served(bulk_server, tmp_path, gzipped):
    served_folder = tmp_path / "synthetic"
    written = write_export(served_folder, 40, seed=7, gzip=gzipped, bad_lines=2)
    served = _lines_by_type(served_folder)
    assert sum(written.values()) == sum(len(lines) for lines in served.values())
    server = bulk_server(data=str(served_folder), lines_per_file=150, polls_before_ready=1, retry_after=0,
                         gzip_transfer=gzipped)
    dest = tmp_path / "export"

    result = download_export(server.base, dest, settings=server.settings(), progress=None)

    for kind in export_types():
        downloaded = [line.encode() for line in _downloaded_lines(dest, kind)]
        assert downloaded == served.get(kind, []), kind
    assert {item.resource_type for item in result.files} == set(export_types()) & set(served)
    assert any(item.name == "Observation.2.ndjson" for item in result.files)
    if gzipped:
        files = [entry for entry in server.log() if "/_export-files/" in entry["path"]]
        assert files and all(entry.get("gzip_sent") for entry in files)

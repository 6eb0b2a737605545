"""`calcinosis-cds screen URL`: a FHIR server's Bulk Data export downloaded, then screened like a folder.

The server is the test Bulk Data server run as a process on 127.0.0.1, serving a synthetic export; the
screen of the downloaded export must equal the screen of the served folder itself, and the server's
error files must reach issues.ndjson.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import orjson
import pytest

from conftest import FIXTURE_NOW, FIXTURES_DIR, PROJECT_ROOT
from service.cli import main
from service.screening.local_engine import run_local
from tests.support.bulk_data_server import BulkServers, RunningServer

sys.path.insert(0, str(FIXTURES_DIR / "assess" / "tools"))
from synthetic_export import write_export  # noqa: E402

NOW_TEXT = "2026-11-15T09:00:00Z"


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("served")
    write_export(folder, 24, seed=5, bad_lines=2)
    return folder


@pytest.fixture
def bulk_server(tmp_path: Path, served: Path) -> Iterator[Callable[..., RunningServer]]:
    servers = BulkServers(tmp_path, served)
    yield servers.start
    servers.stop_all()


@pytest.fixture
def allowing(monkeypatch) -> Callable[[RunningServer], None]:
    def allow(server: RunningServer) -> None:
        monkeypatch.setenv("CALCINOSIS_CDS_FHIR_SERVER_ALLOWLIST", json.dumps([server.base]))
    return allow


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "summary.csv", encoding="utf-8", newline="") as handle:
        return sorted(csv.DictReader(handle), key=lambda row: row["patient_id"])


def _issues(out: Path) -> list[dict]:
    return [orjson.loads(line) for line in (out / "issues.ndjson").read_bytes().splitlines()]


def _kick_offs(server: RunningServer) -> list[dict]:
    return [entry for entry in server.log() if entry["path"].endswith("/$export")]


def test_screening_a_server_equals_screening_its_export_and_keeps_the_servers_errors(bulk_server, served, tmp_path):
    server = bulk_server(polls_before_ready=1, retry_after=1, lines_per_file=200,
                         error_outcomes=["Observation/lost-1 could not be exported"])
    out = tmp_path / "out"
    env = dict(os.environ, CALCINOSIS_CDS_FHIR_SERVER_ALLOWLIST=json.dumps([server.base]),
               CALCINOSIS_SCREEN_EXPORT_BEARER_TOKEN="tok-cli-secret")
    command = [sys.executable, "-m", "service.cli", "screen", server.base, "--out", str(out), "--workers", "2",
               "--now", NOW_TEXT]
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)

    assert done.returncode == 0, done.stderr
    assert "export: status poll 1: in progress (0%); next poll in 1 s" in done.stderr
    assert "export: downloaded " in done.stderr and "tok-cli-secret" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("screened 24 patients in ")
    assert (out / "export" / "Observation.2.ndjson").exists() and (out / "export" / "export-manifest.json").exists()

    direct = tmp_path / "direct"
    run_local(served, direct, workers=2, now=FIXTURE_NOW, progress=False)
    assert _rows(out) == _rows(direct)
    for name in ("RiskAssessment.ndjson", "CarePlan.ndjson", "ServiceRequest.ndjson"):
        assert sorted((out / name).read_bytes().splitlines()) == sorted((direct / name).read_bytes().splitlines())
    issues = _issues(out)
    assert issues[0] == {"severity": "error", "code": "processing", "source": "errors/OperationOutcome.ndjson:1",
                         "diagnostics": "the FHIR server reported: Observation/lost-1 could not be exported"}
    assert f"; {sum(1 for i in issues if i['severity'] != 'information')} problems found" in done.stderr


def test_group_and_since_reach_the_kick_off(bulk_server, allowing, tmp_path):
    server = bulk_server(groups={"ward-7": []})
    allowing(server)

    code = main(["screen", server.base, "--out", str(tmp_path / "out"), "--group", "ward-7",
                 "--since", "2026-10-01T00:00:00Z", "--now", NOW_TEXT, "--workers", "1", "--quiet"])

    (kick_off,) = _kick_offs(server)
    assert kick_off["path"] == "/fhir/Group/ward-7/$export"
    assert kick_off["query"]["_since"] == "2026-10-01T00:00:00Z"
    assert code == 0  # an empty group is an empty screen, not an error


def test_a_resumed_screen_reuses_the_finished_download(bulk_server, allowing, tmp_path):
    server = bulk_server()
    allowing(server)
    out = tmp_path / "out"
    arguments = ["screen", server.base, "--out", str(out), "--now", NOW_TEXT, "--workers", "1", "--quiet"]

    assert main(arguments) == 0
    first = _rows(out)
    assert main(arguments + ["--resume"]) == 0

    assert len(_kick_offs(server)) == 1
    assert _rows(out) == first


def test_a_failed_export_ends_the_command_with_the_servers_words(bulk_server, allowing, tmp_path, capsys):
    server = bulk_server(fail_on_status=True)
    allowing(server)

    assert main(["screen", server.base, "--out", str(tmp_path / "out"), "--quiet"]) == 1

    err = capsys.readouterr().err
    assert err.startswith(f"error: Bulk Data $export of {server.base}: ")
    assert "HTTP 500" in err and "the database went away" in err
    assert not (tmp_path / "out" / "summary.csv").exists()


def test_a_server_not_allowed_is_refused_and_never_contacted(bulk_server, tmp_path, capsys):
    server = bulk_server()

    assert main(["screen", server.base, "--out", str(tmp_path / "out"), "--quiet"]) == 1

    assert "not on this service's allowlist (CDS_FHIR_SERVER_ALLOWLIST)" in capsys.readouterr().err
    assert server.log() == []


def test_group_and_since_with_a_folder_are_a_usage_error(served, tmp_path, capsys):
    assert main(["screen", str(served), "--out", str(tmp_path / "out"), "--group", "ward-7"]) == 2
    assert "--group and --since apply to a FHIR server URL only" in capsys.readouterr().err

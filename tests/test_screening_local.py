"""The local screening engine end to end: export and Bundle folders in, valid R4 and right summaries out,
every bad line reported where it is, and a run killed half-way resumed to the same bytes."""

from __future__ import annotations

import csv
import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from conftest import FIXTURE_NOW, FIXTURES_DIR, PROJECT_ROOT
from service.cli import main
from service.pipeline.assess import get_assessor
from service.screening.local_engine import WORK_FOLDER, run_local
from service.screening.patient_keys import patient_key_of
from service.screening.patient_screen import OUTPUT_TYPES, screen_patient

sys.path.insert(0, str(FIXTURES_DIR / "assess" / "tools"))
from synthetic_export import scenario_templates, write_export  # noqa: E402

OUTPUT_FILES = ("RiskAssessment.ndjson", "CarePlan.ndjson", "ServiceRequest.ndjson", "summary.csv",
                "summary.parquet", "issues.ndjson", "report.html")
NOW_TEXT = "2026-11-15T09:00:00Z"


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "summary.csv", encoding="utf-8", newline="") as handle:
        return {row["patient_id"]: row for row in csv.DictReader(handle)}


def _issues(out: Path) -> list[dict]:
    return [orjson.loads(line) for line in (out / "issues.ndjson").read_bytes().splitlines()]


def _bad_places(folder: Path) -> set[str]:
    """file:line of every line of an export that is not a resource (found independently of the engine)."""
    places = set()
    for path in sorted(folder.glob("*.ndjson*")):
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    resource = orjson.loads(line)
                except orjson.JSONDecodeError:
                    places.add(f"{path.name}:{number}")
                    continue
                if not isinstance(resource, dict):
                    places.add(f"{path.name}:{number}")
    return places


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    write_export(folder, 44, seed=11, bad_lines=6)
    return folder


@pytest.fixture(scope="module")
def screened(export, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    run = run_local(export, out, workers=2, now=FIXTURE_NOW, progress=False)
    assert run.patients == 44
    return out


def test_every_output_is_valid_r4_one_resource_a_line(screened):
    for kind in OUTPUT_TYPES:
        lines = (screened / f"{kind}.ndjson").read_bytes().splitlines()
        assert len(lines) >= (44 if kind != "ServiceRequest" else 1)
        for line in lines:
            resource = orjson.loads(line)
            assert resource["resourceType"] == kind
            get_fhir_model_class(kind).model_validate(resource)
            assert "urn:uuid:" not in line.decode()  # references between outputs are Type/id
    assert set(OUTPUT_FILES) <= {p.name for p in screened.iterdir()}
    assert not (screened / WORK_FOLDER).exists()


def test_the_engine_gives_each_patient_what_screening_it_alone_gives(export, screened):
    """Same pipeline, same answer: the engine adds no logic of its own."""
    assessor = get_assessor()
    groups: dict[str, list[dict]] = {}
    for path in sorted(export.glob("*.ndjson")):
        for line in path.read_bytes().splitlines():
            try:
                resource = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            key = patient_key_of(resource)
            if key:
                groups.setdefault(key, []).append(resource)
    rows = _rows(screened)
    risk = {orjson.loads(line)["subject"]["reference"]: orjson.loads(line)
            for line in (screened / "RiskAssessment.ndjson").read_bytes().splitlines()}
    assert set(rows) == set(groups)
    for patient_id, resources in groups.items():
        alone = screen_patient(patient_id, resources, assessor, now=FIXTURE_NOW)
        assert rows[patient_id]["top_type"] == (alone.summary["top_type"] or "")
        assert rows[patient_id]["top_grade"] == (alone.summary["top_grade"] or "")
        assert rows[patient_id]["ca_x_p"] == ("" if alone.summary["ca_x_p"] is None else str(alone.summary["ca_x_p"]))
        assert risk[f"Patient/{patient_id}"] == alone.outputs["RiskAssessment"][0]


def test_bad_lines_are_reported_with_file_and_line_and_do_not_stop_the_run(export, screened):
    issues = _issues(screened)
    reported = {issue["source"] for issue in issues if issue["code"] == "structure"}
    assert reported == _bad_places(export) and len(reported) == 4
    orphan = [issue for issue in issues if "refer to no patient" in issue["diagnostics"]]
    observation = next(issue for issue in orphan if "Observation" in issue["diagnostics"])
    assert observation["severity"] == "warning" and observation["diagnostics"].startswith("2 Observation")
    line = int(observation["source"].split(":")[1])
    text = (export / "Observation.ndjson").read_bytes().splitlines()[line - 1]
    assert b"Group/ward-7" in text
    assert any(i["diagnostics"].startswith("2 Organization") and i["severity"] == "information" for i in orphan)


def test_known_scenarios_give_their_summary_rows(tmp_path):
    """The fixture scenarios as an export (their own ids and values): rows as the golden RiskAssessments say."""
    export = tmp_path / "export"
    export.mkdir()
    templates = list({t[0]["id"]: t for t in reversed(scenario_templates())}.values())[::-1]
    assert len(templates) == 21  # fixture 02 is fixture 01's patient again, in SI units: left out
    lines: dict[str, list[bytes]] = {}
    for template in templates:
        for resource in template:
            lines.setdefault(resource["resourceType"], []).append(orjson.dumps(resource))
    for kind, body in lines.items():
        (export / f"{kind}.ndjson").write_bytes(b"\n".join(dict.fromkeys(body)) + b"\n")
    run_local(export, tmp_path / "out", workers=1, now=FIXTURE_NOW, progress=False)
    rows = _rows(tmp_path / "out")
    assert len(rows) == len(templates)
    esrd = rows[templates[2][0]["id"]]  # fixture 04: ESRD on dialysis, Ca x P above 70
    assert (esrd["top_type"], esrd["top_grade"]) == ("metastatic", "high")
    assert float(esrd["ca_x_p"]) > 70 and esrd["ca_x_p_date"] == esrd["calcium_date"]
    sclerosis = rows["p-ssc-001"]  # fixture 01: dystrophic, all values normal
    assert (sclerosis["top_type"], sclerosis["top_grade"], sclerosis["calcium"]) == ("dystrophic", "high", "9.4")
    assert sclerosis["phosphate"] == "3.6" and sclerosis["calcium_date"] == "2026-10-12"
    no_labs = next(rows[t[0]["id"]] for t in templates
                   if not any(r["resourceType"] == "Observation" for r in t))
    assert no_labs["calcium"] == no_labs["ca_x_p"] == no_labs["egfr"] == ""
    assert "Calcium" in no_labs["missing_tests"].split("; ")
    unknown_unit = next(rows[t[0]["id"]] for t in templates if b"mg/furlong" in orjson.dumps(t))
    assert int(unknown_unit["data_problems"]) >= 1


def test_gzip_and_several_files_per_type_give_the_same_results(export, screened, tmp_path):
    split = tmp_path / "split"
    split.mkdir()
    for path in export.glob("*.ndjson"):
        lines = path.read_bytes().splitlines(keepends=True)
        kind = path.name.removesuffix(".ndjson")
        if kind == "Condition":  # holds the lines that are not objects: they must be found inside the gzip
            with gzip.open(split / f"{kind}.ndjson.gz", "wb") as handle:
                handle.write(b"".join(lines))
        elif len(lines) > 10:
            half = len(lines) // 2
            (split / f"{kind}.000.ndjson").write_bytes(b"".join(lines[:half]))
            with gzip.open(split / f"{kind}.001.ndjson.gz", "wb") as handle:
                handle.write(b"".join(lines[half:]))
        else:
            (split / path.name).write_bytes(b"".join(lines))
    run_local(split, tmp_path / "out", workers=2, now=FIXTURE_NOW, progress=False)
    assert _rows(tmp_path / "out") == _rows(screened)
    for kind in OUTPUT_TYPES:
        assert sorted((tmp_path / "out" / f"{kind}.ndjson").read_bytes().splitlines()) == \
            sorted((screened / f"{kind}.ndjson").read_bytes().splitlines())
    assert {i["source"] for i in _issues(tmp_path / "out") if i["code"] == "structure"} == _bad_places(split)
    assert any(place.startswith("Condition.ndjson.gz:") for place in _bad_places(split))


def test_a_truncated_gzip_is_reported_and_what_was_read_is_screened(tmp_path):
    export = tmp_path / "export"
    write_export(export, 4, seed=3, gzip=True)
    whole = (export / "Observation.ndjson.gz").read_bytes()
    (export / "Observation.ndjson.gz").write_bytes(whole[: len(whole) // 2])
    run = run_local(export, tmp_path / "out", workers=1, now=FIXTURE_NOW, progress=False)
    assert run.patients == 4
    cut = [i for i in _issues(tmp_path / "out") if i["source"].startswith("Observation.ndjson.gz")]
    assert cut and cut[-1]["code"] == "exception" and "could not be read further" in cut[-1]["diagnostics"]


def test_a_folder_of_bundles(tmp_path):
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    names = ["01-dystrophic-systemic-sclerosis.json", "04-metastatic-esrd.json", "10-multi-patient-transaction.json"]
    for name in names:
        shutil.copy(FIXTURES_DIR / "assess" / name, bundles / name)
    (bundles / "broken.json").write_bytes(b'{"resourceType": "Bundle", "entry": [')
    (bundles / "list.json").write_bytes(b"[1, 2]")
    run = run_local(bundles, tmp_path / "out", workers=2, now=FIXTURE_NOW, progress=False)
    rows = _rows(tmp_path / "out")
    assessor = get_assessor()
    expected = {}
    for name in names:
        for patient in assessor.assess(orjson.loads((bundles / name).read_bytes()), now=FIXTURE_NOW).patients:
            expected[patient.patient_id] = (patient.leading.type, patient.leading.risk)
    assert run.patients == len(expected) == 5
    assert {pid: (row["top_type"], row["top_grade"]) for pid, row in rows.items()} == expected
    issues = {i["source"]: i for i in _issues(tmp_path / "out")}
    assert "not valid JSON" in issues["broken.json"]["diagnostics"]
    assert "not a FHIR resource" in issues["list.json"]["diagnostics"]


def test_the_command_line_prints_progress_and_a_final_line(export, tmp_path):
    command = [sys.executable, "-m", "service.cli", "screen", str(export), "--out", str(tmp_path / "out"),
               "--workers", "2", "--now", NOW_TEXT]
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "screening" in done.stderr and "patient/s" in done.stderr and "44/44" in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("screened 44 patients in ") and "patients/s" in last
    problems = sum(1 for i in _issues(tmp_path / "out") if i["severity"] != "information")
    assert f"; {problems} problems found" in last


def test_the_command_line_refuses_what_it_cannot_read(tmp_path, capsys):
    assert main(["screen", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 1
    assert "is not a folder" in capsys.readouterr().err
    assert main(["screen", "https://fhir.example.org/r4", "--out", str(tmp_path / "out")]) == 1
    assert "$export" in capsys.readouterr().err


def _screen_process(export: Path, out: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "service.cli", "screen", str(export), "--out", str(out), "--workers", "2",
               "--quiet", *extra]
    return subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def test_a_run_killed_half_way_resumes_to_the_same_bytes(tmp_path):
    export = tmp_path / "export"
    write_export(export, 100, seed=21, bad_lines=2)
    whole = run_local(export, tmp_path / "whole", workers=2, now=FIXTURE_NOW, progress=False)

    out = tmp_path / "killed"
    process = _screen_process(export, out, "--now", NOW_TEXT)
    parts = out / WORK_FOLDER / "parts"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(parts.glob("*/done.json"))) < 3 and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the command and its workers, as a lost machine would
    process.wait()
    finished = len(list(parts.glob("*/done.json")))
    assert 3 <= finished < 16, "the run was killed half-way"
    assert not (out / "summary.csv").exists()

    resumed = run_local(export, out, workers=2, resume=True, progress=False)  # the instant comes from the first run
    assert resumed.shards_done_before == finished
    assert resumed.patients == whole.patients == 100
    for name in OUTPUT_FILES:
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


# A pool like the engine's whose processes sit idle (as a worker does once the shards run out, or a
# partitioning process once its chunks are done) while the process that made them is killed.
_IDLE_POOL = """
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from service.screening.local_engine import end_with_parent

def pid_after(seconds):
    time.sleep(seconds)
    return os.getpid()

pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"), initializer=end_with_parent,
                           initargs=(os.getpid(),))
print(*sorted(set(pool.map(pid_after, [0.5, 0.5]))), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its exit status waits to be read


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_idle_pool_processes_end_when_the_engine_is_killed():
    process = subprocess.Popen([sys.executable, "-c", _IDLE_POOL], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    pids = [int(pid) for pid in process.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    process.kill()  # the engine alone, not its process group
    process.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)
    left = [pid for pid in pids if _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "pool processes outlived the engine"


def test_without_resume_a_new_run_starts_again(tmp_path, export):
    out = tmp_path / "out"
    (out / WORK_FOLDER / "parts" / "shard-00000").mkdir(parents=True)
    (out / WORK_FOLDER / "parts" / "shard-00000" / "done.json").write_bytes(b'{"patients": 999}')
    run = run_local(export, out, workers=1, now=FIXTURE_NOW, progress=False)
    assert run.shards_done_before == 0 and run.patients == 44


def test_the_outputs_are_the_same_bytes_whatever_the_worker_count(export, screened, tmp_path):
    run = run_local(export, tmp_path / "one", workers=1, now=FIXTURE_NOW, progress=False)
    assert run.patients == 44
    for name in OUTPUT_FILES:
        assert (tmp_path / "one" / name).read_bytes() == (screened / name).read_bytes(), name


def test_spawned_workers_build_their_own_assessor_and_give_the_same_bytes(export, screened, tmp_path, monkeypatch):
    """Where processes cannot be forked, each worker builds its Assessor itself; nothing else changes."""
    from service.screening import local_engine

    monkeypatch.setattr(local_engine, "_forking", lambda: False)
    run = run_local(export, tmp_path / "spawned", workers=2, now=FIXTURE_NOW, progress=False)
    assert run.patients == 44
    for name in OUTPUT_FILES:
        assert (tmp_path / "spawned" / name).read_bytes() == (screened / name).read_bytes(), name

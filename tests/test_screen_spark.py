"""The Spark engine screens like the local engine: same outputs, same summary rows, same problems at the same lines.

The tests that run Spark need the `spark` extra and Java 17 (CI installs both); without them they
skip, saying which is missing. One SparkSession (local[2]) serves the whole module; its files are
split into small blocks so that a file is read by several tasks and line numbers must be carried
across blocks.
"""

from __future__ import annotations

import csv
import gzip
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import orjson
import pytest

from conftest import FIXTURE_NOW, FIXTURES_DIR
from service.screening.spark_session import (StageProgress, is_local_master, local_cores, session_settings,
                                             spark_missing)

TOOLS = FIXTURES_DIR / "assess" / "tools"
sys.path.insert(0, str(TOOLS))
from synthetic_export import write_export  # noqa: E402

MISSING = spark_missing()
needs_spark = pytest.mark.skipif(MISSING is not None, reason=f"the Spark engine cannot run here: {MISSING}")
OUTPUT_FILES = ("RiskAssessment.ndjson", "CarePlan.ndjson", "ServiceRequest.ndjson")
BLOCK_BYTES = 512 * 1024  # Observation.ndjson of 200 patients is several blocks
# how the lines the synthetic export writes to be unreadable begin (a cut-off object, a JSON list)
BAD_LINES = (b'{"resourceType": "Observation", "id": "cut-off', b'["not"')


# ------------------------------------------------------------------ fixtures: one session, one export, two runs


@pytest.fixture(scope="module")
def spark():
    if MISSING:
        pytest.skip(f"the Spark engine cannot run here: {MISSING}")
    from service.screening.spark_session import build_session

    session = build_session("local[2]", app_name="calcinosis-cds tests", conf={
        "spark.sql.shuffle.partitions": "4", "spark.sql.files.maxPartitionBytes": str(BLOCK_BYTES)})
    yield session
    session.stop()


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    write_export(folder, 200, seed=13, bad_lines=6)
    return folder


@pytest.fixture(scope="module")
def local_out(export, tmp_path_factory) -> Path:
    from service.screening.local_engine import run_local

    out = tmp_path_factory.mktemp("local-out")
    run_local(export, out, workers=2, now=FIXTURE_NOW, progress=False)
    return out


@pytest.fixture(scope="module")
def spark_run(spark, export, tmp_path_factory):
    from service.screening.spark_engine import run_spark

    out = tmp_path_factory.mktemp("spark-out")
    return run_spark(export, out, now=FIXTURE_NOW, spark=spark, progress=False)


def _resources(path: Path) -> list[dict]:
    lines = path.read_bytes().splitlines()
    return sorted((orjson.loads(line) for line in lines), key=lambda r: (r["resourceType"], r["id"]))


def _summary_rows(folder: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return sorted(pq.read_table(folder / "summary.parquet").to_pylist(), key=lambda row: row["patient_id"])


def _csv_rows(folder: Path) -> list[list[str]]:
    with open(folder / "summary.csv", encoding="utf-8", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    return [header, *sorted(rows)]


def _issues(folder: Path) -> list[dict]:
    lines = (folder / "issues.ndjson").read_bytes().splitlines()
    return sorted((orjson.loads(line) for line in lines), key=lambda issue: orjson.dumps(issue, option=orjson.OPT_SORT_KEYS))


# ------------------------------------------------------------------ the two engines agree


@needs_spark
def test_both_engines_give_every_patient_the_same_outputs(local_out, spark_run):
    assert spark_run.patients == 200
    for name in OUTPUT_FILES:
        local, distributed = _resources(local_out / name), _resources(spark_run.out_dir / name)
        assert len(local) == 200 if name != "ServiceRequest.ndjson" else len(local) > 200
        assert distributed == local, name


@needs_spark
def test_both_engines_give_the_same_summary_rows(local_out, spark_run):
    local = _summary_rows(local_out)
    assert len(local) == 200 and len({row["patient_id"] for row in local}) == 200
    assert any(row["ca_x_p"] is not None and row["ca_x_p"] > 70 for row in local), "the export has high Ca x P"
    assert _summary_rows(spark_run.out_dir) == local
    assert _csv_rows(spark_run.out_dir) == _csv_rows(local_out)


@needs_spark
def test_both_engines_report_the_same_problems_at_the_same_lines(export, local_out, spark_run):
    local = _issues(local_out)
    assert _issues(spark_run.out_dir) == local
    assert spark_run.problems == sum(1 for issue in local if issue["severity"] != "information")
    # the unreadable lines: each named by file and line, and that line of that file is a bad one
    written_bad = [(path.name, number) for path in sorted(export.iterdir())
                   for number, text in enumerate(path.read_bytes().splitlines(), start=1) if text.startswith(BAD_LINES)]
    unreadable = [issue for issue in local if issue["code"] == "structure" and "patient_id" not in issue]
    assert sorted(issue["source"] for issue in unreadable) == sorted(f"{name}:{number}" for name, number in written_bad)
    # one of them deep in Observation.ndjson, in a later block than the file's first
    assert any(name == "Observation.ndjson" and _offset_of_line(export / name, number) > BLOCK_BYTES
               for name, number in written_bad)
    orphans = [issue for issue in local if "refer to no patient" in issue["diagnostics"]]
    assert {"Organization.ndjson:1", "Practitioner.ndjson:1"} <= {issue["source"] for issue in orphans}


def _offset_of_line(path: Path, number: int) -> int:
    return sum(len(line) + 1 for line in path.read_bytes().splitlines()[: number - 1])


@needs_spark
def test_the_run_reports_its_start_up_and_rate(spark_run):
    assert spark_run.seconds > 0 and spark_run.rate > 0
    assert 0 <= spark_run.startup_seconds < spark_run.seconds
    assert spark_run.rate_after_startup >= spark_run.rate
    line = spark_run.final_line()
    assert "screened 200 patients" in line and "patients/s" in line and f"{spark_run.problems} problems" in line


@needs_spark
def test_gzipped_files_are_read_with_their_line_numbers(spark, tmp_path):
    from service.screening.local_engine import run_local
    from service.screening.spark_engine import run_spark

    export = tmp_path / "export"
    write_export(export, 12, seed=5, gzip=True, bad_lines=3)
    assert all(path.name.endswith(".ndjson.gz") for path in export.iterdir())
    local = run_local(export, tmp_path / "local", workers=1, now=FIXTURE_NOW, progress=False)
    distributed = run_spark(export, tmp_path / "spark", now=FIXTURE_NOW, spark=spark, progress=False)
    assert distributed.patients == local.patients == 12
    for name in OUTPUT_FILES:
        assert _resources(distributed.out_dir / name) == _resources(local.out_dir / name)
    assert _summary_rows(distributed.out_dir) == _summary_rows(local.out_dir)
    issues = _issues(distributed.out_dir)
    assert issues == _issues(local.out_dir)
    sources = [issue["source"] for issue in issues if issue["code"] == "structure" and "patient_id" not in issue]
    assert sources and all(".ndjson.gz:" in source for source in sources)
    for source in sources:
        file, line = source.rsplit(":", 1)
        bad = gzip.decompress((export / file).read_bytes()).splitlines()[int(line) - 1]
        assert bad.startswith(BAD_LINES)


@needs_spark
def test_a_folder_of_bundles_is_screened_as_the_local_engine_does(spark, tmp_path):
    from service.screening.local_engine import run_local
    from service.screening.spark_engine import run_spark

    bundles = tmp_path / "bundles"
    bundles.mkdir()
    for stem in ("04-metastatic-esrd", "10-multi-patient-transaction", "14-unknown-unit"):
        shutil.copy(FIXTURES_DIR / "assess" / f"{stem}.json", bundles / f"{stem}.json")
    (bundles / "broken.json").write_text('{"resourceType": "Bundle", "entry": [', encoding="utf-8")
    local = run_local(bundles, tmp_path / "local", workers=1, now=FIXTURE_NOW, progress=False)
    distributed = run_spark(bundles, tmp_path / "spark", now=FIXTURE_NOW, spark=spark, progress=False)
    assert distributed.patients == local.patients >= 4
    for name in OUTPUT_FILES:
        assert _resources(distributed.out_dir / name) == _resources(local.out_dir / name)
    assert _summary_rows(distributed.out_dir) == _summary_rows(local.out_dir)
    issues = _issues(distributed.out_dir)
    assert issues == _issues(local.out_dir)
    assert any(issue.get("source") == "broken.json" for issue in issues)


@needs_spark
def test_orders_referencing_shared_medications_are_screened_as_the_local_engine_does(spark, tmp_path):
    """An export in the EHR's form (Medication.ndjson, orders with medicationReference): every output line,
    summary row and issue the same, each order read with its drug (no 'not in the bundle')."""
    from service.screening.local_engine import run_local
    from service.screening.spark_engine import run_spark

    export = tmp_path / "export"
    write_export(export, 60, seed=17, bad_lines=2, shared_medications=True)
    (export / "MedicationRequest.ndjson").write_bytes(  # one order names its drug by an absolute URL
        (export / "MedicationRequest.ndjson").read_bytes().replace(
            b'"reference":"Medication/', b'"reference":"https://ehr.example/fhir/Medication/', 1))
    local = run_local(export, tmp_path / "local", workers=2, now=FIXTURE_NOW, progress=False)
    distributed = run_spark(export, tmp_path / "spark", now=FIXTURE_NOW, spark=spark, progress=False)
    assert distributed.patients == local.patients == 60
    for name in OUTPUT_FILES:
        assert _resources(distributed.out_dir / name) == _resources(local.out_dir / name), name
    assert _summary_rows(distributed.out_dir) == _summary_rows(local.out_dir)
    assert _csv_rows(distributed.out_dir) == _csv_rows(local.out_dir)
    issues = _issues(distributed.out_dir)
    assert issues == _issues(local.out_dir)
    assert not [issue for issue in issues if "is not in the bundle" in issue["diagnostics"]]
    note = next(issue for issue in issues if "Medication resource(s) refer to no patient" in issue["diagnostics"])
    assert note["source"] == "Medication.ndjson:1" and "not assessed" not in note["diagnostics"]
    assert any(row["top_type"] == "iatrogenic" and row["top_grade"] == "high"
               for row in _summary_rows(distributed.out_dir)), "the IV calcium order is read through its reference"


@needs_spark
def test_a_reference_to_a_medication_the_export_lacks_gets_the_same_warning_in_both_engines(spark, tmp_path):
    from service.screening.local_engine import run_local
    from service.screening.spark_engine import run_spark

    export = tmp_path / "export"
    write_export(export, 30, seed=19, shared_medications=True)
    medications = (export / "Medication.ndjson").read_bytes().splitlines()
    (export / "Medication.ndjson").write_bytes(b"".join(line + b"\n" for line in medications[1:]))
    local = run_local(export, tmp_path / "local", workers=1, now=FIXTURE_NOW, progress=False)
    distributed = run_spark(export, tmp_path / "spark", now=FIXTURE_NOW, spark=spark, progress=False)
    for name in OUTPUT_FILES:
        assert _resources(distributed.out_dir / name) == _resources(local.out_dir / name), name
    issues = _issues(distributed.out_dir)
    assert issues == _issues(local.out_dir)
    missing = orjson.loads(medications[0])["id"]
    warned = [issue for issue in issues if f"Medication 'Medication/{missing}' is not in the bundle" in issue["diagnostics"]]
    assert warned and all(issue["severity"] == "warning" for issue in warned)


def test_the_shared_medication_pass_decodes_only_the_medications_of_no_patient():
    pd = pytest.importorskip("pandas")
    from service.screening.spark_engine import SHARED_MEDICATION_KEY, key_lines

    medication = b'{"resourceType": "Medication", "id": "med-1", "code": {"text": "Calcitriol"}}'
    order = (b'{"resourceType": "MedicationRequest", "id": "mr-1", "subject": {"reference": "Patient/p-1"}, '
             b'"medicationReference": {"reference": "Medication/med-1"}}')
    batches = [pd.DataFrame({"value": [order, b"not json", medication], "file": ["Mixed.ndjson"] * 3,
                             "block": [0] * 3})]
    rows = pd.concat(key_lines(iter(batches), ranks={"Mixed.ndjson": 0}, first_lines={("Mixed.ndjson", 0): 1},
                               only_medications=True))
    assert list(zip(rows["key"], rows["line"], rows["origin"])) == [(SHARED_MEDICATION_KEY, 3, "Mixed.ndjson:3")]
    assert orjson.loads(rows["text"].iloc[0])["id"] == "med-1"


def _screened_alike(spark, export: Path, tmp_path: Path) -> list[dict]:
    """Screen `export` with both engines; both must finish and agree on every output line, summary row and
    issue. Returns the issues."""
    from service.screening.local_engine import run_local
    from service.screening.spark_engine import run_spark

    local = run_local(export, tmp_path / "local", workers=1, now=FIXTURE_NOW, progress=False)
    distributed = run_spark(export, tmp_path / "spark", now=FIXTURE_NOW, spark=spark, progress=False)
    assert distributed.patients == local.patients > 0
    for name in OUTPUT_FILES:
        assert _resources(distributed.out_dir / name) == _resources(local.out_dir / name), name
    assert _summary_rows(distributed.out_dir) == _summary_rows(local.out_dir)
    issues = _issues(distributed.out_dir)
    assert issues == _issues(local.out_dir)
    assert distributed.problems == local.problems
    return issues


@needs_spark
def test_a_truncated_or_corrupt_gzip_is_reported_and_the_run_goes_on(spark, tmp_path):
    """What can be read of a damaged .ndjson.gz stands, the rest is one problem at the line where reading
    stopped, as the local engine reports it; the other files are screened."""
    export = tmp_path / "export"
    write_export(export, 16, seed=7, gzip=True, bad_lines=2)
    observations = (export / "Observation.ndjson.gz").read_bytes()
    (export / "Observation.ndjson.gz").write_bytes(observations[: len(observations) // 2])  # cut off
    conditions = bytearray((export / "Condition.ndjson.gz").read_bytes())
    conditions[-6] ^= 0xFF  # the stream's checksum no longer matches
    (export / "Condition.ndjson.gz").write_bytes(bytes(conditions))
    (export / "Encounter.ndjson.gz").write_bytes(gzip.decompress((export / "Encounter.ndjson.gz").read_bytes()))
    issues = _screened_alike(spark, export, tmp_path)
    stopped = {issue["source"].split(":")[0]: issue for issue in issues if "could not be read" in issue["diagnostics"]}
    assert set(stopped) == {"Observation.ndjson.gz", "Condition.ndjson.gz", "Encounter.ndjson.gz"}
    read_before_the_cut = len(zlib.decompressobj(31).decompress(observations[: len(observations) // 2]).splitlines())
    assert 0 < int(stopped["Observation.ndjson.gz"]["source"].split(":")[1]) <= read_before_the_cut + 1
    assert stopped["Encounter.ndjson.gz"]["source"] == "Encounter.ndjson.gz"  # not gzip at all: no line read


@needs_spark
def test_a_line_that_is_not_utf8_is_a_bad_line_and_lines_end_where_the_local_engine_ends_them(spark, tmp_path):
    """Spark's text reader would replace bytes that are not UTF-8 (U+FFFD) and end lines at a lone CR too;
    the engine reads each line's bytes as the local engine does: a bad line reported at its file:line,
    a CR inside a line left to JSON (where it is white space), CRLF line ends taken off."""
    export = tmp_path / "export"
    write_export(export, 12, seed=9)
    observations = (export / "Observation.ndjson").read_bytes().splitlines()
    observations[4] = observations[4].replace(b'"id":"', b'"id":"\xff', 1)
    observations[9] = observations[9].replace(b'{"resourceType"', b'{\r"resourceType"', 1)
    (export / "Observation.ndjson").write_bytes(b"".join(line + b"\n" for line in observations))
    conditions = (export / "Condition.ndjson").read_bytes()
    (export / "Condition.ndjson").write_bytes(conditions.replace(b"\n", b"\r\n"))
    issues = _screened_alike(spark, export, tmp_path)
    bad = [issue for issue in issues if issue["code"] == "structure" and "patient_id" not in issue]
    assert [issue["source"] for issue in bad] == ["Observation.ndjson:5"]
    assert bad[0]["diagnostics"].startswith("not valid JSON")


@needs_spark
def test_file_and_folder_names_with_glob_characters_spaces_or_accents_are_read_as_named(spark, tmp_path):
    """Spark takes the paths it reads as glob patterns and URIs: `[1]` or `*` in a name, a space, an accent
    or a colon must still name that one file (never a pattern matching others, never a path not found)."""
    export = tmp_path / "export [1] *é"
    write_export(export, 12, seed=11, bad_lines=2)
    (export / "Observation.ndjson").rename(export / "Observation[1].ndjson")
    (export / "Condition.ndjson").rename(export / "Condition.*.ndjson")
    (export / "Encounter.ndjson").rename(export / "Encounter %20 é{a,b}.ndjson")
    (export / "Immunization.ndjson").rename(export / "Immunization:2.ndjson")  # a name Hadoop cannot take
    (export / "Observation1.ndjson").write_bytes(b"")  # what the pattern Observation[1].ndjson would match
    issues = _screened_alike(spark, export, tmp_path)
    sources = {issue["source"].rsplit(":", 1)[0] for issue in issues if issue["code"] == "structure"
               and "patient_id" not in issue}
    assert sources and sources <= {"Observation[1].ndjson", "Condition.*.ndjson"}


@needs_spark
def test_an_empty_folder_gives_empty_outputs(spark, tmp_path):
    from service.screening.spark_engine import run_spark

    (tmp_path / "empty").mkdir()
    run = run_spark(tmp_path / "empty", tmp_path / "out", now=FIXTURE_NOW, spark=spark, progress=False)
    assert (run.patients, run.problems) == (0, 0)
    assert _summary_rows(run.out_dir) == [] and (run.out_dir / "report.html").exists()
    assert all((run.out_dir / name).read_bytes() == b"" for name in (*OUTPUT_FILES, "issues.ndjson"))


# ------------------------------------------------------------------ line numbers across blocks (no JVM needed)


def test_each_block_starts_where_the_lines_before_it_end():
    from service.screening.spark_engine import first_line_numbers

    counted = [("b.ndjson", 0, 5), ("a.ndjson", 2048, 7), ("a.ndjson", 0, 10), ("a.ndjson", 1024, 3)]
    assert first_line_numbers(counted) == {("a.ndjson", 0): 1, ("a.ndjson", 1024): 11, ("a.ndjson", 2048): 14,
                                           ("b.ndjson", 0): 1}


def test_lines_are_numbered_from_their_block_and_keyed_by_patient():
    pd = pytest.importorskip("pandas")
    from service.screening.spark_engine import PROBLEM_KEY, WITHOUT_PATIENT_KEY, key_lines

    patient = b'{"resourceType": "Patient", "id": "p-1"}'
    lab = b'{"resourceType": "Observation", "id": "o-1", "subject": {"reference": "Patient/p-1"}}'
    orphan = b'{"resourceType": "Organization", "id": "org-1"}'
    # one partition reading block 1024 of Observation.ndjson (its lines 11..) then all of Patient.ndjson
    batches = [pd.DataFrame({"value": [lab, b"", b'{"resourceType": "Obs'], "file": ["Observation.ndjson"] * 3,
                             "block": [1024] * 3}),
               pd.DataFrame({"value": [b"[1]", patient, orphan], "file": ["Observation.ndjson", "Patient.ndjson",
                                                                         "Patient.ndjson"], "block": [1024, 0, 0]})]
    first = {("Observation.ndjson", 1024): 11, ("Patient.ndjson", 0): 1}
    rows = pd.concat(key_lines(iter(batches), ranks={"Observation.ndjson": 0, "Patient.ndjson": 1}, first_lines=first))
    got = list(zip(rows["key"], rows["line"], rows["origin"]))
    assert got == [("p-1", 11, "Observation.ndjson:11"),  # line 12 is blank: skipped, still counted
                   (PROBLEM_KEY + "Observation.ndjson", 13, "Observation.ndjson:13"),
                   (PROBLEM_KEY + "Observation.ndjson", 14, "Observation.ndjson:14"),
                   ("p-1", 1, "Patient.ndjson:1"),
                   (WITHOUT_PATIENT_KEY + "Organization", 2, "Patient.ndjson:2")]
    problem = orjson.loads(rows["text"].iloc[1])
    assert problem["source"] == "Observation.ndjson:13" and problem["diagnostics"].startswith("not valid JSON")
    assert orjson.loads(rows["text"].iloc[0])["id"] == "o-1"


def test_a_gzipped_file_read_whole_gives_its_lines_then_where_reading_stopped(tmp_path):
    pd = pytest.importorskip("pandas")
    from service.screening.spark_engine import PROBLEM_KEY, key_ndjson_files

    lines = [orjson.dumps({"resourceType": "Observation", "id": f"o-{n}", "subject": {"reference": "Patient/p-1"}})
             for n in range(400)]
    packed = gzip.compress(b"\n".join(lines) + b"\n", mtime=0)
    (tmp_path / "Observation.ndjson.gz").write_bytes(packed[: len(packed) // 2])
    files = pd.DataFrame({"file": ["Observation.ndjson.gz"], "path": [str(tmp_path / "Observation.ndjson.gz")]})
    frames = list(key_ndjson_files(iter([files]), ranks={"Observation.ndjson.gz": 3}, rows_per_frame=50))
    rows = pd.concat(frames)
    assert len(frames) > 2, "a large file comes in several frames"
    read = rows[rows["key"] == "p-1"]
    assert list(read["line"]) == list(range(1, len(read) + 1)) and 0 < len(read) < 400
    problem = rows[rows["key"] == PROBLEM_KEY + "Observation.ndjson.gz"]
    assert len(problem) == 1 and set(rows["rank"]) == {3}
    issue = orjson.loads(problem["text"].iloc[0])
    assert issue["source"] == f"Observation.ndjson.gz:{len(read) + 1}" and "could not be read further" in issue["diagnostics"]
    # the Medications pass keeps only Medications of no patient: neither the lines nor the problem
    assert list(key_ndjson_files(iter([files]), ranks={"Observation.ndjson.gz": 3}, only_medications=True)) == []


def test_paths_given_to_spark_name_one_file_and_the_names_it_gives_back_are_decoded():
    from service.screening.spark_engine import is_split_by_spark, spark_file_name, spark_path

    assert spark_path(Path("/data/export [1]/Obs*{a,b}?.ndjson")) == "file:///data/export \\[1\\]/Obs\\*\\{a,b\\}\\?.ndjson"
    assert spark_path(Path("/data/é %20.ndjson")) == "file:///data/é %20.ndjson"
    assert spark_file_name("c%20d%2520%5B1%5D.ndjson") == "c d%20[1].ndjson"
    assert spark_file_name("é%7Bx%7D+.ndjson") == "é{x}+.ndjson"
    assert is_split_by_spark(Path("/data/Observation.ndjson"))
    assert not is_split_by_spark(Path("/data/Observation.ndjson.gz"))
    assert not is_split_by_spark(Path("/data/Observation:2.ndjson"))


# ------------------------------------------------------------------ the session and the progress relay


def test_a_local_session_stays_on_the_machine_and_is_quiet():
    settings = session_settings("local[2]")
    assert settings["spark.ui.enabled"] == "false"
    assert settings["spark.driver.bindAddress"] == settings["spark.driver.host"] == "127.0.0.1"
    assert settings["spark.sql.shuffle.partitions"] == "8"
    assert settings["spark.pyspark.python"]
    assert "log4j2.configurationFile=file:" in settings["spark.driver.extraJavaOptions"]
    assert session_settings("local[2]", {"spark.sql.shuffle.partitions": "3"})["spark.sql.shuffle.partitions"] == "3"


def test_a_cluster_keeps_its_own_python_and_partitions():
    settings = session_settings("spark://head:7077")
    assert "spark.pyspark.python" not in settings and "spark.sql.shuffle.partitions" not in settings
    assert "spark.driver.bindAddress" not in settings
    assert settings["spark.ui.enabled"] == "false"


@pytest.mark.parametrize(("master", "local", "cores"), [
    ("local", True, 1), ("local[2]", True, 2), ("local[3, 2]", True, 3), ("yarn", False, 1),
    ("spark://h:7077", False, 1), ("local-cluster[2,1,1024]", False, 1)])
def test_masters(master, local, cores):
    assert is_local_master(master) is local
    assert local_cores(master) == cores


def test_without_java_the_engine_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-java"))
    reason = spark_missing()
    assert reason is not None and ("Java" in reason or "pyspark" in reason)


class _Tracker:
    def __init__(self, stages):
        self.stages = stages

    def getActiveStageIds(self):
        return list(self.stages)

    def getStageInfo(self, stage_id):
        return self.stages.get(stage_id)


class _Stage:
    def __init__(self, done, total, running=0, failed=0):
        self.numCompletedTasks, self.numTasks, self.numActiveTasks, self.numFailedTasks = done, total, running, failed


class _Context:
    def __init__(self, tracker):
        self.tracker = tracker

    def statusTracker(self):
        return self.tracker


def test_stage_progress_names_the_phase_the_tasks_and_the_patients_written():
    tracker = _Tracker({4: _Stage(7, 16, running=2), 5: _Stage(0, 8, failed=1)})
    relay = StageProgress(_Context(tracker), written=lambda: 1250)
    relay.phase = "screening patients"
    assert relay.snapshot() == ("spark: screening patients: stage 4 7/16 tasks (2 running); "
                                "stage 5 0/8 tasks, 1 failed; 1250 patients written")
    tracker.stages = {}
    assert relay.snapshot() == "spark: screening patients: 1250 patients written"
    assert StageProgress(_Context(tracker)).snapshot() == ""


def test_the_screening_core_does_not_import_spark():
    code = ("import sys; import service.screening.local_engine, service.screening.outputs, "
            "service.screening.spark_session; print('pyspark' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.split() == ["False", "False"]


# ------------------------------------------------------------------ the command line


def test_the_command_refuses_resume_with_the_spark_engine(tmp_path, capsys):
    from service.cli import main

    write_export(tmp_path / "export", 2, seed=1)
    code = main(["screen", str(tmp_path / "export"), "--out", str(tmp_path / "out"), "--engine", "spark", "--resume"])
    assert code == 1
    assert "--resume is for the local engine" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@needs_spark
def test_the_command_starts_spark_on_the_master_given_and_keeps_its_logging_quiet(tmp_path):
    export = tmp_path / "export"
    write_export(export, 4, seed=2, bad_lines=1)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "service.cli", "screen", str(export), "--out", str(out),
                           "--engine", "spark", "--master", "local[1]", "--now", "2026-11-15T09:00:00Z"],
                          capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "spark: session on local[1] ready in" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("screened 4 patients in ")
    assert " INFO " not in done.stderr, "Spark's own logging is cut to warnings"
    assert "local[1]" in (out / "report.html").read_text(encoding="utf-8")
    assert len((out / "RiskAssessment.ndjson").read_bytes().splitlines()) == 4
    assert not (out / ".screen-work").exists()


def test_a_large_source_reaches_the_driver_in_partitions_of_a_few_megabytes():
    """A 300 MB export in the session's 8 partitions lost a task's result from the driver's memory
    before it was fetched; its results now come in partitions of about 4 MB of source each."""
    from service.screening.spark_engine import RESULT_PARTITION_BYTES, result_partitions

    assert result_partitions(8, 0) == 8 and result_partitions(8, 20 * 2**20) == 8
    assert result_partitions(8, 300 * 2**20) == -(-300 * 2**20 // RESULT_PARTITION_BYTES) == 75
    assert result_partitions(200, 300 * 2**20) == 200

"""The Spark engine: the same screening as the local engine, spread over a Spark cluster (or local[*]).

    plain NDJSON files --read.text (bytes)--> lines --mapInPandas: decode, key by patient--+
    gzipped NDJSON, Bundles --paths--> mapInPandas: the local engine's reader, key ---------+--> (key, place, JSON)
      --groupBy(key).applyInPandas: screen_patient on each patient's resources--> results
      --toLocalIterator--> the shared writer (outputs.PartWriter + assemble) on the driver

Each step is the local engine's own code run in Spark's Python workers: a line is decoded as the
local engine decodes it (`sources`), keyed by `patient_keys.patient_key_of`, and a patient is
screened by `local_engine.screen_lines`, i.e. `screen_patient`, i.e. the `$assess` pipeline. Each
worker process builds its Assessor once (`get_assessor`'s per-process cache; Spark reuses its Python
workers between tasks). The results come back to the driver one partition at a time and are
written by the writer both engines share, so both write the same files.

Where a line came from: Spark splits a large file into blocks read in parallel, and a block does not
know how many lines came before it. A first, cheap pass (lines counted per block, in the JVM) gives
each block its first line number; a worker then numbers its block's lines from there, so a bad
line is reported as `Observation.ndjson:48213`, as the local engine reports it. The count is taken
once and serves the Medications pass too.

A bad line never stops the run, as with the local engine. Spark hands a worker each line's bytes
(a line that is not UTF-8 is a bad line, not one with U+FFFD in it, nor a failed task) and ends
lines at LF only (its default ends them at a lone CR too, which JSON allows inside a line). A
gzipped file is one block anyway (gzip cannot be split), so it loses no parallelism by being read
whole by a worker with `sources.ndjson_lines`: a truncated or corrupt one then gives what could be
read and a problem where reading stopped, where Spark's codec would fail the job. Spark reads the
paths it is given as Hadoop glob patterns and URIs: they are escaped (`spark_path`), and the names
it gives back decoded (`spark_file_name`); a path with a ':', which Hadoop cannot name, is read whole
by a worker too.

What is not a patient's also goes through the grouping, under keys no FHIR id can take: the bad
lines of a file form one group, the resources that name no patient one group per type (counted and
reported once with their first place, as the local engine does). The Medications of no patient are
also collected to the driver first (a pass that decodes only the lines naming a Medication) and
broadcast: each patient is screened with those its medication resources reference
(`shared_medications`), as the local engine does. There is no `--resume`: Spark retries failed tasks
itself, and a run that stops is run again.
"""

from __future__ import annotations

import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial, reduce
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import unquote

import orjson

from .local_engine import WORK_FOLDER, ScreenRun, screen_lines
from .outputs import PartWriter, assemble
from .patient_keys import patient_key_of
from .patient_screen import PatientScreen
from .shared_medications import SharedMedications
from .sharding import _without_patient_issue
from .sources import Source, SourceItem, SourceProblem, _bundle_records, _decoded, ndjson_lines

# Group keys that are not patients; "\x00" can never be in an R4 id, so they never meet a patient's.
PROBLEM_KEY = "\x00problems:"  # + the file name: that file's unreadable lines
WITHOUT_PATIENT_KEY = "\x00without-patient:"  # + a resource type: resources of that type naming no patient
SHARED_MEDICATION_KEY = WITHOUT_PATIENT_KEY + "Medication"

# A source record after decoding and keying: its group, place (file rank, line or entry), type, origin,
# fullUrl, and text (a resource's JSON, a problem's issue as JSON; none for a resource of no patient).
KEYED_SCHEMA = "key string, rank int, line long, kind string, origin string, url string, text string"
# A group's results: a patient's screen, or an issue found reading the source.
RESULT_SCHEMA = "key string, rank int, line long, what string, payload binary"
SCREEN, PROBLEM, WITHOUT_PATIENT = "screen", "problem", "without-patient"


@dataclass
class SparkScreenRun(ScreenRun):
    """A Spark run: also the seconds spent before the first Spark job could start (session, JVM)."""

    startup_seconds: float = 0.0

    @property
    def rate_after_startup(self) -> float:
        busy = self.seconds - self.startup_seconds
        return self.patients / busy if busy > 0 else 0.0


RESULT_PARTITION_BYTES = 4 * 1024 * 1024  # source bytes whose results reach the driver in one partition


def run_spark(source_folder: Path, out_dir: Path, *, master: str = "local[*]", now: datetime | None = None,
              config: Mapping[str, Any] | None = None, progress: bool = True, spark: Any = None,
              spark_conf: Mapping[str, str] | None = None, resume: bool = False,
              extra_issues: Iterable[dict[str, Any]] = ()) -> SparkScreenRun:
    """Screen every patient of `source_folder` into `out_dir` with Spark on `master`.

    `spark`: a SparkSession to use (and leave running); otherwise one is built for `master`
    (`spark_session.build_session`, with `spark_conf` added) and stopped at the end. The folder must
    be readable at the same path by the driver and every executor (any folder on a local master).
    `resume` is refused: Spark retries a failed task itself, and a stopped run is run again.
    `extra_issues` (met before the screen, e.g. the error files of a FHIR server's export) open issues.ndjson,
    as with the local engine.
    """
    from .spark_session import StageProgress, active_session, build_session

    if resume:
        raise ValueError("--resume is for the local engine: Spark retries failed tasks itself, so run again "
                         "without it")

    started = time.perf_counter()
    source = Source(source_folder)
    out_dir = Path(out_dir)
    moment = _evaluation_instant(now, config)
    settings = _assessor_settings(config)
    own_session = spark is None and active_session() is None  # never stop a session this run did not start
    session = spark if spark is not None else build_session(master, conf=spark_conf)
    spark_master = session.sparkContext.master
    engine = f"spark ({spark_master})"
    startup = time.perf_counter() - started
    if progress:
        print(f"spark: session on {spark_master} ready in {startup:.1f} s; screening {source.describe()}",
              file=sys.stderr, flush=True)
    work = out_dir / WORK_FOLDER
    shutil.rmtree(work, ignore_errors=True)
    part = PartWriter(work / "parts" / "spark")
    problems: list[tuple[tuple[int, int], dict[str, Any]]] = []
    without_patient: list[tuple[str, dict[str, Any]]] = []
    try:
        with StageProgress(session.sparkContext, written=lambda: part.counts["patients"]) as relay:
            if not progress:
                relay.out = _Discard()
            relay.phase = "counting lines"
            first_lines = block_first_lines(session, source) if any(map(is_split_by_spark, source.files)) else {}
            keyed = keyed_resources(session, source, first_lines=first_lines)
            relay.phase = "collecting the shared Medications"
            # with a token of this run's own: each worker decodes them once per run, not once per patient
            medications = session.sparkContext.broadcast(
                (uuid.uuid4().hex, shared_medication_rows(session, source, first_lines=first_lines)))
            relay.phase = "reading, keying and screening patients"
            results = screened(session, keyed, moment, settings,
                               partitions=result_partitions(_partitions(session), source.estimated_bytes),
                               medications=medications)
            for row in results.toLocalIterator(prefetchPartitions=True):
                if row.what == SCREEN:
                    part.add(_screen_of(row.key, row.payload))
                elif row.what == PROBLEM:
                    problems.append(((row.rank, row.line), orjson.loads(row.payload)))
                else:
                    without_patient.append((row.key, orjson.loads(row.payload)))
        counts = part.finish()
    except BaseException:
        part.abandon()
        raise
    finally:
        if own_session:
            session.stop()
    leading = [*extra_issues]
    leading += [issue for _place, issue in sorted(problems, key=lambda item: item[0])]
    leading += [issue for _key, issue in sorted(without_patient, key=lambda item: item[0])]
    facts = {"source": source.describe(), "evaluation_time": moment.isoformat(), "engine": engine}
    totals = assemble([part.part_dir], out_dir, run_facts=facts, leading_issues=leading)
    shutil.rmtree(work, ignore_errors=True)
    return SparkScreenRun(counts.get("patients", 0), time.perf_counter() - started, totals.get("problems", 0),
                          out_dir, totals, startup_seconds=startup)


# ---------------------------------------------------------------- the Spark plan (on the driver)


def keyed_resources(session: Any, source: Source, *, only_medications: bool = False,
                    first_lines: Mapping[tuple[str, int], int] | None = None) -> Any:
    """A DataFrame of every resource line of `source` with its group key and place (KEYED_SCHEMA); with
    `only_medications`, of its Medications of no patient only (the other lines are not decoded).

    Plain NDJSON files are read by Spark in blocks; gzipped ones and Bundles, which Spark could not
    split either, are read whole by a worker with the local engine's reader (`whole_files`).
    `first_lines`: the blocks' first line numbers when already counted (`block_first_lines`).
    """
    ranks = {path.name: rank for rank, path in enumerate(source.files)}
    if source.kind == "bundles":
        return whole_files(session, source.files).mapInPandas(
            partial(key_bundle_files, ranks=ranks, only_medications=only_medications), KEYED_SCHEMA)
    keyed = []
    packed = [path for path in source.files if not is_split_by_spark(path)]
    if packed:
        keyed.append(whole_files(session, packed).mapInPandas(
            partial(key_ndjson_files, ranks=ranks, only_medications=only_medications), KEYED_SCHEMA))
    if len(packed) < len(source.files):
        if first_lines is None:
            first_lines = block_first_lines(session, source)
        keyed.append(plain_lines(session, source).mapInPandas(
            partial(key_lines, ranks=ranks, first_lines=first_lines, only_medications=only_medications),
            KEYED_SCHEMA))
    return reduce(lambda one, other: one.union(other), keyed)


def is_split_by_spark(path: Path) -> bool:
    """Whether Spark reads `path` itself, in blocks: a plain NDJSON file. Not a gzipped one, which Spark
    could only read whole too and whose damage would fail the job; nor a path with a ':', which Hadoop
    cannot name."""
    return path.name.endswith(".ndjson") and ":" not in str(path.resolve())


def whole_files(session: Any, files: list[Path]) -> Any:
    """A DataFrame of (file, path) spread over the session's partitions: files a worker reads whole."""
    frame = session.createDataFrame([(path.name, str(path.resolve())) for path in files], "file string, path string")
    return frame.repartition(min(len(files), _partitions(session)) or 1)


def plain_lines(session: Any, source: Source) -> Any:
    """The lines of the plain NDJSON files of `source` as Spark reads them: (value, file, block).

    `value` is the line's bytes (Spark's text reader keeps them; a worker decodes them as the local
    engine does, so a line that is not UTF-8 is a bad line); lines end at LF only, as the local engine
    ends them (Spark's default also ends them at a lone CR). `file` is the name as Spark gives it,
    URI-encoded (`spark_file_name` decodes it). The paths are escaped: Spark takes them as glob patterns.
    """
    from pyspark.sql import functions as F

    paths = [spark_path(path) for path in source.files if is_split_by_spark(path)]
    return session.read.option("lineSep", "\n").text(paths).select(
        F.col("value").cast("binary").alias("value"), F.col("_metadata.file_name").alias("file"),
        F.col("_metadata.file_block_start").alias("block"))


def block_first_lines(session: Any, source: Source) -> dict[tuple[str, int], int]:
    """The first line number of each block Spark reads of the plain NDJSON files (a pass counting lines
    per block, in the JVM)."""
    return first_line_numbers(plain_lines(session, source).groupBy("file", "block").count().collect())


_HADOOP_GLOB = frozenset("\\*?[]{}")


def spark_path(path: Path) -> str:
    """`path` as Spark must be given it to read that one file: on the local file system, each character
    Hadoop's glob would read as a pattern escaped, nothing URI-encoded (Spark would look for '%20')."""
    escaped = "".join("\\" + char if char in _HADOOP_GLOB else char for char in str(path.resolve()))
    return "file://" + escaped


def spark_file_name(name: str) -> str:
    """A file's name from Spark's `_metadata.file_name`, which URI-encodes it ('a b.ndjson' is 'a%20b.ndjson',
    a '%' itself '%25')."""
    return unquote(name)


def shared_medication_rows(session: Any, source: Source, *, first_lines: Mapping[tuple[str, int], int] | None = None,
                           ) -> list[tuple[str, str | None, bytes]]:
    """The source's Medications of no patient as (origin, fullUrl, JSON) rows in the order read: few and
    small (one per drug), collected to the driver and broadcast to the workers."""
    rows = keyed_resources(session, source, only_medications=True, first_lines=first_lines).select(
        "rank", "line", "origin", "url", "text").collect()
    return [(row.origin, row.url or None, row.text.encode("utf-8"))
            for row in sorted(rows, key=lambda row: (row.rank, row.line))]


def first_line_numbers(block_counts: list[Any]) -> dict[tuple[str, int], int]:
    """(file, block start) -> the number of the block's first line, from the lines counted per block."""
    first: dict[tuple[str, int], int] = {}
    next_line: dict[str, int] = {}
    for file, block, count in sorted((row[0], row[1], row[2]) for row in block_counts):
        first[(file, block)] = next_line.get(file, 1)
        next_line[file] = first[(file, block)] + count
    return first


def result_partitions(configured: int, source_bytes: int) -> int:
    """How many partitions the results reach the driver in: the session's, or more for a large source.

    The outputs are about twice the bytes of the resources they come from (a 300 MB export gives some
    500 MB of RiskAssessments, CarePlans and ServiceRequests). In a few large partitions a finished
    result can be evicted from the driver's memory before `toLocalIterator` fetches it ("TaskResultLost"),
    so a partition is kept to about RESULT_PARTITION_BYTES of source.
    """
    return max(configured, -(-source_bytes // RESULT_PARTITION_BYTES))


def screened(session: Any, keyed: Any, now: datetime, settings: Mapping[str, Any], *,
             partitions: int | None = None, medications: Any = None) -> Any:
    """Each group of `keyed` screened (RESULT_SCHEMA), in a fixed order: by partition, then key and place.

    The results are shuffled once more before they reach the driver so that every group is
    screened in parallel in one stage: `toLocalIterator` then only fetches finished partitions.
    """
    now_text, worker_settings = now.isoformat(), dict(settings)

    def screen(frame: Any) -> Any:  # a plain function: Spark reads the kind of UDF from its signature
        return screen_group(frame, now_text=now_text, settings=worker_settings, medications=medications)

    results = keyed.groupBy("key").applyInPandas(screen, RESULT_SCHEMA)
    return results.repartition(partitions or _partitions(session), "key").sortWithinPartitions("key", "rank", "line")


def _partitions(session: Any) -> int:
    return int(session.conf.get("spark.sql.shuffle.partitions"))


# ---------------------------------------------------------------- in Spark's Python workers


def key_lines(batches: Iterator[Any], *, ranks: Mapping[str, int],
              first_lines: Mapping[tuple[str, int], int], only_medications: bool = False) -> Iterator[Any]:
    """Decode and key text lines (columns value: the line's bytes, file: as Spark names it, block), numbering
    each block's lines from its first (`only_medications`: only the Medications of no patient, and only
    lines naming one are decoded).

    A partition reads its blocks one after another, each in line order, so a running count per
    block gives each line its number.
    """
    import pandas as pd

    seen: dict[tuple[str, int], int] = {}
    names: dict[str, str] = {}
    for frame in batches:
        rows: list[tuple[Any, ...]] = []
        for value, file, block in zip(frame["value"], frame["file"], frame["block"]):
            place = (file, int(block))
            index = seen.get(place, 0)
            seen[place] = index + 1
            name = names.get(file) or names.setdefault(file, spark_file_name(file))
            row = _keyed_line(name, first_lines[place] + index, value.rstrip(b"\r\n"), ranks[name], only_medications)
            if row is not None:
                rows.append(row)
        if rows:
            yield pd.DataFrame(rows, columns=_KEYED_COLUMNS)


def key_ndjson_files(batches: Iterator[Any], *, ranks: Mapping[str, int], only_medications: bool = False,
                     rows_per_frame: int = 10_000) -> Iterator[Any]:
    """Decode and key the lines of NDJSON files read whole (columns file, path) with the local engine's
    reader: a truncated or corrupt gzip gives what could be read, then a problem at the line it stopped."""
    import pandas as pd

    for frame in batches:
        for file, path in zip(frame["file"], frame["path"]):
            rows: list[tuple[Any, ...]] = []
            for line in ndjson_lines(Path(path)):
                if isinstance(line, SourceProblem):
                    row = None if only_medications else keyed_row(line, ranks[file])
                else:
                    row = _keyed_line(file, line[0], line[1], ranks[file], only_medications)
                if row is not None:
                    rows.append(row)
                if len(rows) >= rows_per_frame:
                    yield pd.DataFrame(rows, columns=_KEYED_COLUMNS)
                    rows = []
            if rows:
                yield pd.DataFrame(rows, columns=_KEYED_COLUMNS)


def _keyed_line(file: str, number: int, line: bytes, rank: int, only_medications: bool) -> tuple[Any, ...] | None:
    """The KEYED_SCHEMA row of one NDJSON line as the local engine reads it (None: a blank line, or not a
    Medication of no patient when only those are asked for)."""
    if not line.strip() or (only_medications and b'"Medication"' not in line):
        return None
    row = keyed_row(_decoded(file, number, line), rank)
    return row if not only_medications or row[0] == SHARED_MEDICATION_KEY else None


def key_bundle_files(batches: Iterator[Any], *, ranks: Mapping[str, int],
                     only_medications: bool = False) -> Iterator[Any]:
    """Decode and key the resources of Bundle files (columns file, path), read by path on the worker
    (`only_medications`: only the Medications of no patient)."""
    import pandas as pd

    for frame in batches:
        for file, path in zip(frame["file"], frame["path"]):
            rows = [keyed_row(record, ranks[file]) for record in _bundle_records(Path(path))]
            if only_medications:
                rows = [row for row in rows if row[0] == SHARED_MEDICATION_KEY]
            if rows:
                yield pd.DataFrame(rows, columns=_KEYED_COLUMNS)


_KEYED_COLUMNS = ["key", "rank", "line", "kind", "origin", "url", "text"]


def keyed_row(record: SourceItem | SourceProblem, rank: int) -> tuple[Any, ...]:
    """A KEYED_SCHEMA row for one source record: a patient's resource, a problem, or a resource of no patient."""
    if isinstance(record, SourceProblem):
        line = record.line if record.line is not None else (record.entry if record.entry is not None else -1)
        return (PROBLEM_KEY + record.file, rank, line, record.code, record.origin, None,
                orjson.dumps(record.issue()).decode())
    line = _place_in_file(record.origin)
    key = record.patient_key or patient_key_of(record.resource)  # a Bundle may name the patient better
    kind = record.resource["resourceType"]
    if key is None:  # a Medication keeps its JSON: patients' orders reference it (shared_medication_rows)
        text = record.raw.decode("utf-8") if kind == "Medication" else None
        return (WITHOUT_PATIENT_KEY + kind, rank, line, kind, record.origin, record.full_url, text)
    return (key, rank, line, kind, record.origin, record.full_url, record.raw.decode("utf-8"))


def _place_in_file(origin: str) -> int:
    """The line ('Observation.ndjson:17') or entry ('b.json#Bundle.entry[4]') an origin names, for ordering."""
    tail = origin.rsplit("[", 1)[-1].rstrip("]") if origin.endswith("]") else origin.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def screen_group(frame: Any, *, now_text: str, settings: Mapping[str, Any], medications: Any = None) -> Any:
    """The results of one group: a patient screened (with the shared Medications it references, from the
    broadcast `medications`), or the issues of a group of non-patient lines."""
    import pandas as pd

    frame = frame.sort_values(["rank", "line"], kind="stable")
    key = frame["key"].iloc[0]
    first_rank, first_line = int(frame["rank"].iloc[0]), int(frame["line"].iloc[0])
    if key.startswith(PROBLEM_KEY):  # the text is the problem's issue, ready
        rows = [(key, int(rank), int(line), PROBLEM, text.encode("utf-8"))
                for rank, line, text in zip(frame["rank"], frame["line"], frame["text"])]
    elif key.startswith(WITHOUT_PATIENT_KEY):
        issue = _without_patient_issue(key[len(WITHOUT_PATIENT_KEY):], len(frame), frame["origin"].iloc[0])
        rows = [(key, first_rank, first_line, WITHOUT_PATIENT, orjson.dumps(issue))]
    else:
        lines = [(origin, url or None, text.encode("utf-8"))
                 for origin, url, text in zip(frame["origin"], frame["url"], frame["text"])]
        screen = screen_lines(key, lines, _assessor(settings), datetime.fromisoformat(now_text),
                              _shared_medications(medications))
        payload = orjson.dumps({"outputs": screen.outputs, "summary": screen.summary, "issues": screen.issues})
        rows = [(key, first_rank, first_line, SCREEN, payload)]
    return pd.DataFrame(rows, columns=["key", "rank", "line", "what", "payload"])


_shared: dict[int, SharedMedications] = {}


def _shared_medications(medications: Any) -> SharedMedications | None:
    """The broadcast shared Medications ((token, rows)), decoded once per worker process and run."""
    if medications is None:
        return None
    token, rows = medications.value
    found = _shared.get(token)
    if found is None:
        _shared.clear()
        found = _shared[token] = SharedMedications.from_rows(rows)
    return found


def _assessor(settings: Mapping[str, Any]) -> Any:
    """This worker process's Assessor for `settings`, built on its first patient and kept."""
    from ..pipeline.assess import get_assessor

    return get_assessor(settings)


# ---------------------------------------------------------------- helpers


def _screen_of(patient_id: str, payload: bytes) -> PatientScreen:
    data = orjson.loads(payload)
    return PatientScreen(patient_id, outputs=data["outputs"], summary=data["summary"], issues=data["issues"])


def _evaluation_instant(now: datetime | None, config: Mapping[str, Any] | None) -> datetime:
    fixed = (config or {}).get("EVALUATION_TIME")
    moment = now or (datetime.fromisoformat(str(fixed).replace("Z", "+00:00")) if fixed else datetime.now(timezone.utc))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _assessor_settings(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings the workers build their Assessor from: the driver's, sent with the plan."""
    from ..config import load_config

    return dict(config) if config is not None and "RULE_LIBRARY" in config else dict(load_config(config))


class _Discard:
    def write(self, _text: str) -> int:
        return 0

    def flush(self) -> None:
        pass

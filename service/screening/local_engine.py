"""The local engine: partition the source by patient on disk, then assess the shards in a process pool.

    source --partition (chunks, in processes)--> work/shards/chunk-NNNNN-RRR.tsv
           --assess (shards, by the workers)--> work/parts/shard-NNNNN/ --join (here)--> outputs

The source is partitioned by processes of their own, a chunk each at a time (`sharding.partition`),
while this process builds the Assessor (on Linux): the workers, forked after, inherit the compiled
rule library (shared, copy on write) and are ready at once; the objects alive then are moved out
of the collector's view (`gc.freeze`) so that no process walks the library again (as the served
workers do). Elsewhere (spawned workers) each worker builds its own. The workers assess whole
shards: a shard's patients are grouped in memory, one patient at a time goes through
`screen_patient` with the export's shared Medications it references (`shared_medications`: the
partition keeps them in files of their own, each worker reads them once), and the shard's
results are written as a part (`outputs.PartWriter`) whose marker comes last; this process joins
each part into the outputs (`outputs.Assembler`) as soon as it and those before it are complete,
so only the last parts and the report are left when the workers are done. The work folder (`<out>/.screen-work`) records the run (source, instant, shard
count) so that `resume` redoes neither the partition nor any finished shard, and a resumed run
writes the same bytes as one never interrupted: the instant is the first run's, the shards are the
same files and the parts are joined in shard order. The work folder is removed once the outputs
are written.
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import resource
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import orjson

from .outputs import Assembler, PartWriter, part_counts, write_atomically
from .patient_screen import PatientScreen, screen_patient
from .shared_medications import SharedMedications, read_files
from .sharding import PartitionResult, Piece, partition, read_shard, shard_count_for, shard_pieces
from .sources import Source
from .summary_row import summary_row

WORK_FOLDER = ".screen-work"
RUN_FILE = "run.json"
PARTITION_FILE = "partition.json"
_POLL_SECONDS = 0.25
# Allocations between two collections of the youngest generation while screening (CPython's default:
# 700): a patient's assessment builds hundreds of thousands of short-lived objects.
YOUNG_GENERATION_THRESHOLD = 10_000


@dataclass
class ScreenRun:
    """What a run did: patients screened, seconds taken, problems found, and the totals written."""

    patients: int
    seconds: float
    problems: int
    out_dir: Path
    totals: dict[str, int] = field(default_factory=dict)
    shards_done_before: int = 0  # finished shards a resumed run found and did not redo
    # the peak resident memory of this process plus that of each of its processes (the partition's or the
    # workers', whichever sum is larger): an upper bound of the tree's peak, which counts the pages the
    # workers share with this process (the rule library they inherit) once for each
    peak_rss_bytes: int = 0
    # seconds: "start-up and partition" (overlapping), "assess" (joining parts meanwhile), "assemble" (what is left)
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.patients / self.seconds if self.seconds > 0 else 0.0

    def final_line(self) -> str:
        return (f"screened {self.patients} patients in {self.seconds:.1f} s ({self.rate:.1f} patients/s); "
                f"{self.problems} problems found; outputs in {self.out_dir}")


def run_local(source_folder: Path, out_dir: Path, *, workers: int | None = None, resume: bool = False,
              now: datetime | None = None, config: Mapping[str, Any] | None = None,
              progress: bool = True, extra_issues: Iterable[dict[str, Any]] = ()) -> ScreenRun:
    """Screen every patient of `source_folder` into `out_dir` with `workers` processes (default: the cores).

    `extra_issues` (met before the screen, e.g. the error files of a FHIR server's export) open issues.ndjson.
    """
    started = time.perf_counter()
    source = Source(source_folder)
    out_dir = Path(out_dir)
    work = out_dir / WORK_FOLDER
    run = _run_record(source, now, config)
    previous = _read_json(work / RUN_FILE) if resume else None
    if previous is not None and _same_run(previous, run):
        run = previous
    else:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        write_atomically(work / RUN_FILE, orjson.dumps(run))
    shard_folder, part_folder = work / "shards", work / "parts"
    parts = [part_folder / f"shard-{index:05d}" for index in range(run["shards"])]
    phases: dict[str, float] = {}
    partitioned = _read_json(work / PARTITION_FILE)
    if partitioned is not None and ("runs" not in partitioned or "medications" not in partitioned):
        partitioned = None  # written by a version that kept one file per shard, or no shared Medications: again
    count = workers or os.cpu_count() or 1
    assessor, partition_peaks, pool = None, {}, None
    try:
        if partitioned is None:
            shutil.rmtree(shard_folder, ignore_errors=True)
            _say(progress, f"partitioning {source.describe()} into {run['shards']} shards by patient")
            result, assessor, partition_peaks = _partition_while_starting(source, shard_folder, run["shards"], count,
                                                                          config)
            partitioned = result.to_json()
            write_atomically(work / PARTITION_FILE, orjson.dumps(partitioned))
        pending = _pending(parts)
        pool = _Workers(min(count, len(pending)), config, assessor) if pending else None
        assessor = None
        phases["start-up and partition"] = time.perf_counter() - started
        done = {index: part_counts(part) for index, part in enumerate(parts)}
        already = sum(counts.get("patients", 0) for counts in done.values() if counts)
        # only facts a resumed run shares (no date or duration of the run): the outputs are the same bytes
        facts = {"source": source.describe(), "evaluation_time": run["now"], "engine": "local"}
        joiner = _Joiner(parts, Assembler(out_dir, run_facts=facts,
                                          leading_issues=[*extra_issues, *partitioned["problems"]]))
        try:
            joiner.catch_up()
            worker_peaks = pool.run(pending, shard_folder, partitioned["runs"], partitioned["medications"], parts,
                                    run["now"], total=partitioned["patients"], already=already, progress=progress,
                                    joiner=joiner) if pool else {}
        except BaseException:
            joiner.assembler.abandon()
            raise
    finally:
        if pool:
            pool.close()
    phases["assess"] = time.perf_counter() - started - sum(phases.values())
    joiner.catch_up()
    totals = joiner.assembler.finish()
    problems = totals.get("problems", 0)
    shutil.rmtree(work, ignore_errors=True)
    phases["assemble"] = time.perf_counter() - started - sum(phases.values())
    # the partition's processes are gone before the workers start: the larger of the two sets counts
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            + max(sum(partition_peaks.values()), sum(worker_peaks.values())))
    return ScreenRun(totals.get("patients", 0), time.perf_counter() - started, problems, out_dir, totals,
                     shards_done_before=run["shards"] - len(pending), peak_rss_bytes=peak, phases=phases)


def _partition_while_starting(source: Source, folder: Path, shards: int, workers: int,
                              config: Mapping[str, Any] | None) -> tuple[PartitionResult, Any, dict[int, int]]:
    """Partition the source in processes of its own (`workers` of them) while this process builds the
    Assessor the workers will inherit (on Linux): the compilation and the partition overlap. Returns
    the partition, the Assessor (None where workers build their own) and the peak resident bytes of
    each partitioning process."""
    peaks: dict[int, int] = {}
    outcome: dict[str, Any] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=end_with_parent,
                             initargs=(os.getpid(),)) as chunk_pool:
        chunk_pool.submit(os.getpid).result()  # the processes are forked here, before any other thread runs

        def mapper(function: Any, chunks: Iterable[Any]) -> Iterator[Any]:
            return _recording_peaks(chunk_pool.map(partial(_measured, function), chunks), peaks)

        def run() -> None:
            try:
                outcome["result"] = partition(source, folder, shards, mapper=mapper)
            except BaseException as error:  # noqa: BLE001 - raised again by the main thread
                outcome["error"] = error

        thread = threading.Thread(target=run, name="partition")
        thread.start()
        try:
            assessor = _build_assessor(dict(config) if config is not None else None) if _forking() else None
        finally:
            thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"], assessor, peaks


def _measured(function: Any, item: Any) -> tuple[Any, int, int]:
    """`function(item)`, with this process's pid and peak resident bytes."""
    return function(item), os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _recording_peaks(results: Iterable[tuple[Any, int, int]], peaks: dict[int, int]) -> Iterator[Any]:
    for result, pid, peak in results:
        peaks[pid] = max(peaks.get(pid, 0), peak)
        yield result


def _forking() -> bool:
    """Whether workers are forked (and inherit what this process built) rather than spawned."""
    return sys.platform.startswith("linux")


def _context() -> Any:
    return multiprocessing.get_context("fork" if _forking() else "spawn")


def _pending(parts: list[Path]) -> list[int]:
    """The shards whose part is not complete."""
    return [index for index, part in enumerate(parts) if part_counts(part) is None]


def _run_record(source: Source, now: datetime | None, config: Mapping[str, Any] | None) -> dict[str, Any]:
    fixed = (config or {}).get("EVALUATION_TIME")
    moment = now or (datetime.fromisoformat(str(fixed).replace("Z", "+00:00")) if fixed else datetime.now(timezone.utc))
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    files = [[path.name, path.stat().st_size, int(path.stat().st_mtime)] for path in source.files]
    return {"source": str(source.folder.resolve()), "files": files, "now": moment.isoformat(),
            "now_given": now is not None, "shards": shard_count_for(source)}


def _same_run(previous: dict[str, Any], run: dict[str, Any]) -> bool:
    """A resumed run continues only the same source; the first run's instant stands unless one is given."""
    same_source = previous.get("source") == run["source"] and previous.get("files") == run["files"]
    same_instant = not run["now_given"] or previous.get("now") == run["now"]
    return same_source and same_instant and previous.get("shards") == run["shards"]


class _Joiner:
    """Joins the parts into the outputs in shard order, each as soon as it and those before it are
    complete: this process does it while the workers assess the shards after."""

    def __init__(self, parts: list[Path], assembler: Assembler) -> None:
        self.parts = parts
        self.assembler = assembler
        self.joined = 0

    def catch_up(self) -> None:
        while self.joined < len(self.parts) and part_counts(self.parts[self.joined]) is not None:
            self.assembler.add(self.parts[self.joined])
            self.joined += 1


class _Workers:
    """The worker processes, with an Assessor each (inherited when forked, else built as each starts),
    that assess whole shards."""

    def __init__(self, workers: int, config: Mapping[str, Any] | None, assessor: Any = None) -> None:
        forked = _forking()
        context = _context()
        self.counter = context.Value("q", 0, lock=True)  # patients done, across the workers
        config_dict = dict(config) if config is not None else None
        self.settled: tuple[int, int, int] | None = None
        self.workers = max(workers, 1)
        if forked:  # built here once (unless given), and inherited by every worker
            _worker["assessor"] = assessor if assessor is not None else _build_assessor(config_dict)
            self.settled = _settle_heap()
        self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context, initializer=_start_worker,
                                        initargs=(None if forked else config_dict, not forked, self.counter,
                                                  os.getpid()))
        self.pool.submit(os.getpid)  # the first task starts the processes now

    def run(self, pending: list[int], shard_folder: Path, runs: list[Any], medications: list[str], parts: list[Path],
            now_text: str, *, total: int, already: int, progress: bool, joiner: _Joiner) -> dict[int, int]:
        """Assess the pending shards; returns the peak resident bytes of each worker, by pid."""
        from tqdm import tqdm

        tqdm.monitor_interval = 0  # no monitor thread in a process that has forked workers
        peaks: dict[int, int] = {}
        with self.counter.get_lock():
            self.counter.value = already
        interactive = sys.stderr.isatty()
        bar = tqdm(total=total or None, initial=already, unit="patient", desc="screening", file=sys.stderr,
                   disable=not progress, dynamic_ncols=interactive, smoothing=0.1,
                   mininterval=0.5 if interactive else 10)
        futures: set[Future] = {self.pool.submit(screen_shard, str(shard_folder), shard_pieces(runs, index),
                                                 str(parts[index]), now_text, medications) for index in pending}
        prepared = False
        try:
            while futures:
                if not prepared and len(futures) < self.workers:
                    # a worker has no shard left to take: its core is free for what the report needs first
                    joiner.assembler.prepare_report()
                    prepared = True
                finished, futures = wait(futures, timeout=_POLL_SECONDS, return_when=FIRST_COMPLETED)
                for future in finished:
                    _counts, pid, peak = future.result()  # a worker's crash stops the run (--resume goes on)
                    peaks[pid] = max(peaks.get(pid, 0), peak)
                if finished:
                    joiner.catch_up()
                bar.update(self.counter.value - bar.n)
        finally:
            bar.update(self.counter.value - bar.n)
            bar.close()
        return peaks

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        _worker.clear()
        if self.settled is not None:
            gc.set_threshold(*self.settled)
            gc.unfreeze()


# ---------------------------------------------------------------- in the worker processes

_worker: dict[str, Any] = {}


def _build_assessor(config: Mapping[str, Any] | None) -> Any:
    from ..config import load_config
    from ..pipeline.assess import Assessor

    return Assessor(config if config is not None and "RULE_LIBRARY" in config else load_config(config))


def _settle_heap() -> tuple[int, int, int]:
    """Move every object alive now (the compiled rule library above all) out of the collector's view and
    collect the youngest generation less often; returns the thresholds to restore.

    The oldest generation's collections otherwise walk the whole library again and again while patients
    are assessed, for garbage that is never there; cyclic garbage is still collected."""
    gc.collect()
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *thresholds[1:])
    return thresholds


_PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when the thread that forked it ends


def end_with_parent(parent: int) -> None:
    """Have this pool process end when the engine's process does (Linux), and end now if it already has.

    A worker busy with a shard notices a lost parent between patients; an idle one waits on the pool's
    queue, which never closes while its siblings hold it open, so a killed run would leave it behind."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass  # no prctl: a busy worker still stops at its next patient
    if os.getppid() != parent:
        os._exit(1)


def _start_worker(config: Mapping[str, Any] | None, build: bool, counter: Any, parent: int) -> None:
    """Ready this worker: its Assessor is inherited (forked) or built now (spawned)."""
    end_with_parent(parent)
    if build:
        _worker["assessor"] = _build_assessor(config)
        _settle_heap()
    _worker.update(counter=counter, parent=parent)


def screen_shard(shard_folder: str, pieces: list[Piece], part_dir: str, now_text: str,
                 medications: list[str]) -> tuple[dict[str, int], int, int]:
    """Assess every patient of one shard (its pieces of the run files) and write its part, each patient
    with the shared Medications (files `medications`) it references; returns the part's counts, this
    worker's pid and its peak resident bytes so far."""
    assessor, counter, parent = _worker["assessor"], _worker["counter"], _worker["parent"]
    now = datetime.fromisoformat(now_text)
    shared = _shared_medications(shard_folder, medications)
    with PartWriter(Path(part_dir)) as part:
        for patient_id, lines in read_shard(Path(shard_folder), pieces):
            if os.getppid() != parent:  # the run was killed: stop, leave the part unfinished
                os._exit(1)
            part.add(screen_lines(patient_id, lines, assessor, now, shared))
            with counter.get_lock():
                counter.value += 1
        counts = part.finish()
    return counts, os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _shared_medications(shard_folder: str, names: list[str]) -> SharedMedications:
    """The export's shared Medications, read once per worker process (the same for every shard of a run)."""
    key = (shard_folder, tuple(names))
    cached = _worker.get("medications")
    if cached is None or cached[0] != key:
        cached = _worker["medications"] = (key, read_files(Path(shard_folder), names))
    return cached[1]


def screen_lines(patient_id: str, lines: list[tuple[str, str | None, bytes]], assessor: Any,
                 now: datetime, shared: SharedMedications | None = None) -> PatientScreen:
    """Screen one patient from its shard lines, with the `shared` Medications its medication resources
    reference added after them (once each); an unexpected failure is that patient's problem only."""
    resources = [orjson.loads(raw) for _origin, _url, raw in lines]
    if shared:
        added = shared.referenced_by(resources)
        if added:
            lines = [*lines, *added]
            resources.extend(orjson.loads(raw) for _origin, _url, raw in added)
    origins = [origin for origin, _url, _raw in lines]
    urls = [url for _origin, url, _raw in lines]
    try:
        return screen_patient(patient_id, resources, assessor, now=now, origins=origins,
                              full_urls=urls if any(urls) else None)
    except Exception as error:  # noqa: BLE001 - one patient's failure must not stop the population
        issue = {"patient_id": patient_id, "severity": "error", "code": "exception",
                 "diagnostics": f"the patient could not be screened: internal error ({type(error).__name__})"}
        return PatientScreen(patient_id, summary=summary_row(patient_id, None, 1), issues=[issue])


# ---------------------------------------------------------------- helpers


def _read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def _say(enabled: bool, text: str) -> None:
    if enabled:
        print(text, file=sys.stderr, flush=True)

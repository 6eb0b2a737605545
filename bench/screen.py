"""Benchmark of population screening: a synthetic export of N patients through a screening engine.

Run from the project root:

    python bench/screen.py                      # 10,000 patients, local engine with 2 workers
    python bench/screen.py --patients 2000 --workers 2 --export /tmp/export-2k   # keep and reuse the export

Every figure is set beside floors measured in the same run on the same lines, so the ratios mean
something on a shared, noisy machine:
- parse floor: `orjson.loads` of every line of the export, summed (no I/O): what any reader pays;
- one by one: the same patients assessed one after the other in this process with the pipeline
  (each patient's lines parsed and put through `screen_patient`, the same call the engines make:
  `Assessor.assess` and the `$assess` output builders), grouping and writing excluded; the first
  half of the patients before the engines run and the second half after them, so that the machine's
  drift in speed (up to a quarter from minute to minute) weighs on the baseline as on the engines;
- two halves: that loop split in two forked processes (every other patient each), nothing else:
  the most two cores gave this run (on a virtual machine whose cores the host shares, from about
  0.45 to 0.6 of one by one, run to run);
- start-up: building one Assessor (compiling the rule library), which the local engine does once,
  while processes of its own partition the export, before forking the workers that inherit it.
The engine runs in a child process; its peak memory is that of the whole process tree (the
engine's own peak plus that of each of its processes, the partition's or the workers' whichever is
larger: an upper bound of their sum at any instant, which counts the pages the workers share with
the engine, the compiled rule library, more than once).
The local engine's phases: "start-up and partition" (the Assessor built while the export is
partitioned), "assess" (the workers assess the shards while the engine joins each finished part
into the outputs), "assemble" (the last parts and the report).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "fhir_fixtures" / "assess" / "tools"))

import orjson  # noqa: E402

NOW = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)
_ENGINE_CHILD = """
import json, sys
from datetime import datetime
from pathlib import Path
from service.screening.local_engine import run_local
run = run_local(Path(sys.argv[1]), Path(sys.argv[2]), workers=int(sys.argv[3]), now=datetime.fromisoformat(sys.argv[4]),
                progress=False)
print(json.dumps({"patients": run.patients, "seconds": run.seconds, "problems": run.problems,
                  "peak_rss_bytes": run.peak_rss_bytes, "phases": run.phases}))
"""

# The Spark engine in a child process: a session of its own on local[N] (its start-up is timed apart).
_SPARK_CHILD = """
import json, resource, sys
from datetime import datetime
from pathlib import Path
from service.screening.spark_engine import run_spark
run = run_spark(Path(sys.argv[1]), Path(sys.argv[2]), master=f"local[{sys.argv[3]}]",
                now=datetime.fromisoformat(sys.argv[4]), progress=False)
print(json.dumps({"patients": run.patients, "seconds": run.seconds, "problems": run.problems,
                  "startup_seconds": run.startup_seconds, "rate_after_startup": run.rate_after_startup,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "peak_of": "the driver's Python process",
                  "phases": {"session start-up": run.startup_seconds,
                             "read, screen and write": run.seconds - run.startup_seconds}}))
"""


def export_lines(folder: Path) -> list[bytes]:
    """Every line of the export's NDJSON files, in memory (for the floors only)."""
    lines: list[bytes] = []
    for path in sorted(folder.glob("*.ndjson")):
        lines.extend(line for line in path.read_bytes().splitlines() if line.strip())
    return lines


def parse_floor(lines: list[bytes]) -> float:
    """Seconds to orjson-parse every line once, summed."""
    started = time.perf_counter()
    for line in lines:
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            pass
    return time.perf_counter() - started


def prepared(lines: list[bytes]) -> tuple[float, Any, dict[str, list[bytes]]]:
    """(start-up seconds, the Assessor, each patient's lines): what both in-process loops start from."""
    from service.config import load_config
    from service.pipeline.assess import Assessor
    from service.screening.patient_keys import patient_key_of

    started = time.perf_counter()
    assessor = Assessor(load_config())
    startup = time.perf_counter() - started
    groups: dict[str, list[bytes]] = defaultdict(list)
    for line in lines:
        try:
            key = patient_key_of(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
        if key:
            groups[key].append(line)
    return startup, assessor, groups


def _assess_each(assessor: Any, patients: list[tuple[str, list[bytes]]]) -> None:
    from service.screening.patient_screen import screen_patient

    for patient_id, patient_lines in patients:
        screen_patient(patient_id, [orjson.loads(line) for line in patient_lines], assessor, now=NOW)


def one_by_one(assessor: Any, patients: list[tuple[str, list[bytes]]]) -> tuple[float, float]:
    """(seconds, CPU seconds) assessing these patients in turn in this process."""
    started, cpu = time.perf_counter(), time.process_time()
    _assess_each(assessor, patients)
    return time.perf_counter() - started, time.process_time() - cpu


def two_halves(assessor: Any, groups: dict[str, list[bytes]]) -> tuple[float, float] | None:
    """(seconds, CPU seconds) of the same loop split in two forked processes, every other patient each.

    No engine does less than this with two cores: no partition, no shards, no outputs written. On a
    machine whose cores are shared with others (a virtual machine's), what two busy cores give varies
    from run to run; this shows what they gave in this run. None where processes are not forked."""
    if not sys.platform.startswith("linux"):
        return None
    patients = list(groups.items())
    started, before = time.perf_counter(), _children_cpu()
    children = []
    for half in (patients[0::2], patients[1::2]):
        child = os.fork()
        if child == 0:
            try:
                _assess_each(assessor, half)
            finally:
                os._exit(0)
        children.append(child)
    for child in children:
        os.waitpid(child, 0)
    return time.perf_counter() - started, _children_cpu() - before


def measure_local(export: Path, workers: int) -> dict[str, Any]:
    """The local engine in a child process: its own figures and the peak memory of its process tree."""
    return _measure_child(_ENGINE_CHILD, export, workers)


def measure_spark(export: Path, workers: int) -> dict[str, Any]:
    """The Spark engine on local[workers] in a child process: start-up, then the run after it.

    Its peak memory is the driver's Python process only: the JVM's is bounded by Spark's own
    settings (spark.driver.memory, 1 GiB by default), and its Python workers are Spark's.
    """
    from service.screening.spark_session import spark_missing

    missing = spark_missing()
    if missing:
        return {"skipped": missing}
    figures = _measure_child(_SPARK_CHILD, export, workers)
    figures["cpu_seconds"] = None  # the JVM and its Python workers are not children this process waits for
    return figures


def _measure_child(program: str, export: Path, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="screen-bench-out-") as out:
        started, before = time.perf_counter(), _children_cpu()
        done = subprocess.run([sys.executable, "-c", program, str(export), out, str(workers), NOW.isoformat()],
                              cwd=ROOT, capture_output=True, text=True, check=True)
        wall, cpu = time.perf_counter() - started, _children_cpu() - before
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures.update(wall_seconds=wall, cpu_seconds=cpu)  # CPU: the engine and all its workers
    return figures


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# Engine name -> how to measure it on an export with a number of workers (the Spark engine: local[workers]).
ENGINES: dict[str, Callable[[Path, int], dict[str, Any]]] = {"local": measure_local, "spark": measure_spark}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export", type=Path, help="write the export here and keep it (reused when present)")
    parser.add_argument("--engine", choices=sorted(ENGINES), action="append",
                        help="engines to measure (default: all)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    from synthetic_export import write_export

    holder = None
    export = args.export
    if export is None:
        holder = tempfile.TemporaryDirectory(prefix="screen-bench-export-")
        export = Path(holder.name)
    if not (export / "Patient.ndjson").exists():
        print(f"writing {args.patients} synthetic patients to {export} ...", file=sys.stderr)
        write_export(export, args.patients, seed=args.seed)
    lines = export_lines(export)
    figures: dict[str, Any] = {"patients": args.patients, "lines": len(lines), "workers": args.workers,
                               "cores": os.cpu_count(), "bytes": sum(len(line) for line in lines)}
    figures["parse_floor_seconds"] = parse_floor(lines)
    startup, assessor, groups = prepared(lines)
    del lines
    # The halves first: forked from the Assessor as built, they start as cold as the loop after them (forked
    # after it, they would inherit every value it kept and do less work than it did).
    print("assessing every patient in two forked halves ...", file=sys.stderr)
    halves = two_halves(assessor, groups)
    # One by one in two parts, the first half of the patients before the engines run and the second after
    # them: the machine's speed drifts from minute to minute, and measured around the engines' minutes
    # the baseline drifts with them (measured all before, a slower machine during the engines counted
    # against them, a faster one for them).
    patients = list(groups.items())
    middle = len(patients) // 2
    print("one by one in this process, the first half of the patients ...", file=sys.stderr)
    first = one_by_one(assessor, patients[:middle])
    figures.update(startup_seconds=startup, one_by_one_patients=len(patients),
                   two_halves_seconds=halves[0] if halves else None,
                   two_halves_cpu_seconds=halves[1] if halves else None)
    for name in args.engine or sorted(ENGINES):
        print(f"running the {name} engine ...", file=sys.stderr)
        figures[name] = ENGINES[name](export, args.workers)
    print("one by one in this process, the second half of the patients ...", file=sys.stderr)
    second = one_by_one(assessor, patients[middle:])
    del assessor, groups, patients
    figures.update(one_by_one_seconds=first[0] + second[0], one_by_one_cpu_seconds=first[1] + second[1],
                   one_by_one_parts_seconds=[first[0], second[0]], load_average=os.getloadavg())
    _print(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    if holder is not None:
        holder.cleanup()
    return 0


def _print(figures: dict[str, Any]) -> None:
    floor, sequential, startup = figures["parse_floor_seconds"], figures["one_by_one_seconds"], figures["startup_seconds"]
    print(f"load average when the engines ran: {', '.join(f'{v:.1f}' for v in figures['load_average'])}")
    print(f"export: {figures['patients']} patients, {figures['lines']} lines, {figures['bytes'] / 1e6:.0f} MB; "
          f"{figures['workers']} workers on {figures['cores']} cores")
    print(f"orjson parse floor (all lines):        {floor:8.2f} s")
    before, after = figures["one_by_one_parts_seconds"]
    print(f"one by one in process (pipeline):      {sequential:8.2f} s  "
          f"({figures['one_by_one_patients'] / sequential:.1f} patients/s: first half of the patients {before:.2f} s "
          f"before the engines, second half {after:.2f} s after them); start-up (one Assessor) {startup:.2f} s")
    halves = figures.get("two_halves_seconds")
    if halves:
        print(f"two forked halves of that loop:        {halves:8.2f} s  (/ one by one: {halves / sequential:.2f}, "
              f"CPU {figures['two_halves_cpu_seconds'] / figures['one_by_one_cpu_seconds']:.2f} of one by one's: "
              "what two cores gave this run, with nothing of an engine)")
    for name in ENGINES:
        run = figures.get(name)
        if not run:
            continue
        if "skipped" in run:
            print(f"{name} engine: not measured ({run['skipped']})")
            continue
        seconds = run["seconds"]
        beyond = seconds - startup
        print(f"{name} engine:  {run['patients']} patients in {seconds:.2f} s = {run['patients'] / seconds:.1f} patients/s; "
              f"peak RSS ({run.get('peak_of', 'process tree')}) {run['peak_rss_bytes'] / 2**20:.0f} MiB; "
              f"{run['problems']} problems")
        print(f"  x parse floor: {seconds / floor:.1f};  / one by one: {seconds / sequential:.2f} "
              f"(beyond start-up: {beyond / sequential:.2f}; target at most 0.5 with two cores)"
              + (f";  beyond start-up / two halves: {beyond / halves:.2f}" if halves else ""))
        if run.get("cpu_seconds") is None:
            print("  CPU of the whole tree: not measured (the JVM and Spark's Python workers are not waited for)")
        else:
            print(f"  CPU of the whole tree / CPU one by one: "
                  f"{run['cpu_seconds'] / figures['one_by_one_cpu_seconds']:.2f} (1.0: no work of its own; "
                  f"the start-up, one Assessor, is {startup:.1f} s of it)")
        print("  phases: " + ", ".join(f"{phase} {value:.2f} s" for phase, value in run.get("phases", {}).items()))

    _print_side_by_side(figures)


def _print_side_by_side(figures: dict[str, Any]) -> None:
    """The Spark engine beside the local one: what each costs before its first patient, and the rate after."""
    local, spark = figures.get("local"), figures.get("spark")
    if not local or not spark or "skipped" in spark:
        return
    local_rate = local["patients"] / max(local["seconds"] - figures["startup_seconds"], 1e-9)
    print(f"side by side ({figures['workers']} cores each; the same export, the same run):")
    print(f"  start-up:   local {figures['startup_seconds']:.1f} s (one Assessor, overlapping the partition, "
          f"inherited by the workers)   spark {spark['startup_seconds']:.1f} s (JVM and session; then an Assessor per Python worker)")
    print(f"  after it:   local {local_rate:.1f} patients/s   spark {spark['rate_after_startup']:.1f} patients/s "
          f"(spark / local: {spark['rate_after_startup'] / local_rate:.2f})")


if __name__ == "__main__":
    sys.exit(main())

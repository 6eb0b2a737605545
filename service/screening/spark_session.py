"""The SparkSession a screening run uses, and the relay of Spark's stage progress to stderr.

Spark is an optional extra (`pip install ".[spark]"`, Java 17): nothing here is
imported unless `--engine spark` is asked for, and `spark_missing` says in one sentence what is
missing when it cannot run.

On a `local[...]` master the session is set for one machine: the Python workers are this
interpreter (so they import this package and its dependencies), the driver binds to 127.0.0.1
(nothing listens beyond the machine), no web UI is started (no port to clash with), the groupings
are split into a few partitions per core rather than Spark's 200, and Spark's own logging is cut
to warnings. On a cluster master only the logging and the UI are set: the cluster's own settings
(and `PYSPARK_PYTHON`, which must name a Python with this package installed) stand.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, TextIO

LOG_CONFIG = Path(__file__).with_name("spark_log4j2.properties")
JAVA_MAJOR_NEEDED = 17
PARTITIONS_PER_CORE = 4
_LOCAL = re.compile(r"^local(\[(\*|\d+)(,\s*\d+)?\])?$")


def spark_missing() -> str | None:
    """Why the Spark engine cannot run here (no pyspark, no Java 17+), or None when it can."""
    try:
        importlib.import_module("pyspark")  # importable, not only present: the engine imports it next
    except ImportError:
        return 'pyspark is not installed (pip install ".[spark]")'
    major = java_major_version()
    if major is None:
        return "no Java runtime found (Spark needs Java 17 or later: JAVA_HOME or java on PATH)"
    if major < JAVA_MAJOR_NEEDED:
        return f"Java {major} found; Spark needs Java {JAVA_MAJOR_NEEDED} or later"
    return None


def java_major_version() -> int | None:
    """The major version of the `java` Spark would start (JAVA_HOME first, then PATH), or None."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def is_local_master(master: str) -> bool:
    return bool(_LOCAL.match(master.strip()))


def local_cores(master: str) -> int:
    """The cores a `local[...]` master uses: local -> 1, local[*] -> all, local[N] -> N."""
    found = _LOCAL.match(master.strip())
    if not found or not found.group(2):
        return 1
    if found.group(2) == "*":
        return os.cpu_count() or 1
    return max(1, int(found.group(2)))


def session_settings(master: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Spark settings of a screening session on `master` (`extra` wins over them)."""
    settings = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",  # the run relays stage progress itself
        "spark.sql.session.timeZone": "UTC",
        # Screening costs per patient, not per byte: merging small shuffle partitions by size would
        # leave one task screening everyone while the other cores wait.
        "spark.sql.adaptive.coalescePartitions.enabled": "false",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()}",
    }
    if is_local_master(master):
        settings.update({
            "spark.sql.shuffle.partitions": str(PARTITIONS_PER_CORE * local_cores(master)),
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.driver.host": "127.0.0.1",
            "spark.pyspark.python": os.environ.get("PYSPARK_PYTHON") or sys.executable,
        })
    settings.update(extra or {})
    return settings


def build_session(master: str = "local[*]", *, app_name: str = "calcinosis-cds screen",
                  conf: Mapping[str, str] | None = None) -> Any:
    """A SparkSession on `master` set for screening (see the module doc); an existing one is reused."""
    reason = spark_missing()
    if reason:
        raise RuntimeError(f"the Spark engine cannot run: {reason}")
    from pyspark.sql import SparkSession

    if is_local_master(master):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in session_settings(master, conf).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session


def active_session() -> Any:
    """The SparkSession already running in this process, if any (None without pyspark)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return None
    return SparkSession.getActiveSession()


class StageProgress:
    """Relays the progress of Spark's running stages to `out`, polling the status tracker in a thread.

    A line is written when something changed, at most every `interval` seconds:
    `spark: screening patients: stage 4 7/16 tasks (2 running); 1250 patients written`.
    `phase` names what the run is doing; `written` (a callable) counts the patients the driver
    has written so far.
    """

    def __init__(self, spark_context: Any, *, out: TextIO | None = None, interval: float = 2.0,
                 written: Callable[[], int] | None = None) -> None:
        self.tracker = spark_context.statusTracker()
        self.out = out or sys.stderr
        self.interval = interval
        self.written = written
        self.phase = "starting"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spark-progress", daemon=True)
        self._last = ""
        self._last_at = 0.0

    def __enter__(self) -> "StageProgress":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def snapshot(self) -> str:
        """One line describing the running stages now ('' when none runs and nothing is written)."""
        stages = []
        for stage_id in sorted(self.tracker.getActiveStageIds()):
            info = self.tracker.getStageInfo(stage_id)
            if info is None:
                continue
            running = f" ({info.numActiveTasks} running)" if info.numActiveTasks else ""
            failed = f", {info.numFailedTasks} failed" if info.numFailedTasks else ""
            stages.append(f"stage {stage_id} {info.numCompletedTasks}/{info.numTasks} tasks{running}{failed}")
        written = self.written() if self.written else 0
        if not stages and not written:
            return ""
        parts = ["; ".join(stages)] if stages else []
        if written:
            parts.append(f"{written} patients written")
        return f"spark: {self.phase}: " + "; ".join(parts)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            try:
                line = self.snapshot()
            except Exception:  # noqa: BLE001 - the context stopping under us ends the relay, never the run
                return
            now = time.monotonic()
            if line and line != self._last and now - self._last_at >= self.interval:
                print(line, file=self.out, flush=True)
                self._last, self._last_at = line, now

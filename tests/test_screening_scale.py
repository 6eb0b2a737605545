"""10,000 synthetic patients through the local engine in bounded memory (not timed).

The export (two files per type, as servers split them) is some 300 MB of NDJSON; held as decoded
Python objects it would take several times that, above the bound set here for the whole process
tree, so a run that held the export (or grouped it by patient in memory) would fail.
This is the slowest test of the suite (every patient goes through the whole pipeline: a few minutes
on two cores); `-m "not slow"` leaves it out of a quick run.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES_DIR, PROJECT_ROOT

PATIENTS = 10_000
TREE_BOUND = 1024 * 2**20  # the whole process tree: the engine and its workers
# any one of them. Alone the engine peaks at 240-280 MiB, but after the rest of the suite it has been
# measured at 660 MiB for a reason not yet found; either is far below the export decoded (several GiB).
PROCESS_BOUND = 768 * 2**20
_GENERATE = """
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from synthetic_export import write_export
write_export(Path(sys.argv[2]), int(sys.argv[3]), seed=int(sys.argv[4]), bad_lines=5)
"""
_SCREEN = """
import json, sys
from datetime import datetime
from pathlib import Path
from service.screening.local_engine import run_local
run = run_local(Path(sys.argv[1]), Path(sys.argv[2]), workers=2, now=datetime.fromisoformat("2026-11-15T09:00:00+00:00"),
                progress=False)
import resource
print(json.dumps({"patients": run.patients, "peak_rss_bytes": run.peak_rss_bytes,
                  "engine_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "largest_worker_rss_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))
"""


def _write_halves(folder: Path) -> None:
    """Two halves written at once, then named as a server splits a type: <Type>.000.ndjson, <Type>.001.ndjson."""
    tools = str(FIXTURES_DIR / "assess" / "tools")
    halves = [folder / f"half-{n}" for n in range(2)]
    writers = [subprocess.Popen([sys.executable, "-c", _GENERATE, tools, str(half), str(PATIENTS // 2), str(n + 100)])
               for n, half in enumerate(halves)]
    assert all(writer.wait() == 0 for writer in writers)
    for n, half in enumerate(halves):
        for path in half.glob("*.ndjson"):
            path.rename(folder / f"{path.name.removesuffix('.ndjson')}.{n:03d}.ndjson")
        half.rmdir()


@pytest.mark.slow
def test_ten_thousand_patients_in_bounded_memory(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    _write_halves(export)
    export_bytes = sum(path.stat().st_size for path in export.iterdir())
    patient_ids = {json.loads(line)["id"] for n in range(2)
                   for line in (export / f"Patient.{n:03d}.ndjson").read_text().splitlines()}
    assert len(patient_ids) == PATIENTS and export_bytes > 200 * 2**20

    done = subprocess.run([sys.executable, "-c", _SCREEN, str(export), str(tmp_path / "out")], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-2000:]
    run = json.loads(done.stdout.strip().splitlines()[-1])

    # getrusage in the engine's process: its own peak, and the largest of the workers it waited for
    assert run["peak_rss_bytes"] < TREE_BOUND, run
    assert run["engine_rss_bytes"] < PROCESS_BOUND and run["largest_worker_rss_bytes"] < PROCESS_BOUND, run
    with open(tmp_path / "out" / "summary.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert run["patients"] == len(rows) == PATIENTS
    assert {row["patient_id"] for row in rows} == patient_ids
    assert sum(1 for _ in open(tmp_path / "out" / "RiskAssessment.ndjson", "rb")) == PATIENTS
    assert sum(1 for row in rows if row["top_grade"] == "high") > PATIENTS // 10  # real assessments, not empty rows

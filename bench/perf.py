"""Performance: `$assess` in process beside the JSON parse floor, and the served path under load.

Run from the project root: `python bench/perf.py` (`--quick` for fewer rounds and shorter loads,
`--only in-process` or `--only served` for one half). It prints, in one run on this machine:

- `$assess` in process (read the body as the route does: decode and depth check, or stream a body of
  STREAM_FROM_BYTES or more entry by entry; ingest, rules, build the result Bundle, serialize) for the Synthea
  samples kept beside the repository (skipped, with the reason, when absent), for synthetic bundles
  of 10 to 10,000 resources (one patient, most resources unrelated) and of 1, 10 and 100 patients
  of 20 results each: median ms, the ratio to `orjson.loads` of the same bytes timed in the same
  loop (the floor), and the peak memory traced while assessing it, beside the bytes;
- the served path: `calcinosis-cds serve` started on 127.0.0.1 with its default settings, loaded
  by `wrk` (Debian: `apt-get install -y wrk`) at 1, 8 and 32 connections, for patient-view calls of
  17 KB, of the largest Synthea sample's prefetch and of 1.75 MB (that patient's record grown with
  earlier years of its own kinds of resources), JWT verified, each request with its own pre-signed
  token, so replay protection stays on, and for `/healthz`, the served floor: requests/s, p50, p95,
  p99 and errors.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import orjson  # noqa: E402

from workloads import (SMALL_PATIENT_VIEW_SOURCE, in_process_cases, large_patient_view_body,  # noqa: E402
                       patient_view_body, synthea_samples)

NOW = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)
ISSUER = "https://ehr.example.org"
SERVICE_PATH = "/cds-services/calcinosis-patient-view"
WRK_SCRIPT = ROOT / "bench" / "wrk_rotating_jwt.lua"
CONNECTIONS = (1, 8, 32)
FLOOR_SECONDS = 2  # the served floor again, just before each row it is set beside


# --- in process ----------------------------------------------------------------------------------

def _assess_once(assessor: Any, body: bytes) -> bytes:
    """The bytes read as `$assess` reads them (decoded and depth-checked, or streamed when large), assessed,
    the result built and serialized."""
    from service.fhir_outputs.result_bundle import build_result_bundle
    from service.web.http_io import decode_bundle

    run = assessor.assess(decode_bundle(body), now=NOW)
    return orjson.dumps(build_result_bundle(run.patients, run.issues))


def _in_process_row(assessor: Any, body: bytes, budget_s: float) -> tuple[float, float, float, int]:
    """(median ms, median floor ms, ratio, peak traced bytes): the floor and the path timed in turn."""
    _assess_once(assessor, body)  # warm caches, as a served worker would be
    full, floor = [], []
    deadline = time.perf_counter() + budget_s
    while len(full) < 3 or (time.perf_counter() < deadline and len(full) < 50):
        # Each step starts from a collected heap, so neither pays for the other's garbage.
        gc.collect()
        start = time.perf_counter()
        orjson.loads(body)
        floor.append(time.perf_counter() - start)
        gc.collect()
        start = time.perf_counter()
        _assess_once(assessor, body)
        full.append(time.perf_counter() - start)
    gc.collect()
    tracemalloc.start()
    _assess_once(assessor, body)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    full_ms, floor_ms = statistics.median(full) * 1000, statistics.median(floor) * 1000
    return full_ms, floor_ms, full_ms / floor_ms, peak


def bench_in_process(quick: bool) -> None:
    from service.config import load_config
    from service.pipeline.assess import get_assessor

    assessor = get_assessor(load_config({"MAX_ASSESSED_RESOURCES": 20000}))
    print("$assess in process (read as the route reads: parse + depth check, or streamed from 4 MiB; ingest + "
          "rules + result Bundle + serialize; floor = orjson.loads)")
    print(f"  {'input':32} {'bytes':>10} {'median ms':>10} {'floor ms':>9} {'ratio':>7} {'peak MB':>8} "
          f"{'peak/bytes':>10}")
    for name, body, skipped in in_process_cases():
        if body is None:
            print(f"  {name:32} {skipped}")
            continue
        full_ms, floor_ms, ratio, peak = _in_process_row(assessor, body, 1.0 if quick else 4.0)
        print(f"  {name:32} {len(body):10,} {full_ms:10.1f} {floor_ms:9.2f} {ratio:6.1f}x {peak / 1e6:8.1f} "
              f"{peak / len(body):9.1f}x", flush=True)


# --- served --------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _client_key() -> tuple[Any, dict[str, Any]]:
    """An ES256 signing key (the cheapest asymmetric algorithm the service accepts) and its JWKS."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "bench", "alg": "ES256", "use": "sig"})
    return key, {"keys": [jwk]}


def _sign_tokens(key: Any, audience: str, count: int, path: Path) -> Path:
    """`count` tokens for `audience`, one a line, each with its own jti (the service refuses a replay)."""
    import jwt

    now = int(time.time())
    batch = uuid.uuid4().hex[:12]  # two batches signed in the same second never share a jti
    with path.open("w") as out:
        for number in range(count):
            claims = {"iss": ISSUER, "sub": "bench-client", "aud": audience, "iat": now, "exp": now + 900,
                      "jti": f"bench-{batch}-{number}"}
            out.write(jwt.encode(claims, key, algorithm="ES256", headers={"kid": "bench"}) + "\n")
    return path


class Server:
    """`calcinosis-cds serve` on 127.0.0.1 with default settings, trusting the bench's signing key."""

    def __init__(self, workdir: Path, jwks: dict[str, Any], extra_args: list[str]) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALCINOSIS_") or k == "CALCINOSIS_SHARED_DIR"}
        env.update({"CALCINOSIS_PUBLIC_BASE_URL": self.base,
                    "CALCINOSIS_CDS_TRUSTED_ISSUERS": json.dumps({ISSUER: {"jwks": jwks}}),
                    "CALCINOSIS_CDS_FEEDBACK_DB": str(workdir / "feedback.sqlite3"),
                    "PYTHONPATH": str(ROOT)})
        script = shutil.which("calcinosis-cds", path=str(Path(sys.executable).parent))
        command = ([script] if script else [sys.executable, "-m", "service.cli"]) + [
            "serve", "--host", "127.0.0.1", "--port", str(self.port), *extra_args]
        self.log = (workdir / "server.log").open("wb")
        self.process = subprocess.Popen(command, cwd=workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 90) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited early; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("the server did not answer /healthz in time")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def _wrk(base: str, connections: int, duration_s: int, tokens: Path | None, body: Path | None,
         path: str) -> dict[str, float]:
    """One wrk run; the Lua script prints its summary as one JSON line."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--timeout", "10s", "-s", str(WRK_SCRIPT),
            base + path, "--", str(tokens or ""), str(body or ""), path]
    result = subprocess.run(args, capture_output=True, text=True, check=True)
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def bench_served(quick: bool, extra_args: list[str]) -> None:
    if shutil.which("wrk") is None:
        print("served: skipped: wrk is not installed (Debian/Ubuntu: apt-get update && apt-get install -y wrk)")
        return
    samples = synthea_samples()
    workloads = [("patient-view small", patient_view_body(SMALL_PATIENT_VIEW_SOURCE))]
    if samples:
        workloads.append(("patient-view Synthea", patient_view_body(samples[-1])))
        workloads.append(("patient-view large", large_patient_view_body(samples[-1])))
    else:
        print("served: Synthea and large patient-view skipped: the Synthea samples are absent")
    duration = 4 if quick else 10
    key, jwks = _client_key()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server = Server(workdir, jwks, extra_args)
        try:
            server.wait_ready()
            print(f"served: calcinosis-cds serve {' '.join(extra_args) or '(defaults)'} on 127.0.0.1; wrk -t1, "
                  f"{duration} s a run; {os.cpu_count()} cores shared by server and load generator")
            # "/ floor": requests/s over the floor's, measured just before at the same connections: steadier
            # than either figure alone on a machine whose per-core speed drifts from minute to minute.
            print(f"  {'request':34} {'conns':>5} {'req/s':>8} {'/ floor':>8} {'p50 ms':>8} {'p95 ms':>8} "
                  f"{'p99 ms':>8} {'errors':>7}")
            floor_rps: dict[int, float] = {}
            rows = [("/healthz (served floor)", None, "/healthz")] + [
                (f"{name} ({len(body) / 1e3:,.0f} KB)", body, SERVICE_PATH) for name, body in workloads]
            for label, body, path in rows:
                body_file = None
                if body is not None:
                    body_file = workdir / "body.json"
                    body_file.write_bytes(body)
                    _wrk(server.base, 1, 1, _sign_tokens(key, server.base + path, 2000, workdir / "t.txt"),
                         body_file, path)  # warm up every worker
                for connections in CONNECTIONS:
                    tokens = None
                    if body is not None:
                        # Enough for 3,000 req/s (the small call stays far below it); each token used once.
                        tokens = _sign_tokens(key, server.base + path, 3000 * duration, workdir / "tokens.txt")
                        floor_rps[connections] = _wrk(server.base, connections, FLOOR_SECONDS, None, None,
                                                      "/healthz")["rps"]
                    r = _wrk(server.base, connections, duration, tokens, body_file, path)
                    if body is None:
                        floor_rps[connections] = r["rps"]
                    share = r["rps"] / floor_rps[connections]
                    print(f"  {label:34} {connections:5d} {r['rps']:8.1f} {share:8.3f} {r['p50'] / 1000:8.1f} "
                          f"{r['p95'] / 1000:8.1f} {r['p99'] / 1000:8.1f} {r['errors']:7d}", flush=True)
        finally:
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter loads")
    parser.add_argument("--only", choices=("in-process", "served"), help="run one half only")
    parser.add_argument("--serve-arg", action="append", default=[],
                        help="an extra option for `calcinosis-cds serve` (repeatable), e.g. --serve-arg=--threads=8")
    args = parser.parse_args()
    # The load average says how much others used the machine meanwhile: read the figures beside it.
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.only in (None, "in-process"):
        bench_in_process(args.quick)
    if args.only in (None, "served"):
        bench_served(args.quick, args.serve_arg)
    print(f"done {datetime.now(timezone.utc):%H:%M} UTC, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

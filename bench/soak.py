"""Soak: a bounded run of mixed requests against a server this command starts on loopback.

    python bench/soak.py --requests 20000

Starts `calcinosis-cds serve` on 127.0.0.1 (a free port, one worker, its own temporary feedback
file), sends a fixed round of requests (every `$assess` fixture, CDS Hooks calls with fresh
hookInstances, discovery, metadata, /healthz, and hostile bodies that must be refused with 4xx),
and reports requests, errors and the server's resident memory (master and workers) at each 25%
step. An error is any answer other than the one the request must get (a 5xx, a wrong 4xx, a
timeout or a dropped connection). RSS growth is measured from the 25% step, after warm-up
(imports, the compiled library, first-use caches). Exit status 1 when there was an error or the
growth reached --max-growth percent. Nothing leaves the machine: the server only listens on
127.0.0.1 and the hook calls carry no fhirServer.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import requests

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fhir_fixtures"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


@dataclass(frozen=True)
class Probe:
    """One kind of request and the status it must get."""

    name: str
    send: Callable[[requests.Session, str], requests.Response]
    expected: int


def _assess_fixtures() -> list[bytes]:
    return [path.read_bytes() for path in sorted((FIXTURES / "assess").glob("[0-9]*.json"))
            if not path.name.endswith(".expected.json")]


def _hook_body(name: str) -> dict:
    body = json.loads((FIXTURES / "cds-hooks" / f"{name}-request.json").read_text(encoding="utf-8"))
    body.pop("fhirServer", None)
    body.pop("fhirAuthorization", None)
    return body


def probes() -> list[Probe]:
    """The round of requests repeated through the run."""
    bundles = _assess_fixtures()
    hooks = {name: _hook_body(name) for name in ("patient-view", "order-select", "order-sign")}
    counter = iter(range(10 ** 12))

    def assess(session: requests.Session, base: str) -> requests.Response:
        return session.post(f"{base}/fhir/$assess", data=bundles[next(counter) % len(bundles)], headers=FHIR_JSON)

    def hook(name: str) -> Callable[[requests.Session, str], requests.Response]:
        def call(session: requests.Session, base: str) -> requests.Response:
            body = dict(hooks[name], hookInstance=str(uuid.uuid4()))
            return session.post(f"{base}/cds-services/calcinosis-{name}", json=body)
        return call

    def raw(path: str, data: bytes, headers: dict[str, str] | None = None):
        return lambda session, base: session.post(f"{base}{path}", data=data, headers=headers or FHIR_JSON)

    return [
        Probe("assess", assess, 200),
        Probe("patient-view", hook("patient-view"), 200),
        Probe("healthz", lambda s, b: s.get(f"{b}/healthz"), 200),
        Probe("assess-bad-json", raw("/fhir/$assess", b'{"resourceType": "Bundle", '), 400),
        Probe("order-select", hook("order-select"), 200),
        Probe("metadata", lambda s, b: s.get(f"{b}/fhir/metadata"), 200),
        Probe("assess-not-a-bundle", raw("/fhir/$assess", b'{"resourceType": "Patient"}'), 422),
        Probe("order-sign", hook("order-sign"), 200),
        Probe("discovery", lambda s, b: s.get(f"{b}/cds-services"), 200),
        Probe("hook-not-an-object", raw("/cds-services/calcinosis-patient-view", b"[]",
                                        {"Content-Type": "application/json"}), 400),
        Probe("assess-deep-json", raw("/fhir/$assess", b"[" * 2000 + b"]" * 2000), 400),
        Probe("assess-xml", raw("/fhir/$assess", b"<Bundle/>", {"Content-Type": "application/fhir+xml"}), 415),
    ]


class _TimedSession(requests.Session):
    """A session whose every request gives up after `timeout` seconds (a hung answer counts as an error)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def request(self, *args, **kwargs):  # type: ignore[override]
        kwargs.setdefault("timeout", self.timeout)
        return super().request(*args, **kwargs)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def server_rss_mib(master: int) -> float:
    """Resident memory of the gunicorn master and its workers, in MiB."""
    return sum(_rss_kib(pid) for pid in [master, *_children(master)]) / 1024


def _start_server(workdir: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    script = shutil.which("calcinosis-cds", path=str(Path(sys.executable).parent))
    command = ([script] if script else [sys.executable, "-m", "service.cli"])
    env = {key: value for key, value in os.environ.items() if not key.startswith("CALCINOSIS_")}
    env.update(CALCINOSIS_CDS_FEEDBACK_DB=str(workdir / "feedback.sqlite3"), CALCINOSIS_CDS_REQUIRE_JWT="false",
               CALCINOSIS_EVALUATION_TIME="2026-11-15T09:00:00Z", CALCINOSIS_LOG_LEVEL="WARNING",
               PYTHONPATH=str(ROOT))
    process = subprocess.Popen(command + ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                               cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server exited while starting")
        try:
            if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                return process, base
        except requests.RequestException:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("the server did not answer within 120 s")


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run(total: int, concurrency: int, timeout: float) -> tuple[int, list[dict]]:
    """Send `total` requests; the error count and one report row per 25% step."""
    round_of = probes()
    with tempfile.TemporaryDirectory(prefix="calcinosis-soak-") as workdir:
        process, base = _start_server(Path(workdir))
        rows: list[dict] = []
        errors: dict[str, int] = {}
        slowest = 0.0
        try:
            sessions = [_TimedSession(timeout) for _ in range(concurrency)]

            def one(index: int) -> tuple[str, bool, float]:
                probe = round_of[index % len(round_of)]
                session = sessions[index % concurrency]
                started = time.perf_counter()
                try:
                    ok = probe.send(session, base).status_code == probe.expected
                except requests.RequestException:
                    ok = False
                return probe.name, ok, time.perf_counter() - started

            steps = [total * quarter // 4 for quarter in (1, 2, 3, 4)]
            done = 0
            started = time.monotonic()
            with ThreadPoolExecutor(concurrency) as pool:
                for step in steps:
                    for name, ok, seconds in pool.map(one, range(done, step)):
                        slowest = max(slowest, seconds)
                        if not ok:
                            errors[name] = errors.get(name, 0) + 1
                    done = step
                    rows.append({"step": f"{100 * step // total}%", "requests": done,
                                 "errors": sum(errors.values()), "rss_mib": round(server_rss_mib(process.pid), 1),
                                 "elapsed_s": round(time.monotonic() - started, 1),
                                 "slowest_s": round(slowest, 3)})
                    print(" ".join(f"{key}={value}" for key, value in rows[-1].items()), flush=True)
            for session in sessions:
                session.close()
        finally:
            _stop(process)
    if errors:
        print("errors by request kind: " + ", ".join(f"{name}={count}" for name, count in sorted(errors.items())))
    return sum(errors.values()), rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests to send (default 20000, at most 1e6)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight at once (default 4, at most 64)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds one request may take (default 60)")
    parser.add_argument("--max-growth", type=float, default=5.0,
                        help="RSS growth after warm-up, in percent, that counts as a leak (default 5)")
    args = parser.parse_args(argv)
    if not 4 <= args.requests <= 1_000_000 or not 1 <= args.concurrency <= 64:
        parser.error("--requests must lie in 4..1000000 and --concurrency in 1..64")
    error_count, rows = run(args.requests, args.concurrency, args.timeout)
    growth = 100 * (rows[-1]["rss_mib"] - rows[0]["rss_mib"]) / rows[0]["rss_mib"] if rows[0]["rss_mib"] else 0.0
    print(f"requests={rows[-1]['requests']} errors={error_count} rss_growth_after_warmup={growth:+.2f}% "
          f"slowest={rows[-1]['slowest_s']}s")
    return 0 if error_count == 0 and growth < args.max_growth else 1


if __name__ == "__main__":
    raise SystemExit(main())

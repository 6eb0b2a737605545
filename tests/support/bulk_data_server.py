"""A small FHIR Bulk Data Access (v2) server for the `$export` client's tests, run as a real process.

    python -m tests.support.bulk_data_server --config CONFIG.json --port PORT

It serves an export folder (NDJSON, plain or .gz, any file names: each line's resourceType decides
its type) through kick-off (`Patient/$export`, `Group/{id}/$export`), the status URL (202 with
X-Progress and Retry-After until ready), the completion manifest, file and error-file downloads and
DELETE of the status URL, following the IG's answers. The configuration (JSON) sets its failure
modes, so each misbehaviour the client must survive is a real HTTP exchange:

    data                 the export folder served (required)
    polls_before_ready   202 answers before the manifest (default 0)
    retry_after          seconds sent in Retry-After with each 202 (default none)
    retry_after_as_date  send Retry-After as an HTTP date instead of seconds
    fail_on_status       answer the status poll after the waiting ones with a 500 OperationOutcome
    expire_status        404 or 410 on every status poll (the status URL has expired)
    cut_off              {"<served name>": tries}: those downloads send half the body and drop the
                         connection (-1: every try)
    bearer               the token every request must carry; the manifest then requires it for files
    lines_per_file       split each type into files of at most this many lines (several per type)
    error_outcomes       diagnostics texts served as an error file of OperationOutcomes
    groups               {"<group id>": ["<patient id>", ...]} for Group/{id}/$export
    gzip_transfer        send files gzip-encoded (Content-Encoding) to a client that accepts it

Every request is recorded (method, path, query, time, whether the expected bearer token came; never
the token) and read back at GET /_log; status polls also record when the client was told it may
poll again, so a test can check the client waited. GET /healthz answers 200 once serving.
`BulkServers` starts such processes for the tests and stops them.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import formatdate
from pathlib import Path
from typing import Any, Iterator

import requests
from flask import Flask, Response, jsonify, request

PROJECT_ROOT = Path(__file__).resolve().parents[2]

FHIR_JSON = "application/fhir+json"
NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = (NDJSON, "application/ndjson", "ndjson")


def outcome(status: int, text: str, code: str = "processing") -> Response:
    body = {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": text}]}
    return Response(json.dumps(body), status=status, content_type=FHIR_JSON)


def read_export(folder: Path) -> dict[str, list[bytes]]:
    """Every NDJSON line of the folder by its resourceType (file names do not matter)."""
    lines: dict[str, list[bytes]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.endswith(".ndjson"):
            raw = path.read_bytes()
        elif path.name.endswith(".ndjson.gz"):
            raw = gzip.decompress(path.read_bytes())
        else:
            continue
        named = path.name.split(".", 1)[0]
        for line in raw.splitlines():
            if line.strip():
                lines.setdefault(_type_of(line) or named, []).append(line)
    return lines


def _type_of(line: bytes) -> str | None:
    """The line's resourceType; None for a line that is not a resource (served as it is, under its file's type)."""
    try:
        resource = json.loads(line)
    except ValueError:
        return None
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    return kind if isinstance(kind, str) else None


def _resource(line: bytes) -> dict[str, Any]:
    try:
        resource = json.loads(line)
    except ValueError:
        return {}
    return resource if isinstance(resource, dict) else {}


def patient_of(resource: dict[str, Any]) -> str | None:
    """The patient id a resource belongs to (its own for a Patient; else its subject/patient reference)."""
    if resource.get("resourceType") == "Patient":
        return resource.get("id")
    for key in ("subject", "patient", "beneficiary"):
        reference = (resource.get(key) or {}).get("reference") if isinstance(resource.get(key), dict) else None
        if isinstance(reference, str) and reference.startswith("Patient/"):
            return reference.split("/", 1)[1]
    return None


def changed_since(resource: dict[str, Any], since: str | None) -> bool:
    if since is None:
        return True
    updated = (resource.get("meta") or {}).get("lastUpdated")
    if not isinstance(updated, str):
        return True  # no record of when it changed: sent, as a server must not leave data out
    parse = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
    return parse(updated) > parse(since)


class Job:
    def __init__(self, files: list[tuple[str, str, bytes]], errors: list[tuple[str, bytes]], request_url: str):
        self.files = files  # (served name, type, body)
        self.errors = errors
        self.request_url = request_url
        self.polls = 0
        self.deleted = False
        self.transaction_time = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def create_app(config: dict[str, Any]) -> Flask:
    app = Flask(__name__)
    data = Path(config["data"])
    jobs: dict[str, Job] = {}
    log: list[dict[str, Any]] = []
    cut_off = dict(config.get("cut_off") or {})
    lock = threading.Lock()

    def record(**extra: Any) -> dict[str, Any]:
        bearer = config.get("bearer")
        given = request.headers.get("Authorization")
        entry = {"method": request.method, "path": request.path, "query": request.args.to_dict(),
                 "at": time.time(), "bearer": given == f"Bearer {bearer}" if bearer else given is not None,
                 "accept": request.headers.get("Accept"), "prefer": request.headers.get("Prefer"),
                 "accept_encoding": request.headers.get("Accept-Encoding"), **extra}
        with lock:
            log.append(entry)
        return entry

    def refused() -> Response | None:
        bearer = config.get("bearer")
        if bearer and request.headers.get("Authorization") != f"Bearer {bearer}":
            return outcome(401, "a bearer token is required", "login")
        return None

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok")

    @app.get("/_log")
    def read_log() -> Response:
        with lock:
            return jsonify(list(log))

    @app.get("/fhir/Patient/$export")
    def patient_export() -> Response:
        return kick_off(None)

    @app.get("/fhir/Group/<group>/$export")
    def group_export(group: str) -> Response:
        return kick_off(group)

    def kick_off(group: str | None) -> Response:
        record()
        if (answer := refused()) is not None:
            return answer
        if FHIR_JSON not in (request.headers.get("Accept") or ""):
            return outcome(400, "Accept must be application/fhir+json", "invalid")
        if "respond-async" not in (request.headers.get("Prefer") or ""):
            return outcome(400, "Prefer: respond-async is required", "invalid")
        if request.args.get("_outputFormat", NDJSON) not in OUTPUT_FORMATS:
            return outcome(400, "only NDJSON output is supported", "not-supported")
        members = None
        if group is not None:
            if group not in (config.get("groups") or {}):
                return outcome(404, f"Group/{group} is not known", "not-found")
            members = set(config["groups"][group])
        wanted = set(filter(None, request.args.get("_type", "").split(","))) or None
        since = request.args.get("_since")
        per_type: dict[str, list[bytes]] = {}
        for kind, lines in read_export(data).items():
            if wanted is not None and kind not in wanted:
                continue
            for line in lines:
                resource = _resource(line)
                if members is not None and patient_of(resource) not in members:
                    continue
                if changed_since(resource, since):
                    per_type.setdefault(kind, []).append(line)
        size = config.get("lines_per_file") or 0
        files = []
        for kind in sorted(per_type):
            lines = per_type[kind]
            chunks = [lines[start:start + size] for start in range(0, len(lines), size)] if size else [lines]
            for number, chunk in enumerate(chunks, start=1):
                files.append((f"{number}.{kind}.ndjson", kind, b"".join(line + b"\n" for line in chunk)))
        errors = []
        if config.get("error_outcomes"):
            body = b"".join(json.dumps({"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "processing", "diagnostics": text}]}).encode() + b"\n"
                for text in config["error_outcomes"])
            errors.append(("errors.ndjson", body))
        job_id = uuid.uuid4().hex
        jobs[job_id] = Job(files, errors, request.url)
        response = Response(status=202)
        response.headers["Content-Location"] = f"{request.host_url}fhir/_export-status/{job_id}"
        return response

    @app.route("/fhir/_export-status/<job_id>", methods=["GET", "DELETE"])
    def status(job_id: str) -> Response:
        job = jobs.get(job_id)
        if request.method == "DELETE":
            record()
            if job is None or job.deleted:
                return outcome(404, "no such export", "not-found")
            job.deleted = True
            return Response(status=202)
        if (answer := refused()) is not None:
            record()
            return answer
        if config.get("expire_status"):
            record()
            return outcome(int(config["expire_status"]), "this export has expired", "not-found")
        if job is None or job.deleted:
            record()
            return outcome(404, "no such export", "not-found")
        job.polls += 1
        waiting = int(config.get("polls_before_ready") or 0)
        if job.polls <= waiting:
            response = Response(status=202)
            response.headers["X-Progress"] = f"{round(100 * (job.polls - 1) / waiting)}% complete"
            seconds = config.get("retry_after")
            not_before = None
            if seconds is not None:
                now = time.time()
                if config.get("retry_after_as_date"):
                    not_before = float(math.ceil(now + seconds))  # whole seconds: never earlier than asked
                    response.headers["Retry-After"] = formatdate(not_before, usegmt=True)
                else:
                    not_before = now + seconds
                    response.headers["Retry-After"] = str(seconds)
            record(status=202, not_before=not_before)
            return response
        if config.get("fail_on_status"):
            record(status=500)
            return outcome(500, "the export failed: the database went away", "exception")
        record(status=200)
        base = f"{request.host_url}fhir/_export-files/{job_id}"
        manifest = {
            "transactionTime": job.transaction_time, "request": job.request_url,
            "requiresAccessToken": bool(config.get("bearer")),
            "output": [{"type": kind, "url": f"{base}/{name}", "count": body.count(b"\n")}
                       for name, kind, body in job.files],
            "error": [{"type": "OperationOutcome", "url": f"{base}/{name}"} for name, _body in job.errors],
        }
        response = jsonify(manifest)
        response.headers["Expires"] = formatdate(time.time() + 3600, usegmt=True)
        return response

    @app.get("/fhir/_export-files/<job_id>/<name>")
    def download(job_id: str, name: str) -> Response:
        entry = record()
        if (answer := refused()) is not None:
            return answer
        job = jobs.get(job_id)
        bodies = {served: body for served, _kind, body in job.files} | dict(job.errors) if job else {}
        if job is None or job.deleted or name not in bodies:
            return outcome(404, "no such file", "not-found")
        body = bodies[name]
        with lock:
            tries = cut_off.get(name, 0)
            if tries > 0:
                cut_off[name] = tries - 1
        if tries:
            return Response(_half_then_drop(body, request.environ.get("werkzeug.socket")), content_type=NDJSON,
                            headers={"Content-Length": str(len(body))})
        if config.get("gzip_transfer") and "gzip" in (request.headers.get("Accept-Encoding") or ""):
            entry["gzip_sent"] = True
            return Response(gzip.compress(body, mtime=0), content_type=NDJSON, headers={"Content-Encoding": "gzip"})
        return Response(body, content_type=NDJSON)

    return app


def _half_then_drop(body: bytes, sock: socket.socket | None) -> Iterator[bytes]:
    """Half the body, then the connection shut: the client sees fewer bytes than Content-Length."""
    yield body[: len(body) // 2]
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    raise ConnectionResetError("cut off half-way on purpose")


@dataclass
class RunningServer:
    """A started server: its FHIR base, its root (for /_log) and the settings that allow it."""

    base: str
    root: str

    def log(self) -> list[dict[str, Any]]:
        return requests.get(f"{self.root}/_log", timeout=10).json()

    def settings(self, **more: Any) -> dict[str, Any]:
        return {"CDS_FHIR_SERVER_ALLOWLIST": [self.base], **more}


class BulkServers:
    """Starts servers as processes on free 127.0.0.1 ports (tests/support/served_process), and stops them all."""

    def __init__(self, work_dir: Path, data: Path) -> None:
        self.work_dir, self.data = Path(work_dir), Path(data)
        self.processes: list[subprocess.Popen] = []

    def start(self, **config: Any) -> RunningServer:
        from tests.support.served_process import free_port, wait_until_answering

        config.setdefault("data", str(self.data))
        port = free_port()
        config_path = self.work_dir / f"bulk-server-{port}.json"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        output = self.work_dir / f"bulk-server-{port}.log"
        with output.open("wb") as sink:
            process = subprocess.Popen([sys.executable, "-m", "tests.support.bulk_data_server",
                                        "--config", str(config_path), "--port", str(port)],
                                       cwd=PROJECT_ROOT, stdout=sink, stderr=subprocess.STDOUT)
        self.processes.append(process)
        root = f"http://127.0.0.1:{port}"
        wait_until_answering(process, f"{root}/healthz", seconds=60,
                             output=lambda: output.read_text("utf-8", errors="replace"))
        return RunningServer(base=f"{root}/fhir", root=root)

    def stop_all(self) -> None:
        from tests.support.served_process import stop

        for process in self.processes:
            stop(process, seconds=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the JSON configuration (see the module docstring)")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    config = json.loads(Path(args.config).read_text(encoding="utf-8"))
    create_app(config).run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()

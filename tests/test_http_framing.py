"""Malformed HTTP framing is the caller's error: a 400 OperationOutcome and one log line, never a 500 or a trace.

Bad chunk sizes used to escape the body reader (gunicorn's InvalidChunkSize) as a 500 with a
25-line stack trace in the log, on any route that reads a body; a body shorter than its
Content-Length was read as if it were whole; gunicorn's own refusals (a bad Content-Length) were
HTML pages. These run against a real `calcinosis-cds serve` on 127.0.0.1 with raw sockets, and
through the Flask test client with an input stream that fails as gunicorn's does.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import PROJECT_ROOT
from tests.support.served_process import free_port, stop, wait_until_answering

ASSESS = b"POST /fhir/$assess HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
HOOK = (b"POST /cds-services/calcinosis-patient-view HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/json\r\n")
FEEDBACK = (b"POST /cds-services/calcinosis-patient-view/feedback HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\n")
CHUNKED = b"Transfer-Encoding: chunked\r\n\r\n"

# What a client can get wrong in the framing, each with the route it is sent to.
MALFORMED = {
    "chunk size not hexadecimal": ASSESS + CHUNKED + b"zz\r\n{}\r\n0\r\n\r\n",
    "chunk size not hexadecimal, hook call": HOOK + CHUNKED + b"zz\r\n{}\r\n0\r\n\r\n",
    "chunk size not hexadecimal, feedback": FEEDBACK + CHUNKED + b"zz\r\n{}\r\n0\r\n\r\n",
    "chunk size too large": ASSESS + CHUNKED + b"ffffffffffffffffffff\r\n{}\r\n0\r\n\r\n",
    "chunk without its CRLF": ASSESS + CHUNKED + b"2\r\n{}XX0\r\n\r\n",
    "chunk extension with a NUL": ASSESS + CHUNKED + b"2;\x00\r\n{}\r\n0\r\n\r\n",
    "trailer that is no header": ASSESS + CHUNKED + b"2\r\n{}\r\n0\r\nnot a header\r\n\r\n",
    "chunked body cut short": ASSESS + CHUNKED + b"10\r\n{}",
    "body shorter than its Content-Length": ASSESS + b"Content-Length: 100\r\n\r\n{}",
    "Content-Length not a number": ASSESS + b"Content-Length: abc\r\n\r\n{}",
    "negative Content-Length": ASSESS + b"Content-Length: -5\r\n\r\n{}",
    "two Content-Lengths": ASSESS + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "Content-Length and chunked": ASSESS + b"Content-Length: 2\r\n" + CHUNKED + b"2\r\n{}\r\n0\r\n\r\n",
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A real server (gunicorn, threaded worker) on 127.0.0.1, JWT checks off; yields (port, log path)."""
    folder = tmp_path_factory.mktemp("framing")
    port = free_port()
    log_path = folder / "server.log"
    env = dict(os.environ, CALCINOSIS_CDS_FEEDBACK_DB=str(folder / "feedback.sqlite3"),
               CALCINOSIS_CDS_REQUIRE_JWT="false", CALCINOSIS_MAX_BODY_BYTES="100000",
               PYTHONPATH=str(PROJECT_ROOT))
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(["python", "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                                    "--workers", "1", "--threads", "4"], cwd=PROJECT_ROOT, env=env,
                                   stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_until_answering(process, f"http://127.0.0.1:{port}/healthz", seconds=60, output=lambda: log_path.read_text(errors="replace"))
        yield port, log_path
    finally:
        stop(process, seconds=20)


def _exchange(port: int, raw: bytes) -> bytes:
    """Send `raw`, close the sending side (a body cut short ends here), read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def _responses(raw: bytes) -> list[tuple[int, dict, bytes]]:
    """Every HTTP response in `raw`: (status, lower-cased headers, body)."""
    found = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict((k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:]))
        length = int(headers.get("content-length", len(rest)))
        found.append((status, headers, rest[:length]))
        raw = rest[length:]
    return found


def _new_log_lines(log_path: Path, before: int) -> list[str]:
    time.sleep(0.3)  # the worker writes its lines just after answering
    return log_path.read_text(errors="replace").splitlines()[before:]


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_framing_on_a_real_server_is_one_400_outcome_and_no_trace(served, case):
    port, log_path = served
    before = len(log_path.read_text(errors="replace").splitlines())
    answers = _responses(_exchange(port, MALFORMED[case]))
    assert len(answers) == 1, answers  # one answer: nothing written after it on the same connection
    status, headers, body = answers[0]
    assert status == 400, body[:300]
    assert headers["content-type"].startswith("application/fhir+json")
    outcome = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["severity"] == "error"
    lines = _new_log_lines(log_path, before)
    assert not any("Traceback" in line or line.startswith("  File ") or " ERROR " in line for line in lines), lines
    # one line says why (beside the app's access line, method, route and status, when the app answered)
    about_it = [line for line in lines if headers["x-request-id"] in line and "ms id=" not in line]
    assert len(about_it) == 1, lines
    # the bytes the client sent are never quoted in the log (the hexadecimal request id aside: it may hold "abc")
    unquoted = [line.replace(headers["x-request-id"], "<id>") for line in lines]
    assert not any("zz" in line or "abc" in line or "ffffffff" in line for line in unquoted), lines


def test_a_malformed_body_on_a_route_that_does_not_read_it_still_gets_one_answer(served):
    port, log_path = served
    before = len(log_path.read_text(errors="replace").splitlines())
    raw = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + CHUNKED + b"zz\r\n"
    answers = _responses(_exchange(port, raw))
    assert [status for status, _, _ in answers] == [200]
    lines = _new_log_lines(log_path, before)
    assert not any("Traceback" in line or line.startswith("  File ") for line in lines), lines


def test_the_server_keeps_serving_after_malformed_framing(served):
    port, _ = served
    for raw in MALFORMED.values():
        _exchange(port, raw)
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200


def test_a_well_framed_chunked_body_is_still_read(served):
    port, _ = served
    body = b'{"resourceType": "Bundle", "type": "collection", "entry": []}'
    raw = ASSESS + CHUNKED + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    ((status, _, answer),) = _responses(_exchange(port, raw))
    assert status == 200, answer[:300]
    assert json.loads(answer)["resourceType"] == "Bundle"


def test_a_deep_draft_order_on_a_real_server_is_a_400(served):
    """In gunicorn's worker threads too: the nesting limit holds where the copy of a draft order used to fail."""
    port, _ = served
    request = json.loads((PROJECT_ROOT / "fhir_fixtures" / "cds-hooks" / "order-sign-request.json").read_text())
    request["context"]["draftOrders"]["entry"][0]["resource"]["note"] = "@deep@"
    body = json.dumps(request).encode().replace(b'"@deep@"', b"[" * 600 + b"]" * 600)
    response = requests.post(f"http://127.0.0.1:{port}/cds-services/calcinosis-order-sign", data=body,
                             headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"][0].startswith("context.draftOrders.entry[0].resource.note")


# --- the same through the Flask test client: an input stream that fails as gunicorn's does ---------

class _FailingStream:
    """A WSGI input that yields a few bytes, then raises what gunicorn's chunked reader raises."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.sent = False

    def read(self, size: int = -1) -> bytes:
        if not self.sent:
            self.sent = True
            return b'{"'
        raise self.error


def _post_raw(client, route: str, stream, content_length: str | None = None):
    """POST with `stream` as wsgi.input, as gunicorn hands it over (a stream that ends where the body ends)."""
    from werkzeug.test import EnvironBuilder, run_wsgi_app
    from werkzeug.wrappers import Response

    environ = EnvironBuilder(path=route, method="POST", content_type="application/json").get_environ()
    environ["wsgi.input"] = stream
    environ["wsgi.input_terminated"] = True
    if content_length is None:
        environ.pop("CONTENT_LENGTH", None)
    else:
        environ["CONTENT_LENGTH"] = content_length
    body, status, headers = run_wsgi_app(client.application, environ, buffered=True)
    return Response(b"".join(body), status=status, headers=headers)


@pytest.mark.parametrize("route", ["/fhir/$assess", "/cds-services/calcinosis-patient-view",
                                   "/cds-services/calcinosis-patient-view/feedback"])
def test_a_body_the_server_cannot_deliver_is_a_400_through_the_app(client, route, caplog):
    from gunicorn.http.errors import InvalidChunkSize

    response = _post_raw(client, route, _FailingStream(InvalidChunkSize(b"zz")))
    assert response.status_code == 400
    (issue,) = json.loads(response.get_data())["issue"]
    assert "InvalidChunkSize" in issue["diagnostics"] and "zz" not in issue["diagnostics"]
    assert not any(record.levelname == "ERROR" for record in caplog.records)


def test_a_body_shorter_than_its_content_length_is_a_400_through_the_app(client):
    response = _post_raw(client, "/fhir/$assess", io.BytesIO(b"{}"), content_length="100")
    assert response.status_code == 400
    (issue,) = json.loads(response.get_data())["issue"]
    assert issue["code"] == "incomplete" and "2 of the 100 bytes" in issue["diagnostics"]

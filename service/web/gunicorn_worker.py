"""gunicorn's threaded worker, answering the requests its HTTP parser refuses as the app answers errors,
and taking new connections only while it holds no more than any other worker (accept_balance.py).

gunicorn refuses a malformed request (a bad Content-Length, a request line or headers beyond the
limits, an unsupported Transfer-Encoding) before the app sees it, with an HTML page and a log line
quoting the offending bytes. Here such a request gets an OperationOutcome like every other error
of the service, and one log line naming only the kind of error: the request line it quotes can
hold a query string, which never goes to the logs.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson
from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.workers import gthread
from gunicorn.workers.gthread import ThreadWorker

from ..assessment_model import InputIssue
from ..fhir_outputs.operation_outcome import operation_outcome
from .accept_balance import RECHECK_SECONDS, AcceptBalance

log = logging.getLogger("calcinosis_cds")

# How long a thread waits for the first bytes of a new connection before handing it back to the poller
# (gthread's own wait is 5 s): with one thread per worker, an idle connection would otherwise stall
# every other connection of its worker that long.
FIRST_BYTES_WAIT_SECONDS = 0.02

# Opened by the master as it builds its first worker, before any fork: every worker shares it.
BALANCE = AcceptBalance()

# gunicorn's own status for the parser errors that are not a plain 400.
_STATUS: tuple[tuple[type[Exception], int, str], ...] = (
    (http_errors.LimitRequestLine, 414, "URI Too Long"),
    (http_errors.LimitRequestHeaders, 431, "Request Header Fields Too Large"),
    (http_errors.ExpectationFailed, 417, "Expectation Failed"),
    (http_errors.UnsupportedTransferCoding, 501, "Not Implemented"),
    (http_errors.ForbiddenProxyRequest, 403, "Forbidden"),
)
# Errors of the server or the app, not of the request: gunicorn's own handling (a 500) stays.
_NOT_THE_CLIENTS = (http_errors.ConfigurationProblem, http_errors.InvalidResponseHeader,
                    http_errors.InvalidResponseHeaderName)
# Raised while reading a body: with a request already parsed, the app has answered it and this is
# gunicorn draining what the app left unread, so a second answer would corrupt the connection.
_BODY_ERRORS = (http_errors.InvalidChunkSize, http_errors.ChunkMissingTerminator,
                http_errors.InvalidChunkExtension)


def refusal_status(error: BaseException) -> tuple[int, str] | None:
    """(status, reason) for a request gunicorn's parser refused; None for errors that are not the client's."""
    if not isinstance(error, http_errors.ParseException) or isinstance(error, _NOT_THE_CLIENTS):
        return None
    for kind, status, reason in _STATUS:
        if isinstance(error, kind):
            return status, reason
    return 400, "Bad Request"


def refusal_response(status: int, reason: str, error_name: str, request_id: str) -> bytes:
    """The whole HTTP/1.1 response: an OperationOutcome naming the kind of framing error; the connection closes."""
    issue = InputIssue("error", "structure" if status == 400 else "too-costly" if status in (414, 431) else "invalid",
                       f"the request could not be parsed as HTTP/1.1 ({error_name}): check its request line, "
                       "headers, Content-Length and Transfer-Encoding", None)
    body = orjson.dumps(operation_outcome([issue]))
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/fhir+json\r\n"
            f"Content-Length: {len(body)}\r\nX-Request-ID: {request_id}\r\n\r\n")
    return head.encode("latin-1") + body


class OutcomeThreadWorker(ThreadWorker):
    """The gthread worker, with parser refusals answered as OperationOutcomes and logged in one line, listening
    on the shared socket only while no other live worker holds fewer connections."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Built in the master before the fork: the shared memory is opened there, once."""
        super().__init__(*args, **kwargs)
        BALANCE.open()
        self.balance_slot = BALANCE.slot_of(self.age)
        BALANCE.withdraw(self.balance_slot)  # counted only once it runs

    def run(self) -> None:
        """gthread's loop, once the app is loaded (until then the other workers take the connections); the
        worker leaves the balance as it stops."""
        self.log.info("Worker ready: app loaded, taking connections")
        try:
            super().run()
        finally:
            BALANCE.withdraw(self.balance_slot)

    def set_accept_enabled(self, enabled: bool) -> None:
        """Listen when gunicorn would, unless another worker holding fewer connections listens; say which."""
        if enabled and self.alive and not BALANCE.may_listen(self.balance_slot, self.nr_conns):
            enabled = False
        super().set_accept_enabled(enabled)
        if self.alive:
            BALANCE.publish(self.balance_slot, self.nr_conns, self._accepting)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """Listen or not for the connections held now, then wait as gthread does; not listening, look
        again soon, in case the worker that took the last connection has stopped listening too."""
        if self.alive:
            self.set_accept_enabled(self.nr_conns < self.worker_connections)
            if not self._accepting:
                timeout = min(timeout, RECHECK_SECONDS)
        else:
            BALANCE.withdraw(self.balance_slot)
        super().wait_for_and_dispatch_events(timeout)

    def accept(self, listener: Any) -> None:
        """Accept one connection, unless a worker holding fewer listens (both woke for it: it takes it)."""
        if self.alive and not BALANCE.may_listen(self.balance_slot, self.nr_conns):
            self.set_accept_enabled(False)
            return
        super().accept(listener)
        if self.alive:
            BALANCE.publish(self.balance_slot, self.nr_conns, self._accepting)
            BALANCE.wake_those_holding_fewer(self.balance_slot, self.nr_conns)

    def handle(self, conn: Any) -> Any:
        """gthread's, but a new connection that has sent nothing yet waits on the poller, not in the thread."""
        if not conn.initialized and not conn.wait_for_data(FIRST_BYTES_WAIT_SECONDS):
            return gthread._DEFER
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> bool:
        """gthread's, answering with `Connection: close` while this worker holds a surplus of connections,
        so the client reconnects to one holding fewer (accept_balance.py)."""
        if self.alive and BALANCE.holds_surplus(self.balance_slot, self.nr_conns):
            req.must_close = True
        return super().handle_request(req, conn)

    def handle_winch(self, sig: int, frame: Any) -> None:
        """Woken by another worker (accept_balance.py): look again now whether to listen."""
        self.method_queue.defer(lambda: None)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """A refusal of the client's request in the service's shape; anything else as gunicorn handles it."""
        refusal = refusal_status(exc)
        if refusal is None:
            super().handle_error(req, client, addr, exc)
            return
        name = type(exc).__name__
        if req is not None and isinstance(exc, _BODY_ERRORS):
            log.warning("unread request body was malformed (%s): connection closed", name)
            return
        request_id = uuid.uuid4().hex
        status, reason = refusal
        log.warning("request %s refused by the HTTP parser: %s %s", request_id, status, name)
        try:
            util.write_nonblock(client, refusal_response(status, reason, name, request_id))
        except OSError:
            log.debug("request %s: the refusal could not be sent", request_id)

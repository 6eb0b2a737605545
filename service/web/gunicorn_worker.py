"""gunicorn's threaded worker, answering the requests its HTTP parser refuses as the app answers errors.

gunicorn refuses a malformed request (a bad Content-Length, a request line or headers beyond the
limits, an unsupported Transfer-Encoding) before the app sees it, with an HTML page and a log line
quoting the offending bytes. Here such a request gets an OperationOutcome like every other error
of the service, and one log line naming only the kind of error: the request line it quotes can
hold a query string, which never goes to the logs.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any

import orjson
from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import ThreadWorker

from ..assessment_model import InputIssue
from ..fhir_outputs.operation_outcome import operation_outcome
from . import connection_balance

log = logging.getLogger("calcinosis_cds")

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
    """The gthread worker, with parser refusals answered as OperationOutcomes and logged in one line, and
    keep-alive connections kept evenly spread over the workers (connection_balance.py)."""

    _shares: connection_balance.ConnectionShares | None = None
    _slot: int | None = None

    def init_process(self) -> None:
        """Claim this worker's slot in the shared connection counts, then run gunicorn's loop."""
        shares = connection_balance.SHARES
        if shares is not None:
            self._slot = shares.claim(os.getpid())
            self._shares = shares if self._slot is not None else None
        super().init_process()

    def _publish(self) -> None:
        if self._shares is not None:
            self._shares.publish(self._slot, self.nr_conns)

    def accept(self, listener: Any) -> None:
        super().accept(listener)
        self._publish()

    def finish_request(self, conn: Any, fs: Any) -> None:
        super().finish_request(conn, fs)
        self._publish()

    def murder_keepalived(self, force: bool = False) -> None:
        super().murder_keepalived(force)
        self._publish()

    def murder_pending(self) -> None:
        super().murder_pending()
        self._publish()

    def handle_request(self, req: Any, conn: Any) -> Any:
        """Answer the request; with `Connection: close` when this worker holds more than its share of the
        connections, so that the client's next connection can land on a less loaded worker."""
        if self._shares is not None and self._shares.over_share(self._slot):
            req.must_close = True
        return super().handle_request(req, conn)

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

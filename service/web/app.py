"""The Flask application factory: configuration, surfaces, and one error policy for all of them.

Every error a caller can cause leaves as a FHIR OperationOutcome with a 4xx status; an
unexpected failure leaves as a 500 OperationOutcome without internals (and is logged with a
request id, never with the request body).
"""

from __future__ import annotations

import logging
import re
import time
import traceback
import uuid
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from ..assessment_model import InputIssue
from ..config import PACKAGE_DIR, load_settings
from .docs_page import CONTENT_SECURITY_POLICY, render_page
from ..errors import AuthenticationError, ServiceError
from ..fhir_outputs.errors import OutputValidationError
from ..fhir_outputs.operation_outcome import operation_outcome
from .http_io import fhir_response
from .openapi_document import register_openapi

if TYPE_CHECKING:
    from ..pipeline.assess import Assessor

log = logging.getLogger("calcinosis_cds")

# A caller's X-Request-ID is kept only when it is a plain token (what uuids, hex ids and most
# tracing ids are): anything else, spaces or control characters included, could forge fields in
# the log lines that quote it, and is replaced by a new id.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

_HTTP_ISSUE_CODES = {400: "invalid", 404: "not-found", 405: "not-supported", 413: "too-costly",
                     415: "not-supported"}


def _configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        # The process id tells apart the workers of `calcinosis-cds serve`, as gunicorn's own lines do.
        logging.basicConfig(format="%(asctime)s [%(process)d] %(levelname)s %(name)s %(message)s")
    logging.getLogger("calcinosis_cds").setLevel(level)
    logging.getLogger("service").setLevel(level)


def _outcome(issues: Sequence[InputIssue]) -> dict[str, Any]:
    """The OperationOutcome of an error answer, validated at runtime when the app's settings ask for it."""
    return operation_outcome(issues, validate=current_app.config["CALCINOSIS"]["VALIDATE_OUTPUTS"])


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def service_error(error: ServiceError) -> Response:
        """A caller's error: its issues as an OperationOutcome with the error's 4xx status."""
        log.info("request %s rejected: %s %s", g.get("request_id"), error.status,
                 "; ".join(i.code for i in error.issues))
        return fhir_response(_outcome(error.issues), status=error.status,
                             headers=getattr(error, "headers", None))

    @app.errorhandler(AuthenticationError)
    def authentication_error(error: AuthenticationError) -> Response:
        """A bare 401 for a client that failed JWT verification."""
        # The spec asks for a bare 401; the reason goes to the log only (no token in it).
        log.warning("request %s unauthenticated: %s", g.get("request_id"), error.reason)
        return Response(status=401)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        """Routing and size errors (404, 405, 413...) as OperationOutcomes, so every error has one shape."""
        status = error.code or 500
        issue = InputIssue("error", _HTTP_ISSUE_CODES.get(status, "processing"),
                           f"{error.name}: {error.description}", None)
        response = fhir_response(_outcome([issue]), status=status)
        if status == 405 and getattr(error, "valid_methods", None):
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> Response:
        """Any other failure: a 500 OperationOutcome naming the request id, without internals."""
        # The exception's message can quote the request (validation errors echo input values),
        # so only its type and the code path are logged.
        frames = "".join(traceback.format_tb(error.__traceback__))
        # An output that failed validation (VALIDATE_OUTPUTS) is located by our own resource id and element.
        where = f" at {error.location}" if isinstance(error, OutputValidationError) and error.location else ""
        log.error("request %s failed unexpectedly: %s%s\n%s", g.get("request_id"), type(error).__name__, where,
                  frames)
        issue = InputIssue("fatal", "exception",
                           f"internal error while processing the request (request id {g.get('request_id')})",
                           None)
        return fhir_response(_outcome([issue]), status=500)


def request_id(supplied: str | None) -> str:
    """The caller's X-Request-ID when it is a safe token of at most 64 characters, else a new one."""
    if supplied is not None and _SAFE_REQUEST_ID.fullmatch(supplied):
        return supplied
    return uuid.uuid4().hex


def _register_request_logging(app: Flask) -> None:
    @app.before_request
    def start_timer() -> None:
        """Give each request an id (the caller's X-Request-ID if safe to log, else a new one) and a start time."""
        g.request_id = request_id(request.headers.get("X-Request-ID"))
        g.started = time.perf_counter()

    @app.after_request
    def log_request(response: Response) -> Response:
        """One log line per request; the request id is echoed in X-Request-ID so callers can quote it."""
        elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        # Method, route and status only: never bodies, query strings, tokens or patient data.
        # A path holding a secret (a report token) is logged as its route (`g.log_path`).
        log.info("%s %s %s %.1fms id=%s", request.method, g.get("log_path") or request.path, response.status_code,
                 elapsed_ms, g.get("request_id"))
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response


def _register_docs(app: Flask) -> None:
    rules_readme = PACKAGE_DIR / "knowledge" / "README.md"

    @app.get("/docs/rules")
    def rule_documentation() -> Response:
        """The rule library's documentation, linked from every card: a web page for a browser, else Markdown.

        Only a client that prefers text/html gets the page; no Accept, `*/*` (curl) or anything else gets
        the Markdown, as scripts always have.
        """
        text = rules_readme.read_text(encoding="utf-8") if rules_readme.exists() else "# Rule library\n"
        if request.accept_mimetypes.best_match(["text/markdown", "text/html"]) == "text/html":
            response = Response(render_page(text), mimetype="text/html")
            response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        else:
            response = Response(text, mimetype="text/markdown")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.vary.add("Accept")
        return response

    @app.get("/healthz")
    def health() -> Response:
        """Liveness probe: answers without touching the rules or any patient data."""
        return Response('{"status":"ok"}', mimetype="application/json")


def create_app(config: Mapping[str, Any] | None = None, *, assessor: "Assessor | None" = None) -> Flask:
    """Build the service. Config layers: defaults, then CALCINOSIS_* environment, then `config`.

    The app owns what it reads here (`app_state`): its compiled rule library, terminology,
    bibliography and CDS service definitions, read once now and never reread. `assessor`: one
    already built for the same settings, to share between apps (tests); else one is built.
    """
    typed = load_settings(config)
    settings = typed.model_dump()
    app = Flask(__name__, static_folder=None)  # no static files: every route is documented in openapi.json
    app.config["CALCINOSIS"] = settings
    app.config.update({k: v for k, v in settings.items() if k.isupper()})
    # One byte of slack: a chunked body (no Content-Length) is cut at this length by the server,
    # so reading one byte more than the limit is how an oversized one is seen and refused (413)
    # instead of being silently truncated.
    app.config["MAX_CONTENT_LENGTH"] = settings["MAX_BODY_BYTES"] + 1
    _configure_logging(settings["LOG_LEVEL"])
    typed.warn_retired()

    # Compile the rule library now: a broken library fails at start, not on a patient's request.
    from .app_state import init_app_state
    init_app_state(app, settings, assessor)

    from . import cds_hooks, fhir_api, knowledge_api, metrics, operations, ui

    metrics.init_app(app)  # first, so its timer starts before any other hook runs
    app.register_blueprint(fhir_api.blueprint)
    fhir_api.init_app(app)
    app.register_blueprint(knowledge_api.blueprint)
    knowledge_api.init_app(app)
    operations.init_app(app)
    app.register_blueprint(cds_hooks.blueprint)
    cds_hooks.init_app(app)
    ui.init_app(app)

    _register_error_handlers(app)
    _register_request_logging(app)
    _register_docs(app)
    register_openapi(app, settings)
    return app

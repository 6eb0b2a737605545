"""CDS Hooks 2.0 over HTTP: discovery, service calls and feedback under /cds-services.

The views only unpack the request, delegate to `service.hooks` and serialize; every decision
(trust, validation, data gathering, cards, storage) lives in that package, which has no Flask.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Iterable, Mapping

from flask import Blueprint, Flask, Response, current_app, g, request

from .app_state import app_state
from ..assessment_model import AssessmentRun, DataGap
from ..errors import InputError
from ..hooks import hook_call
from ..hooks.components import HookComponents, build_components
from ..hooks.feedback_checks import check_against_issued_cards
from ..hooks.request_validation import validate_feedback
from .report_links import link_cards_to_report
from .http_io import json_response, read_json_body
from .metrics import count_cards

log = logging.getLogger(__name__)

blueprint = Blueprint("cds_hooks", __name__, url_prefix="/cds-services")
_EXTENSION = "calcinosis_cds_hooks"


def _settings(app: Flask) -> Mapping[str, Any]:
    return app.config["CALCINOSIS"]


def init_app(app: Flask) -> None:
    """Build the components, enable CORS for the configured origins, warn about unsafe settings."""
    settings = _settings(app)
    components = build_components(settings)
    if not components.require_jwt:
        log.warning("CDS_REQUIRE_JWT is off: CDS Hooks calls are accepted without verifying the client's JWT")
    elif not settings.get("PUBLIC_BASE_URL"):
        log.warning("PUBLIC_BASE_URL is not set: the JWT aud is checked against, and card links are built from, "
                    "the URL the request names (its Host header); set PUBLIC_BASE_URL in production")
    app.extensions[_EXTENSION] = components
    origins = settings.get("CDS_CORS_ORIGINS") or []
    if origins:
        from flask_cors import CORS

        CORS(app, resources={r"/cds-services*": {"origins": [origins] if isinstance(origins, str) else list(origins)}},
             allow_headers=["Authorization", "Content-Type"], methods=["GET", "POST", "OPTIONS"], max_age=600)


def _components() -> HookComponents:
    return current_app.extensions[_EXTENSION]


def _base_url() -> str:
    public = _settings(current_app).get("PUBLIC_BASE_URL")
    return str(public).rstrip("/") if public else request.url_root.rstrip("/")


def _endpoint_url() -> str:
    """The URL the client called, as the JWT `aud` must name it."""
    public = _settings(current_app).get("PUBLIC_BASE_URL")
    return str(public).rstrip("/") + request.path if public else request.base_url


@blueprint.before_request
def verify_client() -> None:
    """Require a verified client JWT on every CDS Hooks route (unless CDS_REQUIRE_JWT is off); preflight excepted."""
    if request.method == "OPTIONS":
        return  # CORS preflight carries no credentials
    components = _components()
    if components.require_jwt:
        g.cds_client = components.verifier.verify(request.headers.get("Authorization"), _endpoint_url())


def _service_or_404(service_id: str) -> Mapping[str, Any]:
    service = app_state().hook_services.get(service_id)
    if service is None:
        raise InputError.single(f"no CDS service with id {service_id!r}; see GET /cds-services",
                                location="url", code="not-found", status=404)
    return service


def _read_body(what: str) -> Any:
    """The JSON body; an empty one is refused in CDS Hooks terms, not as a missing FHIR Bundle."""
    empty = InputError.single(f"{what} must be a JSON object; the request body is empty", location="$",
                              code="required", status=400)
    return read_json_body(request, max_bytes=int(_settings(current_app)["MAX_BODY_BYTES"]), when_empty=empty)


@blueprint.get("")
def discovery() -> Response:
    """The discovery document listing this service's CDS services."""
    return json_response(hook_call.discovery_document(app_state().hook_services))


@blueprint.post("/<service_id>")
def call_service(service_id: str) -> Response:
    """Answer one hook call with cards; the issued cards are recorded so feedback can be checked against them."""
    service = _service_or_404(service_id)
    settings = _settings(current_app)
    body = _read_body("a CDS Hooks request")
    components = _components()
    state = app_state()
    core = hook_call.core_assess  # read per call: the seam tests replace
    assessed: list[tuple[Mapping[str, Any], AssessmentRun]] = []  # what was assessed, for a report link

    def assess(bundle: Mapping[str, Any], *, config: Mapping[str, Any], now: datetime | None = None,
               data_gaps: Iterable[DataGap] = ()) -> AssessmentRun:
        with state.assessment_turn:   # one assessment at a time in this worker (AppState.assess)
            run = core(bundle, config=config, now=now, data_gaps=data_gaps, assessor=state.assessor)
        assessed.append((bundle, run))
        return run

    answer = hook_call.answer_hook_call(service, body, fetcher=components.fetcher, base_url=_base_url(),
                                        config=settings, assess=assess, grouping=state.test_grouping)
    components.feedback.record_cards(service_id, answer.hook_instance, (card.record() for card in answer.cards))
    if assessed and settings.get("UI_REPORT_LINKS"):
        context = body.get("context") if isinstance(body, dict) else None
        patient_id = context.get("patientId") if isinstance(context, dict) else None
        if isinstance(patient_id, str):
            link_cards_to_report(answer.body, assessed[-1][0], assessed[-1][1], patient_id, _base_url())
    count_cards(card.get("indicator") for card in answer.body["cards"])
    return json_response(answer.body)


@blueprint.post("/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    """Store feedback on cards this service issued; feedback naming anything it did not issue is refused.

    Sending the same outcome again (a client's retry) is answered 200 and stored once.
    """
    _service_or_404(service_id)
    body = _read_body("a CDS Hooks feedback request")
    entries = validate_feedback(body, max_entries=int(_settings(current_app)["CDS_MAX_FEEDBACK_ENTRIES"]))
    store = _components().feedback
    cards = check_against_issued_cards(entries, lambda card_uuid: store.issued_card(service_id, card_uuid))
    store.record_feedback(service_id, entries, cards)  # a repeated outcome is not stored twice: still a 200
    return Response(status=200)

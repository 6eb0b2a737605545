"""The /fhir surface: `$assess`, the CapabilityStatement and the artefacts it names.

Views unpack, delegate and serialize; everything else lives in the core and fhir_outputs.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, request

from ..version import __version__
from .app_state import app_state
from ..fhir_outputs.capability_statement import (
    assess_operation_definition,
    calcinosis_type_codesystem,
    capability_statement,
)
from ..fhir_outputs.result_bundle import build_result_bundle
from ..errors import InputError
from ..trend.assessed import add_chart_documents, trends_of
from .access_tokens import AccessTokenVerifier
from .http_io import fhir_response, read_bundle_body, read_json_body
from .request_budget import check_budget

blueprint = Blueprint("fhir", __name__, url_prefix="/fhir")
_VERIFIER = "calcinosis_assess_tokens"


def init_app(app: Flask) -> None:
    """Build the `$assess` token verifier when ASSESS_AUTHORIZATION asks for one (none: `$assess` is open)."""
    app.extensions[_VERIFIER] = AccessTokenVerifier.from_config(app.config["CALCINOSIS"])


def _fhir_base_url() -> str:
    """The service's FHIR base as clients name it: the default `aud` of an access token for `$assess`."""
    public = current_app.config["CALCINOSIS"].get("PUBLIC_BASE_URL")
    return f"{public.rstrip('/')}/fhir" if public else request.url_root.rstrip("/") + "/fhir"


def check_access_token() -> None:
    """Refuse the request (401/403) unless its bearer token passes, when ASSESS_AUTHORIZATION asks for one.

    Every operation that assesses a patient's data (`$assess`, `PlanDefinition/$apply`) is guarded alike.
    """
    verifier = current_app.extensions.get(_VERIFIER)
    if verifier is not None:
        verifier.verify(request.headers.get("Authorization"), _fhir_base_url())


@blueprint.post("/$assess")
def assess() -> Response:
    """POST a FHIR Bundle; get back RiskAssessment, CarePlan, ServiceRequests per patient.

    The bearer token (when ASSESS_AUTHORIZATION is set) is checked before the body is read, and the
    CPU budget before any assessment work. A large body is streamed, entry by entry (`read_bundle_body`).
    """
    state = app_state()
    check_access_token()
    if request.args.get("chart") is None:
        bundle = read_bundle_body(request, max_bytes=state.settings["MAX_BODY_BYTES"])
    else:  # a chart reads the whole Bundle again
        bundle = read_json_body(request, max_bytes=state.settings["MAX_BODY_BYTES"])
    check_budget(bundle, request.content_length or 0, state.settings)
    run = state.assess(bundle)
    result = build_result_bundle(run.patients, run.issues, validate=state.settings["VALIDATE_OUTPUTS"])
    if _wants_chart():
        result = add_chart_documents(result, trends_of(state.assessor, bundle, run, state.settings))
    return fhir_response(result)


def _wants_chart() -> bool:
    """`?chart=svg`: each patient's trend chart as a DocumentReference beside the RiskAssessment."""
    chart = request.args.get("chart")
    if chart is None:
        return False
    if chart != "svg":
        raise InputError.single(f"unsupported chart format {chart[:20]!r}: the only one is chart=svg",
                                location="chart", code="not-supported", status=400)
    return True


@blueprint.get("/metadata")
def metadata() -> Response:
    """The CapabilityStatement declaring the $assess operation."""
    public = current_app.config["CALCINOSIS"].get("PUBLIC_BASE_URL")
    base_url = f"{public.rstrip('/')}/fhir" if public else None
    return fhir_response(capability_statement(base_url=base_url, software_version=__version__))


@blueprint.get("/OperationDefinition/assess")
def operation_definition() -> Response:
    """The definition of $assess, so the CapabilityStatement's canonical resolves here too."""
    return fhir_response(assess_operation_definition())


@blueprint.get("/CodeSystem/calcinosis-type")
def calcinosis_type() -> Response:
    """The CodeSystem of RiskAssessment.prediction.outcome codes."""
    return fhir_response(calcinosis_type_codesystem())

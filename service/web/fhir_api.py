"""The /fhir surface: `$assess`, the CapabilityStatement and the artefacts it names.

Views unpack, delegate and serialize; everything else lives in the core and fhir_outputs.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from ..version import __version__
from .app_state import app_state
from ..fhir_outputs.capability_statement import (
    assess_operation_definition,
    calcinosis_type_codesystem,
    capability_statement,
)
from ..fhir_outputs.result_bundle import build_result_bundle
from .http_io import fhir_response, read_json_body

blueprint = Blueprint("fhir", __name__, url_prefix="/fhir")


@blueprint.post("/$assess")
def assess() -> Response:
    """POST a FHIR Bundle; get back RiskAssessment, CarePlan, ServiceRequests per patient."""
    state = app_state()
    bundle = read_json_body(request, max_bytes=state.settings["MAX_BODY_BYTES"])
    run = state.assess(bundle)
    return fhir_response(build_result_bundle(run.patients, run.issues, validate=state.settings["VALIDATE_OUTPUTS"]))


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

"""The /fhir surface: `$assess` and the CapabilityStatement. Views unpack, delegate, serialize."""

from __future__ import annotations

from flask import Blueprint, current_app, request

from .assess import get_assessor
from .fhir_outputs.capability_statement import build_capability_statement
from .fhir_outputs.result_bundle import build_result_bundle
from .http_io import fhir_response, read_json_body

blueprint = Blueprint("fhir", __name__, url_prefix="/fhir")


@blueprint.post("/$assess")
def assess():
    """POST a FHIR Bundle; get back RiskAssessment, CarePlan, ServiceRequests per patient."""
    config = current_app.config["CALCINOSIS"]
    bundle = read_json_body(request, max_bytes=config["MAX_BODY_BYTES"])
    run = get_assessor(config).assess(bundle)
    return fhir_response(build_result_bundle(run.patients, run.issues))


@blueprint.get("/metadata")
def metadata():
    """The CapabilityStatement declaring the $assess operation."""
    return fhir_response(build_capability_statement())

"""The published knowledge under /fhir: Library, PlanDefinition and ValueSet (read and search by url),
`PlanDefinition/$apply`, `ValueSet/$expand` and `ValueSet/$validate-code`.

Views unpack, delegate and serialize; the artifacts and `$apply` live in `knowledge_artifacts`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, request

from ..errors import InputError
from ..knowledge_artifacts import KnowledgeArtifacts, apply_plan_definition, read_apply_parameters
from ..knowledge_artifacts.publication import VALUE_SET
from ..knowledge_artifacts.value_set_resources import PublishedValueSet
from .app_state import app_state
from .fhir_api import check_access_token
from .http_io import fhir_response, read_json_body
from .request_budget import check_budget

blueprint = Blueprint("knowledge", __name__, url_prefix="/fhir")
_EXTENSION = "calcinosis_knowledge"
_SEARCH_PARAMETERS = frozenset({"url", "version", "_format"})


def init_app(app: Flask) -> None:
    """Publish the app's own rule library, value sets and bibliography (read once, like the Assessor)."""
    state = app_state(app)
    app.extensions[_EXTENSION] = KnowledgeArtifacts.from_settings(state.assessor.library, state.assessor.bibliography,
                                                                  state.settings)


def knowledge() -> KnowledgeArtifacts:
    return current_app.extensions[_EXTENSION]


def _not_found(resource_type: str, resource_id: str) -> InputError:
    return InputError.single(f"no {resource_type} with id {resource_id[:64]!r} is published here",
                             location=f"{resource_type}.id", code="not-found", status=404)


def _read(resource_type: str, resource_id: str) -> Response:
    resource = knowledge().read(resource_type, resource_id)
    if resource is None:
        raise _not_found(resource_type, resource_id)
    return fhir_response(resource)


def _search(resource_type: str) -> Response:
    """A searchset of the resources of a type, filtered by `url` (and `version`) when given."""
    unknown = sorted(set(request.args) - _SEARCH_PARAMETERS)
    if unknown:
        raise InputError.single(f"unsupported search parameter {unknown[0][:40]!r}: the ones supported are url and "
                                "version", location=unknown[0][:40], code="not-supported", status=400)
    found = knowledge().search(resource_type, request.args.get("url"), request.args.get("version"))
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(found),
                              "link": [{"relation": "self", "url": request.url}]}
    if found:
        base = (current_app.config["CALCINOSIS"].get("PUBLIC_BASE_URL") or request.url_root).rstrip("/")
        bundle["entry"] = [{"fullUrl": f"{base}/fhir/{resource_type}/{resource['id']}",
                            "resource": resource, "search": {"mode": "match"}} for resource in found]
    return fhir_response(bundle)


@blueprint.get("/Library")
def search_libraries() -> Response:
    return _search("Library")


@blueprint.get("/Library/<resource_id>")
def read_library(resource_id: str) -> Response:
    return _read("Library", resource_id)


@blueprint.get("/PlanDefinition")
def search_plan_definitions() -> Response:
    return _search("PlanDefinition")


@blueprint.get("/PlanDefinition/<resource_id>")
def read_plan_definition(resource_id: str) -> Response:
    return _read("PlanDefinition", resource_id)


@blueprint.get("/ValueSet")
def search_value_sets() -> Response:
    return _search("ValueSet")


@blueprint.get("/ValueSet/<resource_id>")
def read_value_set(resource_id: str) -> Response:
    return _read("ValueSet", resource_id)


@blueprint.post("/PlanDefinition/<resource_id>/$apply")
def apply(resource_id: str) -> Response:
    """R4 `$apply`: a Parameters body with `subject` and a `data` Bundle -> a CarePlan proposal.

    Guarded like `$assess` (bearer token when configured, then the CPU budget of the data Bundle).
    """
    plan = knowledge().read("PlanDefinition", resource_id)
    if plan is None:
        raise _not_found("PlanDefinition", resource_id)
    check_access_token()
    state = app_state()
    body = read_json_body(request, max_bytes=state.settings["MAX_BODY_BYTES"])
    asked = read_apply_parameters(body)
    check_budget(asked.data, request.content_length or 0, state.settings)
    run = state.assess(asked.data)
    return fhir_response(apply_plan_definition(run, asked.subject, plan_url=plan["url"],
                                               plan_version=plan.get("version")))


def _operation_arguments() -> dict[str, Any]:
    """An operation's arguments from the query string (GET) or a Parameters body (POST), by name."""
    if request.method == "GET":
        return {key: request.args.get(key) for key in request.args}
    body = read_json_body(request, max_bytes=app_state().settings["MAX_BODY_BYTES"])
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InputError.single("POST a Parameters resource (or use GET with query parameters)",
                                location="resourceType")
    parameters = body.get("parameter")
    if parameters is not None and not isinstance(parameters, list):
        raise InputError.single("Parameters.parameter is an array of named parameters", location="parameter",
                                code="structure", status=400)
    arguments: dict[str, Any] = {}
    for parameter in parameters or ():
        if isinstance(parameter, dict) and isinstance(parameter.get("name"), str):
            value = next((v for k, v in parameter.items() if k.startswith("value")), None)
            if isinstance(parameter.get("valueCoding"), dict):
                arguments.setdefault("system", parameter["valueCoding"].get("system"))
                arguments.setdefault("code", parameter["valueCoding"].get("code"))
                arguments.setdefault("display", parameter["valueCoding"].get("display"))
            elif isinstance(value, (str, bool, int)):
                arguments[parameter["name"]] = value
    return arguments


def _value_set_for(resource_id: str | None, arguments: dict[str, Any]) -> PublishedValueSet:
    published = (knowledge().value_set(resource_id=resource_id) if resource_id is not None
                 else knowledge().value_set(url=str(arguments.get("url") or "")))
    if published is None:
        if resource_id is not None:
            raise _not_found(VALUE_SET, resource_id)
        raise InputError.single("name a published value set by its url (the url parameter)",
                                location="url", code="not-found" if arguments.get("url") else "required",
                                status=404 if arguments.get("url") else 400)
    return published


@blueprint.route("/ValueSet/$expand", methods=["GET", "POST"])
@blueprint.route("/ValueSet/<resource_id>/$expand", methods=["GET", "POST"])
def expand(resource_id: str | None = None) -> Response:
    """The expansion the engine matches (listed codes, and its is-a filters as expansion parameters)."""
    arguments = _operation_arguments()
    return fhir_response(knowledge().expand(_value_set_for(resource_id, arguments)))


@blueprint.route("/ValueSet/$validate-code", methods=["GET", "POST"])
@blueprint.route("/ValueSet/<resource_id>/$validate-code", methods=["GET", "POST"])
def validate_code(resource_id: str | None = None) -> Response:
    """Is (system, code) a member, as the rules decide it; `code` is required, `system` recommended."""
    arguments = _operation_arguments()
    published = _value_set_for(resource_id, arguments)
    code = arguments.get("code")
    if not isinstance(code, str) or not code.strip():
        raise InputError.single("$validate-code needs a code (and its system)", location="code", code="required",
                                status=400)
    system = arguments.get("system")
    display = arguments.get("display")
    return fhir_response(knowledge().validate_code(published, str(system) if system else None, code.strip(),
                                                   str(display) if display else None))


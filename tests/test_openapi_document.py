"""The OpenAPI 3.1 document at /openapi.json: valid, complete, and true to the routes and the services."""

from __future__ import annotations

import json
import re

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from referencing.exceptions import Unresolvable
from werkzeug.routing import RequestRedirect
from werkzeug.exceptions import MethodNotAllowed, NotFound

from service.hooks.hook_call import load_services
from service.version import __version__
from service.web.openapi_document import DOCUMENT_FILE, openapi_document
from tests.support.cds_app import make_app

HTTP_METHODS = {"get", "put", "post", "delete", "patch"}
# Methods Flask and flask-cors answer for every route by themselves; not part of the API.
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture(scope="module")
def document() -> dict:
    return json.loads(DOCUMENT_FILE.read_text(encoding="utf-8"))


def _operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1.")
    validate(document)  # raises on any departure from the OpenAPI 3.1 schema, unresolved $refs included


@pytest.mark.parametrize("breakage", ["dangling-ref", "bad-status-key"])
def test_the_validator_catches_a_broken_document(document, breakage):
    broken = json.loads(json.dumps(document))
    healthz = broken["paths"]["/healthz"]["get"]
    if breakage == "dangling-ref":
        healthz["responses"]["200"]["content"]["application/json"]["schema"] = {
            "$ref": "#/components/schemas/NoSuchSchema"}
        expected = Unresolvable
    else:
        healthz["responses"] = {"two hundred": {"description": "not a status code"}}
        expected = OpenAPIValidationError
    with pytest.raises(expected):
        validate(broken)


def _endpoint(app, path: str, method: str) -> str | None:
    adapter = app.url_map.bind("localhost")
    try:
        endpoint, _arguments = adapter.match(path, method=method.upper())
    except (NotFound, MethodNotAllowed, RequestRedirect):
        return None
    return endpoint


def test_every_route_is_documented_and_every_documented_operation_is_a_route(app, document):
    documented = {}
    for path, method, _operation in _operations(document):
        endpoint = _endpoint(app, path, method)
        assert endpoint is not None, f"{method.upper()} {path} is documented but no route answers it"
        documented.setdefault(endpoint, set()).add(method.upper())
    served = {rule.endpoint: set(rule.methods) - IMPLICIT_METHODS for rule in app.url_map.iter_rules()}
    assert documented == served


def test_the_documented_cds_services_are_the_ones_discovery_lists(document):
    documented = {path for path in document["paths"] if path.startswith("/cds-services/")}
    expected = set()
    for service_id in load_services():
        expected |= {f"/cds-services/{service_id}", f"/cds-services/{service_id}/feedback"}
    assert documented == expected


def test_each_hook_call_takes_the_cds_hooks_2_0_request_of_its_own_hook(document):
    schemas = document["components"]["schemas"]
    for service_id, service in load_services().items():
        operation = document["paths"][f"/cds-services/{service_id}"]["post"]
        reference = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = schemas[reference.rsplit("/", 1)[1]]
        assert set(schema["properties"]) == {"hook", "hookInstance", "context", "prefetch", "fhirServer",
                                             "fhirAuthorization"}
        assert set(schema["required"]) == {"hook", "hookInstance", "context"}
        assert schema["properties"]["hook"] == {"const": service["hook"]}


# The operations that assess a patient's data take a bearer token when ASSESS_AUTHORIZATION is set.
BEARER_GUARDED = {("post", "/fhir/$assess"), ("post", "/fhir/PlanDefinition/{resource_id}/$apply")}


def test_every_cds_hooks_operation_and_only_those_need_the_client_jwt(document):
    scheme = document["components"]["securitySchemes"]["cdsClientJwt"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    for path, method, operation in _operations(document):
        if (method, path) in BEARER_GUARDED:
            continue
        expected = [{"cdsClientJwt": []}] if path.startswith("/cds-services") else None
        assert operation.get("security") == expected, f"{method.upper()} {path}"
        if expected:
            assert "401" in operation["responses"], f"{method.upper()} {path}"


def test_assess_and_apply_and_only_those_take_an_optional_bearer_token(document):
    scheme = document["components"]["securitySchemes"]["assessBearer"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    guarded = set()
    for path, method, operation in _operations(document):
        if {"assessBearer": []} in operation.get("security", []):
            guarded.add((method, path))
            assert operation["security"] == [{}, {"assessBearer": []}], "optional: open unless configured"
            for status in ("401", "403"):
                response = document["components"]["responses"][operation["responses"][status]["$ref"].rsplit("/", 1)[1]]
                assert "WWW-Authenticate" in response["headers"], f"{status} {method.upper()} {path}"
    assert guarded == BEARER_GUARDED


def test_every_request_body_of_assess_accepts_both_json_media_types(document):
    content = document["paths"]["/fhir/$assess"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/fhir+json", "application/json"}


def test_each_link_leads_a_service_s_cards_to_its_own_feedback(document):
    operation_paths = {operation["operationId"]: path for path, _method, operation in _operations(document)}
    links = document["components"]["links"]
    for service_id in load_services():
        response = document["paths"][f"/cds-services/{service_id}"]["post"]["responses"]["200"]
        targets = {operation_paths[links[ref["$ref"].rsplit("/", 1)[1]]["operationId"]]
                   for ref in response["links"].values()}
        assert targets == {f"/cds-services/{service_id}/feedback"}


def test_the_document_examples_get_answers_with_cards(client, document):
    examples = document["components"]["examples"]
    for service_id in load_services():
        operation = document["paths"][f"/cds-services/{service_id}"]["post"]
        for example in operation["requestBody"]["content"]["application/json"]["examples"].values():
            body = examples[example["$ref"].rsplit("/", 1)[1]]["value"]
            response = client.post(f"/cds-services/{service_id}", json=body)
            assert response.status_code == 200, response.get_data(as_text=True)[:500]
            assert response.get_json()["cards"], service_id
    bundle = examples["AssessBundle"]["value"]
    response = client.post("/fhir/$assess", json=bundle, content_type="application/fhir+json")
    assert response.status_code == 200
    assert {e["resource"]["resourceType"] for e in response.get_json()["entry"]} >= {"RiskAssessment", "CarePlan"}


def test_the_served_document_names_the_running_version(client, document):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    served = response.get_json()
    assert served["info"]["version"] == __version__
    assert "servers" not in served
    assert served["paths"] == document["paths"]


def test_the_served_document_names_the_public_base_url(tmp_path):
    app = make_app({"CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3"), "CDS_REQUIRE_JWT": False,
                    "PUBLIC_BASE_URL": "https://cds.example.org/"})
    served = app.test_client().get("/openapi.json").get_json()
    assert served["servers"] == [{"url": "https://cds.example.org"}]
    assert openapi_document({"PUBLIC_BASE_URL": None}).get("servers") is None


def test_the_served_document_is_valid_too(client):
    validate(client.get("/openapi.json").get_json())


def test_every_documented_path_is_written_as_flask_would_answer_it(app, document):
    # No doubled slashes, and a trailing one only where the route has it (/ui/): Flask would redirect
    # the others, and a client following the document would get a 308 instead of the answer.
    adapter = app.url_map.bind("localhost")
    for path, method, _operation in _operations(document):
        assert re.fullmatch(r"(/[A-Za-z0-9$._{}-]+)+/?", path), path
        concrete = re.sub(r"{[^}]+}", "x", path)
        try:
            adapter.match(concrete, method=method.upper())
        except RequestRedirect:
            pytest.fail(f"{method.upper()} {path} is redirected by Flask")


def _documented_outcome_is(document: dict, response_ref: dict, answer) -> None:
    """The answer has the documented headers and its body is the documented OperationOutcome."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    documented = document["components"]["responses"][response_ref["$ref"].rsplit("/", 1)[1]]
    for header in documented["headers"]:
        assert header in answer.headers, header
    [(media, content)] = documented["content"].items()
    assert answer.mimetype == media
    registry = Registry().with_resource("urn:document", Resource.from_contents(document, default_specification=DRAFT202012))
    schema = {"$ref": "urn:document" + content["schema"]["$ref"]}
    Draft202012Validator(schema, registry=registry).validate(answer.get_json())


@pytest.mark.parametrize("path", ["/fhir/$assess", "/fhir/PlanDefinition/calcinosis-cutis-work-up/$apply"])
def test_a_bearer_refusal_is_answered_as_documented(tmp_path, document, path):
    from tests.support.jwt_tokens import ClientKey

    key = ClientKey("RS384")
    app = make_app({"CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3"), "ASSESS_AUTHORIZATION": {
        "issuer": "https://auth.example.org", "jwks": key.jwks, "scope": "system/RiskAssessment.write"}})
    client = app.test_client()
    documented_path = path.replace("calcinosis-cutis-work-up", "{resource_id}")
    responses = document["paths"][documented_path]["post"]["responses"]
    missing = client.post(path, json={"resourceType": "Bundle"})
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith('Bearer realm="calcinosis-cds"')
    _documented_outcome_is(document, responses["401"], missing)
    unscoped = key.sign("http://localhost/fhir", issuer="https://auth.example.org", scope="system/Patient.read")
    forbidden = client.post(path, json={"resourceType": "Bundle"}, headers={"Authorization": f"Bearer {unscoped}"})
    assert forbidden.status_code == 403
    assert 'error="insufficient_scope"' in forbidden.headers["WWW-Authenticate"]
    _documented_outcome_is(document, responses["403"], forbidden)

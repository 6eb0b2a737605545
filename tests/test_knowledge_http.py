"""The published knowledge over HTTP: read, search by url, $expand, $validate-code, and the
CapabilityStatement listing every resource and operation the service serves."""

from __future__ import annotations

import pytest
from fhir.resources.R4B import get_fhir_model_class

CANONICAL = "https://calcinosis-cds.org/fhir"
LUPUS = f"{CANONICAL}/ValueSet/lupus"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"


def validate_r4(resource: dict) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


@pytest.mark.parametrize(("path", "kind", "url"), [
    ("/fhir/Library/CalcinosisCutis", "Library", f"{CANONICAL}/Library/CalcinosisCutis"),
    ("/fhir/PlanDefinition/calcinosis-cutis-work-up", "PlanDefinition",
     f"{CANONICAL}/PlanDefinition/calcinosis-cutis-work-up"),
    ("/fhir/ValueSet/calcium-total", "ValueSet", f"{CANONICAL}/ValueSet/calcium-total"),
])
def test_each_artifact_is_read_by_id_and_found_by_url(client, path, kind, url):
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype == "application/fhir+json"
    resource = response.get_json()
    validate_r4(resource)
    assert (resource["resourceType"], resource["url"]) == (kind, url)
    found = client.get(f"/fhir/{kind}", query_string={"url": url}).get_json()
    validate_r4(found)
    assert (found["type"], found["total"]) == ("searchset", 1)
    assert found["entry"][0]["resource"] == resource
    assert found["entry"][0]["fullUrl"].endswith(path)
    versioned = client.get(f"/fhir/{kind}", query_string={"url": f"{url}|{resource['version']}"}).get_json()
    assert versioned["total"] == 1
    assert client.get(f"/fhir/{kind}", query_string={"url": f"{CANONICAL}/{kind}/other"}).get_json()["total"] == 0


def test_search_without_url_lists_every_value_set_and_refuses_other_parameters(client):
    listed = client.get("/fhir/ValueSet").get_json()
    assert listed["total"] == len(listed["entry"]) > 50
    refused = client.get("/fhir/ValueSet", query_string={"name": "Lupus"})
    assert refused.status_code == 400
    assert refused.get_json()["issue"][0]["code"] == "not-supported"


def test_unknown_ids_are_404_operation_outcomes(client):
    for path in ("/fhir/Library/Other", "/fhir/ValueSet/other", "/fhir/ValueSet/other/$expand"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.get_json()["resourceType"] == "OperationOutcome"


def test_the_artifacts_are_read_only(client):
    for method in ("put", "delete", "post"):
        response = getattr(client, method)("/fhir/ValueSet/lupus", json={"resourceType": "ValueSet"})
        assert response.status_code == 405


def test_expand_by_id_and_by_url_get_and_post(client):
    by_id = client.get("/fhir/ValueSet/lupus/$expand").get_json()
    by_url = client.get("/fhir/ValueSet/$expand", query_string={"url": LUPUS}).get_json()
    posted = client.post("/fhir/ValueSet/$expand", json={"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": LUPUS}]}).get_json()
    for answer in (by_id, by_url, posted):
        validate_r4(answer)
        assert {c["code"] for c in answer["expansion"]["contains"]} == {"55464009", "239888002", "L93.2"}
    assert client.get("/fhir/ValueSet/$expand").status_code == 400


@pytest.mark.parametrize("parameter", [5, "url", {"name": "url"}, True])
def test_a_parameters_body_whose_parameter_is_not_an_array_is_a_400_naming_it(client, parameter):
    for operation in ("$expand", "$validate-code"):
        response = client.post(f"/fhir/ValueSet/lupus/{operation}",
                               json={"resourceType": "Parameters", "parameter": parameter})
        assert response.status_code == 400
        issue = response.get_json()["issue"][0]
        assert (issue["code"], issue["expression"]) == ("structure", ["parameter"])


def test_validate_code_by_query_and_by_parameters(client):
    member = client.get("/fhir/ValueSet/lupus/$validate-code",
                        query_string={"system": ICD10CM, "code": "M32.10"}).get_json()
    validate_r4(member)
    assert member["parameter"][0] == {"name": "result", "valueBoolean": True}
    outsider = client.post("/fhir/ValueSet/$validate-code", json={"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": LUPUS}, {"name": "coding", "valueCoding": {"system": ICD10CM, "code": "M34.0"}}]})
    assert outsider.get_json()["parameter"][0] == {"name": "result", "valueBoolean": False}
    missing = client.get("/fhir/ValueSet/lupus/$validate-code", query_string={"system": ICD10CM})
    assert missing.status_code == 400 and missing.get_json()["issue"][0]["expression"] == ["code"]


def _fhir_routes(app) -> set[tuple[str, str]]:
    """(method, rule) of every /fhir route the app serves."""
    return {(method, rule.rule) for rule in app.url_map.iter_rules() if rule.rule.startswith("/fhir")
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def test_the_capability_statement_lists_every_resource_and_operation_served(app, client):
    statement = client.get("/fhir/metadata").get_json()
    validate_r4(statement)
    (rest,) = statement["rest"]
    declared: set[tuple[str, str]] = {("GET", "/fhir/metadata")}
    declared |= {("POST", f"/fhir/${op['name']}") for op in rest["operation"]}
    for resource in rest["resource"]:
        kind = resource["type"]
        codes = {interaction["code"] for interaction in resource["interaction"]}
        if "read" in codes:
            declared.add(("GET", f"/fhir/{kind}/<resource_id>"))
        if "search-type" in codes:
            declared.add(("GET", f"/fhir/{kind}"))
            assert {p["name"] for p in resource["searchParam"]} == {"url", "version"}
        for operation in resource.get("operation", ()):
            declared.add(("POST", f"/fhir/{kind}/<resource_id>/${operation['name']}"))
    served = set()
    for method, rule in _fhir_routes(app):
        # the fixed-id routes of the conformance artifacts are reads of their type
        rule = {"/fhir/OperationDefinition/assess": "/fhir/OperationDefinition/<resource_id>",
                "/fhir/CodeSystem/calcinosis-type": "/fhir/CodeSystem/<resource_id>"}.get(rule, rule)
        if rule.startswith("/fhir/ValueSet/$"):  # type-level form of a ValueSet operation
            rule = rule.replace("/fhir/ValueSet/", "/fhir/ValueSet/<resource_id>/")
        served.add(("POST", rule) if rule.endswith(("$expand", "$validate-code")) else (method, rule))
    assert served == declared

"""`$assess` behind an optional bearer token: a SMART Backend Services access token with the scope asked for.

Open by default (the quick start); one setting, ASSESS_AUTHORIZATION, requires a token. Refusals are
OperationOutcomes with the RFC 6750 WWW-Authenticate challenge: 401 without a valid token, 403
without the scope.
"""

from __future__ import annotations

import time

import pytest
import responses

from conftest import assess_fixture
from service.config import load_config
from service.errors import ConfigError
from tests.support.cds_app import make_app
from tests.support.jwt_tokens import ClientKey, hs256_token

AUTH_SERVER = "https://auth.example.org"
JWKS_URL = f"{AUTH_SERVER}/jwks.json"
FHIR_BASE = "http://localhost/fhir"
ASSESS = "/fhir/$assess"
SCOPE = "system/RiskAssessment.write"


@pytest.fixture(scope="module")
def key() -> ClientKey:
    return ClientKey("RS384")


def _client(tmp_path, authorization: dict | None, **settings):
    config = {"CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3"), **settings}
    if authorization is not None:
        config["ASSESS_AUTHORIZATION"] = authorization
    return make_app(config).test_client()


def _post(client, token: str | None = None, scheme: str = "Bearer"):
    headers = {"Content-Type": "application/fhir+json"}
    if token is not None:
        headers["Authorization"] = f"{scheme} {token}"
    return client.post(ASSESS, data=assess_fixture("04").read_bytes(), headers=headers)


def _token(key: ClientKey, audience: str = FHIR_BASE, **claims) -> str:
    return key.sign(audience, issuer=AUTH_SERVER, **{"scope": f"system/Patient.read {SCOPE}", **claims})


def test_assess_is_open_without_the_setting(tmp_path):
    assert _post(_client(tmp_path, None)).status_code == 200


def test_a_token_with_the_scope_from_the_issuer_opens_assess(tmp_path, key):
    client = _client(tmp_path, {"issuer": AUTH_SERVER, "jwks": key.jwks})
    response = _post(client, _token(key))
    assert response.status_code == 200
    assert response.get_json()["resourceType"] == "Bundle"
    assert _post(client, _token(key)).status_code == 200  # an access token is reused for its lifetime


def test_no_token_is_a_401_outcome_with_a_bearer_challenge(tmp_path, key):
    response = _post(_client(tmp_path, {"issuer": AUTH_SERVER, "jwks": key.jwks}))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="calcinosis-cds"'
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "login"


@pytest.mark.parametrize("case", ["expired", "wrong-aud", "wrong-iss", "other-key", "hs256", "garbage", "basic",
                                  "no-exp"])
def test_an_invalid_token_is_a_401_saying_invalid_token(tmp_path, key, case):
    now = int(time.time())
    token, scheme = {
        "expired": lambda: (_token(key, iat=now - 900, exp=now - 300), "Bearer"),
        "wrong-aud": lambda: (_token(key, audience="https://other.example.org/fhir"), "Bearer"),
        "wrong-iss": lambda: (key.sign(FHIR_BASE, issuer="https://rogue.example.org", scope=SCOPE), "Bearer"),
        "other-key": lambda: (_token(ClientKey("RS384", kid=key.kid)), "Bearer"),
        "hs256": lambda: (hs256_token(FHIR_BASE, "secret"), "Bearer"),
        "garbage": lambda: ("not-a-jwt", "Bearer"),
        "basic": lambda: (_token(key), "Basic"),
        "no-exp": lambda: (_token(key, exp=None), "Bearer"),
    }[case]()
    response = _post(_client(tmp_path, {"issuer": AUTH_SERVER, "jwks": key.jwks}), token, scheme)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="calcinosis-cds", error="invalid_token"')
    assert response.get_json()["resourceType"] == "OperationOutcome"
    assert token not in response.get_data(as_text=True)


@pytest.mark.parametrize("scope", [None, "system/Patient.read", "system/RiskAssessment.read",
                                   "system/RiskAssessment.writes"])
def test_a_token_without_the_scope_is_a_403_naming_it(tmp_path, key, scope):
    response = _post(_client(tmp_path, {"issuer": AUTH_SERVER, "jwks": key.jwks}), _token(key, scope=scope))
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer realm="calcinosis-cds", error="insufficient_scope", scope="{SCOPE}"')
    issue = response.get_json()["issue"][0]
    assert issue["code"] == "forbidden" and SCOPE in issue["diagnostics"]


def test_the_scope_and_audience_are_configurable(tmp_path, key):
    client = _client(tmp_path, {"issuer": AUTH_SERVER, "jwks": key.jwks, "scope": "calcinosis/assess",
                                "audience": "https://cds.example.org"})
    assert _post(client, _token(key, audience="https://cds.example.org", scope="calcinosis/assess")).status_code == 200
    assert _post(client, _token(key, audience="https://cds.example.org")).status_code == 403
    assert _post(client, _token(key, scope="calcinosis/assess")).status_code == 401


def test_an_scp_list_carries_the_scope_too(tmp_path, key):
    client = _client(tmp_path, {"issuer": AUTH_SERVER, "jwks": key.jwks})
    assert _post(client, _token(key, scope=None, scp=[SCOPE])).status_code == 200


def test_the_default_audience_is_the_public_fhir_base(tmp_path, key):
    client = _client(tmp_path, {"issuer": AUTH_SERVER, "jwks": key.jwks}, PUBLIC_BASE_URL="https://cds.example.org")
    assert _post(client, _token(key, audience="https://cds.example.org/fhir")).status_code == 200
    assert _post(client, _token(key, audience=FHIR_BASE)).status_code == 401


@responses.activate
def test_keys_are_fetched_from_the_jwks_url_once_and_cached(tmp_path, key):
    responses.get(JWKS_URL, json=key.jwks)
    client = _client(tmp_path, {"issuer": AUTH_SERVER, "jwks_url": JWKS_URL})
    for _ in range(3):
        assert _post(client, _token(key)).status_code == 200
    assert len(responses.calls) == 1


def test_other_routes_stay_open(tmp_path, key):
    client = _client(tmp_path, {"issuer": AUTH_SERVER, "jwks": key.jwks})
    assert client.get("/fhir/metadata").status_code == 200
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("value", [{"jwks_url": JWKS_URL}, {"issuer": AUTH_SERVER},
                                   {"issuer": AUTH_SERVER, "jwks_url": "ftp://x"},
                                   {"issuer": AUTH_SERVER, "jwks": {"keys": []}, "jwks_url": JWKS_URL},
                                   {"issuer": AUTH_SERVER, "jwks": {"keys": []}, "scope": "a b"},
                                   {"issuer": AUTH_SERVER, "jwks": {"keys": []}, "scopes": "a"}, "on"])
def test_a_malformed_setting_stops_start_up_naming_it(value):
    with pytest.raises(ConfigError, match="ASSESS_AUTHORIZATION"):
        load_config({"ASSESS_AUTHORIZATION": value}, environ={})

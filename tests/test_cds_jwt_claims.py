"""Trusting CDS clients, continued: key strength, curve, nbf, aud lists, and per-issuer sub/jku/tenant rules."""

from __future__ import annotations

import time

import pytest

from service.errors import AuthenticationError
from service.hooks.jwt_auth import ClientVerifier, acceptable_key
from tests.support.jwt_tokens import EHR_ISSUER, ClientKey

SERVICE_URL = "http://localhost/cds-services/calcinosis-patient-view"


def _verifier(key: ClientKey, algorithms=("ES256", "ES384", "ES512", "RS256", "RS384"),
              **issuer_spec) -> ClientVerifier:
    return ClientVerifier(trusted_issuers={EHR_ISSUER: {"jwks": key.jwks, **issuer_spec}}, algorithms=algorithms,
                          leeway_seconds=30, max_age_seconds=600)


def _verify(verifier: ClientVerifier, token: str) -> dict:
    return verifier.verify(f"Bearer {token}", SERVICE_URL)


@pytest.fixture(scope="module")
def es256_key() -> ClientKey:
    return ClientKey("ES256")


def test_an_rsa_key_under_2048_bits_is_refused():
    weak = ClientKey("RS256", rsa_bits=1024)
    with pytest.raises(AuthenticationError, match="2048"):
        _verify(_verifier(weak), weak.sign(SERVICE_URL))


def test_an_rsa_key_of_2048_bits_is_accepted():
    key = ClientKey("RS384")
    assert _verify(_verifier(key), key.sign(SERVICE_URL))["iss"] == EHR_ISSUER


@pytest.mark.parametrize("algorithm, curve", [("ES256", "P-384"), ("ES384", "P-256"), ("ES512", "P-384")])
def test_an_ec_key_on_another_curve_than_its_alg_names_is_refused(algorithm, curve):
    key = ClientKey(algorithm, curve=curve)
    key.public_jwk.pop("alg")  # nothing but the curve check stands between this key and acceptance
    with pytest.raises(AuthenticationError):
        _verify(_verifier(key), key.sign_on_own_curve(SERVICE_URL))


def test_the_curve_check_itself_refuses_a_key_on_another_curve():
    key = ClientKey("ES256", curve="P-384").private_key.public_key()
    assert acceptable_key(key, "ES256") is not None
    assert acceptable_key(key, "ES384") is None


@pytest.mark.parametrize("algorithm", ["ES256", "ES384", "ES512"])
def test_an_ec_key_on_the_curve_of_its_alg_is_accepted(algorithm):
    key = ClientKey(algorithm)
    assert _verify(_verifier(key), key.sign(SERVICE_URL))["iss"] == EHR_ISSUER


def test_a_token_not_valid_before_a_future_nbf_is_refused(es256_key):
    with pytest.raises(AuthenticationError):
        _verify(_verifier(es256_key), es256_key.sign(SERVICE_URL, nbf=int(time.time()) + 600))


def test_an_aud_list_holding_exactly_the_endpoint_is_accepted(es256_key):
    token = es256_key.sign(SERVICE_URL, aud=["https://other.example.org/cds-services", SERVICE_URL])
    assert _verify(_verifier(es256_key), token)["iss"] == EHR_ISSUER


@pytest.mark.parametrize("aud", [["http://localhost/cds-services"], [SERVICE_URL + "/"], [SERVICE_URL.upper()],
                                 "http://localhost/cds-services", []])
def test_an_aud_that_only_resembles_the_endpoint_is_refused(es256_key, aud):
    with pytest.raises(AuthenticationError):
        _verify(_verifier(es256_key), es256_key.sign(SERVICE_URL, aud=aud))


def test_a_sub_configured_as_a_string_is_one_client_id_not_a_substring(es256_key):
    verifier = _verifier(es256_key, sub="ehr-client-id-production")
    with pytest.raises(AuthenticationError):
        _verify(verifier, es256_key.sign(SERVICE_URL, sub="ehr-client-id"))
    assert _verify(verifier, es256_key.sign(SERVICE_URL, sub="ehr-client-id-production"))["sub"] == \
        "ehr-client-id-production"


def test_a_sub_claim_that_is_not_a_string_is_refused_when_subjects_are_configured(es256_key):
    verifier = _verifier(es256_key, sub=["ehr-client-id"])
    with pytest.raises(AuthenticationError):
        _verify(verifier, es256_key.sign(SERVICE_URL, sub=["ehr-client-id"]))


@pytest.mark.parametrize("setting", [{"sub": ["ok", 3]}, {"sub": {"id": "x"}}, {"jku": ["https://a.example", None]},
                                     {"jku": 7}])
def test_an_issuer_configured_with_sub_or_jku_that_is_not_strings_is_refused_at_start(es256_key, setting):
    with pytest.raises(ValueError):
        _verifier(es256_key, **setting)


def test_a_jku_configured_as_a_string_is_one_url_not_a_substring(es256_key):
    verifier = _verifier(es256_key, jku="https://ehr.example.org/.well-known/jwks.json")
    token = es256_key.sign(SERVICE_URL, headers={"jku": "https://ehr.example.org/"})
    with pytest.raises(AuthenticationError, match="jku"):
        _verify(verifier, token)


@pytest.mark.parametrize("tenant", [123, ["org-1"], {"id": "org-1"}])
def test_a_tenant_claim_that_is_not_a_string_is_refused(es256_key, tenant):
    with pytest.raises(AuthenticationError, match="tenant"):
        _verify(_verifier(es256_key), es256_key.sign(SERVICE_URL, tenant=tenant))


def test_a_string_tenant_claim_is_accepted(es256_key):
    assert _verify(_verifier(es256_key), es256_key.sign(SERVICE_URL, tenant="org-1"))["tenant"] == "org-1"

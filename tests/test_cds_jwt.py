"""Trusting CDS clients: the JWT on every call (CDS Hooks 2.0, Security)."""

from __future__ import annotations

import json
import time

import pytest
import responses

from service.errors import AuthenticationError
from service.hooks import hook_call
from service.hooks.jwt_auth import ClientVerifier, JwksCache, ReplayStore, SqliteReplayStore
from tests.support.cds_app import FakeCore, make_app, quiet_assessment
from tests.support.jwt_tokens import EHR_ISSUER, ClientKey, hs256_token, unsigned_token

DISCOVERY_URL = "http://localhost/cds-services"
SERVICE_URL = "http://localhost/cds-services/calcinosis-patient-view"
JWKS_URL = "https://ehr.example.org/.well-known/jwks.json"


@pytest.fixture(scope="module")
def es384_key() -> ClientKey:
    return ClientKey("ES384")


@pytest.fixture
def secured_client(tmp_path, es384_key, monkeypatch):
    monkeypatch.setattr(hook_call, "core_assess", FakeCore(quiet_assessment("pat-1")))
    app = make_app({
        "CDS_REQUIRE_JWT": True,
        "CDS_TRUSTED_ISSUERS": {EHR_ISSUER: {"jwks": es384_key.jwks}},
        "CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3"),
    })
    return app.test_client()


def _call(client, token: str | None, path: str = "/cds-services"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(path, headers=headers)


def test_an_es384_token_from_a_trusted_issuer_opens_discovery(secured_client, es384_key):
    response = _call(secured_client, es384_key.sign(DISCOVERY_URL))
    assert response.status_code == 200
    assert {s["hook"] for s in response.get_json()["services"]} == {"patient-view", "order-select", "order-sign"}


def test_a_service_call_needs_aud_equal_to_the_service_url(secured_client, es384_key):
    body = {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"userId": "Practitioner/1", "patientId": "pat-1"},
            "prefetch": {"patient": {"resourceType": "Patient", "id": "pat-1"}, "labs": None, "conditions": None,
                         "medications": None, "procedures": None}}
    ok = secured_client.post("/cds-services/calcinosis-patient-view", json=body,
                             headers={"Authorization": f"Bearer {es384_key.sign(SERVICE_URL)}"})
    assert ok.status_code == 200
    wrong = secured_client.post("/cds-services/calcinosis-patient-view", json=body,
                                headers={"Authorization": f"Bearer {es384_key.sign(DISCOVERY_URL)}"})
    assert wrong.status_code == 401


def test_no_authorization_header_gets_a_bare_401(secured_client):
    response = _call(secured_client, None)
    assert response.status_code == 401
    assert response.data == b""


@pytest.mark.parametrize("case", ["none", "hs256", "expired", "wrong-aud", "unknown-iss", "future-iat",
                                  "stale-iat", "no-jti", "garbage"])
def test_untrusted_tokens_get_a_bare_401(secured_client, es384_key, case):
    now = int(time.time())
    token = {
        "none": lambda: unsigned_token(DISCOVERY_URL),
        "hs256": lambda: hs256_token(DISCOVERY_URL, json.dumps(es384_key.public_jwk)),
        "expired": lambda: es384_key.sign(DISCOVERY_URL, iat=now - 400, exp=now - 100),
        "wrong-aud": lambda: es384_key.sign("https://other.example.org/cds-services"),
        "unknown-iss": lambda: es384_key.sign(DISCOVERY_URL, issuer="https://rogue.example.org"),
        "future-iat": lambda: es384_key.sign(DISCOVERY_URL, iat=now + 900, exp=now + 1200),
        "stale-iat": lambda: es384_key.sign(DISCOVERY_URL, iat=now - 7200, exp=now + 300),
        "no-jti": lambda: es384_key.sign(DISCOVERY_URL, jti=None),
        "garbage": lambda: "not.a.jwt",
    }[case]()
    response = _call(secured_client, token)
    assert response.status_code == 401
    assert response.data == b""


def test_a_replayed_jti_is_refused(secured_client, es384_key):
    token = es384_key.sign(DISCOVERY_URL)
    assert _call(secured_client, token).status_code == 200
    assert _call(secured_client, token).status_code == 401


def test_a_token_signed_by_another_key_with_the_same_kid_is_refused(secured_client, es384_key):
    impostor = ClientKey("ES384", kid=es384_key.kid)
    assert _call(secured_client, impostor.sign(DISCOVERY_URL)).status_code == 401


def test_a_jku_that_is_not_allowlisted_is_never_fetched_nor_its_keys_trusted(secured_client):
    """An issuer with inline keys is verified against them whatever jku a token names (the sandbox's
    case, below): a token signed by the key the attacker's jku would serve is refused, unfetched."""
    attacker = ClientKey("ES384")
    with responses.RequestsMock() as mocked:  # any request would fail the test: none is registered
        token = attacker.sign(DISCOVERY_URL, headers={"jku": "https://attacker.example.net/jwks.json"})
        assert _call(secured_client, token).status_code == 401
        assert len(mocked.calls) == 0


def test_a_jku_that_is_not_allowlisted_is_refused_without_fetching_it_when_no_keys_are_inline():
    key = ClientKey("ES384")
    verifier = _verifier(jwks_url=JWKS_URL)
    with responses.RequestsMock() as mocked:
        token = key.sign(SERVICE_URL, headers={"jku": "https://attacker.example.net/jwks.json"})
        with pytest.raises(AuthenticationError, match="jku .* is not allowlisted"):
            verifier.verify(f"Bearer {token}", SERVICE_URL)
        assert len(mocked.calls) == 0


SANDBOX = "https://sandbox.cds-hooks.org"


def test_the_sandboxs_tokens_verify_against_its_inline_keys_although_they_name_a_jku(tmp_path, monkeypatch):
    """The CDS Hooks sandbox always sends a jku; an operator who pasted its keys must not need it fetched."""
    sandbox_key = ClientKey("ES384")
    monkeypatch.setattr(hook_call, "core_assess", FakeCore(quiet_assessment("pat-1")))
    client = make_app({"CDS_REQUIRE_JWT": True, "CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3"),
                       "CDS_TRUSTED_ISSUERS": {SANDBOX: {"jwks": sandbox_key.jwks}}}).test_client()
    with responses.RequestsMock() as mocked:  # a fetch of the jku would fail the test
        token = sandbox_key.sign(DISCOVERY_URL, issuer=SANDBOX, sub=None,
                                 headers={"jku": f"{SANDBOX}/.well-known/jwks.json"})
        assert _call(client, token).status_code == 200
        assert len(mocked.calls) == 0


def _verifier(**issuer_spec) -> ClientVerifier:
    return ClientVerifier(trusted_issuers={EHR_ISSUER: issuer_spec}, algorithms=["ES384", "RS384"],
                          leeway_seconds=30, max_age_seconds=600, jwks_cache=JwksCache(3600))


@responses.activate
def test_keys_fetched_from_the_issuers_jwks_url_are_cached():
    key = ClientKey("RS384")
    responses.get(JWKS_URL, json=key.jwks)
    verifier = _verifier(jwks_url=JWKS_URL)
    for _ in range(3):
        claims = verifier.verify(f"Bearer {key.sign(SERVICE_URL)}", SERVICE_URL)
        assert claims["iss"] == EHR_ISSUER
    assert len(responses.calls) == 1


def test_a_public_key_is_parsed_once_per_jwks_document(monkeypatch):
    from service.hooks import jwt_auth

    key = ClientKey("ES384")
    parsed = []
    real_find_key = jwt_auth.find_key
    monkeypatch.setattr(jwt_auth, "find_key", lambda *args: parsed.append(args[1]) or real_find_key(*args))
    verifier = _verifier(jwks=key.jwks)
    for _ in range(3):
        assert verifier.verify(f"Bearer {key.sign(SERVICE_URL)}", SERVICE_URL)["iss"] == EHR_ISSUER
    assert parsed == [key.kid]
    with pytest.raises(AuthenticationError):  # an unknown kid is looked up every time, never cached
        verifier.verify(f"Bearer {ClientKey('ES384').sign(SERVICE_URL)}", SERVICE_URL)
    assert len(parsed) == 2


@responses.activate
def test_a_key_replaced_under_the_same_kid_is_used_once_the_jwks_is_refetched():
    old = ClientKey("ES384")
    new = ClientKey("ES384", kid=old.kid)
    responses.get(JWKS_URL, json=old.jwks)
    responses.get(JWKS_URL, json=new.jwks)
    clock = [1000.0]
    verifier = ClientVerifier(trusted_issuers={EHR_ISSUER: {"jwks_url": JWKS_URL}}, algorithms=["ES384"],
                              leeway_seconds=30, max_age_seconds=600,
                              jwks_cache=JwksCache(60, clock=lambda: clock[0]))
    assert verifier.verify(f"Bearer {old.sign(SERVICE_URL)}", SERVICE_URL)
    clock[0] += 61  # the cached JWKS expires: the next call reads the issuer's current keys
    assert verifier.verify(f"Bearer {new.sign(SERVICE_URL)}", SERVICE_URL)
    with pytest.raises(AuthenticationError):
        verifier.verify(f"Bearer {old.sign(SERVICE_URL)}", SERVICE_URL)


@responses.activate
def test_an_allowlisted_jku_is_fetched_and_used():
    key = ClientKey("ES384")
    responses.get(JWKS_URL, json=key.jwks)
    verifier = _verifier(jwks={"keys": []}, jku=[JWKS_URL])
    claims = verifier.verify(f"Bearer {key.sign(SERVICE_URL, headers={'jku': JWKS_URL})}", SERVICE_URL)
    assert claims["sub"] == "ehr-client-id"


@responses.activate
def test_a_rotated_key_is_found_by_refetching_the_jwks():
    old, new = ClientKey("ES384"), ClientKey("ES384")
    responses.get(JWKS_URL, json=old.jwks)
    responses.get(JWKS_URL, json=new.jwks)
    verifier = _verifier(jwks_url=JWKS_URL)
    verifier.verify(f"Bearer {old.sign(SERVICE_URL)}", SERVICE_URL)
    assert verifier.verify(f"Bearer {new.sign(SERVICE_URL)}", SERVICE_URL)["iss"] == EHR_ISSUER


@responses.activate
def test_an_unreachable_jwks_url_means_untrusted():
    key = ClientKey("ES384")
    responses.get(JWKS_URL, status=503)
    with pytest.raises(AuthenticationError):
        _verifier(jwks_url=JWKS_URL).verify(f"Bearer {key.sign(SERVICE_URL)}", SERVICE_URL)


def test_hs_algorithms_are_never_accepted_even_when_configured():
    verifier = ClientVerifier(trusted_issuers={EHR_ISSUER: {"jwks": {"keys": []}}}, algorithms=["HS256", "none"],
                              leeway_seconds=30, max_age_seconds=600)
    assert verifier.algorithms == []
    with pytest.raises(AuthenticationError):
        verifier.verify(f"Bearer {hs256_token(SERVICE_URL, 'a-shared-secret-of-at-least-32-bytes')}", SERVICE_URL)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_the_replay_store_forgets_token_ids_once_they_expire(kind, tmp_path):
    clock = [1000.0]
    store = (ReplayStore(clock=lambda: clock[0]) if kind == "memory"
             else SqliteReplayStore(tmp_path / "jti.sqlite3", clock=lambda: clock[0]))
    assert store.first_use(EHR_ISSUER, "abc", expires_at=1300)
    assert not store.first_use(EHR_ISSUER, "abc", expires_at=1300)
    clock[0] = 1301.0
    assert store.first_use(EHR_ISSUER, "abc", expires_at=1600)


def test_the_memory_store_sweeps_expired_ids_in_bulk_and_frees_an_expired_id_before_the_sweep():
    clock = [1000.0]
    store = ReplayStore(clock=lambda: clock[0])
    assert store.first_use(EHR_ISSUER, "abc", expires_at=1300)
    clock[0] = 1301.0 - store.SWEEP_INTERVAL_SECONDS / 2  # "abc" still live: still a replay
    assert not store.first_use(EHR_ISSUER, "abc", expires_at=1900)
    clock[0] = 1301.0
    store._next_sweep = float("inf")  # "abc" is expired but not swept: taken over, once
    assert store.first_use(EHR_ISSUER, "abc", expires_at=1900)
    assert not store.first_use(EHR_ISSUER, "abc", expires_at=1900)
    assert store.first_use(EHR_ISSUER, "old", expires_at=1400)
    clock[0] = 1500.0
    store._next_sweep = 1500.0  # the sweep is due: expired ids go, live ones stay
    assert store.first_use(EHR_ISSUER, "new", expires_at=2000)
    assert set(store._seen) == {(EHR_ISSUER, "abc"), (EHR_ISSUER, "new")}
    assert not store.first_use(EHR_ISSUER, "abc", expires_at=1900)


def test_an_expired_token_id_is_free_again_before_the_periodic_sweep_runs(tmp_path):
    clock = [1000.0]
    store = SqliteReplayStore(tmp_path / "jti.sqlite3", clock=lambda: clock[0])
    assert store.first_use(EHR_ISSUER, "abc", expires_at=1300)
    clock[0] = 1010.0  # well within the sweep interval: no sweep runs on this call
    assert store.first_use(EHR_ISSUER, "other", expires_at=1300)
    assert not store.first_use(EHR_ISSUER, "other", expires_at=1300)
    clock[0] = 1301.0 - store.PURGE_INTERVAL_SECONDS / 2  # "abc" still live: still a replay
    assert not store.first_use(EHR_ISSUER, "abc", expires_at=1900)
    clock[0] = 1301.0
    store._next_purge = float("inf")  # the row of "abc" is expired but not swept: taken over, once
    assert store.first_use(EHR_ISSUER, "abc", expires_at=1900)
    assert not store.first_use(EHR_ISSUER, "abc", expires_at=1900)


def _claim_token_ids(db_path: str, jtis: list[str], start, claimed) -> None:
    """One worker process: wait for the others, then claim every token id; the ones it won go to `claimed`."""
    store = SqliteReplayStore(db_path)
    start.wait()
    claimed.put([jti for jti in jtis if store.first_use(EHR_ISSUER, jti, time.time() + 600)])


def test_worker_processes_sharing_the_replay_file_accept_each_token_id_exactly_once(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("fork")
    db_path = str(tmp_path / "jti.sqlite3")
    SqliteReplayStore(db_path)  # the file and its table exist before the workers race
    jtis = [f"jti-{number}" for number in range(150)]
    start, claimed = context.Barrier(3), context.Queue()
    workers = [context.Process(target=_claim_token_ids, args=(db_path, jtis, start, claimed)) for _ in range(3)]
    for worker in workers:
        worker.start()
    won = [claimed.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(jti for one in won for jti in one) == sorted(jtis)  # every id accepted once, by one worker


def test_aud_follows_public_base_url_when_configured(tmp_path, es384_key, monkeypatch):
    app = make_app({
        "CDS_REQUIRE_JWT": True, "PUBLIC_BASE_URL": "https://cds.example.org/",
        "CDS_TRUSTED_ISSUERS": {EHR_ISSUER: {"jwks": es384_key.jwks}},
        "CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3"),
    })
    client = app.test_client()
    assert _call(client, es384_key.sign("https://cds.example.org/cds-services")).status_code == 200
    assert _call(client, es384_key.sign(DISCOVERY_URL)).status_code == 401


def test_turning_jwt_checks_off_logs_a_warning_at_start(tmp_path, caplog):
    with caplog.at_level("WARNING"):
        app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3")})
    assert any("CDS_REQUIRE_JWT" in record.getMessage() for record in caplog.records)
    assert app.test_client().get("/cds-services").status_code == 200


def test_an_issuer_with_a_subject_allowlist_refuses_other_client_ids():
    key = ClientKey("ES384")
    verifier = ClientVerifier(trusted_issuers={EHR_ISSUER: {"jwks": key.jwks, "sub": ["ehr-client-id"]}},
                              algorithms=["ES384"], leeway_seconds=30, max_age_seconds=600)
    assert verifier.verify(f"Bearer {key.sign(SERVICE_URL)}", SERVICE_URL)["sub"] == "ehr-client-id"
    with pytest.raises(AuthenticationError):
        verifier.verify(f"Bearer {key.sign(SERVICE_URL, sub='someone-else')}", SERVICE_URL)


def test_a_sandbox_style_token_without_sub_is_accepted_when_no_subject_list_is_configured():
    key = ClientKey("ES384")
    verifier = ClientVerifier(trusted_issuers={EHR_ISSUER: {"jwks": key.jwks}}, algorithms=["ES384"],
                              leeway_seconds=30, max_age_seconds=600)
    assert "sub" not in verifier.verify(f"Bearer {key.sign(SERVICE_URL, sub=None)}", SERVICE_URL)


def test_a_token_replayed_to_another_app_on_the_same_database_is_refused(tmp_path, es384_key):
    config = {"CDS_REQUIRE_JWT": True, "CDS_TRUSTED_ISSUERS": {EHR_ISSUER: {"jwks": es384_key.jwks}},
              "CDS_FEEDBACK_DB": str(tmp_path / "shared.sqlite3")}
    first_worker, second_worker = make_app(config).test_client(), make_app(config).test_client()
    token = es384_key.sign(DISCOVERY_URL)
    assert _call(first_worker, token).status_code == 200
    assert _call(second_worker, token).status_code == 401


def test_feedback_without_a_token_gets_a_bare_401(secured_client):
    response = secured_client.post("/cds-services/calcinosis-patient-view/feedback", json={"feedback": [
        {"card": "c1", "outcome": "accepted", "outcomeTimestamp": "2026-11-15T09:05:00Z"}]})
    assert response.status_code == 401
    assert response.data == b""


OTHER_ISSUER = "https://other-client.example.com"
OTHER_JWKS_URL = "https://other-client.example.com/jwks.json"


def test_one_trusted_issuer_cannot_sign_as_another_by_naming_its_own_jku(tmp_path, es384_key):
    other = ClientKey("ES384")
    app = make_app({"CDS_REQUIRE_JWT": True, "PUBLIC_BASE_URL": "http://localhost",
                    "CDS_TRUSTED_ISSUERS": {EHR_ISSUER: {"jwks": es384_key.jwks},
                                            OTHER_ISSUER: {"jwks_url": OTHER_JWKS_URL}},
                    "CDS_JKU_ALLOWLIST": [OTHER_JWKS_URL],  # the former global list: no longer honoured
                    "CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3")})
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.get(OTHER_JWKS_URL, json=other.jwks)
        token = other.sign(DISCOVERY_URL, issuer=EHR_ISSUER, headers={"jku": OTHER_JWKS_URL})
        assert _call(app.test_client(), token).status_code == 401
        assert len(mocked.calls) == 0


@responses.activate
def test_an_issuer_may_name_its_own_jwks_url_as_jku():
    key = ClientKey("ES384")
    responses.get(JWKS_URL, json=key.jwks)
    verifier = _verifier(jwks_url=JWKS_URL)
    claims = verifier.verify(f"Bearer {key.sign(SERVICE_URL, headers={'jku': JWKS_URL})}", SERVICE_URL)
    assert claims["iss"] == EHR_ISSUER


def test_the_global_jku_allowlist_setting_is_gone_and_its_use_is_warned_about(tmp_path, caplog):
    from service.config import Settings

    assert "CDS_JKU_ALLOWLIST" not in Settings.model_fields
    with caplog.at_level("WARNING"):
        make_app({"CDS_REQUIRE_JWT": True, "CDS_JKU_ALLOWLIST": [OTHER_JWKS_URL],
                  "PUBLIC_BASE_URL": "https://cds.example.org",
                  "CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3")})
    assert any("CDS_JKU_ALLOWLIST is no longer read" in r.getMessage() for r in caplog.records)


def test_a_jwks_url_that_redirects_is_not_followed():
    impostor = ClientKey("ES384")
    verifier = _verifier(jwks_url=JWKS_URL)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.get(JWKS_URL, status=302, headers={"Location": "https://attacker.example.net/jwks.json"})
        mocked.get("https://attacker.example.net/jwks.json", json=impostor.jwks)
        with pytest.raises(AuthenticationError, match="HTTP 302"):
            verifier.verify(f"Bearer {impostor.sign(SERVICE_URL)}", SERVICE_URL)
        assert [c.request.url for c in mocked.calls] == [JWKS_URL]


@pytest.mark.parametrize("header", [{"jku": ["https://a.example"]}, {"jku": {"url": "https://a.example"}},
                                    {"kid": ["k1"]}, {"kid": 7}, {"typ": 1}, {"typ": ["JWT"]},
                                    {"alg": ["ES384"]}])
def test_a_header_field_that_is_not_a_string_gets_a_bare_401(secured_client, es384_key, header):
    token = es384_key.sign_raw_header(DISCOVERY_URL, {"alg": "ES384", "kid": es384_key.kid, "typ": "JWT", **header})
    response = _call(secured_client, token)
    assert response.status_code == 401
    assert response.data == b""


def test_a_token_without_exp_gets_a_bare_401(secured_client, es384_key):
    response = _call(secured_client, es384_key.sign(DISCOVERY_URL, exp=None))
    assert response.status_code == 401
    assert response.data == b""


def test_unknown_kids_refetch_the_jwks_at_most_once_per_issuer_per_interval():
    import uuid

    clock = [1_000_000.0]
    real, attacker = ClientKey("ES384"), ClientKey("ES384")
    verifier = ClientVerifier(trusted_issuers={EHR_ISSUER: {"jwks_url": JWKS_URL}}, algorithms=["ES384"],
                              leeway_seconds=30, max_age_seconds=10**9,
                              jwks_cache=JwksCache(3600, clock=lambda: clock[0]),
                              min_refetch_seconds=60, clock=lambda: clock[0])
    with responses.RequestsMock() as mocked:
        mocked.get(JWKS_URL, json=real.jwks)
        for _ in range(20):
            token = attacker.sign(SERVICE_URL, headers={"kid": uuid.uuid4().hex})
            with pytest.raises(AuthenticationError):
                verifier.verify(f"Bearer {token}", SERVICE_URL)
        assert len(mocked.calls) == 2  # the first fetch, then one refetch for an unknown kid
        clock[0] += 61
        with pytest.raises(AuthenticationError):
            verifier.verify(f"Bearer {attacker.sign(SERVICE_URL, headers={'kid': 'yet-another'})}", SERVICE_URL)
        assert len(mocked.calls) == 3


def test_jwt_checks_without_public_base_url_log_that_aud_follows_the_host_header(tmp_path, es384_key, caplog):
    with caplog.at_level("WARNING"):
        make_app({"CDS_REQUIRE_JWT": True, "CDS_TRUSTED_ISSUERS": {EHR_ISSUER: {"jwks": es384_key.jwks}},
                  "CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3")})
    assert any("PUBLIC_BASE_URL is not set" in r.getMessage() and "Host" in r.getMessage() for r in caplog.records)


def test_card_links_come_from_public_base_url_whatever_the_host_header(tmp_path, monkeypatch):
    from tests.support.cds_app import metastatic_assessment

    monkeypatch.setattr(hook_call, "core_assess", FakeCore(metastatic_assessment("pat-1")))
    app = make_app({"CDS_REQUIRE_JWT": False, "PUBLIC_BASE_URL": "https://cds.example.org",
                    "CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3")})
    body = {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"userId": "Practitioner/1", "patientId": "pat-1"},
            "prefetch": {"patient": {"resourceType": "Patient", "id": "pat-1"}, "labs": None, "conditions": None,
                         "medications": None, "procedures": None}}
    response = app.test_client().post("/cds-services/calcinosis-patient-view", json=body,
                                      headers={"Host": "evil.example.com"})
    (card,) = response.get_json()["cards"]
    assert card["source"]["url"].startswith("https://cds.example.org/")
    assert all(link["url"].startswith("https://cds.example.org/") for link in card["links"])


def _segment(value: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


@pytest.mark.parametrize("token", [
    "not.a.jwt", "onlyone", "two.segments", "four.seg.ments.here", "..", "é.é.é",
    f"{_segment(b'[1]')}.{_segment(b'{}')}.sig",                    # a header that is not an object
    f"{_segment(b'{}')}.{_segment(b'null')}.sig",                   # claims that are not an object
    f"{_segment(b'{}')}.{_segment(bytes([0xff, 0xfe]))}.sig",       # claims that are not UTF-8
    f"{_segment(b'[' * 100_000)}.{_segment(b'{}')}.sig",            # nested beyond Python's recursion
])
def test_a_token_that_is_not_three_base64url_json_objects_is_refused_before_any_key_is_looked_up(
        secured_client, token):
    from service.hooks.jwt_auth import unverified_parts

    with pytest.raises(AuthenticationError):
        unverified_parts(token)
    response = _call(secured_client, token)
    assert response.status_code == 401 and response.data == b""


def test_the_unverified_parts_are_the_header_and_claims_as_signed(es384_key):
    """They only pick the key: PyJWT reads the token again, strictly, as it verifies it."""
    import jwt as pyjwt

    from service.hooks.jwt_auth import unverified_parts

    token = es384_key.sign(SERVICE_URL)
    header, claims = unverified_parts(token)
    assert header == pyjwt.get_unverified_header(token)
    assert claims == pyjwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == EHR_ISSUER and header["alg"] == "ES384"


def test_a_token_whose_signature_segment_is_not_base64url_is_refused(secured_client, es384_key):
    """The quick read never looks at the signature; the verification still refuses a mangled one."""
    token = es384_key.sign(DISCOVERY_URL)
    assert _call(secured_client, token[: token.rindex(".") + 1] + "!!!!" + token[token.rindex(".") + 5:]).status_code == 401

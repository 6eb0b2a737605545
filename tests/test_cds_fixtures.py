"""The example requests of fhir_fixtures/cds-hooks: every response conforms to CDS Hooks 2.0 and matches its golden file."""

from __future__ import annotations

import pytest

from service.hooks import hook_call
from tests.support.cds_app import FakeCore, calcium_gluconate_alert, metastatic_assessment
from tests.support.cds_fixtures import (FIXTURES, HOOKS, comparable, expected_response_for, fixture_app,
                                        request_for, responses_through_the_core)
from tests.support.cds_spec import card_violations


@pytest.fixture(scope="module")
def core_answers(tmp_path_factory):
    return responses_through_the_core(tmp_path_factory.mktemp("cds-fixtures"))


@pytest.mark.parametrize("hook", HOOKS)
def test_every_example_request_is_shaped_like_the_spec_examples(hook):
    body = request_for(hook)
    assert body["hook"] == hook
    assert {"hookInstance", "fhirServer", "fhirAuthorization", "context", "prefetch"} <= set(body)
    assert body["context"]["patientId"] == body["prefetch"]["patient"]["id"]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_answers_with_spec_conformant_cards(hook, tmp_path, monkeypatch):
    fake = FakeCore(metastatic_assessment("esrd-7301", order_alerts=(
        calcium_gluconate_alert("MedicationRequest/draft-ca-gluconate"),)))
    monkeypatch.setattr(hook_call, "core_assess", fake)
    response = fixture_app(tmp_path).test_client().post(f"/cds-services/calcinosis-{hook}", json=request_for(hook))
    assert response.status_code == 200
    body = response.get_json()
    assert body["cards"], "this patient has something to say"
    assert card_violations(body) == []


@pytest.mark.parametrize("hook", HOOKS)
def test_the_real_core_answers_each_example_as_its_golden_file(core_answers, hook):
    answer = core_answers[hook]
    assert answer["status"] == 200, answer
    assert card_violations(answer["body"]) == []
    if not (FIXTURES / f"{hook}-response.json").exists():
        pytest.fail(f"no golden file for {hook}: run python -m tests.support.cds_fixtures --write and review it")
    assert comparable(answer["body"]) == comparable(expected_response_for(hook))


def test_golden_files_conform_to_the_spec():
    for hook in HOOKS:
        path = FIXTURES / f"{hook}-response.json"
        if path.exists():
            assert card_violations(expected_response_for(hook)) == [], hook

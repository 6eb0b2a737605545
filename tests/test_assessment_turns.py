"""Two requests in one worker take turns at the assessment (CPU-bound: run together, both finish late),
while everything else of a request (reading it, fetching, building cards) stays concurrent."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from conftest import assess_fixture
from service.hooks import hook_call
from service.web.app_state import app_state
from tests.support.cds_app import FakeCore, make_app, metastatic_assessment

FIXTURES = Path(__file__).resolve().parents[1] / "fhir_fixtures" / "cds-hooks"


class _Overlap:
    """Wraps an assessment: counts how many run at once, each holding on long enough to be caught."""

    def __init__(self, assess) -> None:
        self.assess = assess
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.05)
            return self.assess(*args, **kwargs)
        finally:
            with self.lock:
                self.running -= 1


def _in_two_threads(call) -> list:
    answers: list = []
    threads = [threading.Thread(target=lambda: answers.append(call())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return answers


def test_two_hook_calls_at_once_are_both_answered_one_assessment_after_the_other(tmp_path, monkeypatch):
    request = json.loads((FIXTURES / "patient-view-request.json").read_text())
    core = _Overlap(FakeCore(metastatic_assessment(request["context"]["patientId"])))
    monkeypatch.setattr(hook_call, "core_assess", core)
    app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3")})

    answers = _in_two_threads(lambda: app.test_client().post("/cds-services/calcinosis-patient-view", json=request))

    assert [answer.status_code for answer in answers] == [200, 200]
    assert all(answer.get_json()["cards"] for answer in answers)
    assert core.most == 1


def test_two_posted_bundles_at_once_are_both_assessed_one_after_the_other(tmp_path, monkeypatch):
    app = make_app({"CDS_REQUIRE_JWT": False, "CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3")})
    with app.app_context():
        assessor = app_state().assessor
    overlap = _Overlap(assessor.assess)
    monkeypatch.setattr(assessor, "assess", overlap)
    body = assess_fixture("04").read_bytes()

    answers = _in_two_threads(lambda: app.test_client().post("/fhir/$assess", data=body,
                                                             headers={"Content-Type": "application/fhir+json"}))

    assert [answer.status_code for answer in answers] == [200, 200]
    assert all(answer.get_json()["resourceType"] == "Bundle" for answer in answers)
    assert overlap.most == 1

"""`VALIDATE_OUTPUTS`: runtime validation of outputs is off by default and one setting away.

Off, the builders' output is returned as built (the property tests check it is valid R4). On, every
resource is validated before it leaves, and one that fails is a 500 OperationOutcome whose log line
names the resource and element, never the patient's data.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest

from service.assessment_model import AssessmentRun
from test_outputs_scenarios import metastatic_high

ASSESS = "/fhir/$assess"
BUNDLE = {"resourceType": "Bundle", "type": "collection", "entry": []}


def _app(tmp_path, monkeypatch, **settings):
    from service import create_app
    from service.pipeline import assess

    # A core defect the builders cannot see: an Observation handed on as the calcinosis Condition.
    defective = dataclasses.replace(metastatic_high(), calcinosis_condition="Observation/ca-1")
    monkeypatch.setattr(assess.Assessor, "assess",
                        lambda self, bundle, *, now=None, data_gaps=(): AssessmentRun((defective,)))
    return create_app({"CDS_FEEDBACK_DB": str(tmp_path / "f.sqlite3"), **settings}).test_client()


def test_outputs_are_not_validated_at_runtime_by_default(tmp_path, monkeypatch):
    response = _app(tmp_path, monkeypatch).post(ASSESS, json=BUNDLE)
    assert response.status_code == 200
    risk = response.get_json()["entry"][0]["resource"]
    assert risk["condition"] == {"reference": "Observation/ca-1"}


@pytest.mark.parametrize("value", [True, "true"])
def test_with_validation_on_an_invalid_output_is_a_500_naming_the_element_in_the_log(tmp_path, monkeypatch, caplog,
                                                                                     value):
    caplog.set_level(logging.ERROR)
    response = _app(tmp_path, monkeypatch, VALIDATE_OUTPUTS=value).post(ASSESS, json=BUNDLE)
    assert response.status_code == 500
    assert response.get_json()["resourceType"] == "OperationOutcome"
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "OutputValidationError at RiskAssessment/" in logged and ".condition" in logged


def test_a_value_that_is_not_true_or_false_stops_the_service(tmp_path, monkeypatch):
    from service.errors import ConfigError

    with pytest.raises(ConfigError, match="VALIDATE_OUTPUTS"):
        _app(tmp_path, monkeypatch, VALIDATE_OUTPUTS="yes")

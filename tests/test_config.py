"""Configuration layers, and bad values stopping the service at start with the key named."""

from __future__ import annotations

import pytest

from service.config import load_config
from service.errors import ConfigError


def test_environment_overrides_defaults_and_the_dict_overrides_the_environment():
    environ = {"CALCINOSIS_LOOKBACK_DAYS": "180", "CALCINOSIS_CDS_TRUSTED_ISSUERS": '{"https://ehr": {"jwks_url": "https://ehr/jwks"}}'}
    config = load_config({"LOOKBACK_DAYS": 90}, environ=environ)
    assert config["LOOKBACK_DAYS"] == 90
    assert config["CDS_TRUSTED_ISSUERS"] == {"https://ehr": {"jwks_url": "https://ehr/jwks"}}
    assert load_config(environ=environ)["LOOKBACK_DAYS"] == 180
    assert load_config(environ={})["LOOKBACK_DAYS"] == 365


@pytest.mark.parametrize("raw", ["", "null", "0", "[]", "disabled", "no"])
def test_jwt_checks_are_never_switched_off_by_an_empty_or_mistyped_value(raw):
    with pytest.raises(ConfigError) as caught:
        load_config(environ={"CALCINOSIS_CDS_REQUIRE_JWT": raw})
    assert "CDS_REQUIRE_JWT" in str(caught.value)


@pytest.mark.parametrize("raw, expected", [("false", False), ("False", False), ("true", True), ("TRUE", True)])
def test_jwt_checks_switch_only_on_an_explicit_boolean(raw, expected):
    assert load_config(environ={"CALCINOSIS_CDS_REQUIRE_JWT": raw})["CDS_REQUIRE_JWT"] is expected


@pytest.mark.parametrize("key, raw", [
    ("MAX_BODY_BYTES", "20MB"), ("MAX_BODY_BYTES", "0"), ("LOOKBACK_DAYS", "-5"), ("LOOKBACK_DAYS", "one year"),
    ("MAX_PATIENTS_PER_REQUEST", "true"), ("EVALUATION_TIME", "yesterday"), ("LOG_LEVEL", "LOUD"),
])
def test_unusable_values_stop_the_service_at_start_naming_the_key(key, raw):
    with pytest.raises(ConfigError) as caught:
        load_config(environ={f"CALCINOSIS_{key}": raw})
    assert f"CALCINOSIS_{key}" in str(caught.value)


def test_create_app_refuses_a_bad_value_instead_of_failing_every_request(tmp_path):
    from service import create_app

    with pytest.raises(ConfigError):
        create_app({"MAX_BODY_BYTES": "20MB", "CDS_FEEDBACK_DB": str(tmp_path / "f.db")})

"""Every setting in one typed model: checked at start, unknown names refused, documented in the README.

An operator who mistypes a value or a name finds out when the service starts, from one line naming
the key, not from a 500 on every hook call or a setting silently ignored.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from service.config import Settings, load_config
from service.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

# The defaults as they stood before the settings became one model: the model must not change them.
DEFAULTS_BEFORE = {
    "MAX_BODY_BYTES": 20 * 1024 * 1024,
    "MAX_PATIENTS_PER_REQUEST": 100,
    "MAX_ASSESSED_RESOURCES": 20000,
    "LOOKBACK_DAYS": 365,
    "RULE_LIBRARY": str(ROOT / "service" / "knowledge" / "CalcinosisCutis.cql"),
    "VALUESET_DIR": str(ROOT / "service" / "knowledge" / "valuesets"),
    "MODEL_INFO": str(ROOT / "service" / "knowledge" / "model.json"),
    "BIBLIOGRAPHY": str(ROOT / "service" / "knowledge" / "bibliography.json"),
    "PUBLIC_BASE_URL": None,
    "EVALUATION_TIME": None,
    "LOG_LEVEL": "INFO",
    # Added later, each with its default here:
    "VALIDATE_OUTPUTS": False,
    "SERVE_WORKERS": None,
    "SERVE_THREADS": 2,
    "SERVE_BACKLOG": 1024,
    "CDS_REQUIRE_JWT": True,
    "CDS_TRUSTED_ISSUERS": {},
    "CDS_JWT_ALGORITHMS": ["ES384", "RS384", "ES256", "RS256", "ES512", "RS512", "PS384", "PS256", "PS512"],
    "CDS_JWT_LEEWAY_SECONDS": 60,
    "CDS_JWT_MAX_AGE_SECONDS": 600,
    "CDS_JWKS_CACHE_SECONDS": 3600,
    "CDS_JWKS_MIN_REFETCH_SECONDS": 60,
    "CDS_FHIR_SERVER_ALLOWLIST": [],
    "CDS_FHIR_CONNECT_TIMEOUT_SECONDS": 3.05,
    "CDS_FHIR_READ_TIMEOUT_SECONDS": 10.0,
    "CDS_FHIR_MAX_PAGES": 10,
    "CDS_FHIR_TOTAL_TIMEOUT_SECONDS": 20.0,
    "CDS_FHIR_MAX_RESPONSE_BYTES": 10 * 1024 * 1024,
    "CDS_MAX_DRAFT_ORDERS": 200,
    # added with the feedback limits (new keys, so no earlier default to keep)
    "CDS_MAX_FEEDBACK_ENTRIES": 100,
    "CDS_CARD_RETENTION_DAYS": 30,
    "CDS_CORS_ORIGINS": ["https://sandbox.cds-hooks.org"],
    # the /ui/ page: its CDS Hooks try-out and report links off unless an operator turns them on
    "UI_SANDBOX": False,
    "UI_REPORT_LINKS": False,
    "UI_REPORT_TTL_SECONDS": 600,
    "UI_REPORT_DB": None,
    "UI_FIXTURE_DIR": None,
    # added since, each off or unchanged in effect for a service that does not set it
    "ASSESS_AUTHORIZATION": None,
    "ASSESS_CPU_BUDGET_SECONDS": 4.0,
    "CDS_FHIR_MAX_CONCURRENT_READS_PER_SERVER": 4,
    # the Bulk Data $export client of screening (read only by `calcinosis-cds screen URL`)
    "SCREEN_EXPORT_BEARER_TOKEN": None,
    "SCREEN_EXPORT_TIMEOUT_SECONDS": 21600.0,
    "SCREEN_EXPORT_MAX_POLL_WAIT_SECONDS": 120.0,
    "SCREEN_EXPORT_MAX_FILE_BYTES": 4 * 1024 ** 3,
    "SCREEN_EXPORT_MAX_TOTAL_BYTES": 32 * 1024 ** 3,
    "SCREEN_EXPORT_ATTEMPTS": 3,
}


@pytest.fixture
def clean_environment(monkeypatch, tmp_path):
    """No CALCINOSIS_* variable of the caller's shell leaks in; the feedback file goes to a temporary folder."""
    import os

    for name in list(os.environ):
        if name.startswith("CALCINOSIS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path


def _create_app(config: dict[str, Any] | None = None):
    from service import create_app

    return create_app(config)


def test_the_defaults_are_those_the_service_always_had(clean_environment):
    config = load_config()
    feedback_db = config.pop("CDS_FEEDBACK_DB")
    assert config == DEFAULTS_BEFORE
    assert feedback_db == str(clean_environment / "data" / "calcinosis-cds" / "cds-feedback.sqlite3")


def test_the_model_covers_exactly_the_keys_the_configuration_holds(clean_environment):
    assert set(Settings.model_fields) == set(load_config())
    for name, field in Settings.model_fields.items():
        assert field.description and "\n" not in field.description, name


@pytest.mark.parametrize("key, raw, expected", [
    ("CDS_MAX_DRAFT_ORDERS", "lots", "whole number"),
    ("CDS_MAX_DRAFT_ORDERS", "0", "above 0"),
    ("CDS_FHIR_MAX_PAGES", "2.5", "whole number"),
    ("CDS_FHIR_MAX_RESPONSE_BYTES", "true", "whole number"),
    ("CDS_FHIR_CONNECT_TIMEOUT_SECONDS", "0", "above 0"),
    ("CDS_FHIR_READ_TIMEOUT_SECONDS", "soon", "number"),
    ("CDS_FHIR_TOTAL_TIMEOUT_SECONDS", "-1", "above 0"),
    ("CDS_FHIR_MAX_CONCURRENT_READS_PER_SERVER", "0", "above 0"),
    ("ASSESS_CPU_BUDGET_SECONDS", "cheap", "number"),
    ("ASSESS_AUTHORIZATION", '{"issuer": "https://auth.example.org"}', "jwks_url"),
    ("CDS_JWT_LEEWAY_SECONDS", "-5", "0 or more"),
    ("CDS_JWT_MAX_AGE_SECONDS", "0", "above 0"),
    ("CDS_JWKS_CACHE_SECONDS", "an hour", "number"),
    ("CDS_JWT_ALGORITHMS", "[]", "at least one"),
    ("CDS_TRUSTED_ISSUERS", '["https://ehr.example.org"]', "object"),
    ("CDS_FHIR_SERVER_ALLOWLIST", '["ehr.example.org/fhir"]', "http"),
    ("CDS_CORS_ORIGINS", '["https://sandbox.cds-hooks.org/path"]', "origin"),
    ("PUBLIC_BASE_URL", "cds.example.org", "http"),
    ("CDS_FEEDBACK_DB", '""', "path"),
    ("RULE_LIBRARY", "42", "path"),
    ("MAX_ASSESSED_RESOURCES", "many", "whole number"),
    ("CDS_MAX_FEEDBACK_ENTRIES", "0", "from 1 to 10000"),
    ("CDS_MAX_FEEDBACK_ENTRIES", "100001", "from 1 to 10000"),
    ("CDS_CARD_RETENTION_DAYS", "a month", "whole number"),
])
def test_a_value_of_the_wrong_kind_stops_the_app_with_one_line_naming_the_key(clean_environment, monkeypatch,
                                                                             key, raw, expected):
    monkeypatch.setenv(f"CALCINOSIS_{key}", raw)
    with pytest.raises(ConfigError) as caught:
        _create_app({"CDS_FEEDBACK_DB": str(clean_environment / "f.sqlite3")} if key != "CDS_FEEDBACK_DB" else None)
    message = str(caught.value)
    assert "\n" not in message
    assert f"CALCINOSIS_{key}" in message and expected in message


def test_a_wrong_value_given_to_create_app_is_named_by_its_key(clean_environment):
    with pytest.raises(ConfigError) as caught:
        _create_app({"CDS_MAX_DRAFT_ORDERS": "lots", "CDS_FEEDBACK_DB": str(clean_environment / "f.sqlite3")})
    assert str(caught.value).startswith("configuration CDS_MAX_DRAFT_ORDERS")
    assert "whole number" in str(caught.value)


def test_a_misspelt_environment_variable_is_refused_with_the_closest_key(clean_environment, monkeypatch):
    monkeypatch.setenv("CALCINOSIS_LOOKBAK_DAYS", "180")
    with pytest.raises(ConfigError) as caught:
        _create_app({"CDS_FEEDBACK_DB": str(clean_environment / "f.sqlite3")})
    assert str(caught.value) == "unknown setting CALCINOSIS_LOOKBAK_DAYS (did you mean CALCINOSIS_LOOKBACK_DAYS?)"


def test_an_unknown_environment_variable_without_a_close_key_is_refused_without_a_guess(clean_environment):
    with pytest.raises(ConfigError) as caught:
        load_config(environ={"CALCINOSIS_COLOUR_SCHEME": "dark"})
    assert str(caught.value) == "unknown setting CALCINOSIS_COLOUR_SCHEME"


def test_a_misspelt_key_in_the_dict_given_to_create_app_is_refused_likewise(clean_environment):
    with pytest.raises(ConfigError) as caught:
        _create_app({"LOOKBAK_DAYS": 30, "CDS_FEEDBACK_DB": str(clean_environment / "f.sqlite3")})
    assert str(caught.value) == "unknown setting LOOKBAK_DAYS (did you mean LOOKBACK_DAYS?)"


def test_the_variables_of_the_test_tooling_are_not_taken_for_settings(clean_environment, monkeypatch):
    monkeypatch.setenv("CALCINOSIS_SHARED_DIR", str(clean_environment))
    monkeypatch.setenv("CALCINOSIS_UPDATE_GOLDEN", "0")
    monkeypatch.setenv("CALCINOSIS_SEKMET_VENV", str(clean_environment / "venv"))
    assert load_config()["LOOKBACK_DAYS"] == 365


def test_every_calcinosis_variable_the_repository_reads_is_a_setting_or_declared_tooling():
    from service.config import TOOLING_VARIABLES

    read = set()
    for folder in ("service", "tests", "bench", "fhir_fixtures"):
        for path in (ROOT / folder).rglob("*.py"):
            read |= set(re.findall(r"environ(?:\.get)?[\[(]\s*[\"']CALCINOSIS_([A-Z0-9_]+)", path.read_text("utf-8")))
    assert read, "the scan found nothing: its pattern is out of date"
    assert read <= set(Settings.model_fields) | {name.removeprefix("CALCINOSIS_") for name in TOOLING_VARIABLES}


def test_a_retired_setting_is_not_refused_but_no_longer_read(clean_environment):
    config = load_config({"CDS_JKU_ALLOWLIST": ["https://other.example.com/jwks.json"]}, environ={})
    assert "CDS_JKU_ALLOWLIST" not in config


def test_the_configuration_does_not_import_the_cds_hooks():
    code = "import sys, service.config; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert not any(name.startswith("service.hooks") for name in out.stdout.split())
    assert not (ROOT / "service" / "hooks" / "settings.py").exists() or \
        "DEFAULTS" not in (ROOT / "service" / "hooks" / "settings.py").read_text("utf-8")


# --- the README's configuration tables agree with the model --------------------------------------

def _readme_rows() -> dict[str, str]:
    """Every `| key | default | meaning |` table row of the README: key -> its default cell."""
    rows: dict[str, str] = {}
    in_table = False
    for line in (ROOT / "README.md").read_text("utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if cells[:3] == ["key", "default", "meaning"]:
            in_table = True
            continue
        if not cells:
            in_table = False
            continue
        if in_table and not set(cells[0]) <= {"-"}:
            keys = re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0])
            assert len(keys) == 1, f"one key per row: {line}"
            assert keys[0] not in rows, f"{keys[0]} documented twice"
            rows[keys[0]] = cells[1]
    return rows


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, str):
        path = Path(value)
        return str(path.relative_to(ROOT)) if path.is_absolute() and path.is_relative_to(ROOT) else value
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 10.0 seconds reads as 10
    return json.dumps(value)


def test_the_readme_documents_every_setting_and_nothing_else(clean_environment):
    assert set(_readme_rows()) == set(Settings.model_fields)


def test_the_readme_defaults_agree_with_the_model(clean_environment, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", "$XDG_DATA_HOME")
    defaults = load_config(environ={})
    for key, cell in _readme_rows().items():
        shown = "unset" if cell.startswith("unset") else re.match(r"`([^`]*)`", cell).group(1)
        assert shown == _shown(defaults[key]), key


def test_the_readme_keys_named_in_prose_are_settings():
    """A key the text mentions in backticks (CDS_*, or a table's neighbour) must exist in the model."""
    text = (ROOT / "README.md").read_text("utf-8")
    named = set(re.findall(r"`(?:CALCINOSIS_)?((?:CDS|MAX|LOOKBACK|PUBLIC|EVALUATION|LOG|RULE|VALUESET|MODEL|BIBLIO|ASSESS)"
                           r"_[A-Z0-9_]*[A-Z0-9])(?=[`=\s])", text))
    assert "CDS_MAX_DRAFT_ORDERS" in named
    from service.config import RETIRED

    assert named <= set(Settings.model_fields) | set(RETIRED), named - set(Settings.model_fields)


def test_the_cli_refuses_a_misspelt_variable_in_one_line_without_a_traceback(clean_environment, monkeypatch, capsys):
    from service.cli import main

    monkeypatch.setenv("CALCINOSIS_LOOKBAK_DAYS", "180")
    bundle = ROOT / "fhir_fixtures" / "assess" / "04-metastatic-esrd.json"
    assert main(["assess", str(bundle)]) == 1
    err = capsys.readouterr().err
    assert err == "error: unknown setting CALCINOSIS_LOOKBAK_DAYS (did you mean CALCINOSIS_LOOKBACK_DAYS?)\n"

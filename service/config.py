"""Configuration in layers: built-in defaults, then `CALCINOSIS_*` environment, then the caller's dict.

Environment values are JSON-decoded when they parse (`CALCINOSIS_CDS_REQUIRE_JWT=false`,
`CALCINOSIS_CDS_TRUSTED_ISSUERS='{"https://ehr": {"jwks_url": "..."}}'`) and kept as
strings otherwise, so operators can set any key without a per-key parser.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError

ENV_PREFIX = "CALCINOSIS_"
PACKAGE_DIR = Path(__file__).resolve().parent

CORE_DEFAULTS: dict[str, Any] = {
    # Largest request body accepted by /fhir/$assess and /cds-services (bytes): 413 above it.
    "MAX_BODY_BYTES": 20 * 1024 * 1024,
    # Work one request may ask for: above these a 413 OperationOutcome asks to split the Bundle.
    "MAX_PATIENTS_PER_REQUEST": 100,
    "MAX_ASSESSED_RESOURCES": 20000,
    # How far back a result still counts as current (a CQL duration literal passed to the library).
    "LOOKBACK_DAYS": 365,
    # The rule library and its value sets; override to run a locally edited copy.
    "RULE_LIBRARY": str(PACKAGE_DIR / "knowledge" / "CalcinosisCutis.cql"),
    "VALUESET_DIR": str(PACKAGE_DIR / "knowledge" / "valuesets"),
    "MODEL_INFO": str(PACKAGE_DIR / "knowledge" / "model.json"),
    # The publications the rule library cites by key (rendered into every citation of the outputs).
    "BIBLIOGRAPHY": str(PACKAGE_DIR / "knowledge" / "bibliography.json"),
    # Public URL the service is reached at (behind a proxy); used for links and JWT `aud`.
    "PUBLIC_BASE_URL": None,
    # Fixed evaluation instant (ISO 8601) instead of the clock: reproducible runs against golden files.
    "EVALUATION_TIME": None,
    "LOG_LEVEL": "INFO",
}


def _decode_env(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _component_defaults() -> dict[str, Any]:
    """Defaults owned by the CDS Hooks surface, merged under the core ones."""
    from .hooks.settings import DEFAULTS as hook_defaults

    return dict(hook_defaults)


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError("must be a whole number above 0")
    return value


def _optional_positive_int(value: Any) -> int | None:
    return None if value in (None, "") else _positive_int(value)


def _strict_bool(value: Any) -> bool:
    """Only an explicit true or false: an empty or mistyped value must not switch a check off."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError("must be true or false")


def _optional_instant(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time such as 2026-11-15T09:00:00Z")
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("must be an ISO 8601 date-time such as 2026-11-15T09:00:00Z") from None
    return value


def _log_level(value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return value.upper()


# Checked when the configuration is built, so a bad value stops the service at start with the
# key named, instead of failing (or silently weakening a check) on every request.
_CHECKS = {
    "MAX_BODY_BYTES": _positive_int,
    "LOOKBACK_DAYS": _optional_positive_int,
    "MAX_PATIENTS_PER_REQUEST": _positive_int,
    "MAX_ASSESSED_RESOURCES": _positive_int,
    "EVALUATION_TIME": _optional_instant,
    "LOG_LEVEL": _log_level,
    "CDS_REQUIRE_JWT": _strict_bool,
}


def _checked(config: dict[str, Any]) -> dict[str, Any]:
    for key, check in _CHECKS.items():
        if key in config:
            try:
                config[key] = check(config[key])
            except ValueError as error:
                raise ConfigError(f"configuration {key} (environment {ENV_PREFIX}{key}) = {config[key]!r}: "
                                  f"{error}") from None
    return config


def load_config(overrides: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Build the effective configuration: defaults < environment < overrides. Raises ConfigError."""
    config: dict[str, Any] = {}
    config.update(_component_defaults())
    config.update(CORE_DEFAULTS)
    env = os.environ if environ is None else environ
    for key, raw in env.items():
        if key.startswith(ENV_PREFIX) and len(key) > len(ENV_PREFIX):
            config[key[len(ENV_PREFIX):]] = _decode_env(raw)
    if overrides:
        config.update(overrides)
    return _checked(config)

"""Configuration in layers: built-in defaults, then `CALCINOSIS_*` environment, then the caller's dict.

Environment values are JSON-decoded when they parse (`CALCINOSIS_CDS_REQUIRE_JWT=false`,
`CALCINOSIS_CDS_TRUSTED_ISSUERS='{"https://ehr": {"jwks_url": "..."}}'`) and kept as
strings otherwise, so operators can set any key without a per-key parser.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

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


def load_config(overrides: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Build the effective configuration: defaults < environment < overrides."""
    config: dict[str, Any] = {}
    config.update(_component_defaults())
    config.update(CORE_DEFAULTS)
    env = os.environ if environ is None else environ
    for key, raw in env.items():
        if key.startswith(ENV_PREFIX) and len(key) > len(ENV_PREFIX):
            config[key[len(ENV_PREFIX):]] = _decode_env(raw)
    if overrides:
        config.update(overrides)
    return config

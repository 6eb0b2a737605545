"""Every setting of the service in one typed model: default, type, bounds and meaning in one place.

Layers, each replacing (never merging into) the one before: the model's defaults, then environment
variables `CALCINOSIS_<KEY>`, then the dict given to `service.create_app(config)`. Environment values
are JSON-decoded when they parse (`CALCINOSIS_CDS_REQUIRE_JWT=false`, `CALCINOSIS_LOOKBACK_DAYS=365`,
`CALCINOSIS_CDS_TRUSTED_ISSUERS='{"https://ehr": {"jwks_url": "..."}}'`) and kept as strings
otherwise, so operators can set any key without a per-key parser.

Everything is checked when the configuration is built, so a bad value or a misspelt name stops the
service at start with one line naming the key, instead of failing (or silently weakening a check)
on every request. The layering is done here rather than by pydantic-settings' own environment
source because that source deep-merges dictionaries across layers (a caller's
`CDS_TRUSTED_ISSUERS` must replace the environment's, not add to it) and JSON-decodes only
structured fields.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Mapping
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, PrivateAttr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError

log = logging.getLogger(__name__)

ENV_PREFIX = "CALCINOSIS_"
PACKAGE_DIR = Path(__file__).resolve().parent

# `CALCINOSIS_*` variables read by the test and benchmark tooling, not by the service: they share the
# prefix so one shell profile holds them all, and the service must not refuse to start beside them.
TOOLING_VARIABLES: frozenset[str] = frozenset({
    "CALCINOSIS_SHARED_DIR",      # folder of the background material some tests read
    "CALCINOSIS_UPDATE_GOLDEN",   # 1: rewrite the golden outputs instead of comparing them
    "CALCINOSIS_SEKMET_VENV",     # virtual environment of the real FHIR server one test starts
})

# Settings that once existed: accepted with a warning saying what replaced them, never read.
RETIRED: dict[str, str] = {
    "CDS_JKU_ALLOWLIST": "list each issuer's jku URLs under its entry in CDS_TRUSTED_ISSUERS",
}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SERVE_THREADS_DEFAULT = 2
SERVE_BACKLOG_DEFAULT = 1024


def default_feedback_db() -> str:
    """One fixed place the app and the CLI agree on, outside the code: $XDG_DATA_HOME/calcinosis-cds."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(data_home) / "calcinosis-cds" / "cds-feedback.sqlite3")


# --- value checks shared by several settings --------------------------------------------------------

def _empty_is_unset(value: Any) -> Any:
    return None if value == "" else value


def _explicit_bool(value: Any) -> Any:
    """Only an explicit true or false: an empty or mistyped value must not switch a check off."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _decoded_json(value: Any) -> Any:
    """A JSON text given in the dict layer counts as what it encodes, as it would from the environment."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _one_or_many(value: Any) -> Any:
    """A single string is a one-element list (never a string to iterate character by character)."""
    value = _decoded_json(value)
    if isinstance(value, str):
        return [value]
    if isinstance(value, tuple):
        return list(value)
    return value


def _path_text(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("empty")
    return value


def _instant(value: str | None) -> str | None:
    if value is not None:
        datetime.fromisoformat(value.replace("Z", "+00:00"))  # ValueError when it is not one
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL")
    return value


def _optional_http_url(value: str | None) -> str | None:
    return None if value is None else _http_url(value)


def _http_urls(values: list[str]) -> list[str]:
    return [_http_url(value) for value in values]


def _origins(values: list[str]) -> list[str]:
    for value in values:
        parts = urlsplit(value)
        if value != "*" and (parts.scheme not in ("http", "https") or not parts.hostname
                             or parts.path not in ("", "/") or parts.query or parts.fragment):
            raise ValueError("not an origin")
    return values


def _log_level(value: str) -> str:
    if value not in LOG_LEVELS:
        raise ValueError("unknown level")
    return value


ASSESS_AUTHORIZATION_KEYS = frozenset({"issuer", "jwks_url", "jwks", "scope", "audience"})
DEFAULT_ASSESS_SCOPE = "system/RiskAssessment.write"


def _assess_authorization(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """Unset, or an issuer with its keys (one of jwks_url or jwks), the scope required and the audience."""
    if value is None:
        return None
    unknown = set(value) - ASSESS_AUTHORIZATION_KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    if not isinstance(value.get("issuer"), str) or not value["issuer"].strip():
        raise ValueError("issuer missing")
    if ("jwks_url" in value) == ("jwks" in value):
        raise ValueError("exactly one of jwks_url and jwks is needed")
    if "jwks_url" in value:
        if not isinstance(value["jwks_url"], str):
            raise ValueError("jwks_url is not a URL")
        _http_url(value["jwks_url"])
    elif not isinstance(value["jwks"], dict) or not isinstance(value["jwks"].get("keys"), list):
        raise ValueError("jwks is not a JWKS")
    scope = value.get("scope", DEFAULT_ASSESS_SCOPE)
    if not isinstance(scope, str) or not scope or any(char.isspace() for char in scope):
        raise ValueError("scope is not one scope")
    audience = value.get("audience")
    if audience is not None and (not isinstance(audience, str) or not audience):
        raise ValueError("audience is not a string")
    return dict(value, scope=scope)


def _setting(default: Any = None, *, description: str, expected: str, default_factory: Any = None,
             **bounds: Any) -> Any:
    """A field with its one-line meaning and the words the start-up error uses for what it expects."""
    extra = {"expected": expected}
    if default_factory is not None:
        return Field(default_factory=default_factory, description=description, json_schema_extra=extra, **bounds)
    return Field(default, description=description, json_schema_extra=extra, **bounds)


_WHOLE = "a whole number above 0"
_SECONDS = "a number of seconds above 0"
_SECONDS_OR_ZERO = "a number of seconds, 0 or more"

PathSetting = Annotated[str, BeforeValidator(_path_text), AfterValidator(_non_empty)]
UrlList = Annotated[list[str], BeforeValidator(_one_or_many)]


class Settings(BaseSettings):
    """The service's configuration; see the module docstring for the layers and the README for the tables."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", strict=True,
                                      validate_default=True)

    # --- requests and the assessment ---
    MAX_BODY_BYTES: int = _setting(
        20 * 1024 * 1024, gt=0, expected=_WHOLE,
        description="Largest request body accepted by /fhir/$assess and /cds-services (bytes); 413 above it.")
    MAX_PATIENTS_PER_REQUEST: int = _setting(
        100, gt=0, expected=_WHOLE,
        description="More patients in one Bundle: a 413 OperationOutcome asking to split it.")
    MAX_ASSESSED_RESOURCES: int = _setting(
        20000, gt=0, expected=_WHOLE,
        description="More resources the rules read (Observations, Conditions...) in one Bundle: 413.")
    LOOKBACK_DAYS: Annotated[int | None, BeforeValidator(_empty_is_unset)] = _setting(
        365, gt=0, expected="a whole number of days above 0, or unset",
        description="How long a result stays current (the rule library's Lookback parameter); unset: the library's.")
    RULE_LIBRARY: PathSetting = _setting(
        str(PACKAGE_DIR / "knowledge" / "CalcinosisCutis.cql"), expected="the path of a .cql file",
        description="The rule library; override to run a locally edited copy.")
    VALUESET_DIR: PathSetting = _setting(
        str(PACKAGE_DIR / "knowledge" / "valuesets"), expected="the path of a folder of value-set JSON",
        description="The value sets the rule library and the CDS Hooks test grouping read.")
    MODEL_INFO: PathSetting = _setting(
        str(PACKAGE_DIR / "knowledge" / "model.json"), expected="the path of a model JSON file",
        description="The data model the rule library is type-checked against.")
    BIBLIOGRAPHY: PathSetting = _setting(
        str(PACKAGE_DIR / "knowledge" / "bibliography.json"), expected="the path of a bibliography JSON file",
        description="The publications the rule library cites by key (rendered into every citation).")
    PUBLIC_BASE_URL: Annotated[str | None, BeforeValidator(_empty_is_unset), AfterValidator(_optional_http_url)] = \
        _setting(None, expected="an http(s) URL such as https://cds.example.org, or unset",
                 description="The URL clients reach the service at (behind a proxy): card links and the JWT aud.")
    EVALUATION_TIME: Annotated[str | None, BeforeValidator(_empty_is_unset), AfterValidator(_instant)] = _setting(
        None, expected="an ISO 8601 date-time such as 2026-11-15T09:00:00Z, or unset",
        description="A fixed instant to assess at instead of the clock: reproducible runs against golden files.")
    LOG_LEVEL: Annotated[str, BeforeValidator(_upper), AfterValidator(_log_level)] = _setting(
        "INFO", expected="one of " + ", ".join(LOG_LEVELS),
        description="Level of the service's logs (method, route, status, duration, request id; never bodies).")
    VALIDATE_OUTPUTS: Annotated[bool, BeforeValidator(_explicit_bool)] = _setting(
        False, expected="true or false",
        description="Validate every output resource with fhir.resources.R4B before returning it (the builders "
                    "write valid R4 by construction and the tests check it; this re-checks at a cost per request).")

    # --- serving (`calcinosis-cds serve`; its command-line options take precedence) ---
    SERVE_WORKERS: Annotated[int | None, BeforeValidator(_empty_is_unset)] = _setting(
        None, gt=0, expected="a whole number of processes above 0, or unset (one per core)",
        description="Worker processes of `calcinosis-cds serve`; unset: one per core the service may run on.")
    SERVE_THREADS: int = _setting(
        SERVE_THREADS_DEFAULT, gt=0, expected=_WHOLE,
        description="Threads per worker: requests one worker runs at once (the rest wait their turn).")
    SERVE_BACKLOG: int = _setting(
        SERVE_BACKLOG_DEFAULT, gt=0, expected=_WHOLE,
        description="Connections the kernel queues for each worker before refusing: a burst waits, not times out.")

    ASSESS_AUTHORIZATION: Annotated[dict[str, Any] | None, BeforeValidator(_empty_is_unset),
                                    BeforeValidator(_decoded_json), AfterValidator(_assess_authorization)] = _setting(
        None, expected=('unset, or a JSON object {"issuer": "...", "jwks_url": "https://..." or "jwks": {...}, '
                        '"scope": "system/RiskAssessment.write", "audience": "..."}'),
        description="Require an OAuth 2.0 bearer token (a JWT from this issuer with this scope) on $assess; unset: open.")
    ASSESS_CPU_BUDGET_SECONDS: float = _setting(
        4.0, gt=0, expected=_SECONDS,
        description="CPU one $assess request may cost, estimated up front from its size; above it a 413 before any work.")

    # --- CDS Hooks ---
    CDS_REQUIRE_JWT: Annotated[bool, BeforeValidator(_explicit_bool)] = _setting(
        True, expected="true or false",
        description="Verify the CDS client's JWT on every call; only an explicit false turns it off (development).")
    CDS_TRUSTED_ISSUERS: Annotated[dict[str, dict[str, Any]], BeforeValidator(_decoded_json)] = _setting(
        default_factory=dict,
        expected='a JSON object {"<iss>": {"jwks": {...}} or {"jwks_url": "https://..."}, ...}',
        description='Trusted client issuers with their keys ("jwks" or "jwks_url"; optional "jku" and "sub" lists).')
    CDS_JWT_ALGORITHMS: Annotated[list[str], BeforeValidator(_one_or_many)] = _setting(
        default_factory=lambda: ["ES384", "RS384", "ES256", "RS256", "ES512", "RS512", "PS384", "PS256", "PS512"],
        min_length=1, expected='a list of at least one algorithm name, e.g. ["ES384", "RS384"]',
        description='Signing algorithms accepted; asymmetric only ("none" and HS* are refused whatever is listed).')
    CDS_JWT_LEEWAY_SECONDS: float = _setting(
        60, ge=0, expected=_SECONDS_OR_ZERO, description="Clock skew allowed on exp and iat (seconds).")
    CDS_JWT_MAX_AGE_SECONDS: float = _setting(
        600, gt=0, expected=_SECONDS,
        description="Oldest iat accepted (seconds); the spec asks clients for a 5 minute lifetime.")
    CDS_JWKS_CACHE_SECONDS: float = _setting(
        3600, ge=0, expected=_SECONDS_OR_ZERO,
        description="How long a fetched JWKS is reused before it is fetched again (seconds).")
    CDS_JWKS_MIN_REFETCH_SECONDS: float = _setting(
        60, ge=0, expected=_SECONDS_OR_ZERO,
        description="Shortest time between two JWKS refetches for one issuer on an unknown kid (seconds).")
    CDS_FHIR_SERVER_ALLOWLIST: Annotated[UrlList, AfterValidator(_http_urls)] = _setting(
        default_factory=list, expected='a list of http(s) FHIR base URLs, e.g. ["https://ehr.example.org/fhir"]',
        description="FHIR servers queried with the client's token when prefetch is incomplete; others never.")
    CDS_FHIR_CONNECT_TIMEOUT_SECONDS: float = _setting(
        3.05, gt=0, expected=_SECONDS, description="Connect timeout of each FHIR read (seconds).")
    CDS_FHIR_READ_TIMEOUT_SECONDS: float = _setting(
        10.0, gt=0, expected=_SECONDS, description="Read timeout of each FHIR read (seconds).")
    CDS_FHIR_MAX_PAGES: int = _setting(
        10, gt=0, expected=_WHOLE,
        description="Searchset pages followed per prefetch query; what lies beyond is reported as not read.")
    CDS_FHIR_TOTAL_TIMEOUT_SECONDS: float = _setting(
        20.0, gt=0, expected=_SECONDS,
        description="All FHIR reads of one hook call must end within this (seconds); beyond it a 412.")
    CDS_FHIR_MAX_RESPONSE_BYTES: int = _setting(
        10 * 1024 * 1024, gt=0, expected=_WHOLE,
        description="Largest FHIR response page read (bytes, after decoding); a larger one gives a 412.")
    CDS_FHIR_MAX_CONCURRENT_READS_PER_SERVER: int = _setting(
        4, gt=0, expected=_WHOLE,
        description="FHIR reads waiting on one server at once, per worker process; one more is refused at once (412, busy).")
    CDS_MAX_DRAFT_ORDERS: int = _setting(
        200, gt=0, expected=_WHOLE, description="Most entries accepted in context.draftOrders; more is a 400.")
    CDS_MAX_FEEDBACK_ENTRIES: int = _setting(
        100, gt=0, le=10000, expected="a whole number from 1 to 10000",
        description="Most entries (and accepted suggestions per entry) in one feedback call; more is a 413.")
    CDS_CARD_RETENTION_DAYS: int = _setting(
        30, gt=0, expected=_WHOLE,
        description="Days an issued card's record is kept; feedback on an older card is refused (400).")
    CDS_FEEDBACK_DB: PathSetting = _setting(
        default_factory=default_feedback_db, expected="the path of an SQLite file",
        description="SQLite file for card feedback, the cards issued and the JWT ids used (created on first use).")
    CDS_CORS_ORIGINS: Annotated[list[str], BeforeValidator(_one_or_many), AfterValidator(_origins)] = _setting(
        default_factory=lambda: ["https://sandbox.cds-hooks.org"],
        expected='a list of browser origins such as ["https://sandbox.cds-hooks.org"] (no path), or ["*"]',
        description="Browser origins allowed by CORS on /cds-services (the public CDS Hooks sandbox by default).")

    # --- population screening: the FHIR Bulk Data $export client (`calcinosis-cds screen URL`) ---
    # The server and every file URL must be on CDS_FHIR_SERVER_ALLOWLIST; each request's connect and
    # read timeouts are the CDS_FHIR_* ones, and kick-off, status and manifest answers are capped at
    # CDS_FHIR_MAX_RESPONSE_BYTES like any FHIR response.
    SCREEN_EXPORT_BEARER_TOKEN: Annotated[str | None, BeforeValidator(_empty_is_unset)] = _setting(
        None, repr=False, expected="an access token (text), or unset",
        description="Bearer token sent to the FHIR server's $export, status and (when it requires one) file URLs; "
                    "never logged.")
    SCREEN_EXPORT_TIMEOUT_SECONDS: float = _setting(
        6 * 3600.0, gt=0, expected=_SECONDS,
        description="The whole export (kick-off, waiting for the server, every download) must end within this.")
    SCREEN_EXPORT_MAX_POLL_WAIT_SECONDS: float = _setting(
        120.0, gt=0, expected=_SECONDS,
        description="Longest wait between two status polls, whatever Retry-After asks (also the cap of the backoff).")
    SCREEN_EXPORT_MAX_FILE_BYTES: int = _setting(
        4 * 1024 ** 3, gt=0, expected=_WHOLE,
        description="Largest export file downloaded (bytes, as written to disk); a larger one stops the export.")
    SCREEN_EXPORT_MAX_TOTAL_BYTES: int = _setting(
        32 * 1024 ** 3, gt=0, expected=_WHOLE,
        description="Largest export downloaded in all (bytes, every file together); beyond it the export stops.")
    SCREEN_EXPORT_ATTEMPTS: int = _setting(
        3, gt=0, le=20, expected="a whole number from 1 to 20",
        description="Tries per file download (a download cut off half-way is tried again) and per status poll "
                    "that cannot reach the server.")

    # --- the web page (/ui/) ---
    UI_SANDBOX: Annotated[bool, BeforeValidator(_explicit_bool)] = _setting(
        False, expected="true or false",
        description="Let the /ui/ page try CDS Hooks calls without a JWT (POST /ui/try/<id>); development only.")
    UI_REPORT_LINKS: Annotated[bool, BeforeValidator(_explicit_bool)] = _setting(
        False, expected="true or false",
        description="Cards of verified CDS Hooks calls link to the trend page of the assessment (unguessable, expiring).")
    UI_REPORT_TTL_SECONDS: int = _setting(
        600, gt=0, le=86400, expected="a whole number of seconds from 1 to 86400",
        description="How long a card's trend link stays valid (seconds); the stored trend is deleted after it.")
    UI_REPORT_DB: Annotated[str | None, BeforeValidator(_empty_is_unset)] = _setting(
        None, expected="the path of an SQLite file, or unset",
        description="SQLite file of the trend reports cards link to; unset: ui-reports.sqlite3 beside CDS_FEEDBACK_DB.")
    UI_FIXTURE_DIR: Annotated[str | None, BeforeValidator(_empty_is_unset)] = _setting(
        None, expected="the path of a folder holding MANIFEST.json and bundles, or unset",
        description="Example bundles the /ui/ page offers; unset: the repository's fhir_fixtures/assess when present.")

    _retired: tuple[str, ...] = PrivateAttr(default=())

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the layers `load_settings` has already put together (see the module docstring for why)."""
        return (init_settings,)

    def warn_retired(self) -> None:
        """Log each retired setting that was given, with what replaced it."""
        for key in self._retired:
            log.warning("%s is no longer read: %s", key, RETIRED[key])


def default(key: str) -> Any:
    """The built-in default of one setting (for code given only part of a configuration)."""
    return Settings.model_fields[key].get_default(call_default_factory=True)


def setting(config: Mapping[str, Any], key: str) -> Any:
    """`config[key]`, or the setting's built-in default when `config` does not hold it."""
    return config[key] if key in config else default(key)


def _decode_env(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _unknown(key: str, prefix: str = "") -> str:
    """The refusal of an unknown name, with the closest known key (compared without the shared prefix)."""
    close = difflib.get_close_matches(key, list(Settings.model_fields), n=1)
    return f"unknown setting {prefix}{key}" + (f" (did you mean {prefix}{close[0]}?)" if close else "")


def _layers(overrides: Mapping[str, Any] | None, environ: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Environment then overrides, each replacing the last; unknown names refused, retired ones set aside."""
    values: dict[str, Any] = {}
    retired: list[str] = []
    unknown: list[str] = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or len(name) == len(ENV_PREFIX) or name in TOOLING_VARIABLES:
            continue
        key = name[len(ENV_PREFIX):]
        if key in RETIRED:
            retired.append(key)
        elif key in Settings.model_fields:
            values[key] = _decode_env(environ[name])
        else:
            unknown.append(_unknown(key, ENV_PREFIX))
    for key, value in (overrides or {}).items():
        if key in RETIRED:
            retired.append(key)
        elif key in Settings.model_fields:
            values[key] = value
        else:
            unknown.append(_unknown(str(key)))
    if unknown:
        raise ConfigError("; ".join(unknown))
    return values, list(dict.fromkeys(retired))


def _message(error: ValidationError, values: Mapping[str, Any]) -> str:
    first = error.errors()[0]
    key = str(first["loc"][0]) if first["loc"] else "?"
    field = Settings.model_fields.get(key)
    expected = (field.json_schema_extra or {}).get("expected") if field is not None else None
    shown = repr(values.get(key, first.get("input")))
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return (f"configuration {key} (environment {ENV_PREFIX}{key}) = {shown}: "
            f"must be {expected or first['msg']}")


def load_settings(overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """The typed settings: defaults < environment (`os.environ` unless given) < overrides. Raises ConfigError."""
    values, retired = _layers(overrides, os.environ if environ is None else environ)
    try:
        settings = Settings(**values)
    except ValidationError as error:
        raise ConfigError(_message(error, values)) from None
    settings._retired = tuple(retired)
    return settings


def load_config(overrides: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The effective configuration as a plain dict (what `app.config` holds). Raises ConfigError."""
    settings = load_settings(overrides, environ)
    settings.warn_retired()
    return settings.model_dump()

"""Configuration keys of the CDS Hooks surface and their defaults.

`service.config.load_config` merges these under the core defaults, so every key can be set through
`CALCINOSIS_<KEY>` in the environment or the dict given to `create_app`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def default_feedback_db() -> str:
    """One fixed place the app and the CLI agree on, outside the code: $XDG_DATA_HOME/calcinosis-cds."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(data_home) / "calcinosis-cds" / "cds-feedback.sqlite3")


DEFAULTS: dict[str, Any] = {
    # Verify the CDS client's JWT on every call (CDS Hooks 2.0 "Trusting CDS Clients"). Turning it off
    # is for local development only and is logged as a warning at start.
    "CDS_REQUIRE_JWT": True,
    # Trusted client issuers: {"<iss>": {"jwks": {"keys": [...]}}} or {"<iss>": {"jwks_url": "https://..."}};
    # optional per issuer: "jku": ["https://..."] (JWKS URLs its tokens may name in the `jku` header, besides
    # its own jwks_url; never another issuer's) and "sub": ["<client id>", ...] (the client ids accepted from it);
    # both are lists of exact strings, a single string being a one-element list.
    "CDS_TRUSTED_ISSUERS": {},
    # Signing algorithms accepted; asymmetric only ("none" and HS* are refused whatever is listed here).
    "CDS_JWT_ALGORITHMS": ["ES384", "RS384", "ES256", "RS256", "ES512", "RS512", "PS384", "PS256", "PS512"],
    # Clock skew allowed on `exp` and `iat` (seconds).
    "CDS_JWT_LEEWAY_SECONDS": 60,
    # Oldest `iat` accepted (seconds); the spec asks clients for a 5 minute lifetime.
    "CDS_JWT_MAX_AGE_SECONDS": 600,
    # How long a fetched JWKS is reused before it is fetched again (seconds).
    "CDS_JWKS_CACHE_SECONDS": 3600,
    # Shortest time between two JWKS refetches for one issuer when a token names an unknown `kid`
    # (seconds); within it such tokens are refused without contacting the issuer.
    "CDS_JWKS_MIN_REFETCH_SECONDS": 60,
    # FHIR servers (base URLs, e.g. "https://ehr.example.org/fhir") the service may query with the client's
    # fhirAuthorization token when prefetch is incomplete, and under which paging links are followed. URLs are
    # compared after resolving dot segments (scheme, host and port exactly, the path by whole segments).
    # Others are never contacted.
    "CDS_FHIR_SERVER_ALLOWLIST": [],
    "CDS_FHIR_CONNECT_TIMEOUT_SECONDS": 3.05,
    "CDS_FHIR_READ_TIMEOUT_SECONDS": 10.0,
    # Searchset pages followed per prefetch query; what lies beyond is reported as not read.
    "CDS_FHIR_MAX_PAGES": 10,
    # All FHIR reads of one hook call together must end within this many seconds (the per-read timeouts
    # above do not bound a server that trickles bytes); beyond it the call gets 412 naming the key.
    "CDS_FHIR_TOTAL_TIMEOUT_SECONDS": 20.0,
    # Largest FHIR response page read (bytes, after decoding); a larger one gives 412 naming the key.
    "CDS_FHIR_MAX_RESPONSE_BYTES": 10 * 1024 * 1024,
    # Most entries accepted in context.draftOrders; more is refused with 400.
    "CDS_MAX_DRAFT_ORDERS": 200,
    # SQLite file for card feedback and the cards issued (created with its folder on first use).
    "CDS_FEEDBACK_DB": default_feedback_db(),
    # Browser origins allowed by CORS (the public CDS Hooks sandbox by default).
    "CDS_CORS_ORIGINS": ["https://sandbox.cds-hooks.org"],
}

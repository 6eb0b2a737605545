"""Bearer access tokens on `$assess` (optional): OAuth 2.0 JWTs as a SMART Backend Services client gets them.

Off unless ASSESS_AUTHORIZATION names an issuer. Then every `$assess` call must carry
`Authorization: Bearer <JWT>` signed by one of the issuer's keys (its JWKS, inline or fetched and
cached as for CDS clients, with the same refusals: asymmetric algorithms only, no weak RSA, no
EC key on the wrong curve, no redirect followed), with `iss` the issuer, `aud` the configured
audience (by default the service's FHIR base URL), unexpired, and the required scope among its
`scope` (space-separated, as SMART issues it) or `scp` claims. A missing or invalid token is a 401,
a token without the scope a 403, each an OperationOutcome with the RFC 6750 WWW-Authenticate
challenge. The reasons are the service's own words: a token never appears in an answer or a log.
Access tokens are reused for their lifetime, so no `jti` replay check applies here.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import jwt

from ..config import setting
from ..errors import AccessDeniedError, AuthenticationError
from ..hooks.jwt_auth import JwksCache, RefetchLimiter, acceptable_key, asymmetric, find_key

REALM = "calcinosis-cds"

_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "the access token has expired"),
    (jwt.ImmatureSignatureError, "the access token is not valid yet"),
    (jwt.InvalidAudienceError, "the access token is not meant for this server (aud)"),
    (jwt.InvalidIssuerError, "the access token was not issued by the trusted issuer"),
    (jwt.MissingRequiredClaimError, "the access token lacks a required claim (iss, aud or exp)"),
    (jwt.InvalidSignatureError, "the access token's signature does not verify"),
)


def _invalid(description: str) -> AccessDeniedError:
    return AccessDeniedError(f"the bearer token was refused: {description}", status=401,
                             challenge=f'Bearer realm="{REALM}", error="invalid_token", '
                                       f'error_description="{description}"')


def _granted_scopes(claims: Mapping[str, Any]) -> set[str]:
    """SMART's space-separated `scope`, or an `scp` list as some authorization servers write it."""
    scope, scp = claims.get("scope"), claims.get("scp")
    granted = set(scope.split()) if isinstance(scope, str) else set()
    if isinstance(scp, list):
        granted |= {item for item in scp if isinstance(item, str)}
    return granted


class AccessTokenVerifier:
    """Verifies `$assess` bearer tokens against one issuer's keys, audience and required scope."""

    def __init__(self, *, issuer: str, scope: str, algorithms: list[str], leeway_seconds: float,
                 jwks: Mapping[str, Any] | None = None, jwks_url: str | None = None, audience: str | None = None,
                 jwks_cache: JwksCache | None = None, min_refetch_seconds: float = 60,
                 clock: Callable[[], float] = time.time) -> None:
        self.issuer = issuer
        self.scope = scope
        self.audience = audience
        self.algorithms = asymmetric(algorithms)
        self.leeway = float(leeway_seconds)
        self.jwks = jwks
        self.jwks_url = jwks_url
        self.jwks_cache = jwks_cache or JwksCache(3600)
        self.refetch_limiter = RefetchLimiter(min_refetch_seconds, clock)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "AccessTokenVerifier | None":
        """The verifier ASSESS_AUTHORIZATION asks for, or None when `$assess` is open."""
        spec = setting(config, "ASSESS_AUTHORIZATION")
        if not spec:
            return None
        return cls(issuer=spec["issuer"], scope=spec["scope"], audience=spec.get("audience"),
                   jwks=spec.get("jwks"), jwks_url=spec.get("jwks_url"),
                   algorithms=setting(config, "CDS_JWT_ALGORITHMS"),
                   leeway_seconds=setting(config, "CDS_JWT_LEEWAY_SECONDS"),
                   jwks_cache=JwksCache(setting(config, "CDS_JWKS_CACHE_SECONDS")),
                   min_refetch_seconds=setting(config, "CDS_JWKS_MIN_REFETCH_SECONDS"))

    def verify(self, authorization_header: str | None, default_audience: str) -> dict[str, Any]:
        """The token's verified claims, or AccessDeniedError (401 invalid or missing, 403 without the scope)."""
        token = self._bearer(authorization_header)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _invalid("the access token is not a JWT") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise _invalid("the access token's signing algorithm is not accepted")
        key = self._key(header.get("kid"), algorithm)
        try:
            claims = jwt.decode(token, key, algorithms=[algorithm], audience=self.audience or default_audience,
                                issuer=self.issuer, leeway=self.leeway, options={"require": ["iss", "aud", "exp"]})
        except jwt.PyJWTError as error:
            reason = next((text for kind, text in _REASONS if isinstance(error, kind)),
                          "the access token could not be verified")
            raise _invalid(reason) from None
        if self.scope not in _granted_scopes(claims):
            raise AccessDeniedError(f"the bearer token does not grant the scope {self.scope} this operation needs",
                                    status=403, challenge=f'Bearer realm="{REALM}", error="insufficient_scope", '
                                                          f'scope="{self.scope}"')
        return claims

    @staticmethod
    def _bearer(authorization_header: str | None) -> str:
        if not authorization_header or not authorization_header.strip():
            raise AccessDeniedError("this operation needs an OAuth 2.0 bearer token (Authorization: Bearer ...)",
                                    status=401, challenge=f'Bearer realm="{REALM}"')
        scheme, _, token = authorization_header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _invalid("the Authorization header is not a Bearer token")
        return token.strip()

    def _key(self, kid: Any, algorithm: str) -> Any:
        if kid is not None and not isinstance(kid, str):
            raise _invalid("the access token's kid is not a string")
        try:
            if self.jwks is not None:
                key = find_key(self.jwks, kid, algorithm)
            else:
                key = find_key(self.jwks_cache.get(str(self.jwks_url)), kid, algorithm)
                if key is None and self.refetch_limiter.allow(self.issuer):
                    key = find_key(self.jwks_cache.get(str(self.jwks_url), refresh=True), kid, algorithm)
        except AuthenticationError:
            raise _invalid("the issuer's keys could not be read") from None
        if key is None:
            raise _invalid("no key of the issuer matches the access token's kid")
        if acceptable_key(key, algorithm) is not None:
            raise _invalid("the issuer's key for this token is too weak or of the wrong kind")
        return key

"""Trusting CDS clients (CDS Hooks 2.0, Security): the bearer JWT on every call.

The token must be signed with an asymmetric key of an issuer on the allowlist, found in that
issuer's JWKS (given inline, or fetched from its configured URL or a `jku` listed for that same
issuer: one trusted issuer can never name another's keys; an issuer given inline keys and no `jku`
list is verified against those keys whatever `jku` its tokens name, which is then never fetched), be meant for the endpoint called
(`aud`: the spec allows a string or an array of strings; an array is accepted when one of its
members is exactly the endpoint URL, never a prefix or look-alike), be fresh (`exp`, `iat`, `nbf`)
and be used once (`jti`). RSA keys under 2048 bits and EC keys on another curve than the `alg`
names are refused. Per issuer, `sub` and `jku` are lists of exact strings (a single string is a
one-element list). JWKS fetches never follow redirects, and
an unknown `kid` refetches an issuer's keys at most once per CDS_JWKS_MIN_REFETCH_SECONDS, so
random kids cannot make the service hammer the issuer. Every failure is an AuthenticationError,
which the HTTP layer turns into a bare 401; the reason is only logged.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol

import jwt
import requests

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..config import default, setting
from ..errors import AuthenticationError
from .sqlite_files import SqliteFile

# `sub` is not required: the public CDS Hooks sandbox omits it. An issuer configured with "sub": [...]
# has it checked against that list.
_REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti"]
MIN_RSA_BITS = 2048
_MAX_CACHED_KEYS = 64
_CURVE_OF_ALGORITHM = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}


class TokenIdStore(Protocol):
    """Where replayed token ids are caught: in one process's memory or in a file shared by all workers."""

    def first_use(self, issuer: str, jti: str, expires_at: float) -> bool:
        """True the first time (issuer, jti) is seen before `expires_at`; False for a replay."""


class ReplayStore:
    """Remembers each (iss, jti) until its token expires, so a captured token cannot be sent twice.

    An expired id is free again at once (it is looked at, not only swept); expired ids are swept in
    bulk at most once per SWEEP_INTERVAL_SECONDS, not on every call: a sweep per call walked every id
    of the last token lifetime, which grows with the request rate.
    """

    SWEEP_INTERVAL_SECONDS = 60.0

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._next_sweep = float("-inf")

    def first_use(self, issuer: str, jti: str, expires_at: float) -> bool:
        """True the first time a token id is seen (or seen again after it expired); False for a replay."""
        now = self._clock()
        key = (issuer, jti)
        with self._lock:
            if now >= self._next_sweep:
                self._next_sweep = now + self.SWEEP_INTERVAL_SECONDS
                self._seen = {seen: expiry for seen, expiry in self._seen.items() if expiry >= now}
            expiry = self._seen.get(key)
            if expiry is not None and expiry >= now:
                return False
            self._seen[key] = expires_at
            return True


class SqliteReplayStore:
    """The same as ReplayStore, shared by every worker process through one SQLite file.

    One statement decides a token id's first use, atomically across processes: it is inserted, or
    takes over a row whose token has expired; a live row makes it a replay. Expired rows are swept
    in bulk at most once per PURGE_INTERVAL_SECONDS (through an index on their expiry), not on
    every call: a sweep per call scanned every id of the last token lifetime, which grows with the
    request rate.
    """

    PURGE_INTERVAL_SECONDS = 60.0

    def __init__(self, db_path: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.db_path = Path(db_path)
        self._file = SqliteFile(self.db_path)
        self._clock = clock
        self._next_purge = float("-inf")
        with self._file.connection() as connection:
            connection.execute("CREATE TABLE IF NOT EXISTS used_jti (issuer TEXT NOT NULL, jti TEXT NOT NULL,"
                               " expires_at REAL NOT NULL, PRIMARY KEY (issuer, jti))")
            connection.execute("CREATE INDEX IF NOT EXISTS used_jti_expiry ON used_jti (expires_at)")

    def first_use(self, issuer: str, jti: str, expires_at: float) -> bool:
        """True the first time any worker sees a token id (or sees it again after it expired); False for a replay."""
        now = self._clock()
        with self._file.connection() as connection:
            if now >= self._next_purge:
                self._next_purge = now + self.PURGE_INTERVAL_SECONDS
                connection.execute("DELETE FROM used_jti WHERE expires_at < ?", (now,))
            claimed = connection.execute(
                "INSERT INTO used_jti VALUES (?, ?, ?) ON CONFLICT (issuer, jti) DO UPDATE"
                " SET expires_at = excluded.expires_at WHERE used_jti.expires_at < ?",
                (issuer, jti, expires_at, now)).rowcount
        return claimed == 1


class JwksCache:
    """JWKS documents fetched over HTTPS, reused for a while so each call does not wait on the issuer."""

    def __init__(self, ttl_seconds: float, *, session: requests.Session | None = None,
                 clock: Callable[[], float] = time.time, timeout: tuple[float, float] = (3.05, 5.0)) -> None:
        self.ttl = float(ttl_seconds)
        self.session = session or requests.Session()
        self._clock = clock
        self._timeout = timeout
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get(self, url: str, *, refresh: bool = False) -> dict[str, Any]:
        """The JWKS at `url`, cached for the TTL (`refresh` refetches); AuthenticationError if unreadable."""
        now = self._clock()
        with self._lock:
            cached = self._cache.get(url)
        if cached and not refresh and cached[0] > now:
            return cached[1]
        try:
            # A redirect could hand the service keys from any host: never followed.
            response = self.session.get(url, timeout=self._timeout, headers={"Accept": "application/json"},
                                        allow_redirects=False)
        except requests.RequestException as error:
            raise AuthenticationError(f"JWKS {url} could not be fetched ({type(error).__name__})") from None
        if response.status_code != 200:
            raise AuthenticationError(f"JWKS {url} answered HTTP {response.status_code}")
        try:
            jwks = response.json()
        except ValueError:
            raise AuthenticationError(f"JWKS {url} is not JSON") from None
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise AuthenticationError(f"JWKS {url} has no keys array")
        with self._lock:
            self._cache[url] = (now + self.ttl, jwks)
        return jwks


def asymmetric(algorithms: Iterable[str]) -> list[str]:
    """Never "none" (unsigned) nor HS* (a shared secret), whatever the configuration lists."""
    return [alg for alg in algorithms if not alg.lower().startswith("none") and not alg.upper().startswith("HS")]


class RefetchLimiter:
    """Allows a JWKS refetch for an unknown kid at most once per issuer per interval (a negative cache)."""

    def __init__(self, min_interval_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.min_interval = float(min_interval_seconds)
        self._clock = clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def allow(self, issuer: str) -> bool:
        """True when the issuer's JWKS may be refetched now (the refetch is then counted); False within the interval."""
        now = self._clock()
        with self._lock:
            last = self._last.get(issuer)
            if last is not None and now - last < self.min_interval:
                return False
            self._last[issuer] = now
            return True


def _string_list(value: Any) -> tuple[str, ...]:
    """A configured list of exact strings; a single string is a one-element list (never matched as a substring)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ValueError("must be a string or a list of strings")


def _issuer_spec(issuer: str, spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """The issuer's settings with `sub` and `jku` as tuples of strings; ValueError (at start) when they are not."""
    checked = dict(spec or {})
    for name in ("sub", "jku"):
        try:
            checked[name] = _string_list(checked.get(name))
        except ValueError:
            raise ValueError(f"CDS_TRUSTED_ISSUERS[{issuer!r}].{name} must be a string or a list of strings") from None
    return checked


def acceptable_key(key: Any, algorithm: str) -> str | None:
    """Why `key` may not verify `algorithm` tokens (weak RSA, wrong EC curve), or None when it may."""
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        return f"RSA key of {key.key_size} bits (at least {MIN_RSA_BITS} are required)"
    if isinstance(key, ec.EllipticCurvePublicKey):
        expected = _CURVE_OF_ALGORITHM.get(algorithm)
        if expected is None or key.curve.name != expected:
            return f"EC key on curve {key.curve.name} cannot verify {algorithm}"
    return None


class ClientVerifier:
    """Verifies CDS client JWTs against the configured trusted issuers."""

    def __init__(self, *, trusted_issuers: Mapping[str, Mapping[str, Any]], algorithms: Iterable[str],
                 leeway_seconds: float, max_age_seconds: float, jwks_cache: JwksCache | None = None,
                 replay_store: TokenIdStore | None = None, min_refetch_seconds: float = 60,
                 clock: Callable[[], float] = time.time) -> None:
        self.trusted_issuers = {iss: _issuer_spec(iss, spec) for iss, spec in (trusted_issuers or {}).items()}
        self.algorithms = asymmetric(algorithms)
        self.leeway = float(leeway_seconds)
        self.max_age = float(max_age_seconds)
        self.jwks_cache = jwks_cache or JwksCache(3600)
        self.replay_store = replay_store or ReplayStore(clock)
        self.refetch_limiter = RefetchLimiter(min_refetch_seconds, clock)
        self._clock = clock
        # Public keys parsed from a JWKS, by (JWKS document, kid, alg): parsing one cost more than
        # verifying a signature with it.
        self._keys: dict[tuple[int, Any, str], tuple[Mapping[str, Any], Any]] = {}
        self._keys_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, replay_store: TokenIdStore | None = None) -> "ClientVerifier":
        """A verifier from the CDS_* settings; CDS_TRUSTED_ISSUERS may arrive as a JSON string from the environment."""
        issuers = setting(config, "CDS_TRUSTED_ISSUERS") or {}
        if isinstance(issuers, str):
            issuers = json.loads(issuers)
        return cls(
            trusted_issuers=issuers,
            algorithms=setting(config, "CDS_JWT_ALGORITHMS") or default("CDS_JWT_ALGORITHMS"),
            leeway_seconds=setting(config, "CDS_JWT_LEEWAY_SECONDS"),
            max_age_seconds=setting(config, "CDS_JWT_MAX_AGE_SECONDS"),
            jwks_cache=JwksCache(setting(config, "CDS_JWKS_CACHE_SECONDS")),
            replay_store=replay_store,
            min_refetch_seconds=setting(config, "CDS_JWKS_MIN_REFETCH_SECONDS"),
        )

    def verify(self, authorization_header: str | None, audience: str) -> dict[str, Any]:
        """The verified claims of the call's JWT, or AuthenticationError saying why not."""
        token = _bearer_token(authorization_header)
        header, unverified = unverified_parts(token)
        for name in ("alg", "kid", "jku", "typ"):
            if header.get(name) is not None and not isinstance(header[name], str):
                raise AuthenticationError(f"JWT header {name} is not a string")
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise AuthenticationError(f"JWT algorithm {algorithm!r} is not accepted")
        typ = header.get("typ")
        if typ is not None and typ.upper() != "JWT":
            raise AuthenticationError(f"JWT typ {typ!r} is not JWT")
        issuer = unverified.get("iss")
        if not isinstance(issuer, str) or issuer not in self.trusted_issuers:
            raise AuthenticationError(f"issuer {issuer!r} is not trusted")
        key = self._signing_key(issuer, header, algorithm)
        try:
            claims = jwt.decode(
                token, key, algorithms=[algorithm], audience=audience, issuer=issuer, leeway=self.leeway,
                options={"require": _REQUIRED_CLAIMS, "verify_iat": True},
            )
        except jwt.PyJWTError as error:
            raise AuthenticationError(f"JWT rejected: {type(error).__name__}: {error}") from None
        self._check_times(claims)
        subjects = self.trusted_issuers[issuer]["sub"]
        subject = claims.get("sub")
        if subjects and (not isinstance(subject, str) or subject not in subjects):
            raise AuthenticationError(f"subject {subject!r} is not allowlisted for issuer {issuer!r}")
        if "tenant" in claims and not isinstance(claims["tenant"], str):
            raise AuthenticationError("JWT tenant is not a string")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise AuthenticationError("JWT jti is not a non-empty string")
        if not self.replay_store.first_use(issuer, jti, float(claims["exp"]) + self.leeway):
            raise AuthenticationError("JWT jti was already used (replay)")
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        issued_at = claims.get("iat")
        if not isinstance(issued_at, (int, float)) or isinstance(issued_at, bool):
            raise AuthenticationError("JWT iat is not a number")
        if issued_at > now + self.leeway:
            raise AuthenticationError("JWT iat lies in the future")
        if issued_at < now - self.max_age - self.leeway:
            raise AuthenticationError("JWT iat is too old")

    def _signing_key(self, issuer: str, header: Mapping[str, Any], algorithm: str) -> Any:
        spec = self.trusted_issuers[issuer]
        jku = header.get("jku")
        inline = spec.get("jwks") if isinstance(spec.get("jwks"), dict) else None
        # Only URLs configured for this issuer: a URL trusted for one issuer says nothing about another.
        allowed = set(spec["jku"]) | ({spec["jwks_url"]} if isinstance(spec.get("jwks_url"), str) else set())
        jwks_source: Callable[[bool], Mapping[str, Any]]
        if jku is not None and jku in allowed:
            jwks_source = lambda refresh: self.jwks_cache.get(jku, refresh=refresh)
        elif inline is not None and not spec["jku"]:
            # Keys given inline are the issuer's trust anchor: a jku the token names (the CDS Hooks
            # sandbox always names one) is never fetched, and the token must verify against these.
            # An issuer configured with a jku list has every jku checked against it instead.
            jwks_source = lambda refresh: inline
        elif jku is not None:
            raise AuthenticationError(f"jku {jku!r} is not allowlisted for issuer {issuer!r}")
        elif spec.get("jwks_url"):
            jwks_source = lambda refresh: self.jwks_cache.get(spec["jwks_url"], refresh=refresh)
        else:
            raise AuthenticationError(f"issuer {issuer!r} has neither jwks nor jwks_url configured")
        kid = header.get("kid")
        key = self._key_of(jwks_source(False), kid, algorithm)
        fetched = inline is None or (jku is not None and jku in allowed)
        if key is None and fetched and self.refetch_limiter.allow(issuer):
            key = self._key_of(jwks_source(True), kid, algorithm)  # the issuer may have rotated its keys
        if key is None:
            raise AuthenticationError(f"no key with kid {kid!r} for issuer {issuer!r}")
        refusal = acceptable_key(key, algorithm)
        if refusal is not None:
            raise AuthenticationError(f"key {kid!r} of issuer {issuer!r} refused: {refusal}")
        return key


    def _key_of(self, jwks: Mapping[str, Any], kid: Any, algorithm: str) -> Any:
        """`find_key`, with each key found kept for the JWKS document it came from (a refetched
        document is another object, so a rotated key is never served from here). Only keys found
        are kept, so random kids cannot grow the cache; it is emptied when a refetch would."""
        cache_key = (id(jwks), kid, algorithm)
        with self._keys_lock:
            cached = self._keys.get(cache_key)
        if cached is not None and cached[0] is jwks:
            return cached[1]
        key = find_key(jwks, kid, algorithm)
        if key is not None:
            with self._keys_lock:
                if len(self._keys) >= _MAX_CACHED_KEYS:
                    self._keys.clear()
                self._keys[cache_key] = (jwks, key)
        return key


def find_key(jwks: Mapping[str, Any], kid: Any, algorithm: str) -> Any:
    """The public key of `jwks` with this `kid` usable for `algorithm` (the only key when no kid), else None."""
    keys = [k for k in jwks.get("keys") or () if isinstance(k, dict)]
    candidates = [k for k in keys if kid is None or k.get("kid") == kid]
    if kid is None and len(candidates) != 1:
        return None
    for candidate in candidates:
        if candidate.get("alg") not in (None, algorithm) or candidate.get("use") not in (None, "sig"):
            continue
        try:
            return jwt.PyJWK(candidate, algorithm=algorithm).key
        except jwt.PyJWTError:
            continue
    return None


def unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The token's header and claims as written, unchecked: only what picks the issuer's key.

    Nothing read here is trusted: PyJWT parses the token again, strictly, as it verifies the
    signature and the claims. Its own unverified parse checked every character of the token in
    Python, a second time on every call; this reads the two segments with the standard decoders.
    """
    segments = token.split(".")
    if len(segments) != 3:
        raise AuthenticationError(f"malformed JWT: {len(segments)} segments instead of 3")
    try:
        header, claims = (json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
                          for segment in segments[:2])
    except (ValueError, RecursionError):  # not base64url, not UTF-8, not JSON, or nested beyond reason
        raise AuthenticationError("malformed JWT: the header or the claims are not base64url-encoded JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise AuthenticationError("malformed JWT: the header or the claims are not a JSON object")
    return header, claims


def _bearer_token(authorization_header: str | None) -> str:
    if not authorization_header:
        raise AuthenticationError("no Authorization header")
    scheme, _, token = authorization_header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("Authorization header is not a Bearer token")
    return token.strip()

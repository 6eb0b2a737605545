"""Signing CDS client JWTs the way an EHR does, for tests of the service's trust checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

EHR_ISSUER = "https://ehr.example.org"


@dataclass
class ClientKey:
    """A CDS client's signing key and its public JWKS."""

    algorithm: str = "ES384"
    kid: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    rsa_bits: int = 2048  # below 2048 only to test that weak keys are refused
    curve: str | None = None  # "P-256", "P-384", "P-521": a curve other than the alg's, to test that it is refused

    def __post_init__(self) -> None:
        if self.algorithm.startswith("ES"):
            curves = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
            default = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[self.algorithm]
            self.private_key = ec.generate_private_key(curves[self.curve or default])
            public_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private_key.public_key()))
        else:
            self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=self.rsa_bits)
            public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key()))
        public_jwk.update({"kid": self.kid, "alg": self.algorithm, "use": "sig"})
        self.public_jwk = public_jwk

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk]}

    def sign(self, audience: str, *, issuer: str = EHR_ISSUER, headers: dict[str, Any] | None = None,
             **claims: Any) -> str:
        """A token for `audience`; keyword claims override the defaults (pass None to drop one)."""
        now = int(time.time())
        payload = {"iss": issuer, "sub": "ehr-client-id", "aud": audience, "iat": now, "exp": now + 300,
                   "jti": uuid.uuid4().hex}
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        header = {"kid": self.kid, "typ": "JWT"}
        header.update(headers or {})
        return jwt.encode(payload, self.private_key, algorithm=self.algorithm, headers=header)

    def sign_raw_header(self, audience: str, header: dict[str, Any], *, issuer: str = EHR_ISSUER) -> str:
        """A validly signed token whose header is exactly `header` (PyJWT refuses e.g. a non-string kid)."""
        now = int(time.time())
        payload = {"iss": issuer, "sub": "ehr-client-id", "aud": audience, "iat": now, "exp": now + 300,
                   "jti": uuid.uuid4().hex}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
        algorithm = jwt.algorithms.get_default_algorithms()[self.algorithm]
        return f"{signing_input}.{_b64(algorithm.sign(signing_input.encode(), self.private_key))}"


    def sign_on_own_curve(self, audience: str) -> str:
        """An ES token signed with this key whatever its curve (PyJWT refuses to sign on a mismatched curve)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        now = int(time.time())
        header = {"alg": self.algorithm, "kid": self.kid, "typ": "JWT"}
        payload = {"iss": EHR_ISSUER, "sub": "ehr-client-id", "aud": audience, "iat": now, "exp": now + 300,
                   "jti": uuid.uuid4().hex}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
        digest = {"ES256": hashes.SHA256(), "ES384": hashes.SHA384(), "ES512": hashes.SHA512()}[self.algorithm]
        r, s = decode_dss_signature(self.private_key.sign(signing_input.encode(), ec.ECDSA(digest)))
        size = (self.private_key.curve.key_size + 7) // 8
        return f"{signing_input}.{_b64(r.to_bytes(size, 'big') + s.to_bytes(size, 'big'))}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(audience: str, *, issuer: str = EHR_ISSUER) -> str:
    """An alg=none token: a client trying to skip the signature."""
    now = int(time.time())
    payload = {"iss": issuer, "sub": "ehr-client-id", "aud": audience, "iat": now, "exp": now + 300,
               "jti": uuid.uuid4().hex}
    return jwt.encode(payload, None, algorithm="none")


def hs256_token(audience: str, secret: str, *, issuer: str = EHR_ISSUER) -> str:
    """A token signed with a shared secret (here the public JWK text, the classic confusion attack)."""
    now = int(time.time())
    payload = {"iss": issuer, "sub": "ehr-client-id", "aud": audience, "iat": now, "exp": now + 300,
               "jti": uuid.uuid4().hex}
    # Built by hand: PyJWT rightly refuses to use a JWK as an HMAC secret, but an attacker would not.
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"

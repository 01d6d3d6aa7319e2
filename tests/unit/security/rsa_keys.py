"""Test-only RSA key pairs and RS256 tokens, made with ``cryptography`` and PyJWT.

Key generation costs tens of milliseconds, so pairs are cached per (kid, bits) for the
whole test session.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from jwt.algorithms import RSAAlgorithm


@functools.cache
def _private_key(kid: str, bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@dataclass(frozen=True)
class RsaKeyPair:
    """A private key for tests; :meth:`jwk` is what a JWKS serves."""

    private: rsa.RSAPrivateKey
    kid: str

    @classmethod
    def generate(cls, kid: str, bits: int = 2048) -> RsaKeyPair:
        """The (cached) pair for ``kid``; a different ``kid`` gives a different key."""
        return cls(private=_private_key(kid, bits), kid=kid)

    @property
    def public(self) -> rsa.RSAPublicKey:
        return self.private.public_key()

    def jwk(self) -> dict[str, Any]:
        """The public key as a JWKS entry (RSA, use=sig, alg=RS256, kid)."""
        jwk = RSAAlgorithm.to_jwk(self.public, as_dict=True)
        jwk.pop("key_ops", None)
        return {**jwk, "use": "sig", "alg": "RS256", "kid": self.kid}

    def public_pem(self) -> bytes:
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, message: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256."""
        return self.private.sign(message, padding.PKCS1v15(), hashes.SHA256())

    def token(
        self, claims: dict[str, Any], *, kid: str | None = "default", alg: str = "RS256"
    ) -> str:
        """A JWT signed with this key; ``kid`` "default" names this key, None omits it."""
        headers: dict[str, Any] = {}
        if kid == "default":
            headers["kid"] = self.kid
        elif kid is not None:
            headers["kid"] = kid
        return jwt.encode(claims, self.private, algorithm=alg, headers=headers)

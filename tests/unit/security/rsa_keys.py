"""Test-only RSA: key generation and RS256 signing in pure Python (the project verifies
RS256 without the ``cryptography`` package, so tests must sign without it too)."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from typing import Any

from tongxin.runtime.auth import RsaPublicKey, pkcs1_sha256_encoding

_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p**0.5) + 1))]


def _probably_prime(n: int, rounds: int = 40) -> bool:
    if any(n % p == 0 for p in _SMALL_PRIMES):
        return n in _SMALL_PRIMES
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for _ in range(rounds):
        a = secrets.randbelow(n - 3) + 2
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int, e: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1
        if _probably_prime(candidate) and (candidate - 1) % e != 0:
            return candidate


@dataclass(frozen=True)
class RsaKeyPair:
    """A private key for tests; ``public`` is what a JWKS serves."""

    n: int
    e: int
    d: int
    kid: str

    @classmethod
    def generate(cls, kid: str, bits: int = 2048) -> RsaKeyPair:
        e = 65537
        while True:
            p, q = _prime(bits // 2, e), _prime(bits // 2, e)
            n = p * q
            if p != q and n.bit_length() == bits:
                return cls(n=n, e=e, d=pow(e, -1, (p - 1) * (q - 1)), kid=kid)

    @property
    def public(self) -> RsaPublicKey:
        return RsaPublicKey(n=self.n, e=self.e, kid=self.kid)

    def sign(self, message: bytes) -> bytes:
        k = (self.n.bit_length() + 7) // 8
        m = int.from_bytes(pkcs1_sha256_encoding(message, k), "big")
        return pow(m, self.d, self.n).to_bytes(k, "big")

    def token(
        self, claims: dict[str, Any], *, kid: str | None = "default", alg: str = "RS256"
    ) -> str:
        header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
        if kid == "default":
            header["kid"] = self.kid
        elif kid is not None:
            header["kid"] = kid
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        return f"{signing_input}.{_b64(self.sign(signing_input.encode()))}"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")

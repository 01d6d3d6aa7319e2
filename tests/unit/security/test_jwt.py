"""Kernel authentication: HS256 by default, RS256 against a JWKS served over real HTTP."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import RSAAlgorithm

from tests.unit.security.rsa_keys import RsaKeyPair
from tongxin.runtime.auth import (
    HS256,
    MIN_RSA_BITS,
    RS256,
    JwksKeys,
    Principal,
    Role,
    TokenVerifier,
    mint_token,
    rs256_key_from_jwk,
)
from tongxin.runtime.errors import ApiError
from tongxin.runtime.settings import ServiceSettings

SECRET = "unit-test-secret-that-is-32-bytes-or-longer"


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": "u-1",
        "role": "department",
        "unit": "dept:civil-affairs",
        "iat": now,
        "exp": now + 600,
        **extra,
    }


@pytest.fixture(scope="module")
def key() -> RsaKeyPair:
    return RsaKeyPair.generate("k1")


@pytest.fixture(scope="module")
def key2() -> RsaKeyPair:
    return RsaKeyPair.generate("k2")


class JwksServer:
    """A real HTTP server serving a JWKS document that tests change at will."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.hits = 0
        self.fail = False
        self.threads: set[int] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                if outer.fail:
                    self.send_response(500)
                    self.end_headers()
                    return
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def serve(self, *pairs: RsaKeyPair) -> None:
        self.keys = [p.jwk() for p in pairs]


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    s = JwksServer()
    s.thread.start()
    yield s
    s.server.shutdown()
    s.server.server_close()


def rs256(url: str, **kw: Any) -> TokenVerifier:
    return TokenVerifier(RS256, keys=JwksKeys(url, **kw))


def assert_401(exc: pytest.ExceptionInfo[ApiError]) -> None:
    assert exc.value.status == 401 and exc.value.code == "unauthorized"


# --- JWKS entries and an independent signer ------------------------------------------------


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_a_token_signed_by_openssl_verifies(jwks: JwksServer) -> None:
    """An independent implementation makes the key and signs; the verifier accepts it."""
    enc = jwt.utils.base64url_encode
    header = enc(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "ossl"}).encode()).decode()
    signing_input = f"{header}.{enc(json.dumps(claims()).encode()).decode()}"
    with tempfile.TemporaryDirectory() as d:
        pem, pub, msg, sig = Path(d, "k.pem"), Path(d, "p.pem"), Path(d, "m"), Path(d, "s")
        run = functools.partial(subprocess.run, check=True, capture_output=True)
        run(["openssl", "genrsa", "-out", str(pem), "2048"])
        run(["openssl", "rsa", "-in", str(pem), "-pubout", "-out", str(pub)])
        msg.write_bytes(signing_input.encode())
        run(["openssl", "dgst", "-sha256", "-sign", str(pem), "-out", str(sig), str(msg)])
        public = load_pem_public_key(pub.read_bytes())
        signature = enc(sig.read_bytes()).decode()
    assert isinstance(public, rsa.RSAPublicKey)
    jwk = {**RSAAlgorithm.to_jwk(public, as_dict=True), "use": "sig", "kid": "ossl"}
    jwks.keys = [jwk]
    verifier = rs256(jwks.url)

    assert verifier.verify(f"{signing_input}.{signature}").sub == "u-1"

    forged = enc(json.dumps(claims(role="admin")).encode()).decode()
    with pytest.raises(ApiError) as exc:
        verifier.verify(f"{header}.{forged}.{signature}")
    assert_401(exc)


def test_weak_and_foreign_jwks_entries_are_refused(key: RsaKeyPair) -> None:
    assert rs256_key_from_jwk(key.jwk()).key_id == "k1"
    weak = RsaKeyPair.generate("weak", bits=1024)
    with pytest.raises(ValueError, match=str(MIN_RSA_BITS)):
        rs256_key_from_jwk(weak.jwk())
    with pytest.raises(ValueError):
        rs256_key_from_jwk({**key.jwk(), "use": "enc"})
    with pytest.raises(ValueError):
        rs256_key_from_jwk({**key.jwk(), "alg": "RS512"})
    with pytest.raises(ValueError):
        rs256_key_from_jwk({"kty": "EC", "crv": "P-256"})
    with pytest.raises(ValueError):
        rs256_key_from_jwk({**key.jwk(), "e": "AQ"})  # e = 1
    with pytest.raises(ValueError):
        rs256_key_from_jwk({"kty": "RSA", "kid": "k1"})  # no n, e


def test_private_members_of_a_jwks_entry_are_ignored(key: RsaKeyPair) -> None:
    private = {**RSAAlgorithm.to_jwk(key.private, as_dict=True), "kid": "k1"}
    public = rs256_key_from_jwk(private).key
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.public_numbers() == key.public.public_numbers()


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # weak signs
def test_a_jwks_with_foreign_entries_serves_only_its_rs256_signing_keys(
    jwks: JwksServer, key: RsaKeyPair, key2: RsaKeyPair
) -> None:
    weak = RsaKeyPair.generate("weak", bits=1024)
    jwks.keys = [
        weak.jwk(),
        {**key2.jwk(), "use": "enc"},
        {"kty": "EC", "crv": "P-256", "kid": "ec", "x": "AA", "y": "AA"},
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        "not a JWK",
        key.jwk(),
    ]
    verifier = rs256(jwks.url)
    assert verifier.verify(key.token(claims())).sub == "u-1"
    for token in (weak.token(claims()), key2.token(claims())):
        with pytest.raises(ApiError) as exc:
            verifier.verify(token)
        assert_401(exc)


# --- HS256 (default) ---------------------------------------------------------------------------


def test_hs256_is_the_default_and_round_trips() -> None:
    settings = ServiceSettings(jwt_secret=SECRET)
    verifier = TokenVerifier.from_settings(settings)
    assert verifier.algorithm == HS256
    token = mint_token(SECRET, sub="s", role=Role.STAFF, unit="town:yongbei")
    assert verifier.verify(token) == Principal("s", Role.STAFF, "town:yongbei")


def test_hs256_refuses_an_rs256_token(key: RsaKeyPair) -> None:
    with pytest.raises(ApiError) as exc:
        TokenVerifier(HS256, secret=SECRET).verify(key.token(claims()))
    assert_401(exc)


# --- RS256 with a JWKS URL ---------------------------------------------------------------------


def test_rs256_token_verified_against_the_jwks(jwks: JwksServer, key: RsaKeyPair) -> None:
    jwks.serve(key)
    verifier = TokenVerifier.from_settings(
        ServiceSettings(jwt_algorithm="RS256", jwks_url=jwks.url)
    )

    principal = verifier.verify(key.token(claims()))

    assert principal == Principal("u-1", Role.DEPARTMENT, "dept:civil-affairs")


async def test_keys_are_fetched_off_the_event_loop_and_cached(
    jwks: JwksServer, key: RsaKeyPair
) -> None:
    jwks.serve(key)
    fetch_threads: list[int] = []
    keys = JwksKeys(jwks.url)
    real = keys._fetch

    def spy(url: str, timeout: float) -> bytes:
        fetch_threads.append(threading.get_ident())
        return real(url, timeout)

    keys._fetch = spy
    verifier = TokenVerifier(RS256, keys=keys)

    for _ in range(20):
        assert (await verifier.verify_async(key.token(claims()))).sub == "u-1"

    assert jwks.hits == 1  # cached
    assert fetch_threads and threading.get_ident() not in fetch_threads


async def test_the_loop_keeps_running_while_the_jwks_is_slow(key: RsaKeyPair) -> None:
    def slow(_url: str, _timeout: float) -> bytes:
        time.sleep(0.5)
        return json.dumps({"keys": [key.jwk()]}).encode()

    verifier = TokenVerifier(RS256, keys=JwksKeys("http://idp.invalid/jwks", fetch=slow))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        await verifier.verify_async(key.token(claims()))
    finally:
        task.cancel()
    assert ticks >= 10


def test_rotation_unknown_kid_refreshes_then_is_rate_limited(
    jwks: JwksServer, key: RsaKeyPair, key2: RsaKeyPair
) -> None:
    jwks.serve(key)
    now = [1000.0]
    keys = JwksKeys(jwks.url, ttl_s=300, min_refresh_s=10, clock=lambda: now[0])
    verifier = TokenVerifier(RS256, keys=keys)
    verifier.verify(key.token(claims()))
    jwks.serve(key, key2)  # the IdP rotates in a new key
    now[0] += 11

    assert verifier.verify(key2.token(claims())).sub == "u-1"
    assert jwks.hits == 2

    for _ in range(5):  # forged kids within the window do not make us hammer the IdP
        now[0] += 1
        with pytest.raises(ApiError) as exc:
            verifier.verify(key.token(claims(), kid="forged"))
        assert_401(exc)
    assert jwks.hits == 2
    assert verifier.verify(key.token(claims())).sub == "u-1"  # known keys unaffected


def test_ttl_expiry_refetches(jwks: JwksServer, key: RsaKeyPair) -> None:
    jwks.serve(key)
    now = [1000.0]
    verifier = TokenVerifier(RS256, keys=JwksKeys(jwks.url, ttl_s=60, clock=lambda: now[0]))
    verifier.verify(key.token(claims()))
    now[0] += 61
    verifier.verify(key.token(claims()))
    assert jwks.hits == 2


def test_jwks_outage_keeps_known_keys_and_is_503_without_any(
    jwks: JwksServer, key: RsaKeyPair
) -> None:
    jwks.serve(key)
    now = [1000.0]
    verifier = TokenVerifier(RS256, keys=JwksKeys(jwks.url, ttl_s=60, clock=lambda: now[0]))
    verifier.verify(key.token(claims()))
    jwks.fail = True
    now[0] += 120
    assert verifier.verify(key.token(claims())).sub == "u-1"  # stale keys still verify

    cold = rs256(jwks.url)
    with pytest.raises(ApiError) as exc:
        cold.verify(key.token(claims()))
    assert exc.value.status == 503


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "tampered",
        "other_key",
        "no_role",
        "bad_role",
        "rs512_same_key",
        "hs256_with_public_jwk",
        "hs256_with_public_pem",
        "none",
    ],
)
def test_rs256_refusals_are_401(
    jwks: JwksServer, key: RsaKeyPair, key2: RsaKeyPair, case: str
) -> None:
    jwks.serve(key)
    verifier = rs256(jwks.url)
    if case == "expired":
        token = key.token(claims(exp=int(time.time()) - 5))
    elif case == "tampered":
        h, _p, s = key.token(claims()).split(".")
        forged = jwt.utils.base64url_encode(json.dumps(claims(role="admin")).encode()).decode()
        token = f"{h}.{forged}.{s}"
    elif case == "other_key":
        token = key2.token(claims(), kid="k1")  # claims to be k1, signed by k2
    elif case == "no_role":
        c = claims()
        del c["role"]
        token = key.token(c)
    elif case == "bad_role":
        token = key.token(claims(role="root"))
    elif case == "rs512_same_key":
        token = key.token(claims(), alg="RS512")  # right key, another algorithm
    elif case.startswith("hs256_with_public"):
        # the classic algorithm confusion: HMAC keyed with the public key (JWK or PEM)
        enc = jwt.utils.base64url_encode
        signing_input = (
            enc(json.dumps({"alg": "HS256", "kid": "k1"}).encode()).decode()
            + "."
            + enc(json.dumps(claims()).encode()).decode()
        )
        mac_key = key.public_pem() if case.endswith("pem") else json.dumps(key.jwk()).encode()
        mac = hmac.new(mac_key, signing_input.encode(), hashlib.sha256)
        token = f"{signing_input}.{enc(mac.digest()).decode()}"
    else:
        token = jwt.encode(claims(), None, algorithm="none", headers={"kid": "k1"})
    with pytest.raises(ApiError) as exc:
        verifier.verify(token)
    assert_401(exc)


def test_issuer_and_audience_are_enforced_when_configured(
    jwks: JwksServer, key: RsaKeyPair
) -> None:
    jwks.serve(key)
    verifier = TokenVerifier(
        RS256, keys=JwksKeys(jwks.url), issuer="https://idp.example", audience="tongxin"
    )
    good = claims(iss="https://idp.example", aud="tongxin")
    assert verifier.verify(key.token(good)).sub == "u-1"
    for bad in (
        claims(iss="https://evil", aud="tongxin"),
        claims(iss="https://idp.example"),
        claims(aud="tongxin"),
    ):
        with pytest.raises(ApiError) as exc:
            verifier.verify(key.token(bad))
        assert_401(exc)


async def test_header_parsing_via_the_dependency_api(jwks: JwksServer, key: RsaKeyPair) -> None:
    jwks.serve(key)
    verifier = rs256(jwks.url)
    assert await verifier.principal(None) is None
    assert (await verifier.principal(f"Bearer {key.token(claims())}")) is not None
    with pytest.raises(ApiError) as exc:
        await verifier.principal(f"Basic {key.token(claims())}")
    assert_401(exc)

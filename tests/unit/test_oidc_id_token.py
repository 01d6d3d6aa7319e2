"""The ID token checks of the OpenID Connect sign-in (tongxin.accounts.oidc), on tokens
signed here: the provider's key and algorithm, issuer, audience, expiry, nonce, at_hash;
and the signed cookie of a sign-in under way."""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey, RSAKey

from tongxin.accounts.oidc import Flow, open_flow, seal_flow, state_matches, validate_id_token

ISSUER = "https://idp.county.example"
CLIENT = "tongxin-console"
NONCE = "n-0S6_WzA2Mj"
PROVIDER_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
KEYS = KeySet([RSAKey.import_key(PROVIDER_KEY.as_dict(private=False))])
NOW = int(time.time())


def claims(**changes: Any) -> dict[str, Any]:
    base = {
        "iss": ISSUER,
        "sub": "wang",
        "aud": CLIENT,
        "exp": NOW + 300,
        "iat": NOW,
        "nonce": NONCE,
        "preferred_username": "liyuan-wang",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def signed(payload: dict[str, Any], key: Any = PROVIDER_KEY, alg: str = "RS256") -> str:
    return jwt.encode({"alg": alg, "kid": "k1"}, payload, key)


def check(token: str, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "issuer": ISSUER,
        "client_id": CLIENT,
        "nonce": NONCE,
        "algorithms": ["RS256"],
        "now": NOW,  # the claims' own clock: a suite that runs for minutes ages nothing
        **kw,
    }
    return validate_id_token(token, KEYS, **args)


def test_a_valid_id_token_gives_its_claims() -> None:
    got = check(signed(claims()))
    assert got["sub"] == "wang" and got["preferred_username"] == "liyuan-wang"
    # several audiences naming this client, with azp this client
    assert check(signed(claims(aud=[CLIENT, "other"], azp=CLIENT)))["sub"] == "wang"


@pytest.mark.parametrize(
    "payload",
    [
        claims(iss="https://evil.example"),
        claims(aud="another-client"),
        claims(aud=[CLIENT, "other"], azp="other"),
        claims(exp=NOW - 3600),
        claims(nonce="replayed"),
        claims(nonce=None),
        claims(iss=None),
        claims(aud=None),
        claims(exp=None),
        claims(iat=None),
    ],
    ids=[
        "issuer",
        "audience",
        "azp",
        "expired",
        "nonce",
        "no-nonce",
        "no-iss",
        "no-aud",
        "no-exp",
        "no-iat",
    ],
)
def test_a_wrong_claim_is_refused(payload: dict[str, Any]) -> None:
    with pytest.raises(JoseError):
        check(signed(payload))


def test_another_key_or_algorithm_is_refused() -> None:
    with pytest.raises(JoseError):
        check(signed(claims(), key=OTHER_KEY))  # same kid, not the provider's key
    secret = OctKey.import_key("a shared secret of thirty-two bytes!")
    with pytest.raises(JoseError):
        check(signed(claims(), key=secret, alg="HS256"))
    header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    body = signed(claims()).split(".")[1]
    with pytest.raises(JoseError):
        check(f"{header}.{body}.")


def test_at_hash_must_match_the_access_token() -> None:
    digest = hashlib.sha256(b"the-access-token").digest()[:16]
    at_hash = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    token = signed(claims(at_hash=at_hash))
    assert check(token, access_token="the-access-token")["sub"] == "wang"
    with pytest.raises(JoseError):
        check(token, access_token="another-access-token")


def test_the_flow_cookie_is_signed_and_expires() -> None:
    secret, other = "platform-secret-of-32-bytes-at-least", "another-secret-of-32-bytes-or-more"
    flow = Flow.new()
    assert 43 <= len(flow.verifier) <= 128  # RFC 7636
    sealed = seal_flow(flow, secret)
    assert open_flow(sealed, secret) == flow
    assert open_flow(sealed, other) is None
    assert open_flow(sealed[:-3] + "abc", secret) is None
    assert open_flow(seal_flow(flow, secret, now=time.time() - 3600), secret) is None
    assert open_flow(None, secret) is None
    assert state_matches(flow, flow.state)
    assert not state_matches(flow, flow.state + "x") and not state_matches(flow, None)

"""The session cookie's request checks (tongxin.runtime.auth): which requests a browser
sent from another site, and the CSRF token bound to a session."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from tongxin.runtime.auth import cross_site, csrf_token


def request(**headers: str) -> Request:
    raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw})


@pytest.mark.parametrize(
    ("headers", "cross"),
    [
        ({}, False),  # not a browser: no ambient cookie to abuse
        ({"sec_fetch_site": "same-origin"}, False),
        ({"sec_fetch_site": "none"}, False),  # typed in the address bar, a bookmark
        ({"sec_fetch_site": "same-site"}, True),  # another port or subdomain
        ({"sec_fetch_site": "cross-site"}, True),
        ({"host": "127.0.0.1:8001", "origin": "http://127.0.0.1:8001"}, False),
        ({"host": "127.0.0.1:8001", "origin": "http://127.0.0.1:8011"}, True),
        ({"host": "127.0.0.1:8001", "origin": "null"}, True),
        ({"host": "tongxin.example", "origin": "https://evil.example"}, True),
        # Sec-Fetch-Site, when sent, decides
        ({"host": "a", "origin": "http://a", "sec_fetch_site": "cross-site"}, True),
    ],
)
def test_cross_site(headers: dict[str, str], cross: bool) -> None:
    assert cross_site(request(**headers)) is cross


def test_the_csrf_token_belongs_to_its_session_and_secret() -> None:
    token = csrf_token("s" * 32, "session-a")
    assert token == csrf_token("s" * 32, "session-a") and len(token) == 64
    assert token != csrf_token("s" * 32, "session-b")
    assert token != csrf_token("t" * 32, "session-a")

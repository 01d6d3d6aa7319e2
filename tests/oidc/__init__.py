"""A real OpenID Provider for the tests (provider.mjs: the certified ``oidc-provider`` npm
package), run as a subprocess on a free port, and a client that signs in at its pages as a
browser would."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from tests.support import unique
from tongxin.devstack.procs import free_port

HERE = Path(__file__).parent
PACKAGE = HERE / "node_modules" / "oidc-provider"


def ensure_installed() -> None:
    """The provider's npm packages, as ``make test`` installs them (npm ci, the lock)."""
    if shutil.which("node") is None:
        pytest.fail("Node.js is needed for the OpenID Provider of the sign-in tests")
    if not (PACKAGE / "package.json").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=HERE, check=True, timeout=300
        )


@dataclass
class OpenIDProvider:
    """A running provider: its issuer and the one client it knows (Tongxin)."""

    issuer: str
    client_id: str
    client_secret: str
    log: Path

    def settings(self) -> dict[str, str]:
        """The TONGXIN_OIDC_* environment that points Tongxin at this provider."""
        return {
            "TONGXIN_OIDC_ISSUER": self.issuer,
            "TONGXIN_OIDC_CLIENT_ID": self.client_id,
            "TONGXIN_OIDC_CLIENT_SECRET": self.client_secret,
        }

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def openid_provider(
    redirect_uri: str, accounts: dict[str, dict[str, str]], host: str = "localhost"
) -> Iterator[OpenIDProvider]:
    """The provider on a free port of ``host`` (``localhost``: another site than Tongxin's
    127.0.0.1, as the county's provider is), knowing ``accounts`` (login → claims) and
    sending people back to ``redirect_uri`` only; stopped afterwards."""
    ensure_installed()
    issuer = f"http://{host}:{free_port()}"
    provider = OpenIDProvider(
        issuer,
        client_id="tongxin-console",
        client_secret=unique("secret-"),
        log=Path(tempfile.mkdtemp(prefix="oidc-")) / "provider.log",
    )
    env = {
        **os.environ,
        "OIDC_ISSUER": issuer,
        "OIDC_CLIENT_ID": provider.client_id,
        "OIDC_CLIENT_SECRET": provider.client_secret,
        "OIDC_REDIRECT_URI": redirect_uri,
        "OIDC_ACCOUNTS": json.dumps(accounts),
    }
    with provider.log.open("wb") as out:
        proc = subprocess.Popen(
            ["node", "provider.mjs"], cwd=HERE, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the OpenID Provider exited ({proc.returncode}):\n{provider.output()}")
            try:
                r = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=2)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the OpenID Provider did not answer:\n{provider.output()}")
            time.sleep(0.2)
        yield provider
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*method="post"', re.IGNORECASE)


async def sign_in_at_provider(
    http: httpx.AsyncClient, authorize_url: str, login: str, redirect_uri: str
) -> str:
    """Go through the provider's pages from ``authorize_url`` as a browser would (its
    cookies kept in ``http``), signing in as ``login``; the URL it finally sends the
    browser to (``redirect_uri?code=…&state=…``)."""
    url = authorize_url
    for _ in range(12):
        r = await http.get(url)
        while r.is_redirect:
            url = urljoin(url, r.headers["location"])
            if url.startswith(redirect_uri):
                return url
            r = await http.get(url)
        assert r.status_code == 200, f"{url}: {r.status_code} {r.text[:500]}"
        form = _FORM.search(r.text)
        assert form, f"{url}: no form on the provider's page:\n{r.text[:1000]}"
        action = urljoin(url, html.unescape(form.group(1)))
        posted = await http.post(
            action, data={"prompt": "login", "login": login, "password": "any password"}
        )
        assert posted.is_redirect, f"{action}: {posted.status_code} {posted.text[:500]}"
        url = urljoin(action, posted.headers["location"])
        if url.startswith(redirect_uri):
            return url
    raise AssertionError(f"the provider never sent the browser back to {redirect_uri}")

"""One in-process intake (the accounts' home) on the real stack, with every log line it
writes and every answer the tests get kept, to scan them for passwords and hashes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.intake.app import create_app
from services.intake.config import IntakeSettings
from tests.support import on_stack, unique
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.auth import SESSION_COOKIE, Role, mint_token
from tongxin.runtime.logs import JsonFormatter
from tongxin.runtime.mongo import Doc


class Lines(logging.Handler):
    """Every log record, formatted as the service writes it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter("intake"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass
class Front:
    """The running intake, an admin's bearer token, and what passed by."""

    app: FastAPI
    http: httpx.AsyncClient
    settings: IntakeSettings
    db: AsyncDatabase[Doc]
    logs: Lines
    answers: list[str] = field(default_factory=list)

    def admin(self) -> dict[str, str]:
        token = mint_token(self.settings.jwt_secret, sub="admin-1", role=Role.ADMIN)
        return {"authorization": f"Bearer {token}"}

    async def call(
        self, method: str, url: str, *, client: str = "10.0.0.1", **kw: Any
    ) -> httpx.Response:
        """A request from ``client`` (X-Forwarded-For: intake trusts it here); the answer
        is kept for the scan."""
        headers = {"x-forwarded-for": client, **kw.pop("headers", {})}
        r = await self.http.request(method, url, headers=headers, **kw)
        self.http.cookies.clear()  # each test names the cookie it sends
        self.answers.append(f"{r.headers}\n{r.text}")
        return r

    async def create(
        self, password: str, role: str = "staff", unit: str | None = "community:liyuan"
    ) -> str:
        name = unique("u").lower()
        r = await self.call(
            "POST",
            "/v1/accounts",
            headers=self.admin(),
            json={
                "name": name,
                "display_name": "王芳",
                "role": role,
                "unit": unit,
                "password": password,
            },
        )
        assert r.status_code == 201, r.text
        return name

    async def sign_in(self, name: str, password: str, client: str = "10.0.0.1") -> httpx.Response:
        return await self.call(
            "POST", "/v1/session", client=client, json={"name": name, "password": password}
        )

    async def ready(self, password: str, client: str = "10.0.0.1", **kw: Any) -> str:
        """An account whose initial password was changed to ``password``; its name."""
        first = f"Initial-{unique('pw')}"
        name = await self.create(first, **kw)
        r = await self.call(
            "POST",
            "/v1/session/password",
            client=client,
            json={"name": name, "current_password": first, "new_password": password},
        )
        assert r.status_code == 200, r.text
        return name


def set_cookie(r: httpx.Response, name: str = SESSION_COOKIE) -> str:
    """The Set-Cookie header of ``name`` in a response."""
    found = [h for h in r.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    assert len(found) == 1, r.headers
    return found[0]


def session_of(r: httpx.Response) -> str:
    """The session cookie's value a response set."""
    return set_cookie(r).split(";", 1)[0].split("=", 1)[1]


def with_session(session: str, **headers: str) -> dict[str, str]:
    """Headers of a browser request carrying the session cookie (same origin)."""
    return {"cookie": f"{SESSION_COOKIE}={session}", "sec-fetch-site": "same-origin", **headers}


@pytest.fixture(scope="package")
async def front(stack: LocalStack) -> AsyncIterator[Front]:
    settings = IntakeSettings(
        **on_stack(stack, unique("acc")),
        intake_trust_forwarded_for=True,
        signin_client_max_failures=12,
    )
    app = create_app(settings)
    logs = Lines()
    logging.getLogger().addHandler(logs)
    client: AsyncMongoClient[Doc] = AsyncMongoClient(stack.mongodb_uri, tz_aware=True)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://intake", timeout=30
            ) as http:
                yield Front(app, http, settings, client[settings.db_name("intake")], logs)
    finally:
        logging.getLogger().removeHandler(logs)
        await client.close()

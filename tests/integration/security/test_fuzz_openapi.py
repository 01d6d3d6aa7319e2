"""Schemathesis against each service's own OpenAPI, on the real stack (issue 8).

For every operation of intake, routing, volunteer and notify, schemathesis generates
requests from the operation's schema (path and query parameters, headers, bodies) — valid
ones, and invalid ones (negative mode: wrong types, missing or extra fields), which
are sent to the running app in this process (its Kafka and database are the session
stack's) — with a token of a role that may call the operation, and without one. Every
answer must be:

- never a 5xx (``not_a_server_error``),
- a status code the operation documents (``status_code_conformance``),
- of the documented content type, with a body that matches the documented schema
  (``content_type_conformance``, ``response_schema_conformance``).

The run is deterministic (``derandomize``: examples are derived from the test, not from a
random seed) and bounded (``EXAMPLES`` per operation and caller), so CI sees the same
requests every time; all four services take well under two minutes on two cores.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup
from schemathesis.schemas import APIOperation, BaseSchema

from services.notify.app import create_app as notify_app
from tests.integration.notify.harness import stack_settings
from tests.integration.security.conftest import SECRET, Services
from tongxin.devstack.stack import LocalStack

pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 8  # per operation and caller; the explicit schema examples come on top
# Callers per service: roles that pass authentication (and most role checks), then nobody.
CALLERS: dict[str, tuple[str, ...]] = {
    "intake": ("admin", "platform_1", "anon"),
    "routing": ("staff_town", "dept_civil", "anon"),
    "volunteer": ("staff_town", "vol_a", "anon"),
    "notify": ("admin", "anon"),
}
# Operations whose answers are not JSON documents of the platform (text exposition).
SKIP = {("GET", "/metrics")}


@dataclass
class Target:
    """One service under fuzz: its schema and a way to send a request to it."""

    name: str
    schema: BaseSchema
    send: Callable[[dict[str, Any]], httpx.Response]
    auth: Callable[[str], dict[str, str]]
    sent: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, status


def _operations(schema: BaseSchema) -> list[APIOperation]:
    ops = []
    for result in schema.get_all_operations():
        op = result.ok()
        if (op.method.upper(), op.path) not in SKIP:
            ops.append(op)
    return ops


def _fuzz(target: Target, caller: str, mode: GenerationMode) -> list[str]:
    """Run every operation's examples as ``caller``; the failures, described."""
    failures: list[str] = []
    for op in _operations(target.schema):
        _fuzz_operation(target, op, caller, mode, failures)
    return failures


def _fuzz_operation(
    target: Target, op: APIOperation, caller: str, mode: GenerationMode, failures: list[str]
) -> None:
    headers = target.auth(caller)
    seen: set[str] = set()

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        kwargs = case.as_transport_kwargs(base_url=f"http://{target.name}", headers=headers)
        response = target.send(kwargs)
        target.sent.append((op.method.upper(), op.path, response.status_code))
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (FailureGroup, AssertionError) as exc:
            key = f"{mode.value} {op.method.upper()} {op.path} → {response.status_code}"
            if key not in seen:
                seen.add(key)
                failures.append(
                    f"[{caller}] {key}: {str(exc).strip()[:600]}\n"
                    f"  request: {case.as_curl_command(headers=headers)[:400]}\n"
                    f"  body: {response.text[:300]}"
                )

    try:
        run()
    except Unsatisfiable:
        # nothing to make invalid (no parameters, no body): negative mode has no case
        if mode is not GenerationMode.NEGATIVE:
            raise


def _sender(
    client: httpx.AsyncClient, loop: asyncio.AbstractEventLoop
) -> Callable[[dict[str, Any]], httpx.Response]:
    """Send a prepared request on the app's own event loop (hypothesis runs in a thread)."""

    async def call(kwargs: dict[str, Any]) -> httpx.Response:
        kwargs = dict(kwargs)
        method, url = kwargs.pop("method"), kwargs.pop("url")
        for unsupported in ("verify", "cert", "allow_redirects"):
            kwargs.pop(unsupported, None)
        cookies = kwargs.pop("cookies", None)
        if cookies:  # httpx deprecates per-request cookies: send them as the header
            headers = dict(kwargs.get("headers") or {})
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
            kwargs["headers"] = headers
        if "data" in kwargs and isinstance(kwargs["data"], (bytes, str)):
            kwargs["content"] = kwargs.pop("data")
        return await client.request(method, url, **kwargs)

    def send(kwargs: dict[str, Any]) -> httpx.Response:
        return asyncio.run_coroutine_threadsafe(call(kwargs), loop).result(30)

    return send


@pytest.fixture(scope="module")
async def notify_client(stack: LocalStack) -> AsyncIterator[httpx.AsyncClient]:
    app = notify_app(stack_settings(stack, jwt_secret=SECRET))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://notify", timeout=30
        ) as client,
    ):
        yield client


async def _target(name: str, client: httpx.AsyncClient, services: Services) -> Target:
    spec = (await client.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(spec)
    return Target(name, schema, _sender(client, asyncio.get_running_loop()), services.auth)


@pytest.mark.parametrize("service", ["intake", "routing", "volunteer", "notify"])
async def test_openapi_fuzz_never_5xx_and_answers_as_documented(
    service: str, services: Services, notify_client: httpx.AsyncClient
) -> None:
    client = notify_client if service == "notify" else services.client(service)
    target = await _target(service, client, services)
    assert _operations(target.schema), "no operations in the schema"
    failures: list[str] = []
    callers = CALLERS[service]
    # valid requests from every caller; invalid ones (wrong types, missing fields, …) from
    # the first, which gets furthest into the handlers
    runs = [(c, GenerationMode.POSITIVE) for c in callers] + [(callers[0], GenerationMode.NEGATIVE)]
    for caller, mode in runs:
        failures += await asyncio.to_thread(_fuzz, target, caller, mode)
    ops = _operations(target.schema)
    # every operation was exercised, by every caller, and some got past the auth checks
    assert {(m, p) for m, p, _ in target.sent} == {(o.method.upper(), o.path) for o in ops}
    assert len(target.sent) >= len(ops) * len(callers)
    assert any(status < 300 for *_, status in target.sent), "nothing got past auth"
    statuses = Counter(status for *_, status in target.sent)
    print(f"\n[fuzz] {service}: {len(ops)} operations, {len(target.sent)} requests, {statuses}")
    assert not failures, f"{len(failures)} failure(s):\n" + "\n\n".join(failures)


def test_the_checks_catch_an_undocumented_answer() -> None:
    """The validation used above fails on a status the operation does not document, and
    on a body that does not match its schema (so the fuzz test can fail)."""
    spec = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/x": {
                "get": {
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["a"],
                                        "properties": {"a": {"type": "integer"}},
                                    }
                                }
                            },
                        }
                    }
                }
            }
        },
    }
    op = schemathesis.openapi.from_dict(spec)["/x"]["GET"]
    case = op.Case()
    request = httpx.Request("GET", "http://t/x")

    def answer(status: int, body: Any) -> httpx.Response:
        response = httpx.Response(status, json=body, request=request)
        response.elapsed = timedelta(milliseconds=1)  # as a client sets it once read
        return response

    for status, body in ((200, {"a": "not an int"}), (418, {"a": 1}), (500, {"a": 1})):
        with pytest.raises(FailureGroup):
            case.validate_response(answer(status, body), checks=CHECKS)
    case.validate_response(answer(200, {"a": 1}), checks=CHECKS)

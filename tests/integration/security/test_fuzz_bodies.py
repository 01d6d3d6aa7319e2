"""A small schema-guided fuzz of every write route of intake, routing and volunteer
(hypothesis; schemathesis is not a dependency): whatever the body, path id or caller, the
answer is never a 5xx, and every error is in the SPEC shape."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.security.conftest import Services

# the services run on the event loop in another thread while hypothesis draws; their own
# use of ``random`` (client ids, jitter) is not the strategies' and is not a problem
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(
        ["community:liyuan", "compound:jinyuan", "dept:justice", "v:a", "13812345678"]
    ),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
IDS = st.sampled_from(["nope", "C-YS-20000101-000001", "v:a", "care:x", "..", "%00", "a" * 300])
WHO = st.sampled_from(["admin", "staff_town", "staff_liyuan", "dept_civil", "vol_a", "anon"])


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    ops = []
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            if method not in ("post", "put", "patch", "delete"):
                continue
            props: list[str] = []
            content = (op.get("requestBody") or {}).get("content", {})
            ref = (content.get("application/json") or {}).get("schema", {})
            ref = ref.get("$ref") or next(
                (a.get("$ref") for a in ref.get("anyOf", []) if "$ref" in a), None
            )
            if ref:
                props = list(
                    schema["components"]["schemas"][ref.rsplit("/", 1)[1]].get("properties", {})
                )
            ops.append((method.upper(), path, props))
    return ops


async def _fuzz(services: Services, service: str, examples: int) -> None:
    client = services.client(service)
    ops = _operations((await client.get("/openapi.json")).json())
    assert ops
    loop = asyncio.get_running_loop()

    async def call(method: str, path: str, body: Any, who: str) -> httpx.Response:
        return await client.request(method, path, json=body, headers=services.auth(who))

    # derandomized: the examples follow from the test, so CI tries the same bodies every
    # run and a failure found once is found again
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        method, template, props = data.draw(st.sampled_from(ops))
        path = re.sub(r"\{[^}]+\}", lambda _m: data.draw(IDS), template)
        keys = st.sampled_from(props) if props else st.text(max_size=8)
        body = data.draw(st.one_of(JSON, st.dictionaries(keys, JSON, max_size=6)))
        who = data.draw(WHO)
        r = asyncio.run_coroutine_threadsafe(call(method, path, body, who), loop).result(30)
        assert r.status_code < 500, (method, path, body, who, r.text)
        if r.status_code >= 400:
            assert set(r.json()["error"]) == {"code", "message", "details"}

    await asyncio.to_thread(run)


async def test_fuzz_intake(services: Services) -> None:
    await _fuzz(services, "intake", 150)


async def test_fuzz_routing(services: Services) -> None:
    await _fuzz(services, "routing", 150)


async def test_fuzz_volunteer(services: Services) -> None:
    await _fuzz(services, "volunteer", 150)

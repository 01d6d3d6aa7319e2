"""/openapi.json states each operation's error answers in the SPEC shape (kernel)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from tongxin.runtime.auth import CurrentPrincipal, OptionalPrincipal
from tongxin.runtime.openapi import ErrorResponse
from tongxin.runtime.service import create_service_app
from tongxin.runtime.settings import ServiceSettings


class Body(BaseModel):
    note: str


def _spec() -> dict[str, Any]:
    router = APIRouter()

    @router.get("/public")
    async def public() -> dict[str, str]:
        return {}

    @router.get("/things")
    async def things(principal: CurrentPrincipal, limit: int = 10) -> list[str]:
        return []

    @router.post("/things/{thing_id}/act")
    async def act(thing_id: str, body: Body, principal: OptionalPrincipal) -> dict[str, str]:
        return {}

    @router.delete("/things/{thing_id}", responses={404: {"description": "own words"}})
    async def remove(thing_id: str, principal: CurrentPrincipal) -> None:
        return None

    async def setup(_rt: Any) -> list[Any]:
        return []

    app = create_service_app(
        name="t",
        title="t",
        settings=ServiceSettings(env="test"),
        routers=[router],
        indexes=[],
        setup=setup,
    )
    return app.openapi()


def test_each_operation_documents_the_errors_it_can_give() -> None:
    paths = _spec()["paths"]

    def statuses(path: str, method: str) -> list[str]:
        return sorted(paths[path][method]["responses"])

    assert statuses("/public", "get") == ["200", "503"]  # the database may be away
    assert statuses("/healthz", "get") == ["200"]  # liveness needs nothing else
    assert statuses("/things", "get") == ["200", "400", "401", "403", "422", "503"]
    assert statuses("/things/{thing_id}/act", "post") == [
        "200",
        "400",
        "401",
        "403",
        "404",
        "409",
        "422",
        "503",
    ]


def test_errors_have_the_spec_shape_and_routes_keep_their_own_words() -> None:
    spec = _spec()
    responses = spec["paths"]["/things/{thing_id}/act"]["post"]["responses"]
    ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for status in ("400", "401", "403", "404", "409", "422", "503"):
        assert responses[status]["content"]["application/json"]["schema"] == ref, status
    schema = spec["components"]["schemas"]["ErrorResponse"]
    assert schema["required"] == ["error"]
    assert ErrorResponse.model_validate({"error": {"code": "x", "message": "y"}})
    own = spec["paths"]["/things/{thing_id}"]["delete"]["responses"]["404"]
    assert own["description"] == "own words"


def test_routes_reading_the_token_list_the_bearer_scheme() -> None:
    spec = _spec()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["paths"]["/things"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in spec["paths"]["/public"]["get"]

"""The compatibility guard on synthetic schemas (what counts as breaking)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tongxin.contracts.compat import breaking_changes


class Place(BaseModel):
    community: str
    compound: str | None = None


class V1(BaseModel):
    request_id: str
    title: str
    count: int = 0
    place: Place | None = None


def schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def test_identical_schema_is_compatible() -> None:
    assert breaking_changes(schema(V1), schema(V1)) == []


def test_new_optional_field_is_compatible() -> None:
    class Added(V1):
        note: str | None = None

    assert breaking_changes(schema(V1), schema(Added)) == []


def test_removed_field_breaks() -> None:
    class Removed(BaseModel):
        request_id: str
        count: int = 0
        place: Place | None = None

    assert breaking_changes(schema(V1), schema(Removed)) == ["title: removed"]


def test_changed_type_breaks() -> None:
    class Retyped(BaseModel):
        request_id: str
        title: str
        count: str = "0"
        place: Place | None = None

    problems = breaking_changes(schema(V1), schema(Retyped))
    assert problems == ["count: type changed from ['integer'] to ['string']"]


def test_widening_to_nullable_is_compatible() -> None:
    class Widened(BaseModel):
        request_id: str
        title: str | None = None
        count: int = 0
        place: Place | None = None

    assert breaking_changes(schema(V1), schema(Widened)) == []


def test_new_required_field_breaks() -> None:
    class Required(V1):
        tier: str

    assert breaking_changes(schema(V1), schema(Required)) == ["tier: new required property"]


def test_nested_model_changes_are_found() -> None:
    class Place2(BaseModel):
        compound: str | None = None

    class Nested(BaseModel):
        request_id: str
        title: str
        count: int = 0
        place: Place2 | None = None

    released = schema(V1)
    current = schema(Nested)
    current["$defs"]["Place"] = current["$defs"].pop("Place2")
    current["properties"]["place"]["anyOf"][0]["$ref"] = "#/$defs/Place"
    assert breaking_changes(released, current) == ["place.community: removed"]

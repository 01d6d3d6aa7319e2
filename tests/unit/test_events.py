"""Event models, CloudEvents types, parsing and chained upcasters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from tongxin.contracts import events
from tongxin.contracts.enums import Category, Channel, NotifyChannel, Skill, Tier
from tongxin.contracts.events import (
    EVENT_MODELS,
    CaseRouted,
    Event,
    NotificationSent,
    RequestSubmitted,
    TaskOffered,
    Upcaster,
    event_model_for,
    parse_ce_type,
    parse_event,
    upcast,
)
from tongxin.contracts.topics import TOPICS

WHEN = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def _submitted_data(**extra: Any) -> dict[str, Any]:
    return {
        "request_id": "req-1",
        "channel": "app",
        "category": "sanitation",
        "title": "垃圾清运不及时",
        "description": "三号楼门口垃圾堆了两天。",
        "community": "同心社区",
        "submitter": {"name": "李四"},
        "submitted_at": "2024-05-01T08:00:00Z",
        **extra,
    }


def _routed_data(**extra: Any) -> dict[str, Any]:
    return {
        "request_id": "req-1",
        "case_id": "case-1",
        "tier": "general",
        "category": "sanitation",
        "community": "同心社区",
        "units": ["环卫所"],
        "classification": {"rule": "default", "reason": "常规分类"},
        "acknowledge_by": "2024-05-01T10:00:00Z",
        "resolve_by": "2024-05-03T08:00:00Z",
        **extra,
    }


# --- types and registry ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (RequestSubmitted, "tongxin.request.submitted.v1"),
        (CaseRouted, "tongxin.case.routed.v1"),
        (TaskOffered, "tongxin.task.offered.v1"),
        (NotificationSent, "tongxin.notification.sent.v1"),
    ],
)
def test_ce_type_of_each_event_model(model: type[Event], expected: str) -> None:
    assert model.ce_type() == expected


def test_ce_type_carries_the_class_version() -> None:
    class CaseRoutedV3(CaseRouted):
        version = 3

    assert CaseRoutedV3.ce_type() == "tongxin.case.routed.v3"
    assert CaseRouted.ce_type() == "tongxin.case.routed.v1"


def test_event_models_registry_holds_the_core_events() -> None:
    core = {
        "tongxin.request.submitted.v1": RequestSubmitted,
        "tongxin.case.routed.v1": CaseRouted,
        "tongxin.task.offered.v1": TaskOffered,
        "tongxin.notification.sent.v1": NotificationSent,
    }

    assert {k: EVENT_MODELS.get(k) for k in core} == core


def test_event_models_registry_is_keyed_by_each_models_own_ce_type() -> None:
    for ce_type, model in EVENT_MODELS.items():
        assert issubclass(model, Event)
        assert model.ce_type() == ce_type
    assert len(set(EVENT_MODELS.values())) == len(EVENT_MODELS)


def test_every_registered_event_travels_on_a_contract_topic() -> None:
    carried = {t for topic in TOPICS for t in topic.event_types}

    for model in EVENT_MODELS.values():
        assert model.event_type in carried, f"{model.__name__} is on no topic"


def test_event_model_for_known_and_unknown_types() -> None:
    assert event_model_for("tongxin.task.offered.v1") is TaskOffered
    assert event_model_for("tongxin.task.offered.v2") is None
    assert event_model_for("task.offered") is None


def test_events_are_immutable() -> None:
    event = RequestSubmitted.model_validate(_submitted_data())

    with pytest.raises(ValidationError):
        event.title = "changed"


# --- parse_ce_type ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ce_type", "expected"),
    [
        ("tongxin.case.routed.v1", ("case.routed", 1)),
        ("tongxin.request.submitted.v12", ("request.submitted", 12)),
        ("tongxin.care.visit_overdue.v2", ("care.visit_overdue", 2)),
        ("tongxin.x.v0", ("x", 0)),
    ],
)
def test_parse_ce_type_splits_type_and_version(ce_type: str, expected: tuple[str, int]) -> None:
    assert parse_ce_type(ce_type) == expected


@pytest.mark.parametrize(
    "ce_type",
    [
        "",
        "com.example.case.routed.v1",  # not ours
        "tongxin.case.routed",  # no version
        "tongxin.case.routed.v",  # empty version
        "tongxin.case.routed.vx",  # version not a number
        "tongxin.case.routed.v-1",
        "tongxin.v1",  # no type
        "tongxin..v1",
        "Tongxin.case.routed.v1",  # the prefix is case-sensitive
    ],
)
def test_parse_ce_type_returns_none_for_foreign_or_malformed_types(ce_type: str) -> None:
    assert parse_ce_type(ce_type) is None


@pytest.mark.parametrize("ce_type", ["tongxin.case.routed.v²", "tongxin.case.routed.v١"])
def test_parse_ce_type_returns_none_for_non_ascii_digits(ce_type: str) -> None:
    # Regression: str.isdigit() accepts "²" (int() then raised) and "١" (parsed as 1).
    assert parse_ce_type(ce_type) is None


# --- parse_event -----------------------------------------------------------------------------


def test_parse_event_builds_the_model_of_a_known_type() -> None:
    event = parse_event("tongxin.request.submitted.v1", _submitted_data())

    assert isinstance(event, RequestSubmitted)
    assert event.request_id == "req-1"
    assert event.channel is Channel.APP
    assert event.category is Category.SANITATION
    assert event.submitter.name == "李四"
    assert event.submitted_at == WHEN


def test_parse_event_builds_nested_models_and_enums() -> None:
    event = parse_event("tongxin.case.routed.v1", _routed_data(skills=["legal"]))

    assert isinstance(event, CaseRouted)
    assert event.tier is Tier.GENERAL
    assert event.classification.rule == "default"
    assert event.skills == [Skill.LEGAL]


def test_parse_event_ignores_unknown_fields() -> None:
    data = _submitted_data(added_in_v1_1="new", submitter={"name": "李四", "wechat": "li4"})

    event = parse_event("tongxin.request.submitted.v1", data)

    assert isinstance(event, RequestSubmitted)
    assert "added_in_v1_1" not in event.model_dump()
    assert "wechat" not in event.submitter.model_dump()


@pytest.mark.parametrize(
    "ce_type",
    [
        "tongxin.request.forwarded.v1",  # our prefix, but no such event
        "tongxin.request.submitted.v9",  # a version this code does not know
        "com.example.request.submitted.v1",  # not ours
        "garbage",
    ],
)
def test_parse_event_returns_none_for_unknown_types(ce_type: str) -> None:
    assert parse_event(ce_type, _submitted_data()) is None


def test_parse_event_raises_for_invalid_data_of_a_known_type() -> None:
    data = _submitted_data(channel="carrier_pigeon")

    with pytest.raises(ValidationError):
        parse_event("tongxin.request.submitted.v1", data)


def test_parse_event_upcasts_with_the_module_table(monkeypatch: pytest.MonkeyPatch) -> None:
    def v0_to_v1(data: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in data.items() if k != "rid"}
        return {**out, "request_id": data["rid"]}

    monkeypatch.setitem(events.UPCASTERS, ("notification.sent", 0), v0_to_v1)
    data = {
        "rid": "req-9",
        "notification_id": "n-1",
        "source_event_id": "evt-1",
        "source_event_type": "tongxin.case.routed.v1",
        "recipient": "ops",
        "channel": "console",
        "sent_at": "2024-05-01T08:00:00Z",
    }

    event = parse_event("tongxin.notification.sent.v0", data)

    assert isinstance(event, NotificationSent)
    assert event.request_id == "req-9"
    assert event.channel is NotifyChannel.CONSOLE


# --- upcast ----------------------------------------------------------------------------------


def _chain() -> tuple[dict[tuple[str, int], Upcaster], list[int]]:
    calls: list[int] = []

    def v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
        calls.append(1)
        return {**data, "name": data["title"], "steps": [*data.get("steps", []), 2]}

    def v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
        calls.append(2)
        out = {k: v for k, v in data.items() if k != "title"}
        return {**out, "steps": [*data["steps"], 3]}

    table: dict[tuple[str, int], Upcaster] = {
        ("thing.done", 1): v1_to_v2,
        ("thing.done", 2): v2_to_v3,
    }
    return table, calls


def test_upcast_chains_v1_to_v2_to_v3_in_order() -> None:
    table, calls = _chain()

    version, data = upcast("thing.done", 1, {"title": "旧", "steps": [1]}, table)

    assert version == 3
    assert data == {"name": "旧", "steps": [1, 2, 3]}
    assert calls == [1, 2]


def test_upcast_starts_from_the_given_version() -> None:
    table, calls = _chain()

    version, data = upcast("thing.done", 2, {"title": "x", "name": "n", "steps": []}, table)

    assert version == 3
    assert data == {"name": "n", "steps": [3]}
    assert calls == [2]


def test_upcast_leaves_the_latest_version_untouched() -> None:
    table, calls = _chain()
    original = {"name": "n"}

    version, data = upcast("thing.done", 3, original, table)

    assert (version, data) == (3, original)
    assert calls == []


def test_upcast_only_applies_upcasters_of_the_same_type() -> None:
    table, calls = _chain()

    version, data = upcast("other.done", 1, {"title": "x"}, table)

    assert (version, data) == (1, {"title": "x"})
    assert calls == []


def test_upcast_does_not_mutate_the_input() -> None:
    table, _calls = _chain()
    original = {"title": "旧", "steps": [1]}

    upcast("thing.done", 1, original, table)

    assert original == {"title": "旧", "steps": [1]}


def test_upcast_with_an_empty_table_is_the_identity() -> None:
    data = {"a": 1}

    assert upcast("case.routed", 1, data, {}) == (1, data)

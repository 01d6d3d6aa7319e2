"""The checked-in contract documents are fresh, and no event type changed incompatibly
since its last released schema (docs/contracts/released/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tongxin.contracts.asyncapi import asyncapi_document, dumps, event_schemas
from tongxin.contracts.compat import breaking_changes
from tongxin.contracts.events import EVENT_MODELS, UPCASTERS, parse_ce_type

CONTRACTS = Path(__file__).resolve().parents[3] / "docs" / "contracts"
REGENERATE = "run `.venv/bin/tongxin asyncapi --write docs/contracts` and commit the result"


def test_asyncapi_document_is_fresh() -> None:
    checked_in = (CONTRACTS / "asyncapi.json").read_text(encoding="utf-8")
    assert checked_in == dumps(asyncapi_document()), f"docs/contracts is stale: {REGENERATE}"


def test_every_event_schema_is_checked_in_and_fresh() -> None:
    current = event_schemas()
    on_disk = {p.stem: p for p in (CONTRACTS / "schemas").glob("*.json")}
    assert set(on_disk) == set(current), f"schemas differ from the models: {REGENERATE}"
    for ce_type, schema in current.items():
        assert on_disk[ce_type].read_text(encoding="utf-8") == dumps(schema), (
            f"{ce_type} is stale: {REGENERATE}"
        )


RELEASED = sorted((CONTRACTS / "released").glob("*.json"))


@pytest.mark.parametrize("path", RELEASED, ids=lambda p: p.stem)
def test_released_event_types_stay_compatible(path: Path) -> None:
    released = json.loads(path.read_text(encoding="utf-8"))
    ce_type = path.stem
    current = event_schemas()
    if ce_type in current:
        problems = breaking_changes(released, current[ce_type])
        assert problems == [], (
            f"{ce_type} changed incompatibly: {problems}; bump its version and add an upcaster"
        )
        return
    parsed = parse_ce_type(ce_type)
    assert parsed is not None
    event_type, version = parsed
    newer = [m for m in EVENT_MODELS.values() if m.event_type == event_type]
    assert newer, f"{ce_type} was released but no version of {event_type} exists any more"
    assert (event_type, version) in UPCASTERS, f"no upcaster from {ce_type} to the next version"


def test_there_is_a_released_baseline() -> None:
    assert RELEASED, "docs/contracts/released/ must hold the last released schemas"

"""The hot-path queries of the kernel, intake and routing are served by an index on
SecantusDB, whose planner scans the whole collection for a ``$in`` on any field but
``_id``, for a top-level ``$or`` and for updates by ``_id $in`` — a cost that grows with
every request the platform ever took. Each check explains the filter the code builds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.intake.store import INDEXES as INTAKE_INDEXES
from services.intake.store import REQUESTS, similar_filter
from tests.support import unique
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.mongo import PROCESSED, PROCESSED_INDEXES, Doc, ensure_indexes, make_client
from tongxin.runtime.outbox import OUTBOX, OUTBOX_INDEXES
from tongxin.runtime.scheduler import DEADLINE_INDEXES, DEADLINES, due_filter


@pytest.fixture
async def db(stack: LocalStack) -> AsyncIterator[AsyncDatabase[Doc]]:
    client = make_client(stack.mongodb_uri)
    database = client[unique("plans_")]
    await ensure_indexes(
        database, [*DEADLINE_INDEXES, *INTAKE_INDEXES, *OUTBOX_INDEXES, *PROCESSED_INDEXES]
    )
    yield database
    await client.close()


def stages(explained: dict[str, Any]) -> list[str]:
    plan = explained["queryPlanner"]["winningPlan"]
    out = []
    while plan:
        out.append(plan["stage"])
        plan = plan.get("inputStage")
    return out


async def plan(
    db: AsyncDatabase[Doc], collection: str, flt: Doc, sort: Doc | None = None
) -> list[str]:
    cmd: Doc = {"find": collection, "filter": flt}
    if sort:
        cmd["sort"] = sort
    return stages(await db.command("explain", cmd))


async def test_the_check_tells_a_scan_from_an_index(db: AsyncDatabase[Doc]) -> None:
    # the shapes the planner scans for: the reason for the rest of this file
    assert "COLLSCAN" in await plan(
        db, REQUESTS, {"compound": {"$in": ["a", "b"]}, "status": {"$in": ["x"]}}
    )
    assert "COLLSCAN" in await plan(
        db, DEADLINES, {"$or": [{"lease_until": None}, {"status": "x"}]}
    )


async def test_hot_path_queries_use_an_index(db: AsyncDatabase[Doc]) -> None:
    now = datetime.now(UTC)
    checks = {
        "due deadlines": await plan(db, DEADLINES, due_filter(now), {"due_at": 1}),
        "duplicate candidates": await plan(
            db,
            REQUESTS,
            similar_filter("compound:jinyuan", "sanitation", now - timedelta(hours=72)),
            {"submitted_at": -1},
        ),
        "processed-event marks": await plan(db, PROCESSED, {"_id": {"$in": ["c|1", "c|2"]}}),
        "pending outbox": await plan(db, OUTBOX, {"sent": False}, {"seq": 1}),
        "a batch's documents": await plan(db, REQUESTS, {"_id": {"$in": ["YS-1", "YS-2"]}}),
    }
    scans = {name: s for name, s in checks.items() if "COLLSCAN" in s}
    assert not scans, scans
    assert all("IXSCAN" in s for s in checks.values()), checks

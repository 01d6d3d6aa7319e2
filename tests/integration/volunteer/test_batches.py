"""Case events polled together are decided together: one unit of work for the poll, and
the matching of a later case sees the load an earlier case of the same batch gave a
volunteer (fairness and capacity as if they had come one by one)."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from tests.integration.volunteer.conftest import Harness, routed
from tests.support import eventually

CASES = ("C-bat1", "C-bat2", "C-bat3")


async def _offers(h: Harness) -> list[dict[str, Any]] | None:
    tasks = [d async for d in h.db.tasks.find({"case_id": {"$in": list(CASES)}})]
    if len(tasks) < len(CASES) or any(t["status"] != "offered" for t in tasks):
        return None
    return tasks


def _sample(metrics: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", metrics, re.MULTILINE)
    assert m, f"{name}{labels} not in /metrics"
    return float(m.group(1))


async def _poll_of_three(h: Harness) -> tuple[list[dict[str, Any]], str]:
    """Publish three routed cases while the service is down, so its first poll holds them
    all; the tasks it offered and its /metrics."""
    await h.stop()
    for case_id in CASES:
        await h.publish(routed(case_id))
    await h.start()
    assert h.http is not None
    tasks = await eventually(lambda: _offers(h), timeout=30, what="three offers")
    return tasks, (await h.http.get("/metrics")).text


async def test_a_poll_of_routed_cases_is_one_unit_of_work_and_shares_the_load(
    harness: Harness,
) -> None:
    h = harness
    tasks, metrics = await _poll_of_three(h)

    # the poll was one batch and one transaction
    batch = 'tongxin_consumer_batch_records_count{consumer="volunteer.cases"}'
    assert _sample(metrics, batch) == 1.0
    assert _sample(metrics, 'tongxin_consumer_batch_records_sum{consumer="volunteer.cases"}') == 3
    assert _sample(metrics, "tongxin_unit_of_work_inputs_count") == 1.0
    assert _sample(metrics, "tongxin_unit_of_work_inputs_sum") == 3.0
    assert 'tongxin_volunteer_tasks_total{outcome="offered"} 3.0' in metrics
    assert "tongxin_volunteer_match_seconds_count 3.0" in metrics

    # v:a lives in the cases' compound and wins the first; with that task on their plate
    # (load 2/3, fairness 1/(1 + 1/2)), v:b of the same community wins the second; the
    # third goes back to v:a (v:b now carries as much as v:a and lives farther away)
    by_volunteer = Counter(t["volunteer_id"] for t in tasks)
    assert by_volunteer == {"v:a": 2, "v:b": 1}
    first, second = sorted(
        (t for t in tasks if t["volunteer_id"] == "v:a"), key=lambda t: t["scores"]["fairness"]
    )[::-1]
    assert first["scores"]["fairness"] == 1.0 and first["scores"]["load"] == 1.0
    assert second["scores"]["fairness"] == 0.6667 and second["scores"]["load"] == 0.6667
    to_b = next(t for t in tasks if t["volunteer_id"] == "v:b")
    assert to_b["scores"]["fairness"] == 1.0
    ranked_a = next(r for r in to_b["ranking"] if r["volunteer_id"] == "v:a")
    assert ranked_a["load"] == 0.6667 and ranked_a["total"] < to_b["scores"]["total"]

    # each task was opened once, with one offer event and one accept deadline
    events = await eventually(
        lambda: _offer_events(h), timeout=20, what="three task.offered published"
    )
    assert sorted(e["case_id"] for e in events) == sorted(CASES)
    pending = await h.db.deadlines.count_documents({"kind": "offer_expiry", "status": "pending"})
    assert pending == 3


async def _offer_events(h: Harness) -> list[dict[str, Any]] | None:
    found = [d for t, d in await h.task_events() if t == "task.offered"]
    return found if len(found) >= len(CASES) else None


async def test_capacity_given_away_earlier_in_a_batch_is_not_given_again(
    harness: Harness,
) -> None:
    h = harness
    assert h.http is not None
    r = await h.http.patch("/v1/volunteers/v:a", json={"max_tasks": 1}, headers=h.staff())
    assert r.status_code == 200, r.text
    tasks, metrics = await _poll_of_three(h)
    assert _sample(metrics, "tongxin_unit_of_work_inputs_count") == 1.0

    # v:a takes one task only; the others go to the next best, and the ranking of each
    # later offer counts v:a as overloaded
    by_volunteer = Counter(t["volunteer_id"] for t in tasks)
    assert by_volunteer["v:a"] == 1 and sum(by_volunteer.values()) == 3
    later = [t for t in tasks if t["volunteer_id"] != "v:a"]
    assert all(t["excluded"].get("overloaded") == 1 for t in later)
    assert all("v:a" not in [r["volunteer_id"] for r in t["ranking"]] for t in later)

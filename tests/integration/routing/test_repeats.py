"""Repeat detection: the third open request of one category in one compound blows the
whistle. Open cases are counted per place as cases open and close (counters read by
primary key, not a scan of every case), so a closed case stops counting."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.integration.routing.conftest import Routing
from tests.support import eventually
from tongxin.contracts.events import RequestWithdrawn
from tongxin.contracts.topics import REQUESTS


async def test_the_third_open_request_of_a_place_is_escalated_and_a_closed_one_stops_counting(
    routing: Routing,
) -> None:
    place = {"compound": "compound:jinyuan"}
    first = await routing.submit("legal_aid", **place)
    second = await routing.submit("legal_aid", **place)
    assert (await routing.case(first))["tier"] == "general"
    assert (await routing.case(second))["tier"] == "general"
    third = await routing.submit("legal_aid", **place)
    case = await routing.case(third)
    assert (case["tier"], case["classification"]["rule"]) == ("major", "department-escalated")
    # elsewhere, or another category, counts apart
    other = await routing.submit("legal_aid", compound="compound:yuanxing")
    assert (await routing.case(other))["tier"] == "general"
    counters = {d["_id"]: d["n"] async for d in routing.db.open_by_place.find()}
    assert counters["compound:jinyuan|legal_aid"] == 3

    # two of the three are withdrawn: the place has one open case again
    for cid in (first, second):
        request_id = (await routing.case(cid))["request_id"]
        await routing.publish(
            REQUESTS.name,
            RequestWithdrawn(
                request_id=request_id, reason="已解决", withdrawn_at=datetime.now(UTC)
            ),
        )

    async def one_open() -> bool:
        doc = await routing.db.open_by_place.find_one({"_id": "compound:jinyuan|legal_aid"})
        return doc is not None and doc["n"] == 1

    await eventually(one_open, timeout=30, what="the withdrawn cases stop counting")
    fourth = await routing.submit("legal_aid", **place)
    assert (await routing.case(fourth))["tier"] == "general"

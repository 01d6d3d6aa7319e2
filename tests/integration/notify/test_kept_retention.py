"""A submitter's contact and the case notify kept of a request (personal information: PIPL)
go a window after notify hears the request close, and at a cap after they were stored when it
never closes — notify in-process on real Kafka and SecantusDB, with windows of seconds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from services.notify.store import CASES, CONTACTS
from tests.integration.notify.harness import (
    Notify,
    routed,
    running_notify,
    stack_settings,
    submitted,
)
from tests.support import eventually, unique
from tongxin.contracts.events import (
    CaseClosed,
    RequestWithdrawn,
)
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.mongo import Doc

AFTER_CLOSE_S = 2.0
CAP_S = 20.0  # long enough that a closed one goes well before an open one of its time


@pytest.fixture
async def notify(stack: LocalStack) -> AsyncIterator[Notify]:
    settings = stack_settings(
        stack,
        notify_contacts_keep_s=AFTER_CLOSE_S,
        notify_contacts_cap_s=CAP_S,
        retention_interval_s=0.5,
        retention_count_interval_s=0.5,
    )
    async with running_notify(settings) as n:
        yield n


async def kept(n: Notify, collection: str, _id: str) -> Doc | None:
    return await n.db[collection].find_one({"_id": _id})


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


async def test_a_closed_requests_contact_goes_after_the_window_an_open_one_at_the_cap(
    notify: Notify,
) -> None:
    closed, open_, never_kept = unique("YS-"), unique("YS-"), unique("YS-")
    for rid in (closed, open_):
        await notify.publish(submitted(rid))
        await notify.publish(routed(rid))
    await eventually(lambda: kept(notify, CASES, f"C-{open_}"), what="the open request's case kept")
    await notify.publish(
        CaseClosed(
            request_id=closed,
            case_id=f"C-{closed}",
            at=datetime.now(UTC),
            reason="satisfied",
        )
    )
    # a withdrawal of a request notify never kept a contact of brings none in
    await notify.publish(RequestWithdrawn(request_id=never_kept, withdrawn_at=datetime.now(UTC)))

    async def closed_heard() -> Doc | None:
        doc = await kept(notify, CONTACTS, closed)
        case = await kept(notify, CASES, f"C-{closed}")
        return doc if doc and case and doc.get("closed_at") and case.get("closed_at") else None

    # what is watched from here on: when each was last seen and first missed
    seen: dict[str, list[datetime]] = {closed: [], open_: []}
    missed: dict[str, datetime] = {}
    contact = await eventually(closed_heard, what="the close recorded on contact and case")
    stored = {rid: _aware((await kept(notify, CONTACTS, rid) or {})["stored_at"]) for rid in seen}
    closed_at = _aware(contact["closed_at"])

    async def watch() -> bool:
        for rid in seen:
            if rid in missed:
                continue
            at = datetime.now(UTC)
            if await kept(notify, CONTACTS, rid):
                seen[rid].append(at)
            else:
                missed[rid] = at
        return len(missed) == len(seen)

    await eventually(watch, timeout=CAP_S + 30, interval=0.2, what="both contacts gone")

    # the closed one went once its window after the close was over, before the open one
    assert missed[closed] >= closed_at + timedelta(seconds=AFTER_CLOSE_S)
    assert any(t > missed[closed] for t in seen[open_]), (missed, seen[open_][-1:])
    # the open one stayed past the window a close would have given it, until its cap
    assert seen[open_][-1] > stored[open_] + timedelta(seconds=AFTER_CLOSE_S)
    assert missed[open_] >= stored[open_] + timedelta(seconds=CAP_S)
    # its case with it (the same sweep: give it one more)
    await eventually(
        lambda: _gone(notify, CASES, f"C-{open_}", f"C-{closed}"), what="the cases gone"
    )
    assert await kept(notify, CONTACTS, never_kept) is None
    # and notify answers as if they never were
    r = await notify.http.get(f"/v1/preferences/submitter:{closed}", headers=notify.token())
    assert r.status_code == 404, r.text


async def _gone(n: Notify, collection: str, *ids: str) -> bool:
    return await n.db[collection].count_documents({"_id": {"$in": list(ids)}}) == 0

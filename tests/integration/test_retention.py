"""Bounded storage on real SecantusDB and Kafka: the sweeper deletes what outlived its window
and nothing else, notify's contacts and cases go a window after their request closed or at a
cap (PIPL), `tongxin dlq replay` refuses records older than the processed-event marks, and
under steady load the swept collections of the four services level off (a soak with windows
of a few seconds)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.parser import text_string_to_metric_families
from pymongo.asynchronous.database import AsyncDatabase

from services.notify.domain.kept import Contact, Retention
from services.notify.store import CASES, CONTACTS, PREFERENCES, NotifyStore, kept_expiries
from services.notify.store import INDEXES as NOTIFY_INDEXES
from tests.platform import Platform, running_platform
from tests.support import eventually, read_topic, unique
from tongxin.contracts.envelope import Envelope, encode_record
from tongxin.contracts.events import RequestSubmitted, Submitter
from tongxin.contracts.topics import dlq_topic
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.consumer import dlq_headers
from tongxin.runtime.dlq import pending_counts
from tongxin.runtime.kafka import ensure_topics, make_producer
from tongxin.runtime.mongo import PROCESSED, Doc, ensure_indexes, make_client
from tongxin.runtime.retention import Expiry, Sweeper
from tongxin.runtime.scheduler import (
    CANCELLED,
    DEADLINE_INDEXES,
    DEADLINES,
    FIRED,
    PENDING,
    deadline_expiries,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
async def db(stack: LocalStack) -> AsyncIterator[AsyncDatabase[Doc]]:
    client = make_client(stack.mongodb_uri)
    database = client[unique("retention_")]
    await ensure_indexes(database, DEADLINE_INDEXES)
    yield database
    await client.drop_database(database.name)
    await client.close()


def sweeper(db: AsyncDatabase[Doc], rules: list[Expiry], batch: int = 500) -> Sweeper:
    r = CollectorRegistry()
    return Sweeper(
        db,
        rules,
        documents=Gauge("docs", "", ["collection"], registry=r),
        deleted=Counter("deleted", "", ["collection"], registry=r),
        batch=batch,
        clock=lambda: NOW,
    )


async def test_the_sweeper_deletes_what_outlived_its_window_and_nothing_else(
    db: AsyncDatabase[Doc],
) -> None:
    # marks in insertion order, oldest first, as consumers write them; one out of order
    ages = [40, 35, 31, 31, 20, 32, 1, 0.5]  # days before NOW
    await db[PROCESSED].insert_many(
        [{"_id": f"c|{i}", "at": NOW - a * DAY} for i, a in enumerate(ages)]
    )
    deadlines: list[Doc] = [
        {"_id": "fired-old", "status": FIRED, "due_at": NOW - 8 * DAY},
        {"_id": "fired-new", "status": FIRED, "due_at": NOW - 6 * DAY},
        # cancelled ones count from their cancellation, not from when they would be due
        {
            "_id": "cancelled-old",
            "status": CANCELLED,
            "due_at": NOW + 9 * DAY,
            "cancelled_at": NOW - 8 * DAY,
        },
        {
            "_id": "cancelled-new",
            "status": CANCELLED,
            "due_at": NOW - 30 * DAY,
            "cancelled_at": NOW - 6 * DAY,
        },
        {"_id": "pending-old", "status": PENDING, "due_at": NOW - 30 * DAY},
    ]
    await db[DEADLINES].insert_many(deadlines)
    rules = [
        Expiry(PROCESSED, "at", timedelta(days=30), oldest_first=True),
        *deadline_expiries(timedelta(days=7)),
    ]
    s = sweeper(db, rules, batch=2)  # several batches per rule

    deleted = await s.sweep()

    assert deleted == {PROCESSED: 4, DEADLINES: 2}
    # the 32-day-old mark behind a 20-day-old one waits for it (at most one window longer)
    left = [d["_id"] async for d in db[PROCESSED].find({})]
    assert left == ["c|4", "c|5", "c|6", "c|7"]
    kept = {d["_id"] async for d in db[DEADLINES].find({})}
    assert kept == {"fired-new", "cancelled-new", "pending-old"}
    assert await s.sweep() == {PROCESSED: 0, DEADLINES: 0}
    counts = await s.count()
    assert counts[PROCESSED] == 4 and counts[DEADLINES] == 3
    assert s.documents.labels(collection=PROCESSED)._value.get() == 4
    assert s.deleted.labels(collection=DEADLINES)._value.get() == 2


async def test_a_deadline_scheduled_anew_after_it_was_read_is_kept(
    db: AsyncDatabase[Doc],
) -> None:
    await db[DEADLINES].insert_one({"_id": "d", "status": FIRED, "due_at": NOW - 9 * DAY})
    rule = deadline_expiries(timedelta(days=7))[0]
    s = sweeper(db, [rule])
    real = db[DEADLINES]

    class Found:
        """A read that is followed by a reschedule before the sweeper's delete."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            self.cursor = real.find(*a, **kw)

        def limit(self, n: int) -> Found:
            self.cursor = self.cursor.limit(n)
            return self

        async def __aiter__(self) -> AsyncIterator[Doc]:
            async for d in self.cursor:
                yield d
            await real.update_one({"_id": "d"}, {"$set": {"status": PENDING, "due_at": NOW}})

    class Racing:
        def find(self, *a: Any, **kw: Any) -> Found:
            return Found(*a, **kw)

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    class Db:
        def __getitem__(self, name: str) -> Racing:
            return Racing()

    s.db = Db()  # type: ignore[assignment]
    assert await s.sweep_one(rule, NOW) == 0
    assert (await db[DEADLINES].find_one({"_id": "d"}) or {}).get("status") == PENDING


# — notify's contacts and cases (personal information: PIPL) —

KEPT = Retention(after_close=30 * DAY, cap=365 * DAY)


def _indexes_used(plan: object) -> set[str]:
    """Every index an explained plan scans."""
    if isinstance(plan, dict):
        found = {plan["indexName"]} if plan.get("stage") == "IXSCAN" else set()
        return found.union(*(_indexes_used(v) for v in plan.values()))
    if isinstance(plan, list):
        return set().union(*(_indexes_used(v) for v in plan))
    return set()


async def test_contacts_and_cases_go_a_window_after_their_request_closed_or_at_the_cap(
    db: AsyncDatabase[Doc],
) -> None:
    await ensure_indexes(db, NOTIFY_INDEXES)

    def at(stored: float | None, closed: float | None = None, legacy: float | None = None) -> Doc:
        doc: Doc = {"phone": "13900000000"}
        if stored is not None:
            doc |= {"stored_at": NOW - stored * DAY, "updated_at": NOW - stored * DAY}
        if closed is not None:
            doc["closed_at"] = NOW - closed * DAY
        if legacy is not None:  # stored before this version: no stored_at
            doc["updated_at"] = NOW - legacy * DAY
        return doc

    # in insertion order, as notify stores them (days before NOW)
    contacts = {
        "legacy-old": at(None, legacy=400),
        "open-old": at(366),
        "closed-lately-but-capped": at(370, closed=1),
        "closed-old": at(100, closed=31),
        "closed-new": at(100, closed=29),
        "legacy-new": at(None, legacy=300),
        "open-new": at(10),
    }
    await db[CONTACTS].insert_many([{"_id": k, **v} for k, v in contacts.items()])
    cases = {"C-closed-old": at(100, closed=31), "C-legacy-old": at(None, legacy=400)}
    cases |= {"C-open-new": at(10), "C-closed-new": at(40, closed=2)}
    await db[CASES].insert_many([{"_id": k, "request_id": k, **v} for k, v in cases.items()])
    # a submitter's preference goes a cap after its last change; a directory recipient's stays
    prefs = {
        "submitter:old": {"channels": ["sms"], "updated_at": NOW - 366 * DAY},
        "submitter:new": {"channels": ["sms"], "updated_at": NOW - 300 * DAY},
        "staff:duty": {"channels": ["webhook"], "updated_at": NOW - 900 * DAY},
    }
    await db[PREFERENCES].insert_many([{"_id": k, **v} for k, v in prefs.items()])
    s = sweeper(db, kept_expiries(KEPT), batch=2)

    # a closed one is found through its index, not by reading them all
    closed_rule = kept_expiries(KEPT)[0]
    for col in (CONTACTS, CASES):
        explained = await db.command("explain", {"find": col, "filter": closed_rule.expired(NOW)})
        assert _indexes_used(explained["queryPlanner"]["winningPlan"]) == {"closed"}, explained

    deleted = await s.sweep()

    assert deleted == {CONTACTS: 4, CASES: 2, PREFERENCES: 1}
    left = {d["_id"] async for d in db[CONTACTS].find({})}
    assert left == {"closed-new", "legacy-new", "open-new"}
    assert {d["_id"] async for d in db[CASES].find({})} == {"C-open-new", "C-closed-new"}
    assert {d["_id"] async for d in db[PREFERENCES].find({})} == {"submitter:new", "staff:duty"}
    assert await s.sweep() == {CONTACTS: 0, CASES: 0, PREFERENCES: 0}


async def test_notify_reads_no_contact_past_its_window_and_memory_brings_none_back(
    db: AsyncDatabase[Doc],
) -> None:
    await ensure_indexes(db, NOTIFY_INDEXES)
    read_at = NOW - 40 * DAY
    await db[CONTACTS].insert_many(
        [
            {"_id": "YS-1", "phone": "1", "stored_at": read_at, "updated_at": read_at},
            {"_id": "YS-2", "phone": "2", "stored_at": read_at, "updated_at": read_at},
            # closed and past its window, the sweeper not by yet
            {"_id": "YS-3", "phone": "3", "stored_at": read_at, "closed_at": NOW - 31 * DAY},
        ]
    )
    await db[CASES].insert_one(
        {"_id": "C-3", "request_id": "YS-3", "stored_at": read_at, "closed_at": NOW - 31 * DAY}
    )
    store = NotifyStore(db, retention=KEPT)  # one replica, which reads both 40 days ago
    assert set(await store.contacts(["YS-1", "YS-2"], read_at)) == {"YS-1", "YS-2"}
    # another replica heard both requests close, 39 days ago
    await db[CONTACTS].update_many({}, {"$set": {"closed_at": NOW - 39 * DAY}})
    # within a window of the read: the copies in memory serve (the requests' messages)
    within = await store.contacts(["YS-1", "YS-2"], read_at + 29 * DAY)
    assert set(within) == {"YS-1", "YS-2"} and within["YS-1"].closed_at is None
    # a window after the close the sweeper deleted one; the other it has not come to yet
    await db[CONTACTS].delete_one({"_id": "YS-1"})

    # now: none of them, though one is still stored and all were in memory
    assert await store.contacts(["YS-1", "YS-2", "YS-3"], NOW) == {}
    assert await store.cases(["C-3"], NOW) == {}
    assert set(await store.cases(["C-3"], NOW - 2 * DAY)) == {"C-3"}
    left = [Contact.from_doc(d) async for d in db[CONTACTS].find({})]
    assert {c.request_id for c in left} == {"YS-2", "YS-3"}  # reading deletes nothing


# — `tongxin dlq replay` and the marks' window —


def cli(stack: LocalStack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tongxin.cli", *args],
        env={**os.environ, **stack.service_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def _park_three_days_old(stack: LocalStack, request_id: str) -> tuple[str, bytes]:
    """A fresh topic whose DLQ holds one parked event from three days ago: (topic, value)."""
    topic = unique("it.retention.")
    await ensure_topics(stack.bootstrap, [(topic, 1), (dlq_topic(topic), 1)])
    event = RequestSubmitted(
        request_id=request_id,
        channel="platform",
        category="sanitation",
        title="垃圾清运",
        description="垃圾清运不及时",
        community="community:liyuan",
        submitter=Submitter(name="王五"),
        submitted_at=datetime.now(UTC) - 3 * DAY,
    )
    old = dataclasses.replace(Envelope.wrap(event, "/tests"), time=datetime.now(UTC) - 3 * DAY)
    key, value, headers = encode_record(old)
    producer = make_producer(stack.bootstrap, idempotence=stack.broker_kind != "tansu")
    await producer.start()
    try:
        await producer.send_and_wait(
            dlq_topic(topic),
            value=value,
            key=key,
            headers=dlq_headers(headers, "ValueError: bug", 5, "routing.requests"),
        )
    finally:
        await producer.stop()
    return topic, value


async def test_replay_refuses_records_older_than_the_marks_unless_forced(
    stack: LocalStack,
) -> None:
    topic, value = await _park_three_days_old(stack, "YS-OLD1")
    keep = {"TONGXIN_PROCESSED_KEEP_S": str(2 * 86400)}  # marks kept 2 days: it is older

    refused = cli(stack, "dlq", "replay", topic, **keep)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "REFUSED" in refused.stderr and "tongxin.request.submitted.v1" in refused.stderr
    assert await pending_counts(stack.bootstrap, [topic]) == {dlq_topic(topic): 1}

    within = cli(stack, "dlq", "replay", topic, TONGXIN_PROCESSED_KEEP_S=str(4 * 86400))
    assert within.returncode == 0, within.stderr[-2000:]
    assert "1 record(s) replayed" in within.stdout
    back = await read_topic(stack.bootstrap, topic, min_count=1)
    assert len(back) == 1 and back[0].value == value


async def test_replay_with_force_puts_old_records_back(stack: LocalStack) -> None:
    topic, _ = await _park_three_days_old(stack, "YS-OLD2")

    forced = cli(stack, "dlq", "replay", topic, "--force", TONGXIN_PROCESSED_KEEP_S=str(2 * 86400))
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert "1 record(s) replayed" in forced.stdout
    assert await pending_counts(stack.bootstrap, [topic]) == {dlq_topic(topic): 0}


# — the soak —

WINDOW_S = 3  # every swept window, scaled down from days to seconds
# notify's cap on a contact whose request never closes (365 days): the open requests'
# contacts level off once it has passed, before the sampling's last third
CAP_S = 25
WARM_UP_S = 15.0
LOAD_S = 42.0  # sampled, after the warm-up
RATE = 2.0  # requests per second
SAMPLE_S = 2.0
# (service, collection, filter): what grows with traffic and is swept. Pending deadlines
# are not: an open case's resolve deadline (7 days, scaled: 10 min) waits beyond the soak
DONE: Doc = {"status": {"$in": [FIRED, CANCELLED]}}
SWEPT: list[tuple[str, str, Doc]] = [
    ("intake", "outbox", {}),
    ("routing", "outbox", {}),
    ("routing", PROCESSED, {}),
    ("routing", DEADLINES, DONE),
    ("volunteer", PROCESSED, {}),
    ("volunteer", DEADLINES, DONE),
    ("notify", PROCESSED, {}),
    ("notify", "deliveries", {"status": {"$in": ["sent", "failed"]}}),
    # every other request is withdrawn at once (closed: gone WINDOW_S after), the rest stay
    # open (gone CAP_S after they were stored)
    ("notify", "contacts", {}),
    ("notify", "cases", {}),
]


@pytest.fixture(scope="module")
def soak_platform(stack: LocalStack) -> Iterator[Platform]:
    window = str(WINDOW_S)
    with running_platform(
        stack,
        "soak",
        # a case's deadlines (the whole escalation chain, 15 days at most) all fire within
        # seconds of its routing, so the fired ones reach their steady state in the soak
        TONGXIN_DEADLINE_SCALE="0.00001",
        TONGXIN_PROCESSED_KEEP_S=window,
        TONGXIN_DEADLINES_KEEP_S=window,
        TONGXIN_OUTBOX_KEEP_SENT_S=window,
        TONGXIN_NOTIFY_DELIVERIES_KEEP_S=window,
        TONGXIN_NOTIFY_CONTACTS_KEEP_S=window,
        TONGXIN_NOTIFY_CONTACTS_CAP_S=str(CAP_S),
        # a delivery's window starts when its last attempt's lease ends (30 s by default)
        TONGXIN_NOTIFY_DELIVERY_LEASE_S="2",
        TONGXIN_RETENTION_INTERVAL_S="1",
        TONGXIN_RETENTION_COUNT_INTERVAL_S="1",
    ) as p:
        yield p


def request(n: int) -> dict[str, object]:
    return {
        "channel": "grid_worker",
        "category": "elderly_care",
        "title": f"独居老人助餐 {n}",
        "description": "6栋独居老人行动不便，需要志愿者帮忙送餐。",
        "community": "community:liyuan",
        "compound": "compound:jinyuan",
        "submitter": {"name": "李建华", "phone": "13987654321"},
    }


async def test_under_steady_load_the_swept_collections_level_off(
    soak_platform: Platform, stack: LocalStack
) -> None:
    p = soak_platform
    client = make_client(stack.mongodb_uri)
    stop = asyncio.Event()
    accepted: list[float] = []
    withdrawn: list[str] = []

    async def load() -> None:
        async with httpx.AsyncClient(base_url=p.url("intake"), timeout=10) as http:
            n = 0
            began = time.monotonic()
            while not stop.is_set():
                n += 1
                r = await http.post("/v1/requests", json=request(n))
                if r.status_code == 201:
                    accepted.append(time.monotonic())
                    if n % 2 == 0:  # the resident withdraws it: the request closes
                        got = r.json()
                        w = await http.post(
                            f"/v1/requests/{got['id']}/withdraw",
                            json={"tracking_code": got["tracking_code"], "reason": "已自行解决"},
                        )
                        if w.status_code == 200:
                            withdrawn.append(got["id"])
                # a steady rate: the n-th request at n / RATE s (none skipped when late)
                await asyncio.sleep(max(0.0, began + n / RATE - time.monotonic()))

    async def counts() -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for service, col, flt in SWEPT:
            out[(service, col)] = await client[p.db(service)][col].count_documents(flt)
        return out

    loader = asyncio.create_task(load())
    try:
        # the pipeline runs: a task was offered for one of the first requests
        await eventually(
            lambda: _async(p.sink.matching(event_type="task.offered")),
            timeout=60,
            what="a task.offered notification",
        )
        await asyncio.sleep(WARM_UP_S)  # the first cases' deadlines fire meanwhile
        started = time.monotonic()
        samples: list[dict[tuple[str, str], int]] = []
        while time.monotonic() - started < LOAD_S:
            samples.append(await counts())
            await asyncio.sleep(SAMPLE_S)
        load_ended = time.monotonic()
    finally:
        stop.set()
        await loader
    try:
        third = len(samples) // 3
        before, last = samples[: 2 * third], samples[2 * third :]
        # the load went on through the last third, at about its rate
        in_last = [t for t in accepted if load_ended - LOAD_S / 3 <= t <= load_ended]
        assert len(in_last) >= 0.5 * RATE * LOAD_S / 3, (len(in_last), len(accepted))
        assert len(withdrawn) >= 0.4 * len(accepted), (len(withdrawn), len(accepted))
        report = {f"{s}.{c}": [x[(s, c)] for x in samples] for s, c, _ in SWEPT}
        print("counts every", SAMPLE_S, "s:", report)  # shown with -s, and on failure
        for service, col, _ in SWEPT:
            # the peak of the last third is no higher than those before it (bursts of a
            # consumer's batches come and go: a peak, not a mean, with a margin)
            key = (service, col)
            peak_before = max(x[key] for x in before)
            peak_last = max(x[key] for x in last)
            assert peak_last <= 1.2 * peak_before + 5, f"{key} grew: {report}"
        # the sweepers did delete: far more went through than is left
        deleted = await _deleted(p)
        swept = [("routing", PROCESSED), ("notify", PROCESSED), ("notify", "contacts")]
        for service, col in swept:
            assert deleted.get((service, col), 0) > samples[-1][(service, col)], (
                service,
                col,
                deleted,
                report,
            )
        # and the gauge shows the collections' sizes
        gauge = await _documents_gauge(p, "routing")
        assert PROCESSED in gauge and "cases" in gauge, gauge
        assert "contacts" in await _documents_gauge(p, "notify")
        # what notify keeps of a withdrawn request goes its window after the close, long
        # before the cap: none of the first withdrawn ones is left, while an open request
        # stored after the last of those (less than the cap ago) still has its contact
        contacts = client[p.db("notify")]["contacts"]
        first = withdrawn[: len(withdrawn) // 3]
        assert await contacts.count_documents({"_id": {"$in": first}}) == 0
        cutoff = datetime.now(UTC) - timedelta(seconds=CAP_S - 5)
        assert await contacts.count_documents(
            {"stored_at": {"$gt": cutoff}, "closed_at": {"$exists": False}}
        ), "no open request's contact kept"
    finally:
        await client.close()


async def _async(value: object) -> object:
    return value


async def _scrape(p: Platform, service: str) -> str:
    async with httpx.AsyncClient(base_url=p.url(service), timeout=10) as http:
        r = await http.get("/metrics")
        r.raise_for_status()
        return r.text


async def _deleted(p: Platform) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for service in ("intake", "routing", "volunteer", "notify"):
        for fam in text_string_to_metric_families(await _scrape(p, service)):
            if fam.name == "tongxin_retention_deleted":
                for s in fam.samples:
                    if s.name.endswith("_total"):
                        out[(service, s.labels["collection"])] = s.value
    return out


async def _documents_gauge(p: Platform, service: str) -> dict[str, float]:
    for fam in text_string_to_metric_families(await _scrape(p, service)):
        if fam.name == "tongxin_db_documents":
            return {s.labels["collection"]: s.value for s in fam.samples}
    return {}

"""MongoDB access through PyMongo's async API (``AsyncMongoClient``, Motor's successor)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pymongo import AsyncMongoClient, InsertOne, UpdateOne, monitoring
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    BulkWriteError,
    ClientBulkWriteException,
    ConnectionFailure,
    DuplicateKeyError,
    InvalidOperation,
    PyMongoError,
    ServerSelectionTimeoutError,
)

log = logging.getLogger(__name__)

Doc = dict[str, Any]
T = TypeVar("T")


class CommandTrace(monitoring.CommandListener):
    """Profiling aid: appends one line per database command to a file — service,
    command, collection, microseconds as the client saw them, error code (0: none) — for
    ``bench`` to add up. Enabled by ``TONGXIN_MONGO_TRACE=<file>``; off otherwise."""

    def __init__(self, path: str) -> None:
        self.out = open(path, "a", buffering=1)  # noqa: SIM115 (lives with the process)
        self.tag = os.environ.get("TONGXIN_TRACE_TAG", str(os.getpid()))
        self.colls: dict[int, str] = {}

    def _line(self, request_id: int, name: str, micros: int, code: object) -> None:
        coll = self.colls.pop(request_id, "")
        self.out.write(f"{self.tag}\t{name}\t{coll}\t{micros}\t{code}\n")

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        coll = target if isinstance(target, str) else ""
        self.colls[event.request_id] = f"{event.database_name}.{coll}"

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._line(event.request_id, event.command_name, event.duration_micros, 0)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        failure: Any = event.failure
        code = failure.get("code", "?") if isinstance(failure, dict) else "?"
        self._line(event.request_id, event.command_name, event.duration_micros, code)


def make_client(uri: str, *, timeout_ms: int = 5000) -> AsyncMongoClient[Doc]:
    """Build the client (no I/O until first use); call only from a lifespan."""
    trace = os.environ.get("TONGXIN_MONGO_TRACE")
    return AsyncMongoClient(
        uri,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        tz_aware=True,
        event_listeners=[CommandTrace(trace)] if trace else [],
    )


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """One index a service's store needs."""

    collection: str
    keys: Sequence[tuple[str, int]]
    unique: bool = False
    name: str | None = None
    partial: Doc | None = None


async def ensure_indexes(db: AsyncDatabase[Doc], specs: Sequence[IndexSpec]) -> None:
    """Create the indexes (idempotent) and the collections they live on."""
    existing = set(await db.list_collection_names())
    for spec in specs:
        if spec.collection not in existing:
            try:
                await db.create_collection(spec.collection)
            except PyMongoError:  # created concurrently by another replica
                pass
            existing.add(spec.collection)
        kwargs: Doc = {"unique": spec.unique}
        if spec.name:
            kwargs["name"] = spec.name
        if spec.partial:
            kwargs["partialFilterExpression"] = spec.partial
        await db[spec.collection].create_index(list(spec.keys), **kwargs)


async def wait_ready(client: AsyncMongoClient[Doc], attempts: int = 30, delay: float = 0.5) -> None:
    """Wait (bounded) until the database answers ping."""
    for i in range(attempts):
        try:
            await client.admin.command("ping")
            return
        except PyMongoError as exc:
            if i == attempts - 1:
                raise
            log.info("database not ready yet", extra={"error": str(exc), "attempt": i + 1})
            await asyncio.sleep(delay)


# — transactions: one at a time per caller, grouped under load —
#
# SecantusDB spends its time per round trip, not per document (``insert_many`` of 100 costs
# about as much as three ``insert_one``), so under load ``in_transaction`` commits the
# transactions that callers start concurrently together: while ``MAX_INFLIGHT``
# transactions of a client are in flight, new ones queue, and the next free slot runs up
# to ``MAX_GROUP`` queued callbacks one after the other in a single transaction with one
# commit. Each callback stays atomic (its group commits or aborts as a whole) and sees the
# writes of those before it, as if they had run serially. Inserts that nothing reads back
# inside the transaction — outbox records, processed event ids, intake's new requests — are
# deferred to its end and written with one ``insert_many`` per collection. If a grouped
# transaction fails for any reason other than the database being unreachable, every
# callback of the group runs again on its own, exactly as it would have without grouping
# (a duplicate event id then raises :class:`AlreadyHandled` as usual). Nested calls run on
# their own. A database that cannot be reached fails the group and everything queued.

# concurrent transactions per client before callers are grouped, and callbacks per
# grouped transaction (1 turns grouping off); the environment overrides them for experiments
MAX_INFLIGHT = int(os.environ.get("TONGXIN_TXN_INFLIGHT", "4"))
MAX_GROUP = int(os.environ.get("TONGXIN_TXN_GROUP", "64"))


@dataclass(slots=True)
class _Scope:
    """The transaction a callback runs in, and the writes deferred to its end."""

    session: AsyncClientSession
    grouped: bool
    deferred: dict[str, tuple[AsyncCollection[Doc], list[Doc]]] = field(default_factory=dict)
    updates: list[tuple[AsyncCollection[Doc], Doc, Doc, bool]] = field(default_factory=list)
    committed: list[Callable[[], None]] = field(default_factory=list)  # run after the commit
    # processed-event records deferred by ``record_event_once`` (a duplicate key on one of
    # them means the event was handled before: ``AlreadyHandled``)
    events: list[tuple[AsyncCollection[Doc], Doc]] = field(default_factory=list)

    def defer(self, col: AsyncCollection[Doc], doc: Doc) -> None:
        self.deferred.setdefault(col.full_name, (col, []))[1].append(doc)

    def _duplicate(self, doc: Doc | None, exc: Exception) -> None:
        """Raise for a duplicate key on ``doc``: ``AlreadyHandled`` for an event record."""
        if doc is not None and any(doc is d for _, d in self.events):
            raise AlreadyHandled(str(doc["event_id"])) from exc
        if isinstance(exc, DuplicateKeyError):
            raise exc
        raise DuplicateKeyError(str(exc), 11000) from exc

    async def handled_before(self) -> str | None:
        """After a callback failed: the id of a deferred event that was already recorded
        (a redelivery whose handler stumbled on its own earlier effects), if any."""
        for col, doc in self.events:
            try:
                if await col.find_one({"consumer": doc["consumer"], "event_id": doc["event_id"]}):
                    return str(doc["event_id"])
            except PyMongoError:
                return None
        return None

    async def flush(self) -> None:
        """Write the deferred inserts, then the deferred updates, in one round trip:
        ``insert_one``/``insert_many`` for inserts into one collection, the client-level
        ``bulkWrite`` otherwise (MongoDB 8.0; a duplicate key still raises
        ``DuplicateKeyError``)."""
        global _CLIENT_BULK
        groups = list(self.deferred.values())
        updates = list(self.updates)
        self.deferred.clear()
        self.updates.clear()
        if (len(groups) > 1 or (groups and updates) or len(updates) > 1) and _CLIENT_BULK:
            models: list[InsertOne[Doc] | UpdateOne] = [
                InsertOne(d, namespace=col.full_name) for col, docs in groups for d in docs
            ]
            models += [
                UpdateOne(f, u, upsert=up, namespace=col.full_name) for col, f, u, up in updates
            ]
            try:
                await self.session.client.bulk_write(models, ordered=True, session=self.session)
                return
            except ClientBulkWriteException as exc:
                inserted = [d for _, docs in groups for d in docs]
                dup = _duplicate_index(exc.details.get("writeErrors") or [], "idx")
                if dup is not None:
                    self._duplicate(inserted[dup] if dup < len(inserted) else None, exc)
                if isinstance(exc.error, PyMongoError):
                    # a write conflict or the database going away: its labels are on the
                    # wrapped error, which the retry and outage handling look at
                    raise exc.error from exc
                raise
            except InvalidOperation:  # a server before MongoDB 8.0: one command per write
                log.info("the database has no client-level bulkWrite; writing per collection")
                _CLIENT_BULK = False
        for col, docs in groups:
            try:
                if len(docs) == 1:
                    await col.insert_one(docs[0], session=self.session)
                else:
                    await col.insert_many(docs, ordered=True, session=self.session)
            except DuplicateKeyError as exc:
                self._duplicate(docs[0], exc)
            except BulkWriteError as exc:
                dup = _duplicate_index(exc.details.get("writeErrors", []), "index")
                if dup is not None:
                    self._duplicate(docs[dup] if dup < len(docs) else None, exc)
                raise
        for col, f, u, up in updates:
            await col.update_one(f, u, upsert=up, session=self.session)


def _duplicate_index(errors: Sequence[Mapping[str, Any]], key: str) -> int | None:
    """Which write of a bulk insert met a duplicate key (its position), if one did."""
    for e in errors:
        if e.get("code") == 11000:
            return int(e.get(key, -1))
    return None


_SCOPE: ContextVar[_Scope | None] = ContextVar("tongxin_txn_scope", default=None)
_CLIENT_BULK = True  # False once the server turned the client-level bulkWrite down


def _scope_of(session: AsyncClientSession | None) -> _Scope | None:
    """The ``in_transaction`` scope ``session`` runs in, if the caller is inside one."""
    scope = _SCOPE.get()
    return scope if session is not None and scope is not None and scope.session is session else None


def after_commit(session: AsyncClientSession | None, fn: Callable[[], None]) -> bool:
    """Call ``fn`` once ``session``'s transaction has committed (not if it aborts or is run
    again: a retry registers anew) when the caller runs inside ``in_transaction``; False
    when the commit cannot be seen from here."""
    scope = _scope_of(session)
    if scope is None:
        return False
    scope.committed.append(fn)
    return True


def defer_update(
    session: AsyncClientSession | None,
    col: AsyncCollection[Doc],
    flt: Doc,
    update: Doc,
    *,
    upsert: bool = False,
) -> bool:
    """Apply ``update`` at the end of ``session``'s transaction (after its deferred inserts,
    with them in one round trip) when the caller runs inside ``in_transaction`` — for a
    write whose result nobody needs and that nothing reads back before the commit; False
    when it must be applied now."""
    scope = _scope_of(session)
    if scope is None:
        return False
    scope.updates.append((col, flt, update, upsert))
    return True


async def update_at_end(
    session: AsyncClientSession | None,
    col: AsyncCollection[Doc],
    flt: Doc,
    update: Doc,
    *,
    upsert: bool = False,
) -> None:
    """``defer_update``, or the update now when it cannot be deferred."""
    if not defer_update(session, col, flt, update, upsert=upsert):
        await col.update_one(flt, update, upsert=upsert, session=session)


def defer_insert(session: AsyncClientSession | None, col: AsyncCollection[Doc], doc: Doc) -> bool:
    """Insert ``doc`` at the end of ``session``'s transaction (before its commit) when the
    caller runs inside ``in_transaction``; False when it must be inserted now."""
    scope = _scope_of(session)
    if scope is None:
        return False
    scope.defer(col, doc)
    return True


async def insert_at_end(
    session: AsyncClientSession | None, col: AsyncCollection[Doc], doc: Doc
) -> None:
    """``defer_insert``, or the insert now when it cannot be deferred."""
    if not defer_insert(session, col, doc):
        await col.insert_one(doc, session=session)


# how long a transaction that lost a write conflict is retried before the caller gets the
# error (PyMongo's ``with_transaction`` retries any transient error for 120 s, including the
# database being away: callers then waited two minutes instead of answering 503)
CONFLICT_RETRY_S = float(os.environ.get("TONGXIN_TXN_RETRY_S", "30"))
_BACKOFF_FIRST_S, _BACKOFF_MAX_S = 0.005, 0.5


def _conflict(exc: BaseException) -> bool:
    """A transient transaction error worth running again at once: a write conflict or a
    transaction the server forgot — not the database being unreachable (``ConnectionFailure``,
    which PyMongo labels transient too), where waiting only delays the caller's 503."""
    return (
        isinstance(exc, PyMongoError)
        and exc.has_error_label("TransientTransactionError")
        and not isinstance(exc, ConnectionFailure)
    )


async def _run(
    client: AsyncMongoClient[Doc],
    fns: Sequence[Callable[[AsyncClientSession], Awaitable[Any]]],
    grouped: bool,
) -> list[Any]:
    """Run ``fns`` in one transaction: retried on write conflicts (with jittered backoff,
    for up to ``CONFLICT_RETRY_S``), the commit retried while its outcome is unknown; a
    connection failure goes to the caller at once."""
    # without causal consistency: a retry on the same session would otherwise carry
    # readConcern.afterClusterTime on its first command, which SecantusDB's bulkWrite
    # refuses (a transaction that is only its deferred writes then failed for good); one
    # transaction per session on one primary needs no causal ordering across attempts
    async with client.start_session(causal_consistency=False) as session:
        deadline = time.monotonic() + CONFLICT_RETRY_S
        attempt = 0
        while True:
            if attempt:
                backoff = random.random() * min(_BACKOFF_FIRST_S * 1.5**attempt, _BACKOFF_MAX_S)
                await asyncio.sleep(backoff)
            attempt += 1
            await session.start_transaction()
            scope = _Scope(session, grouped)
            token = _SCOPE.set(scope)
            try:
                out = [await fn(session) for fn in fns]
                await scope.flush()
            except BaseException as exc:
                if session.in_transaction:
                    await session.abort_transaction()  # best effort; errors are swallowed
                if _conflict(exc) and time.monotonic() < deadline:
                    continue
                if (
                    scope.events
                    and not grouped  # a failed group runs each callback alone anyway
                    and isinstance(exc, Exception)
                    and not isinstance(exc, AlreadyHandled | ConnectionFailure)
                ):
                    handled = await scope.handled_before()
                    if handled is not None:
                        raise AlreadyHandled(handled) from exc
                raise
            finally:
                _SCOPE.reset(token)
            try:
                await _commit(session, deadline)
            except PyMongoError as exc:
                if _conflict(exc) and time.monotonic() < deadline:
                    continue
                raise
            for fn in scope.committed:
                try:
                    fn()
                except Exception:  # a listener's bug must not turn a commit into an error
                    log.exception("after-commit callback failed")
            return out


async def _commit(session: AsyncClientSession, deadline: float) -> None:
    """Commit; while the outcome is unknown and the database answers, ask again (committing
    twice is safe: the server answers for the transaction it already committed)."""
    while True:
        try:
            await session.commit_transaction()
            return
        except PyMongoError as exc:
            unknown = exc.has_error_label("UnknownTransactionCommitResult")
            if unknown and not isinstance(exc, ConnectionFailure) and time.monotonic() < deadline:
                continue
            raise


class Busy(Exception):
    """A transaction waited for a free slot longer than its caller allows; nothing of it ran
    (HTTP callers answer 503 ``busy``: under overload a fast refusal beats a reply after the
    client gave up, and nothing half-done is left behind)."""


# until when (``time.monotonic()``) a caller's transaction may wait in the queue before it
# gets ``Busy``; None: as long as it takes (consumers, whose backlog waits in Kafka anyway).
# Set per HTTP request by the service runtime: the request's whole waiting budget.
WAIT_DEADLINE: ContextVar[float | None] = ContextVar("tongxin_txn_wait_deadline", default=None)


@dataclass(eq=False)
class _Item:
    fn: Callable[[AsyncClientSession], Awaitable[Any]]
    fut: asyncio.Future[Any]
    taken: bool = False  # picked into a running transaction: its outcome will come


class _Committer:
    """Per client and event loop: the transactions in flight and those waiting for a slot.

    Callers with a deadline (HTTP requests, someone waiting for the answer) wait in
    ``urgent`` and get the free slots first, in groups of their own; the others (consumers,
    whose backlog waits in Kafka anyway) wait in ``queue``. Without this a backlog after an
    outage filled the groups ahead of new submissions, which then took 20 s.
    """

    def __init__(self, client: AsyncMongoClient[Doc]) -> None:
        self.client = client
        self.inflight = 0
        self.urgent: list[_Item] = []
        self.queue: list[_Item] = []
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        return len(self.urgent) + len(self.queue)

    async def submit(
        self, fn: Callable[[AsyncClientSession], Awaitable[T]], deadline: float | None = None
    ) -> T:
        if self.inflight < MAX_INFLIGHT and not self.waiting:
            self.inflight += 1
            try:
                result: T = (await _run(self.client, [fn], False))[0]
                return result
            except ServerSelectionTimeoutError as exc:
                self._fail_queue(exc)
                raise
            finally:
                self.inflight -= 1
                self._spawn()
        if deadline is not None and deadline <= time.monotonic():
            raise Busy("no time left to wait for a transaction slot")
        item = _Item(fn, asyncio.get_running_loop().create_future())
        line = self.queue if deadline is None else self.urgent
        line.append(item)
        self._spawn()
        try:
            if deadline is None or item.taken:
                out: T = await item.fut
                return out
            out = await asyncio.wait_for(asyncio.shield(item.fut), deadline - time.monotonic())
            return out
        except TimeoutError:
            if item.taken:  # started meanwhile: wait for the outcome it is committing
                out = await item.fut
                return out
            raise Busy("no transaction slot in time") from None
        finally:
            if not item.taken and not item.fut.done():  # timed out or cancelled in the queue
                with contextlib.suppress(ValueError):
                    line.remove(item)
                item.fut.cancel()

    def _fail_queue(self, exc: BaseException) -> None:
        """The database could not be reached for a whole server-selection timeout: whoever
        waits for a slot would only meet the same, one slot at a time."""
        waiting = [*self.urgent, *self.queue]
        self.urgent, self.queue = [], []
        for it in waiting:
            if not it.fut.done():
                it.fut.set_exception(exc)

    def _spawn(self) -> None:
        while self.waiting and self.inflight < MAX_INFLIGHT:
            line = self.urgent or self.queue
            items = [it for it in line[:MAX_GROUP] if not it.fut.done()]
            del line[:MAX_GROUP]
            if not items:
                continue
            for it in items:
                it.taken = True
            self.inflight += 1
            task = asyncio.get_running_loop().create_task(self._group(items))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _group(self, items: list[_Item]) -> None:
        try:
            if len(items) == 1:
                await self._alone(items[0])
                return
            try:
                results = await _run(self.client, [it.fn for it in items], True)
            except ConnectionFailure as exc:  # the database is away: every caller sees it
                for it in items:
                    if not it.fut.done():
                        it.fut.set_exception(exc)
                if isinstance(exc, ServerSelectionTimeoutError):
                    self._fail_queue(exc)
                return
            except Exception:
                # one callback refused (a duplicate event, a stale read, a domain error):
                # each runs again on its own and gets its own outcome — one after another,
                # since concurrent transactions conflict (SecantusDB: even on distinct
                # documents) and up to 64 of them at once retried into a livelock under load
                for it in items:
                    await self._alone(it)
                return
            for it, res in zip(items, results, strict=True):
                if not it.fut.done():
                    it.fut.set_result(res)
        except BaseException as exc:
            for it in items:
                if not it.fut.done():
                    it.fut.set_exception(exc if isinstance(exc, Exception) else RuntimeError(exc))
            raise
        finally:
            self.inflight -= 1
            self._spawn()

    async def drain(self, grace: float) -> None:
        """Let the transactions in flight finish (``grace`` s), then abort the rest: a
        transaction left open when the client closes holds its writes on the server until
        the server reaps it (SecantusDB: 60 s), and every transaction touching the same
        collections meanwhile fails with a write conflict — a restarted service stalled."""
        for it in [*self.urgent, *self.queue]:
            it.fut.cancel()
        self.urgent, self.queue = [], []
        if not self.tasks:
            return
        _done, pending = await asyncio.wait(set(self.tasks), timeout=grace)
        for task in pending:
            task.cancel()  # _run aborts the transaction on the way out
        if pending:
            await asyncio.wait(pending, timeout=5)

    async def _alone(self, item: _Item) -> None:
        if item.fut.done():
            return
        try:
            res = (await _run(self.client, [item.fn], False))[0]
        except Exception as exc:
            if not item.fut.done():
                item.fut.set_exception(exc)
            return
        if not item.fut.done():
            item.fut.set_result(res)


def _committer(client: AsyncMongoClient[Doc]) -> _Committer:
    loop = asyncio.get_running_loop()
    per_loop: dict[int, tuple[asyncio.AbstractEventLoop, _Committer]] = vars(client).setdefault(
        "_tongxin_committers", {}
    )
    entry = per_loop.get(id(loop))
    if entry is None or entry[0] is not loop:
        entry = (loop, _Committer(client))
        per_loop.clear()  # a client serves one event loop; a new loop starts afresh
        per_loop[id(loop)] = entry
    return entry[1]


async def drain_transactions(client: AsyncMongoClient[Doc], grace: float = 10.0) -> None:
    """Before closing ``client``: finish or abort the grouped transactions still running."""
    per_loop: dict[int, tuple[asyncio.AbstractEventLoop, _Committer]] = vars(client).get(
        "_tongxin_committers", {}
    )
    entry = per_loop.get(id(asyncio.get_running_loop()))
    if entry is not None:
        await entry[1].drain(grace)


async def in_transaction(
    client: AsyncMongoClient[Doc], fn: Callable[[AsyncClientSession], Awaitable[T]]
) -> T:
    """Run ``fn`` in a transaction, retried on transient errors (write conflicts); under
    load, grouped with other callers' transactions into one commit (see above)."""
    if _SCOPE.get() is not None or MAX_GROUP <= 1:
        result: T = (await _run(client, [fn], False))[0]
        return result
    return await _committer(client).submit(fn, WAIT_DEADLINE.get())


class AlreadyHandled(Exception):
    """The event was already handled by this consumer: the transaction is a no-op."""


PROCESSED = "processed_events"
PROCESSED_INDEXES = [IndexSpec(PROCESSED, [("consumer", 1), ("event_id", 1)], unique=True)]


async def record_event_once(
    db: AsyncDatabase[Doc], session: AsyncClientSession, consumer: str, event_id: str
) -> None:
    """Record ``event_id`` under a unique index inside the caller's transaction.

    Raises :class:`AlreadyHandled` (inside ``in_transaction``: from the transaction, at
    its end) when it was recorded before, which aborts the transaction so a redelivered
    event changes nothing.
    """
    doc = {"consumer": consumer, "event_id": event_id}
    scope = _scope_of(session)
    if scope is not None:
        # written with the transaction's other inserts (one round trip): a duplicate fails
        # it there with AlreadyHandled (a grouped transaction then runs each callback alone);
        # a handler that fails on a redelivered event's own earlier effects meets
        # AlreadyHandled too (``_run`` looks the event up)
        scope.defer(db[PROCESSED], doc)
        scope.events.append((db[PROCESSED], doc))
        return
    try:
        await db[PROCESSED].insert_one(doc, session=session)
    except DuplicateKeyError as exc:
        raise AlreadyHandled(event_id) from exc


async def handle_once(
    client: AsyncMongoClient[Doc],
    db: AsyncDatabase[Doc],
    consumer: str,
    event_id: str,
    fn: Callable[[AsyncClientSession], Awaitable[None]],
) -> bool:
    """Apply ``fn`` and record the event id atomically; False if it was a duplicate."""

    async def txn(session: AsyncClientSession) -> None:
        await record_event_once(db, session, consumer, event_id)
        await fn(session)

    try:
        await in_transaction(client, txn)
    except AlreadyHandled:
        return False
    return True

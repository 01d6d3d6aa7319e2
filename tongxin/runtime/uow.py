"""The unit of work: a batch's decisions, committed in one transaction.

Every state change of every service takes the same path, whoever causes it (a consumed
poll, an HTTP request, a fired deadline):

1. the service's use case gets a *batch* of inputs and loads what the whole batch needs
   (one query per collection, ``$in``), outside any transaction;
2. the pure domain decides, input after input, on the loaded state (a later input sees
   what an earlier one changed — the service keeps the loaded aggregates by id);
3. the use case returns a :class:`Decision`: its :class:`Effects` (documents to insert,
   updates — conditional ones on the version it read —, events for the outbox, callbacks
   for after the commit) and, per input, an outcome or the reason it was refused;
4. :meth:`UnitOfWork.run` commits the effects in one transaction — one ``bulkWrite`` and
   the commit, two round trips whatever the batch size — then hands the outbox records
   to the relay (published without being read back) and runs the callbacks.

If a conditional write misses (someone changed the document since it was read), a
duplicate key appears (another replica handled the same input) or the database reports a
write conflict, the batch is decided again from fresh reads, with jittered backoff, for at
most ``conflict_retry_s``. If the use case fails for any other reason (a bug, a record no
rule expected), the batch is split in halves and each half runs on its own, down to the
single input that fails, which goes back to the caller alone: one poison input never sinks
the others. The database being unreachable goes to the caller at once (HTTP answers 503;
a consumer waits and tries again).

Reads happen before the transaction: a transaction holds nothing while the domain thinks,
and on SecantusDB every command costs the same 1.5–2 ms whatever it carries, so the
batch's size, not its number of documents, sets the cost.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pymongo import AsyncMongoClient, InsertOne, ReplaceOne, UpdateMany, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import (
    BulkWriteError,
    ClientBulkWriteException,
    ConnectionFailure,
    DuplicateKeyError,
    InvalidOperation,
    OperationFailure,
    PyMongoError,
)

from tongxin.contracts.envelope import Envelope

# Busy: the caller's time ran out before its input was committed; nothing of it ran (HTTP
# answers 503 busy: under overload a fast refusal beats a late answer)
from tongxin.runtime.mongo import Busy, Doc

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


# — what a batch decided —


@dataclass(frozen=True, slots=True)
class Insert:
    """A new document."""

    collection: str
    doc: Doc


@dataclass(frozen=True, slots=True)
class Update:
    """An update (or a replacement) of the documents ``filter`` matches.

    ``must_match``: the batch was decided on a version of the document that ``filter``
    names; if it matches nothing, the batch is decided again (:class:`Stale`).
    """

    collection: str
    filter: Doc
    update: Doc
    upsert: bool = False
    many: bool = False
    replace: bool = False
    must_match: bool = False


Write = Insert | Update


@dataclass(frozen=True, slots=True)
class Emit:
    """An event for the outbox, published to ``topic`` (a contract topic name) once the
    transaction committed."""

    topic: str
    envelope: Envelope


@dataclass
class Effects:
    """What a batch decided: writes in order, outbox events, callbacks after the commit."""

    writes: list[Write] = field(default_factory=list)
    events: list[Emit] = field(default_factory=list)
    committed: list[Callable[[], None]] = field(default_factory=list)

    def insert(self, collection: str, doc: Doc) -> None:
        """Insert ``doc`` (a duplicate ``_id`` or unique key decides the batch again)."""
        self.writes.append(Insert(collection, doc))

    def update(
        self,
        collection: str,
        flt: Doc,
        update: Doc,
        *,
        upsert: bool = False,
        many: bool = False,
        must_match: bool = False,
    ) -> None:
        """Apply the update operators ``update`` to what ``flt`` matches."""
        self.writes.append(Update(collection, flt, update, upsert, many, False, must_match))

    def replace(self, collection: str, flt: Doc, doc: Doc, *, must_match: bool = True) -> None:
        """Replace the document ``flt`` matches (by default it must match: a version check)."""
        self.writes.append(Update(collection, flt, doc, False, False, True, must_match))

    def emit(self, topic: str, envelope: Envelope) -> None:
        """Publish ``envelope`` on ``topic`` through the outbox, with this commit."""
        self.events.append(Emit(topic, envelope))

    def on_commit(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` once the transaction committed (metrics, logs): never on an abort."""
        self.committed.append(fn)

    def extend(self, other: Effects) -> None:
        """Append ``other``'s effects after these."""
        self.writes += other.writes
        self.events += other.events
        self.committed += other.committed

    def __bool__(self) -> bool:
        return bool(self.writes or self.events or self.committed)


class Refused(Exception):
    """An input the domain turned down (a transition not allowed, an unknown case): its
    effects are left out, the others commit. A consumer parks the record on its DLQ with
    this reason (and does not mark it handled, so a replay after the cause is fixed
    applies it); an HTTP caller gets it as its answer."""


@dataclass
class Decision(Generic[Out]):
    """A use case's verdict on a batch: the effects, and per input (by position) its
    outcome or the exception that refused it."""

    effects: Effects = field(default_factory=Effects)
    outcomes: dict[int, Out | Exception] = field(default_factory=dict)

    def refuse(self, index: int, reason: Exception) -> None:
        """Input ``index`` is refused; its effects must not be in ``effects``."""
        self.outcomes[index] = reason

    def done(self, index: int, outcome: Out) -> None:
        """Input ``index`` was handled with ``outcome``."""
        self.outcomes[index] = outcome


def events_only(
    inputs: Sequence[object],
    decided: Decision[Out],
    refusal: Callable[[Exception], Exception] = lambda exc: exc,
) -> Decision[None]:
    """``decided``, a decision on the valid ones of ``inputs`` (those that are not
    exceptions, in order), as a decision on all of them with the outcomes dropped — what a
    consumer or the scheduler needs. An input that is an exception is refused with it; a
    refused outcome refuses its input with ``refusal(outcome)`` (e.g. a domain error
    worded as a DLQ reason)."""
    out: Decision[None] = Decision(decided.effects)
    j = 0
    for n, item in enumerate(inputs):
        if isinstance(item, Exception):
            out.refuse(n, item)
            continue
        outcome = decided.outcomes[j]
        j += 1
        if isinstance(outcome, Exception):
            out.refuse(n, refusal(outcome))
        else:
            out.done(n, None)
    return out


Handle = Callable[[Sequence[In]], Awaitable[Decision[Out]]]
# what becomes of an input that failed alone (its outcome, or the exception that stays)
Settle = Callable[[In, Exception], Awaitable[Out | Exception]]


# — errors —


class Stale(Exception):
    """A conditional write matched nothing: its document changed after it was read."""


class Retry(Exception):
    """The batch must be decided again from fresh reads (a conflict that is no fault of
    the input). Use cases may raise it themselves."""


class DuplicateWrite(Exception):
    """An insert met a unique key that already exists."""

    def __init__(self, write: Write | None, cause: BaseException) -> None:
        super().__init__(f"duplicate key: {cause}")
        self.write = write


def conflict(exc: BaseException) -> bool:
    """A transaction that lost to another one (write conflict, a transaction the server
    aborted): worth deciding again. Not the database being away (``ConnectionFailure`` is
    labelled transient too, but waiting only delays the caller's 503)."""
    return (
        isinstance(exc, PyMongoError)
        and exc.has_error_label("TransientTransactionError")
        and not isinstance(exc, ConnectionFailure)
    )


def unavailable(exc: BaseException) -> bool:
    """The database cannot be reached — or another part of the infrastructure the use case
    needed (a ``ConnectionError``: notify stopping before a batch's deliveries were sent).
    No input's fault: the caller gets it for the whole batch, which is not split."""
    return isinstance(exc, (ConnectionFailure, ConnectionError))


# — the committer —


class OutboxPort(Protocol):
    """What the unit of work needs from the outbox (``MongoOutbox`` is the real one)."""

    @property
    def collection(self) -> str:
        """The outbox collection's name."""
        ...

    def documents(self, events: Sequence[Emit]) -> list[Doc]:
        """The outbox documents of ``events`` (encoded, in order)."""
        ...

    def committed(self, docs: Sequence[Doc]) -> None:
        """These documents' transaction committed: hand them to the relay."""
        ...


@dataclass
class Stats:
    """Counts for metrics and tests: batches committed, decided again, split."""

    commits: int = 0
    redecided: int = 0
    splits: int = 0


class UnitOfWork:
    """Commits decisions for one service database; see the module docstring."""

    def __init__(
        self,
        client: AsyncMongoClient[Doc],
        db_name: str,
        outbox: OutboxPort,
        *,
        conflict_retry_s: float = 30.0,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.client = client
        self.db_name = db_name
        self.outbox = outbox
        self.conflict_retry_s = conflict_retry_s
        self.on_batch = on_batch  # (inputs, seconds) of each committed batch, for metrics
        self.stats = Stats()
        self._client_bulk = True  # False once the server turned the client bulkWrite down

    # — running a batch —

    async def run(
        self,
        items: Sequence[In],
        handle: Handle[In, Out],
        *,
        deadline: float | None = None,
        settle: Settle[In, Out] | None = None,
    ) -> list[Out | Exception]:
        """Decide ``items`` with ``handle`` and commit; per item its outcome or exception.

        A failure that is no item's fault (the database away, conflicts outlasting the
        retries, the ``deadline`` passing) is raised for the whole batch. Any other
        exception from ``handle`` or the commit splits the batch until it is one item's:
        ``settle(item, exc)`` then decides that item's outcome (a consumer retries and
        parks it there, before the rest of the batch goes on), else the exception is it.
        """
        if not items:
            return []
        try:
            return await self._decide_and_commit(items, handle, deadline)
        except (Busy, asyncio.CancelledError):
            raise
        except Exception as exc:
            if unavailable(exc) or isinstance(exc, Retry) or conflict(exc):
                raise
            if len(items) == 1:
                return [exc if settle is None else await settle(items[0], exc)]
            self.stats.splits += 1
            half = len(items) // 2
            log.info(
                "batch failed; deciding its halves apart",
                extra={"inputs": len(items), "error": repr(exc)[:300]},
            )
            first = await self.run(items[:half], handle, deadline=deadline, settle=settle)
            rest = await self.run(items[half:], handle, deadline=deadline, settle=settle)
            return first + rest

    async def _decide_and_commit(
        self, items: Sequence[In], handle: Handle[In, Out], deadline: float | None
    ) -> list[Out | Exception]:
        started = time.monotonic()
        give_up = started + self.conflict_retry_s
        if deadline is not None:
            give_up = min(give_up, deadline)
        attempt = 0
        duplicates = 0
        while True:
            decision = await handle(items)
            try:
                await self.commit(decision.effects)
            except (Stale, Retry, DuplicateWrite, PyMongoError) as exc:
                if isinstance(exc, DuplicateWrite):
                    # another replica or request wrote it first: the next decision reads
                    # it; twice in a row means the use case does not look (a defect)
                    duplicates += 1
                    if duplicates > 2:
                        raise
                elif isinstance(exc, PyMongoError) and not conflict(exc):
                    raise
                attempt += 1
                self.stats.redecided += 1
                now = time.monotonic()
                if now >= give_up:
                    if deadline is not None and now >= deadline:
                        raise Busy("no time left to commit") from exc
                    raise Retry(f"still conflicting after {attempt} attempts: {exc}") from exc
                pause = random.random() * min(0.005 * 1.5**attempt, 0.5)
                await asyncio.sleep(min(pause, max(0.0, give_up - now)))
                continue
            self.stats.commits += 1
            if self.on_batch is not None:
                self.on_batch(len(items), time.monotonic() - started)
            missing = [i for i in range(len(items)) if i not in decision.outcomes]
            if missing:
                raise RuntimeError(f"the use case gave no outcome for inputs {missing[:5]}")
            return [decision.outcomes[i] for i in range(len(items))]

    # — committing —

    async def commit(self, fx: Effects) -> None:
        """Apply ``fx`` in one transaction, then hand its events to the relay and run its
        callbacks. Raises :class:`Stale`, :class:`DuplicateWrite`, or the database's error
        (a write conflict carries ``TransientTransactionError``)."""
        outbox_docs = self.outbox.documents(fx.events) if fx.events else []
        if fx.writes or outbox_docs:
            async with self.client.start_session(causal_consistency=False) as session:
                await session.start_transaction()
                try:
                    await self._write(session, fx.writes, outbox_docs)
                    await _commit(session)
                except BaseException:
                    if session.in_transaction:
                        await session.abort_transaction()  # best effort; errors swallowed
                    raise
        if outbox_docs:
            self.outbox.committed(outbox_docs)
        for fn in fx.committed:
            try:
                fn()
            except Exception:  # a listener's bug must not turn a commit into an error
                log.exception("after-commit callback failed")

    async def _write(
        self, session: AsyncClientSession, writes: Sequence[Write], outbox_docs: Sequence[Doc]
    ) -> None:
        all_writes = [*writes, *(Insert(self.outbox.collection, d) for d in outbox_docs)]
        if self._client_bulk:
            try:
                await self._client_bulk_write(session, all_writes)
                return
            except InvalidOperation:  # a server before MongoDB 8.0
                log.info("the database has no client-level bulkWrite; writing per collection")
                self._client_bulk = False
        await self._per_collection(session, all_writes)

    async def _client_bulk_write(
        self, session: AsyncClientSession, writes: Sequence[Write]
    ) -> None:
        ns = f"{self.db_name}."
        models: list[Any] = [_model(w, ns + w.collection) for w in writes]
        checks = [i for i, w in enumerate(writes) if isinstance(w, Update) and w.must_match]
        try:
            result = await self.client.bulk_write(
                models, ordered=True, session=session, verbose_results=bool(checks)
            )
        except ClientBulkWriteException as exc:
            errors = exc.details.get("writeErrors") or [] if exc.details else []
            dup = _duplicate_at(errors, "idx")
            if dup is not None:
                raise DuplicateWrite(writes[dup] if dup < len(writes) else None, exc) from exc
            if isinstance(exc.error, PyMongoError):
                # a write conflict or the database going away: its labels are on the
                # wrapped error, which the retry and the outage handling look at
                raise exc.error from exc
            raise
        if checks:
            results = result.update_results
            for i in checks:
                r = results.get(i)
                if r is None or r.matched_count < 1:
                    raise Stale(_describe(writes[i]))

    async def _per_collection(self, session: AsyncClientSession, writes: Sequence[Write]) -> None:
        """One ``bulk_write`` per run of writes to one collection (servers before 8.0);
        a checked update goes on its own, its matched count is its check."""
        db = self.client[self.db_name]
        run: list[Write] = []

        async def flush() -> None:
            if not run:
                return
            col = db[run[0].collection]
            try:
                await col.bulk_write([_model(w) for w in run], ordered=True, session=session)
            except BulkWriteError as exc:
                dup = _duplicate_at(exc.details.get("writeErrors", []), "index")
                if dup is not None:
                    raise DuplicateWrite(run[dup] if dup < len(run) else None, exc) from exc
                raise
            run.clear()

        for w in writes:
            if isinstance(w, Update) and w.must_match:
                await flush()
                col = db[w.collection]
                if w.replace:
                    res = await col.replace_one(w.filter, w.update, session=session)
                else:
                    res = await col.update_one(w.filter, w.update, session=session)
                if res.matched_count < 1:
                    raise Stale(_describe(w))
                continue
            if run and run[0].collection != w.collection:
                await flush()
            run.append(w)
        await flush()


def _model(w: Write, namespace: str | None = None) -> Any:
    kw: dict[str, Any] = {} if namespace is None else {"namespace": namespace}
    if isinstance(w, Insert):
        return InsertOne(w.doc, **kw)
    if w.replace:
        return ReplaceOne(w.filter, w.update, upsert=w.upsert, **kw)
    if w.many:
        return UpdateMany(w.filter, w.update, upsert=w.upsert, **kw)
    return UpdateOne(w.filter, w.update, upsert=w.upsert, **kw)


def _describe(w: Write) -> str:
    return f"{w.collection} {w.filter if isinstance(w, Update) else w.doc.get('_id')}"


def _duplicate_at(errors: Sequence[Mapping[str, Any]], key: str) -> int | None:
    """Which write of a bulk write met a duplicate key (its position), if one did."""
    for e in errors:
        if e.get("code") == 11000:
            return int(e.get(key, -1))
    return None


async def _commit(session: AsyncClientSession) -> None:
    """Commit; while the outcome is unknown and the database answers, ask again (a
    second commit of a committed transaction answers for it). Bounded by PyMongo's own
    server-selection timeout per attempt and by the caller's retry budget."""
    for _ in range(10):
        try:
            await session.commit_transaction()
            return
        except PyMongoError as exc:
            unknown = exc.has_error_label("UnknownTransactionCommitResult")
            if unknown and not isinstance(exc, ConnectionFailure):
                continue
            raise
    await session.commit_transaction()


# re-exported for callers that catch them
__all__ = [
    "Busy",
    "Decision",
    "DuplicateKeyError",
    "DuplicateWrite",
    "Effects",
    "Emit",
    "Insert",
    "OperationFailure",
    "Refused",
    "Retry",
    "Stale",
    "UnitOfWork",
    "Update",
]


# — grouping concurrent callers (HTTP writes) —


@dataclass(eq=False)
class _Waiting(Generic[In, Out]):
    item: In
    fut: asyncio.Future[Out | Exception]
    deadline: float | None
    taken: bool = False


class Batcher(Generic[In, Out]):
    """Groups the inputs of concurrent callers of one use case into batches: while one
    batch is decided and committed, the next one gathers (up to ``max_batch``), so under
    load a commit carries many callers and at rest a caller waits for nobody.

    A caller whose ``deadline`` (``time.monotonic()``) passes before its input is taken
    gets :class:`Busy` with nothing stored; once taken, it waits for its batch's outcome.
    """

    def __init__(
        self,
        uow: UnitOfWork,
        handle: Handle[In, Out],
        *,
        name: str,
        max_batch: int = 64,
    ) -> None:
        self.uow = uow
        self.handle = handle
        self.name = name
        self.max_batch = max_batch
        self._queue: list[_Waiting[In, Out]] = []
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def waiting(self) -> int:
        """Inputs not yet taken into a batch."""
        return len(self._queue)

    async def submit(self, item: In, *, deadline: float | None = None) -> Out:
        """Decide and commit ``item`` with others; its outcome, or raise its exception."""
        if self._closed:
            raise Busy("the service is stopping")
        if deadline is not None and deadline <= time.monotonic():
            raise Busy("no time left to wait for a batch")
        w: _Waiting[In, Out] = _Waiting(item, asyncio.get_running_loop().create_future(), deadline)
        self._queue.append(w)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name=f"batcher:{self.name}")
        try:
            if deadline is None:
                outcome = await asyncio.shield(w.fut)
            else:
                try:
                    outcome = await asyncio.wait_for(
                        asyncio.shield(w.fut), max(0.0, deadline - time.monotonic())
                    )
                except TimeoutError:
                    if not w.taken:
                        raise Busy("no batch took this in time") from None
                    outcome = await asyncio.shield(w.fut)  # committing: its outcome comes
        finally:
            if not w.taken and w in self._queue:  # gave up (timeout, cancellation)
                self._queue.remove(w)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _work(self) -> None:
        while self._queue:
            now = time.monotonic()
            batch: list[_Waiting[In, Out]] = []
            while self._queue and len(batch) < self.max_batch:
                w = self._queue.pop(0)
                if w.fut.done():
                    continue
                if w.deadline is not None and w.deadline <= now:
                    w.fut.set_result(Busy("no batch took this in time"))
                    continue
                w.taken = True
                batch.append(w)
            if not batch:
                continue
            deadlines = [w.deadline for w in batch if w.deadline is not None]
            try:
                outcomes = await self.uow.run(
                    [w.item for w in batch],
                    self.handle,
                    deadline=min(deadlines) if len(deadlines) == len(batch) else None,
                )
            except Exception as exc:  # the database away, out of time: every caller sees it
                for w in batch:
                    if not w.fut.done():
                        w.fut.set_result(exc)
                continue
            except BaseException as exc:
                for w in batch:
                    if not w.fut.done():
                        w.fut.set_result(RuntimeError(f"batch cancelled: {exc!r}"))
                raise
            for w, outcome in zip(batch, outcomes, strict=True):
                if not w.fut.done():
                    w.fut.set_result(outcome)

    async def close(self, grace: float = 10.0) -> None:
        """Refuse new inputs, turn the queued ones away (Busy), let the batch in hand finish
        (``grace`` s, then it is cancelled: its transaction rolls back)."""
        self._closed = True
        for w in self._queue:
            if not w.fut.done():
                w.fut.set_result(Busy("the service is stopping"))
        self._queue.clear()
        if self._worker is not None and not self._worker.done():
            done, _ = await asyncio.wait({self._worker}, timeout=grace)
            if not done:
                self._worker.cancel()
                await asyncio.wait({self._worker}, timeout=5)

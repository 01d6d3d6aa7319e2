"""One service process: clients built in the lifespan, stopped in reverse; health and metrics.

A service hands :func:`create_service_app` its routers and a ``setup`` coroutine that
creates indexes, seeds data and returns its :class:`Subscription` list. Nothing touches
the network at import time.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from tongxin.runtime.auth import install_verifier
from tongxin.runtime.consumer import BatchConsumer, BatchHandle, RetryPolicy
from tongxin.runtime.debug import install_task_dump
from tongxin.runtime.dlq import watch_pending
from tongxin.runtime.errors import install_error_handlers
from tongxin.runtime.kafka import (
    KafkaSecurity,
    RenewingProducer,
    contract_topics,
    ensure_topics,
    make_producer,
    wait_broker,
)
from tongxin.runtime.logs import configure_logging
from tongxin.runtime.metrics import Metrics
from tongxin.runtime.mongo import (
    PROCESSED,
    PROCESSED_INDEXES,
    Busy,
    Doc,
    IndexSpec,
    ensure_indexes,
    make_client,
    wait_ready,
)
from tongxin.runtime.openapi import document_errors
from tongxin.runtime.outbox import (
    OUTBOX_INDEXES,
    KafkaPublisher,
    MongoOutbox,
    MongoRelayLease,
    OutboxRelay,
)
from tongxin.runtime.retention import Expiry, Sweeper
from tongxin.runtime.scheduler import deadline_expiries
from tongxin.runtime.settings import ServiceSettings
from tongxin.runtime.uow import Batcher, Handle, UnitOfWork

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class Subscription:
    """A consumer group of this service: contract topic names, and the use case that
    decides a whole poll at a time for the CE ``types`` it takes (one unit of work)."""

    name: str
    topics: Sequence[str]
    handle: BatchHandle
    types: frozenset[str]
    # False when ``handle`` recognises a repeated event itself (the consumer then writes
    # no processed-event marks; see BatchConsumer)
    mark: bool = True


@dataclass
class ServiceRuntime:
    """The clients of one service process, kept on ``app.state.rt``."""

    name: str
    settings: ServiceSettings
    metrics: Metrics
    mongo: AsyncMongoClient[Doc]
    db: AsyncDatabase[Doc]
    producer: RenewingProducer
    outbox: MongoOutbox
    relay: OutboxRelay
    uow: UnitOfWork
    consumers: list[BatchConsumer] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # set when the process begins to stop; a service's loops and sends watch it
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    extra: dict[str, Any] = field(default_factory=dict)
    # what the retention sweeper deletes once it served its purpose: the kernel's (marks,
    # deadlines) and those a service's setup adds (docs/operations.md, "Retention")
    retention: list[Expiry] = field(default_factory=list)
    # closed after the consumers stopped, in reverse order (e.g. a service's HTTP clients)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def run_in_background(
        self, name: str, run: Callable[[], Coroutine[Any, Any, None]], stop: Callable[[], None]
    ) -> None:
        """Run a loop (e.g. a deadline scheduler) until the service stops."""
        self.tasks.append(asyncio.create_task(run(), name=f"{self.name}:{name}"))

        async def _stop() -> None:
            stop()

        self.closers.append(_stop)

    def batcher(
        self, name: str, handle: Handle[In, Out], *, max_batch: int = 64
    ) -> Batcher[In, Out]:
        """A :class:`~tongxin.runtime.uow.Batcher` for one use case's concurrent callers
        (HTTP writes), closed when the service stops."""
        b: Batcher[In, Out] = Batcher(
            self.uow, handle, name=f"{self.name}:{name}", max_batch=max_batch
        )
        self.closers.append(b.close)
        return b

    @property
    def source(self) -> str:
        """CloudEvents ``source`` of events this service emits."""
        return f"/tongxin/{self.name}"

    def topic(self, name: str) -> str:
        """Physical topic name for a contract topic."""
        return self.settings.topic(name)


Setup = Callable[[ServiceRuntime], Awaitable[list[Subscription]]]

In = TypeVar("In")
Out = TypeVar("Out")


async def start_runtime(
    name: str,
    settings: ServiceSettings,
    metrics: Metrics,
    indexes: Sequence[IndexSpec],
    setup: Setup,
) -> ServiceRuntime:
    """Connect, bootstrap topics and indexes, start relay and consumers.

    On any failure, whatever was started is stopped again before the error propagates.
    """
    install_task_dump()  # also while starting: a start that hangs says where (SIGUSR1)
    mongo = make_client(settings.mongodb_uri)
    try:
        await wait_ready(mongo)
        db = mongo[settings.db_name(name)]
        await ensure_indexes(db, [*OUTBOX_INDEXES, *PROCESSED_INDEXES, *indexes])
        security = KafkaSecurity.from_settings(settings)
        await wait_broker(settings.kafka_bootstrap, security=security)
        await ensure_topics(
            settings.kafka_bootstrap, contract_topics(settings.topic_prefix), security=security
        )
        producer = RenewingProducer(
            lambda: make_producer(
                settings.kafka_bootstrap, idempotence=settings.kafka_idempotence, security=security
            ),
            on_renew=metrics.producer_renewals.inc,
        )
        await producer.start()
    except BaseException:
        await mongo.close()
        raise
    keep_sent = settings.outbox_keep_sent_s
    outbox = MongoOutbox(db, settings.topic_prefix, keep_sent=timedelta(seconds=keep_sent))
    relay = OutboxRelay(
        outbox,
        KafkaPublisher(producer),
        metrics=metrics,
        poll_interval=settings.outbox_poll_interval_s,
        purge_interval=min(60.0, keep_sent),
        lease=MongoRelayLease(db, f"{name}-{uuid.uuid4().hex[:8]}"),
    )
    outbox.listen(relay.handoff)
    uow = UnitOfWork(mongo, db.name, outbox, on_batch=metrics.observe_batch)
    rt = ServiceRuntime(name, settings, metrics, mongo, db, producer, outbox, relay, uow)
    rt.retention += [
        # no index on ``at`` (each costs every insert): swept in insertion order
        Expiry(PROCESSED, "at", timedelta(seconds=settings.processed_keep_s), oldest_first=True),
        *deadline_expiries(timedelta(seconds=settings.deadlines_keep_s)),
    ]
    rt.tasks.append(asyncio.create_task(relay.run(), name=f"{name}:outbox-relay"))
    policy = RetryPolicy(
        max_attempts=settings.consumer_max_attempts,
        initial=settings.consumer_backoff_initial_s,
        maximum=settings.consumer_backoff_max_s,
    )
    try:
        for sub in await setup(rt):
            runner = BatchConsumer(
                name=f"{name}.{sub.name}",
                group_id=f"{settings.topic_prefix}tongxin.{name}.{sub.name}",
                bootstrap=settings.kafka_bootstrap,
                topics=[settings.topic(t) for t in sub.topics],
                handle=sub.handle,
                types=sub.types,
                uow=uow,
                producer=producer,
                metrics=metrics,
                policy=policy,
                security=security,
                stop_grace=settings.consumer_stop_grace_s,
                max_records=settings.consumer_max_records,
                instance=settings.instance,
                mark=sub.mark,
            )
            await runner.start()
            rt.consumers.append(runner)
        sweeper = Sweeper(
            db,
            rt.retention,
            documents=metrics.db_documents,
            deleted=metrics.retention_deleted,
            interval=settings.retention_interval_s,
            count_interval=settings.retention_count_interval_s,
        )
        rt.tasks.append(asyncio.create_task(sweeper.run(rt.stopping), name=f"{name}:retention"))
        consumed = sorted({t for c in rt.consumers for t in c.topics})
        if consumed:
            rt.tasks.append(
                asyncio.create_task(
                    watch_pending(
                        settings.kafka_bootstrap,
                        consumed,
                        metrics.dlq_pending,
                        rt.stopping,
                        interval=settings.dlq_watch_interval_s,
                        security=security,
                    ),
                    name=f"{name}:dlq-watch",
                )
            )
    except BaseException:
        await stop_runtime(rt)
        raise
    log.info("service started", extra={"service": name})
    return rt


async def stop_runtime(rt: ServiceRuntime) -> None:
    """Stop in reverse: consumers (commit), relay (drain), producer (flush), database.

    ``rt.stopping`` is set first: work that watches it (a service sending what a batch
    planned, background loops) takes nothing new, so the batch in hand ends within the
    consumers' grace instead of being given up and done again after the restart."""
    rt.stopping.set()
    for c in reversed(rt.consumers):
        try:
            await c.stop()
        except Exception as exc:
            log.warning("consumer stop failed", extra={"consumer": c.name, "error": repr(exc)})
    for close in reversed(rt.closers):
        try:
            await close()
        except Exception as exc:
            log.warning("close failed", extra={"error": repr(exc)})
    rt.relay.stop()
    await asyncio.gather(*rt.tasks, return_exceptions=True)
    await rt.producer.stop()
    await rt.mongo.close()
    log.info("service stopped", extra={"service": rt.name})


def get_runtime(request: Request) -> ServiceRuntime:
    """FastAPI dependency: the running service's clients."""
    rt: ServiceRuntime = request.app.state.rt
    return rt


RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]


def get_write_deadline(request: Request) -> float | None:
    """FastAPI dependency: until when (``time.monotonic()``) this write may wait for its
    turn and its commit before it gets 503 busy (set by admission; None for reads)."""
    deadline: float | None = getattr(request.state, "write_deadline", None)
    return deadline


WriteDeadline = Annotated[float | None, Depends(get_write_deadline)]


def _health_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """Broker and database are reachable."""
        rt: ServiceRuntime | None = getattr(request.app.state, "rt", None)
        checks: dict[str, str] = {}
        if rt is None:
            return JSONResponse({"status": "starting", "checks": checks}, 503)
        try:
            await asyncio.wait_for(rt.mongo.admin.command("ping"), 2)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"down: {type(exc).__name__}"
        try:
            await asyncio.wait_for(rt.producer.client.fetch_all_metadata(), 2)
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"down: {type(exc).__name__}"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "degraded", "checks": checks}, 200 if ok else 503
        )

    @router.get("/metrics")
    async def metrics(request: Request) -> Response:
        """Prometheus text exposition."""
        m: Metrics = request.app.state.metrics
        rt: ServiceRuntime | None = getattr(request.app.state, "rt", None)
        if rt is not None:
            m.outbox_pending.set(await rt.outbox.count_pending())
        return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)

    return router


def create_service_app(
    *,
    name: str,
    title: str,
    settings: ServiceSettings,
    routers: Sequence[APIRouter],
    indexes: Sequence[IndexSpec],
    setup: Setup,
) -> FastAPI:
    """Build a service's FastAPI app; clients are created only when the lifespan starts."""
    configure_logging(name, settings.log_level)
    metrics = Metrics(name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = await start_runtime(name, settings, metrics, indexes, setup)
        app.state.rt = rt
        try:
            yield
        finally:
            await stop_runtime(rt)

    # under overload, writes beyond the limit wait their turn for at most the write budget,
    # then get 503 busy before their handler ran (a dependency, so the route is known)
    writes = asyncio.Semaphore(settings.http_max_concurrent_writes)

    async def admit(request: Request) -> AsyncIterator[None]:
        if request.method not in WRITE_METHODS:
            yield
            return
        budget = settings.http_write_wait_s
        deadline = time.monotonic() + budget
        try:
            await asyncio.wait_for(writes.acquire(), budget)
        except TimeoutError:
            raise Busy(f"no turn for a write within {budget:g} s") from None
        request.state.write_deadline = deadline  # what is left of it bounds the batch queue
        try:
            yield
        finally:
            writes.release()

    app = FastAPI(title=title, version="0.1.0", lifespan=lifespan, dependencies=[Depends(admit)])
    app.state.metrics = metrics
    app.state.settings = settings
    install_error_handlers(app)
    # /openapi.json states each route's error answers in the SPEC shape
    document_errors(app)
    # tokens are checked with the configured algorithm (HS256, or RS256 against a JWKS)
    install_verifier(app, settings)

    @app.middleware("http")
    async def _observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.http_requests.labels(request.method, path, str(response.status_code)).inc()
        metrics.http_seconds.labels(request.method, path).observe(time.perf_counter() - started)
        return response

    app.include_router(_health_router())
    for r in routers:
        app.include_router(r)
    return app

"""Kafka clients and topic bootstrap (aiokafka). Built only from a lifespan, never at import.

Every client the platform creates — producer, consumers, admin clients — is built here
(:func:`make_producer`, :func:`make_consumer`, :func:`make_admin`) with the transport
security of :class:`KafkaSecurity`: SASL (SCRAM-SHA-256/512, PLAIN) and/or TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    InvalidProducerEpoch,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnknownProducerId,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.structs import RecordMetadata

from tongxin.contracts.topics import TOPICS, dlq_topic

if TYPE_CHECKING:
    from tongxin.runtime.settings import (
        KafkaSaslMechanism,
        KafkaSecurityProtocol,
        ServiceSettings,
    )

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """How a client authenticates to the broker and protects the connection.

    ``protocol`` is Kafka's ``security.protocol``; SASL_* need ``username`` and
    ``password``; SSL/SASL_SSL verify the broker with ``cafile`` (else the system CAs) and
    present ``certfile``/``keyfile`` for mutual TLS. Secrets are kept out of ``repr``.
    """

    protocol: KafkaSecurityProtocol = "PLAINTEXT"
    sasl_mechanism: KafkaSaslMechanism = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    key_password: str | None = field(default=None, repr=False)
    check_hostname: bool = True

    def __post_init__(self) -> None:
        if self.sasl and not (self.username and self.password):
            raise ValueError(f"Kafka {self.protocol} needs a SASL username and password")

    @property
    def sasl(self) -> bool:
        """The client authenticates with SASL."""
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        """The connection is encrypted with TLS."""
        return self.protocol.endswith("SSL")

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> KafkaSecurity:
        """The ``TONGXIN_KAFKA_*`` transport settings (already checked by the settings)."""
        password = settings.kafka_sasl_password
        key_password = settings.kafka_ssl_key_password
        return cls(
            protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password is not None else None,
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
            key_password=key_password.get_secret_value() if key_password is not None else None,
            check_hostname=settings.kafka_ssl_check_hostname,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A TLS client context: the broker verified against ``cafile`` or the system CAs."""
        ctx: ssl.SSLContext
        if self.cafile is not None:
            ctx = create_ssl_context(
                cafile=self.cafile,
                certfile=self.certfile,
                keyfile=self.keyfile,
                password=self.key_password,
            )
        else:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
            if self.certfile is not None:
                ctx.load_cert_chain(self.certfile, self.keyfile, self.key_password)
        ctx.check_hostname = self.check_hostname
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def client_kwargs(self) -> dict[str, Any]:
        """The keyword arguments every aiokafka client takes for this security."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.sasl:
            kwargs |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        return kwargs


PLAINTEXT = KafkaSecurity()

# what the broker answers to wrong credentials or a mechanism it does not offer
AUTH_ERRORS: tuple[type[BaseException], ...] = (
    SaslAuthenticationFailed,
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
    ssl.SSLCertVerificationError,
)


class KafkaAuthenticationError(KafkaError):  # type: ignore[misc]
    """The broker refused the client's credentials or certificate (not worth retrying)."""

    retriable = False


def make_producer(
    bootstrap: str, *, idempotence: bool = True, security: KafkaSecurity = PLAINTEXT
) -> AIOKafkaProducer:
    """A producer with ``acks=all``; idempotent where the broker supports it."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=idempotence,
        linger_ms=5,
        request_timeout_ms=15000,
        retry_backoff_ms=200,
        **security.client_kwargs(),
    )


# Errors after which an idempotent producer never sends to the partition again: its
# sequence numbers and the broker's disagree for good (aiokafka does not bump the epoch the
# way the Java client does; aio-libs/aiokafka#1017). Seen here after a broker restart: one
# partition refused every later batch with OutOfOrderSequenceNumber until the process
# restarted, and the outbox records bound for it waited forever.
FATAL_PRODUCER_ERRORS: tuple[type[BaseException], ...] = (
    OutOfOrderSequenceNumber,
    InvalidProducerEpoch,
    UnknownProducerId,
    ProducerFenced,
)


class RenewingProducer:
    """An ``AIOKafkaProducer`` that is replaced by a new one (a new producer id, sequences
    from zero) once a send failed with one of :data:`FATAL_PRODUCER_ERRORS`.

    The failed send still fails — its caller retries (the outbox relay, the dead-letter
    loop) and the retry goes through the new producer. ``renewals`` counts replacements;
    ``on_renew`` is called after each (a metric).
    """

    def __init__(
        self,
        factory: Callable[[], AIOKafkaProducer],
        *,
        on_renew: Callable[[], None] | None = None,
        stop_timeout: float = 10.0,
    ) -> None:
        self._factory = factory
        self._on_renew = on_renew
        self._stop_timeout = stop_timeout
        self.current = factory()
        self.renewals = 0
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[bool]] = set()
        self._closed = False

    @property
    def client(self) -> Any:
        """The current producer's ``AIOKafkaClient`` (metadata, readiness checks)."""
        return self.current.client

    async def start(self) -> None:
        """Start the current producer."""
        await self.current.start()

    async def stop(self) -> None:
        """Flush and stop; no renewal happens after this."""
        self._closed = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.current.stop()

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Queue a record on the current producer; the future resolves on the broker's
        acknowledgement (a fatal failure also starts the renewal)."""
        producer = self.current
        fut: asyncio.Future[RecordMetadata] = await producer.send(
            topic,
            value=value,
            key=key,
            partition=partition,
            timestamp_ms=timestamp_ms,
            headers=headers,
        )
        fut.add_done_callback(lambda f: self._check(producer, f))
        return fut

    async def send_and_wait(
        self, topic: str, value: bytes | None = None, **options: Any
    ) -> RecordMetadata:
        """``send`` (same ``options``) and wait for the acknowledgement."""
        return await (await self.send(topic, value, **options))

    def _check(self, producer: AIOKafkaProducer, fut: asyncio.Future[RecordMetadata]) -> None:
        if fut.cancelled() or self._closed or producer is not self.current:
            return
        exc = fut.exception()
        if isinstance(exc, FATAL_PRODUCER_ERRORS):
            task = asyncio.get_running_loop().create_task(self.renew(producer, exc))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def renew(self, broken: AIOKafkaProducer, cause: BaseException | None = None) -> bool:
        """Replace ``broken`` (if it is still the current producer) by a started new one;
        False when nothing was replaced (already renewed, stopping, or the new producer
        could not start: the next fatal failure tries again)."""
        async with self._lock:
            if self._closed or broken is not self.current:
                return False
            fresh = self._factory()
            try:
                await fresh.start()
            except Exception as exc:
                log.warning("kafka producer renewal failed", extra={"error": repr(exc)})
                with contextlib.suppress(Exception):
                    await fresh.stop()
                return False
            self.current = fresh
            self.renewals += 1
            log.warning(
                "kafka producer replaced after a fatal send error",
                extra={"error": repr(cause), "renewals": self.renewals},
            )
            if self._on_renew is not None:
                self._on_renew()
        # the old producer's queued batches fail (their senders retry through the new one)
        try:
            await asyncio.wait_for(broken.stop(), self._stop_timeout)
        except Exception as exc:
            log.warning("stopping the replaced kafka producer failed", extra={"error": repr(exc)})
        return True


Producer = AIOKafkaProducer | RenewingProducer  # what the platform's senders accept


def make_consumer(
    *topics: str, bootstrap: str, security: KafkaSecurity = PLAINTEXT, **options: Any
) -> AIOKafkaConsumer:
    """A consumer of ``topics`` (none: assign partitions later) with ``options``."""
    return AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, **options, **security.client_kwargs()
    )


def make_admin(
    bootstrap: str, *, security: KafkaSecurity = PLAINTEXT, **options: Any
) -> AIOKafkaAdminClient:
    """An admin client (topics, metadata) with ``options``."""
    return AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options, **security.client_kwargs())


def contract_topics(prefix: str = "") -> list[tuple[str, int]]:
    """(name, partitions) of every contract topic and its DLQ."""
    out: list[tuple[str, int]] = []
    for t in TOPICS:
        out.append((prefix + t.name, t.partitions))
        out.append((prefix + dlq_topic(t.name), 1))
    return out


async def ensure_topics(
    bootstrap: str,
    topics: Iterable[tuple[str, int]],
    *,
    attempts: int = 30,
    security: KafkaSecurity = PLAINTEXT,
) -> None:
    """Create the topics if missing (idempotent; safe from several processes at once)."""
    wanted = dict(topics)
    for i in range(attempts):
        admin = make_admin(bootstrap, security=security, request_timeout_ms=10000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [
                NewTopic(name, num_partitions=p, replication_factor=1)
                for name, p in wanted.items()
                if name not in existing
            ]
            if missing:
                try:
                    await admin.create_topics(missing)
                except TopicAlreadyExistsError:
                    pass
                # some brokers answer per-topic errors without raising; verify
                existing = set(await admin.list_topics())
                still = [n for n in wanted if n not in existing]
                if still:
                    raise KafkaError(f"topics not created yet: {still}")
            return
        except (KafkaError, OSError) as exc:
            if i == attempts - 1:
                raise
            log.info("broker not ready for topic bootstrap", extra={"error": repr(exc)})
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


def _hosts(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for part in bootstrap.split(","):
        host, _, port = part.strip().rpartition(":")
        out.append((host.strip("[]") or "localhost", int(port or 9092)))
    return out


async def check_authentication(
    bootstrap: str, *, security: KafkaSecurity = PLAINTEXT, timeout_ms: int = 5000
) -> None:
    """Open one connection and authenticate; :class:`KafkaAuthenticationError` when refused.

    aiokafka's clients log a refused login and then report only "Unable to bootstrap",
    exactly like an unreachable broker; this tells the two apart. Unreachable bootstrap
    servers raise ``OSError``/``KafkaError`` as they are.
    """
    kwargs = security.client_kwargs()
    last: BaseException | None = None
    for host, port in _hosts(bootstrap):
        try:
            conn = await create_conn(
                host,
                port,
                client_id="tongxin-auth-check",
                request_timeout_ms=timeout_ms,
                ssl_context=kwargs.get("ssl_context"),
                security_protocol=security.protocol,
                sasl_mechanism=kwargs.get("sasl_mechanism"),
                sasl_plain_username=kwargs.get("sasl_plain_username"),
                sasl_plain_password=kwargs.get("sasl_plain_password"),
            )
        except AUTH_ERRORS as exc:
            who = f" as {security.username!r}" if security.sasl else ""
            raise KafkaAuthenticationError(
                f"Kafka at {host}:{port} refused the {security.protocol} login{who}: "
                f"{type(exc).__name__}"
            ) from exc
        except (OSError, KafkaError) as exc:  # TimeoutError is an OSError
            last = exc
            continue
        conn.close()
        return
    assert last is not None
    raise last


async def wait_broker(
    bootstrap: str,
    attempts: int = 60,
    delay: float = 0.5,
    *,
    security: KafkaSecurity = PLAINTEXT,
) -> None:
    """Wait (bounded) until the broker answers a metadata request.

    A refused login is not waited out (wrong credentials stay wrong): it raises
    :class:`KafkaAuthenticationError` at once.
    """
    for i in range(attempts):
        admin = make_admin(bootstrap, security=security, request_timeout_ms=5000)
        try:
            if security.protocol != "PLAINTEXT":
                await check_authentication(bootstrap, security=security)
            await admin.start()
            await admin.list_topics()
            return
        except KafkaAuthenticationError:
            raise
        except (KafkaError, OSError):
            if i == attempts - 1:
                raise
            await asyncio.sleep(delay)
        finally:
            await admin.close()

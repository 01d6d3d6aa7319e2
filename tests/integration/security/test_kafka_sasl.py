"""Kafka transport security against a real Apache Kafka broker of its own.

The broker (devstack ``BrokerSecurity``) has SCRAM-SHA-256 users seeded at format time, a
SASL_PLAINTEXT listener and a SASL_SSL listener with a certificate of a throw-away CA. Every
client here is built by the project's helpers from ``ServiceSettings`` — the same path the
services take — and a whole service (routing) is started on it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.errors import KafkaError

from services.routing.app import create_app as routing_app
from services.routing.config import RoutingSettings
from tests.integration.security.conftest import common
from tests.support import eventually, unique
from tongxin.contracts.envelope import Envelope, encode_record
from tongxin.devstack.kafka import BrokerSecurity, KafkaBroker, java_available
from tongxin.devstack.procs import free_port
from tongxin.devstack.stack import LocalStack
from tongxin.devstack.tls import TlsFiles, make_tls_files
from tongxin.runtime import kafka as kafka_runtime
from tongxin.runtime.consumer import BatchConsumer, RetryPolicy
from tongxin.runtime.kafka import (
    KafkaAuthenticationError,
    KafkaSecurity,
    ensure_topics,
    make_consumer,
    make_producer,
    wait_broker,
)
from tongxin.runtime.metrics import Metrics
from tongxin.runtime.mongo import PROCESSED_INDEXES, ensure_indexes, make_client
from tongxin.runtime.outbox import MongoOutbox
from tongxin.runtime.settings import REPO_ROOT, ServiceSettings
from tongxin.runtime.uow import Decision, UnitOfWork

USER = "tongxin"
PASSWORD = "scram-test-password-Ω-1"  # non-ASCII on purpose (SCRAM normalises)


class SecuredBroker:
    def __init__(self, broker: KafkaBroker, tls: TlsFiles) -> None:
        self.broker = broker
        self.tls = tls

    @property
    def sasl(self) -> str:
        return self.broker.bootstrap

    @property
    def sasl_ssl(self) -> str:
        assert self.broker.tls_bootstrap is not None
        return self.broker.tls_bootstrap


@pytest.fixture(scope="module")
def secured() -> Iterator[SecuredBroker]:
    if not java_available():
        pytest.skip("needs Java for a real Apache Kafka broker")
    data = Path(tempfile.mkdtemp(prefix="tongxin-sasl-"))
    tls = make_tls_files(data / "tls")
    security = BrokerSecurity(
        users={USER: PASSWORD},
        tls_port=free_port(),
        tls_certfile=tls.certfile,
        tls_keyfile=tls.keyfile,
    )
    broker = KafkaBroker(data / "broker", free_port(), free_port(), security=security)
    broker.start()
    try:
        yield SecuredBroker(broker, tls)
    finally:
        broker.stop()
        shutil.rmtree(data, ignore_errors=True)


def settings_for(**env: Any) -> ServiceSettings:
    """Transport settings as a deployment would give them."""
    return ServiceSettings(env="test", **env)


def sasl_security(password: str = PASSWORD, user: str = USER) -> KafkaSecurity:
    return KafkaSecurity.from_settings(
        settings_for(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="SCRAM-SHA-256",
            kafka_sasl_username=user,
            kafka_sasl_password=password,
        )
    )


async def _round_trip(bootstrap: str, security: KafkaSecurity) -> None:
    topic = unique("sasl.")
    await wait_broker(bootstrap, attempts=40, security=security)
    await ensure_topics(bootstrap, [(topic, 1)], security=security)
    producer = make_producer(bootstrap, security=security)
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=b"k1", value=b'{"hello": "\xe5\x90\x8c"}')
    finally:
        await producer.stop()
    consumer = make_consumer(
        topic,
        bootstrap=bootstrap,
        security=security,
        group_id=unique("g-"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        got = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()
    assert (got.key, json.loads(got.value)) == (b"k1", {"hello": "同"})


async def test_scram_sha_256_round_trip_over_sasl_plaintext(secured: SecuredBroker) -> None:
    await _round_trip(secured.sasl, sasl_security())


async def test_scram_round_trip_over_sasl_ssl(secured: SecuredBroker) -> None:
    security = KafkaSecurity.from_settings(
        settings_for(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-256",
            kafka_sasl_username=USER,
            kafka_sasl_password=PASSWORD,
            kafka_ssl_cafile=secured.tls.cafile,
        )
    )
    await _round_trip(secured.sasl_ssl, security)


@pytest.mark.parametrize(
    ("user", "password"), [(USER, "wrong-password"), ("nobody", PASSWORD)], ids=["password", "user"]
)
async def test_wrong_credentials_fail_with_an_authentication_error(
    secured: SecuredBroker, user: str, password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = sasl_security(password=password, user=user)
    # count wait_broker's login attempts: a refused login is final, not waited out
    attempts: list[str] = []
    check = kafka_runtime.check_authentication

    async def counted(bootstrap: str, **kw: Any) -> None:
        attempts.append(bootstrap)
        await check(bootstrap, **kw)

    monkeypatch.setattr(kafka_runtime, "check_authentication", counted)
    with pytest.raises(KafkaAuthenticationError) as caught:
        await wait_broker(secured.sasl, attempts=60, delay=0.5, security=bad)
    # refused on the first attempt, not retried 60 times like an unreachable broker
    assert attempts == [secured.sasl]
    assert "SaslAuthenticationFailed" in str(caught.value)
    assert password not in str(caught.value)
    # the clients themselves cannot get in either
    producer = make_producer(secured.sasl, security=bad)
    with pytest.raises(KafkaError):
        await producer.start()
    await producer.stop()


async def test_a_plaintext_client_gets_nothing_from_the_sasl_listener(
    secured: SecuredBroker,
) -> None:
    with pytest.raises((KafkaError, OSError)):
        await wait_broker(secured.sasl, attempts=2, delay=0.1)


async def test_sasl_ssl_refuses_a_broker_certificate_it_cannot_verify(
    secured: SecuredBroker,
) -> None:
    # no cafile: the system CAs, which do not know the throw-away CA
    untrusting = KafkaSecurity(
        protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256", username=USER, password=PASSWORD
    )
    with pytest.raises(KafkaAuthenticationError, match="SSLCertVerificationError"):
        await wait_broker(secured.sasl_ssl, security=untrusting)


async def test_the_batch_consumer_handles_records_over_sasl(
    secured: SecuredBroker, stack: LocalStack
) -> None:
    from tests.integration.test_batch_consumer import submitted

    security = sasl_security()
    topic = unique("sasl-runner.")
    await ensure_topics(secured.sasl, [(topic, 1), (f"{topic}.dlq", 1)], security=security)
    producer = make_producer(secured.sasl, security=security)
    await producer.start()
    client = make_client(stack.mongodb_uri)
    db = client[unique("sasl_")]
    await ensure_indexes(db, PROCESSED_INDEXES)
    seen: list[str] = []

    async def handle(envs: Sequence[Envelope]) -> Decision[None]:
        d: Decision[None] = Decision()
        for i, env in enumerate(envs):
            d.effects.on_commit(lambda env=env: seen.append(env.id))  # type: ignore[misc]
            d.done(i, None)
        return d

    env = submitted(unique("YS-"))
    runner = BatchConsumer(
        name=unique("sasl-runner-"),
        bootstrap=secured.sasl,
        topics=[topic],
        handle=handle,
        types=frozenset({env.type}),
        uow=UnitOfWork(client, db.name, MongoOutbox(db)),
        producer=producer,
        metrics=Metrics(unique("m")),
        policy=RetryPolicy(max_attempts=2, initial=0.05, maximum=0.1),
        security=security,
    )
    await runner.start()
    try:
        key, value, headers = encode_record(env)
        await producer.send_and_wait(topic, value=value, key=key, headers=headers)
        await eventually(lambda: _done(seen), timeout=30, what="handled over SASL")
    finally:
        await runner.stop()
        await producer.stop()
        await client.close()
    assert seen == [env.id]


async def _done(seen: list[str]) -> bool:
    return bool(seen)


@pytest.fixture
async def routing_on_sasl(
    secured: SecuredBroker, stack: LocalStack, capfd: pytest.CaptureFixture[str]
) -> AsyncIterator[httpx.AsyncClient]:
    run = unique("sasl")
    base = {
        **common(stack, run),
        "kafka_bootstrap": secured.sasl_ssl,
        "kafka_idempotence": True,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-256",
        "kafka_sasl_username": USER,
        "kafka_sasl_password": PASSWORD,
        "kafka_ssl_cafile": secured.tls.cafile,
    }
    settings = RoutingSettings(
        **base, routing_policy_file=REPO_ROOT / "deploy" / "policy" / "routing.json"
    )
    app = routing_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as c,
    ):
        yield c


async def test_a_service_runs_on_sasl_ssl_and_never_prints_the_password(
    routing_on_sasl: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
) -> None:
    r = await routing_on_sasl.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"database": "ok", "broker": "ok"}
    out, err = capfd.readouterr()
    assert PASSWORD not in out + err + r.text

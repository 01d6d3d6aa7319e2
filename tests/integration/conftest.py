"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from tongxin.devstack.stack import LocalStack
from tongxin.runtime.kafka import make_producer
from tongxin.runtime.mongo import Doc, make_client


@pytest.fixture
async def clients(
    stack: LocalStack,
) -> AsyncIterator[tuple[AsyncMongoClient[Doc], AIOKafkaProducer]]:
    """A database client and a started producer on the session stack."""
    client = make_client(stack.mongodb_uri)
    producer = make_producer(stack.bootstrap, idempotence=stack.broker_kind != "tansu")
    await producer.start()
    yield client, producer
    await producer.stop()
    await client.close()

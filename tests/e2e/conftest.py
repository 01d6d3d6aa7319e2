"""The four services as real processes on the test stack, isolated by topic/db prefix."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.platform import Platform, platform_env
from tests.support import WebhookSink, unique
from tongxin.devstack.stack import LocalStack


@pytest.fixture(scope="module")
def platform(stack: LocalStack) -> Iterator[Platform]:
    sink = WebhookSink().start()
    run = unique("e2e")
    env = platform_env(stack.service_env(), run, sink, TONGXIN_DEADLINE_SCALE="0.001")
    p = Platform(env, sink, Path(tempfile.mkdtemp(prefix=f"{run}-logs-")))
    try:
        p.start()
        yield p
    finally:  # also when a service fails to start: leave no process behind
        p.stop()
        sink.stop()

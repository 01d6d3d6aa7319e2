"""The four services as real processes on the test stack, isolated by topic/db prefix."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.platform import Platform, running_platform
from tongxin.devstack.stack import LocalStack


@pytest.fixture(scope="module")
def platform(stack: LocalStack) -> Iterator[Platform]:
    with running_platform(stack, "e2e", TONGXIN_DEADLINE_SCALE="0.001") as p:
        yield p

"""``tongxin demo`` against a running platform, the anonymous limit on as it is by default."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.platform import Platform, running_platform
from tongxin.cli import DEMO_REQUESTS
from tongxin.devstack.stack import LocalStack


@pytest.fixture(scope="module")
def limited(stack: LocalStack) -> Iterator[Platform]:
    """A platform whose anonymous limit lets two submissions through, then one a second."""
    with running_platform(
        stack,
        "demo",
        TONGXIN_INTAKE_ANONYMOUS_LIMIT="true",
        TONGXIN_INTAKE_ANONYMOUS_BURST="2",
        TONGXIN_INTAKE_ANONYMOUS_PER_MINUTE="60",
    ) as p:
        yield p


def test_the_demo_follows_every_sample_through_the_tiers_waiting_out_the_limit(
    limited: Platform,
) -> None:
    total = len(DEMO_REQUESTS)
    assert total > 2  # more than the burst: the limit is met
    urls = [f"--{name}-url={limited.url(name)}" for name in ("intake", "routing", "volunteer")]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tongxin.cli",
            "demo",
            *urls,
            f"--notify-url={limited.url('notify')}",
        ],
        env=limited.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "anonymous submission limit reached; waiting" in out.stdout
    assert f"[{total}/{total}]" in out.stdout
    assert out.stdout.count("  routed   tier=") == total, out.stdout
    assert f"{total} submitted, {total} routed" in out.stdout

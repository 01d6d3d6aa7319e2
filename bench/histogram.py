"""Intake's own view of its latency: the ``tongxin_http_request_seconds`` histogram.

intake times every request in a middleware (``tongxin.runtime.service``: from the request
reaching the app until the response leaves it, the wait for a write slot included; not the
time in the socket buffers, in uvicorn's parsing or in the generator's connection queue)
and exports it on ``/metrics`` as a Prometheus histogram labelled ``method`` and ``route``
(the route's template, e.g. ``/v1/requests``), with the default buckets of
prometheus_client (5 ms … 10 s). The bench scrapes ``/metrics`` right before and right
after a phase; the difference of the cumulative counts is that phase's histogram, and
its quantiles are estimated like Prometheus' ``histogram_quantile`` (linear interpolation
inside the bucket), so they are only as fine as the buckets.

Pure helpers (doctests: ``python -m bench --self-check``), and :func:`scrape`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.stats import Summary

METRIC = "tongxin_http_request_seconds"
SUBMIT = {"method": "POST", "route": "/v1/requests"}


@dataclass(frozen=True, slots=True)
class Buckets:
    """One histogram: cumulative counts by upper bound (ascending, the last ``inf``)."""

    bounds: tuple[float, ...]
    counts: tuple[float, ...]
    sum: float
    count: float


def parse(text: str, name: str = METRIC, match: Mapping[str, str] = SUBMIT) -> Buckets | None:
    """The histogram ``name`` of a text exposition, over the series whose labels include
    ``match`` (several series are added up); ``None`` when no series matches.

    >>> text = '''# TYPE tongxin_http_request_seconds histogram
    ... tongxin_http_request_seconds_bucket{le="0.05",method="POST",route="/v1/requests"} 3.0
    ... tongxin_http_request_seconds_bucket{le="0.1",method="POST",route="/v1/requests"} 5.0
    ... tongxin_http_request_seconds_bucket{le="+Inf",method="POST",route="/v1/requests"} 6.0
    ... tongxin_http_request_seconds_count{method="POST",route="/v1/requests"} 6.0
    ... tongxin_http_request_seconds_sum{method="POST",route="/v1/requests"} 0.9
    ... tongxin_http_request_seconds_bucket{le="0.05",method="GET",route="/readyz"} 1.0
    ... tongxin_http_request_seconds_bucket{le="0.1",method="GET",route="/readyz"} 1.0
    ... tongxin_http_request_seconds_bucket{le="+Inf",method="GET",route="/readyz"} 1.0
    ... tongxin_http_request_seconds_count{method="GET",route="/readyz"} 1.0
    ... tongxin_http_request_seconds_sum{method="GET",route="/readyz"} 0.002
    ... '''
    >>> parse(text)
    Buckets(bounds=(0.05, 0.1, inf), counts=(3.0, 5.0, 6.0), sum=0.9, count=6.0)
    >>> parse(text, match={"method": "GET"}).count
    1.0
    >>> parse(text, match={}).counts
    (4.0, 6.0, 7.0)
    >>> parse(text, match={"route": "/v1/other"}) is None
    True
    """
    cumulative: dict[float, float] = {}
    total_sum = total_count = 0.0
    found = False
    for family in text_string_to_metric_families(text):
        if family.name != name or family.type != "histogram":
            continue
        for s in family.samples:
            if any(s.labels.get(k) != v for k, v in match.items()):
                continue
            found = True
            if s.name == f"{name}_bucket":
                le = float(s.labels["le"])  # "+Inf" parses as inf
                cumulative[le] = cumulative.get(le, 0.0) + s.value
            elif s.name == f"{name}_sum":
                total_sum += s.value
            elif s.name == f"{name}_count":
                total_count += s.value
    if not found:
        return None
    bounds = tuple(sorted(cumulative))
    return Buckets(bounds, tuple(cumulative[b] for b in bounds), total_sum, total_count)


def subtract(after: Buckets | None, before: Buckets | None) -> Buckets | None:
    """What was observed between two readings of the same histogram. A series that did not
    exist yet counts as zero; one that went backwards (intake restarted) counts from zero.

    >>> a = Buckets((0.05, 0.1, math.inf), (3.0, 5.0, 6.0), 0.9, 6.0)
    >>> b = Buckets((0.05, 0.1, math.inf), (1.0, 1.0, 2.0), 0.2, 2.0)
    >>> subtract(a, b)
    Buckets(bounds=(0.05, 0.1, inf), counts=(2.0, 4.0, 4.0), sum=0.7, count=4.0)
    >>> subtract(a, None) == a, subtract(b, a) == b, subtract(None, a) is None
    (True, True, True)
    """
    if after is None or before is None or after.count < before.count:
        return after
    if after.bounds != before.bounds:
        raise ValueError(f"bucket bounds changed: {before.bounds} → {after.bounds}")
    return Buckets(
        after.bounds,
        tuple(x - y for x, y in zip(after.counts, before.counts, strict=True)),
        round(after.sum - before.sum, 9),  # no float noise in the figures
        after.count - before.count,
    )


def quantile(q: float, h: Buckets) -> float | None:
    """The ``q``-quantile (0–1) estimated the way Prometheus' ``histogram_quantile`` does:
    find the bucket holding rank ``q × count`` and interpolate linearly inside it (the
    first bucket starts at 0); a rank in the ``+Inf`` bucket gives the highest finite
    bound. ``None`` for an empty histogram.

    >>> h = Buckets((0.05, 0.1, 0.25, math.inf), (10.0, 30.0, 40.0, 40.0), 2.0, 40.0)
    >>> round(quantile(0.5, h), 6)  # rank 20: half-way through the 0.05–0.1 bucket
    0.075
    >>> quantile(0.25, h)  # rank 10: the top of the first bucket
    0.05
    >>> quantile(0.125, h)  # rank 5: half-way through 0–0.05
    0.025
    >>> round(quantile(0.99, h), 6)  # rank 39.6: 96 % of the way through 0.1–0.25
    0.244
    >>> quantile(0.99, Buckets((0.05, 0.1, math.inf), (0.0, 1.0, 4.0), 40.0, 4.0))
    0.1
    >>> quantile(0.5, Buckets((0.05, math.inf), (0.0, 0.0), 0.0, 0.0)) is None
    True
    """
    if not 0 <= q <= 1:
        raise ValueError(f"quantile must be within 0..1, not {q}")
    if len(h.bounds) < 2 or not math.isinf(h.bounds[-1]):
        raise ValueError("a histogram needs a finite bucket and the +Inf bucket")
    total = h.counts[-1]
    if total <= 0:
        return None
    rank = q * total
    b = next((i for i, c in enumerate(h.counts[:-1]) if c >= rank), len(h.counts) - 1)
    if b == len(h.counts) - 1:
        return h.bounds[-2]
    start, end, count = 0.0, h.bounds[b], h.counts[b]
    if b > 0:
        start = h.bounds[b - 1]
        count -= h.counts[b - 1]
        rank -= h.counts[b - 1]
    if count <= 0:  # only for rank 0 in an empty bucket
        return start
    return start + (end - start) * rank / count


def summary_ms(h: Buckets) -> Summary:
    """Count, mean (``_sum / _count``) and p50/p95/p99 in milliseconds; no max (a histogram
    does not keep it).

    >>> s = summary_ms(Buckets((0.05, 0.1, 0.25, math.inf), (10.0, 30.0, 40.0, 40.0), 2.0, 40.0))
    >>> s.count, s.mean, round(s.p50, 6), s.max
    (40, 50.0, 75.0, None)
    """
    count = round(h.count)

    def ms(q: float) -> float | None:
        v = quantile(q, h)
        return None if v is None else v * 1000

    return Summary(
        count=count,
        mean=h.sum / h.count * 1000 if h.count > 0 else None,
        p50=ms(0.5),
        p95=ms(0.95),
        p99=ms(0.99),
        max=None,
    )


def between(
    before: str, after: str, name: str = METRIC, match: Mapping[str, str] = SUBMIT
) -> dict[str, Any] | None:
    """A phase's figures from the scrapes before and after it: the summary in ms and the
    phase's own buckets (cumulative counts by upper bound); ``None`` when intake exported no
    such series.

    >>> line = 'tongxin_http_request_seconds_{}{{{}method="POST",route="/v1/requests"}} {}'
    >>> def scrape(counts, total):
    ...     rows = [line.format("bucket", f'le="{le}",', c) for le, c in counts.items()]
    ...     head = "# TYPE tongxin_http_request_seconds histogram"
    ...     tail = [line.format("count", "", counts["+Inf"]), line.format("sum", "", total)]
    ...     return "\\n".join([head, *rows, *tail]) + "\\n"
    >>> fig = between(scrape({"0.1": 2, "1.0": 2, "+Inf": 2}, 0.1),
    ...               scrape({"0.1": 4, "1.0": 12, "+Inf": 12}, 3.1))
    >>> fig["ms"].count, fig["ms"].mean, fig["ms"].p50  # rank 5: 3/8 into 0.1–1 s
    (10, 300.0, 437.5)
    >>> fig["buckets"]
    {'0.1': 2, '1': 10, '+Inf': 10}
    >>> between("", "") is None
    True
    """
    h = subtract(parse(after, name, match), parse(before, name, match))
    if h is None:
        return None
    labels = ",".join(f'{k}="{v}"' for k, v in match.items())
    return {
        "metric": f"{name}{{{labels}}}",
        "ms": summary_ms(h),
        "buckets": {
            "+Inf" if math.isinf(le) else f"{le:g}": round(c)
            for le, c in zip(h.bounds, h.counts, strict=True)
        },
    }


async def scrape(client: httpx.AsyncClient) -> str:
    """intake's ``/metrics`` (text exposition); raises on a transport error or non-2xx."""
    r = await client.get("/metrics")
    r.raise_for_status()
    return r.text

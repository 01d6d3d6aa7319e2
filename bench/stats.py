"""Pure figures: percentiles, summaries, slopes, rates, ratios and the plain-text table.

No I/O here. The examples in the docstrings are doctests: ``python -m bench --self-check``
runs them.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0–100) with linear interpolation between closest ranks.

    Same definition as NumPy's default; ``None`` for no values.

    >>> percentile([1, 2, 3, 4], 50)
    2.5
    >>> percentile([10.0], 99)
    10.0
    >>> percentile([3, 1, 2], 100)
    3
    >>> percentile([], 50) is None
    True
    """
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, not {q}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    if lo == hi:
        return ordered[lo]
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True, slots=True)
class Summary:
    """Count, mean, p50/p95/p99 and max of a sample (``None`` figures when it is empty)."""

    count: int
    mean: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        """Rounded for the results file (three decimals)."""
        return {
            "count": self.count,
            "mean": _round(self.mean),
            "p50": _round(self.p50),
            "p95": _round(self.p95),
            "p99": _round(self.p99),
            "max": _round(self.max),
        }


def summarize(values: Sequence[float]) -> Summary:
    """Summary of a sample (e.g. latencies in milliseconds).

    >>> s = summarize([float(i) for i in range(1, 101)])
    >>> (s.count, s.p50, s.max)
    (100, 50.5, 100.0)
    >>> summarize([]).p99 is None
    True
    """
    if not values:
        return Summary(0, None, None, None, None, None)
    ordered = sorted(values)
    return Summary(
        count=len(ordered),
        mean=sum(ordered) / len(ordered),
        p50=percentile(ordered, 50),
        p95=percentile(ordered, 95),
        p99=percentile(ordered, 99),
        max=ordered[-1],
    )


def slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ``ys`` over ``xs`` (e.g. backlog per second); ``None`` when
    fewer than two distinct ``xs``.

    >>> slope([0, 1, 2, 3], [5, 7, 9, 11])
    2.0
    >>> slope([0, 1, 2], [4, 4, 4])
    0.0
    >>> slope([1], [1]) is None
    True
    """
    if len(xs) != len(ys):
        raise ValueError("xs and ys must have the same length")
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return sxy / sxx


def second_half(xs: Sequence[object]) -> int:
    """Index where the second half of a run's samples starts (the steady state).

    >>> second_half([0, 1, 2, 3, 4, 5])
    3
    >>> second_half([0, 1])
    1
    """
    return len(xs) // 2


def rate(count: float, seconds: float) -> float | None:
    """Events per second, ``None`` for an empty interval.

    >>> rate(300, 3.0)
    100.0
    >>> rate(5, 0) is None
    True
    """
    if seconds <= 0:
        return None
    return count / seconds


def rate_between(
    times: Sequence[float], counts: Sequence[float], start: int, end: int | None = None
) -> float | None:
    """Rate of a cumulative counter between sample ``start`` and sample ``end`` (last).

    >>> rate_between([0, 1, 2, 3, 4], [0, 90, 200, 310, 400], 2)
    100.0
    """
    end = len(times) - 1 if end is None else end
    if end <= start or start < 0 or end >= len(times):
        return None
    return rate(counts[end] - counts[start], times[end] - times[start])


def ratio(value: float | None, raw: float | None) -> float | None:
    """``value / raw``, ``None`` when either is missing or the raw figure is zero.

    >>> ratio(50, 200)
    0.25
    >>> ratio(None, 3) is None
    True
    """
    if value is None or raw is None or raw == 0:
        return None
    return value / raw


def backlog_growing(
    slope_per_s: float | None, offered_rate: float, *, fraction: float = 0.05, floor: float = 2.0
) -> bool:
    """Whether a backlog slope means the pipeline falls behind: growing by more than
    ``fraction`` of the offered rate and more than ``floor`` requests per second.

    >>> backlog_growing(0.4, 100)
    False
    >>> backlog_growing(30.0, 100)
    True
    >>> backlog_growing(None, 100)
    False
    """
    if slope_per_s is None:
        return False
    return slope_per_s > max(floor, fraction * offered_rate)


def fmt_num(value: float | int | None, unit: str = "") -> str:
    """A figure for the table: ``-`` when missing; digits by magnitude (three significant
    digits below 1).

    >>> fmt_num(1234.5678, "/s")
    '1235/s'
    >>> fmt_num(12.345, " ms")
    '12.3 ms'
    >>> fmt_num(0.01234)
    '0.0123'
    >>> fmt_num(7)
    '7'
    >>> fmt_num(None)
    '-'
    """
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value}{unit}"
    mag = abs(value)
    if mag >= 100:
        text = f"{value:.0f}"
    elif mag >= 10:
        text = f"{value:.1f}"
    elif mag >= 1:
        text = f"{value:.2f}"
    elif mag == 0:
        text = "0"
    else:
        text = f"{value:.3g}"
    return f"{text}{unit}"


def fmt_ratio(value: float | None) -> str:
    """A ratio to the raw baseline as a percentage, or ``×`` for figures above it.

    >>> fmt_ratio(0.123)
    '12.3%'
    >>> fmt_ratio(3.5)
    '3.50×'
    >>> fmt_ratio(533.49)
    '533×'
    >>> fmt_ratio(None)
    ''
    """
    if value is None:
        return ""
    if value >= 100:
        return f"{value:.0f}×"
    if value >= 10:
        return f"{value:.1f}×"
    if value >= 1.5:
        return f"{value:.2f}×"
    return f"{value * 100:.1f}%"


def table(title: str, head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: a section title, then left-aligned columns.

    >>> print(table("t", ("figure", "value"), [("a", "1"), ("bb", "22")]))
    t
      figure  value
      a       1
      bb      22
    """
    all_rows = [tuple(head), *(tuple(r) for r in rows)]
    n = max(len(r) for r in all_rows)
    padded = [r + ("",) * (n - len(r)) for r in all_rows]
    widths = [max(_width(r[i]) for r in padded) for i in range(n)]
    lines = [title]
    for r in padded:
        cells = [_pad(cell, widths[i]) for i, cell in enumerate(r)]
        lines.append(("  " + "  ".join(cells)).rstrip())
    return "\n".join(lines)


def _width(text: str) -> int:
    """Display width: CJK characters take two columns in a terminal."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def _round(v: float | None, digits: int = 3) -> float | None:
    return None if v is None else round(v, digits)

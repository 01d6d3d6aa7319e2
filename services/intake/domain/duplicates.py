"""Duplicate linking: a new request much like an open one nearby is linked, never dropped.

Similarity is the Dice coefficient of character bigrams of the normalised title and
description — it works for Chinese, which has no spaces to split words on.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

DEFAULT_THRESHOLD = 0.5
DEFAULT_WINDOW = timedelta(hours=72)


def normalise(text: str) -> str:
    """NFKC, lower case, letters and digits only (punctuation and spaces dropped)."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in folded if ch.isalnum())


def bigrams(text: str) -> set[str]:
    """Character bigrams of the normalised text (a single character counts as one)."""
    t = normalise(text)
    if len(t) < 2:
        return {t} if t else set()
    return {t[i : i + 2] for i in range(len(t) - 1)}


def similarity(a: str, b: str) -> float:
    """Dice coefficient of the two texts' bigram sets, in [0, 1]."""
    x, y = bigrams(a), bigrams(b)
    if not x or not y:
        return 0.0
    return 2 * len(x & y) / (len(x) + len(y))


def request_text(title: str, description: str) -> str:
    """The text compared: title and description together."""
    return f"{title} {description}"


@dataclass(frozen=True, slots=True)
class Candidate:
    """An open request of the same compound and category."""

    id: str
    text: str
    submitted_at: datetime
    duplicate_of: str | None = None


def find_original(
    text: str,
    now: datetime,
    candidates: Iterable[Candidate],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    window: timedelta = DEFAULT_WINDOW,
) -> tuple[str, float] | None:
    """The request a new one duplicates (the root of a chain) and the score, or None.

    The most similar candidate inside the window wins; ties go to the oldest.
    """
    best: tuple[float, datetime, Candidate] | None = None
    for c in candidates:
        if now - c.submitted_at > window or c.submitted_at > now:
            continue
        score = similarity(text, c.text)
        if score < threshold:
            continue
        if best is None or (score, -c.submitted_at.timestamp()) > (
            best[0],
            -best[1].timestamp(),
        ):
            best = (score, c.submitted_at, c)
    if best is None:
        return None
    original = best[2]
    return (original.duplicate_of or original.id), round(best[0], 3)

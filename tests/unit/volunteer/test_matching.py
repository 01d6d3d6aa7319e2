"""Matching: a table of ranking scenarios and properties of the hard rules."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.volunteer.domain.availability import LOCAL_TZ, Window, first_available
from services.volunteer.domain.matching import (
    WEIGHTS,
    Candidate,
    Exclusion,
    Need,
    match,
    rank,
)
from tongxin.contracts.enums import Skill

# Monday 2024-05-06 10:00 China Standard Time
MONDAY_10 = datetime(2024, 5, 6, 10, 0, tzinfo=LOCAL_TZ).astimezone(UTC)
ALWAYS = tuple(Window(d, 0, 24 * 60) for d in range(7))
SUNDAY_PM = (Window(6, 14 * 60, 18 * 60),)

NEED = Need(
    skills=(Skill.ELDER_CARE,),
    community="community:liyuan",
    compound="compound:jinyuan",
    lat=26.6907,
    lng=100.7478,
    start=MONDAY_10,
    end=MONDAY_10 + timedelta(hours=24),
)


def vol(vid: str, **kw: object) -> Candidate:
    base = Candidate(
        id=vid,
        name=vid,
        skills=frozenset({Skill.ELDER_CARE}),
        community="community:liyuan",
        compound="compound:fuxing",
        lat=26.6845,
        lng=100.7490,
        max_tasks=3,
        windows=ALWAYS,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


FAR = {"community": "community:chengdong", "compound": "compound:lanting"}

SCENARIOS: list[tuple[str, list[Candidate], list[str]]] = [
    (
        "wrong skill is never ranked",
        [vol("a"), vol("b", skills=frozenset({Skill.LEGAL}))],
        ["a"],
    ),
    (
        "free now beats free only this evening",
        [vol("a", windows=(Window(0, 18 * 60, 20 * 60),)), vol("b")],
        ["b", "a"],
    ),
    (
        "no window in the period: excluded",
        [vol("a", windows=(Window(3, 8 * 60, 9 * 60),)), vol("b")],
        ["b"],
    ),
    (
        "lower load first; at the maximum excluded",
        [vol("a", open_tasks=2), vol("b"), vol("c", open_tasks=3)],
        ["b", "a"],
    ),
    (
        "same compound, then same community, then nearer, then farther",
        [
            vol("far", **FAR, lat=26.80, lng=100.90),  # type: ignore[arg-type]
            vol("near", **FAR, lat=26.6910, lng=100.7490),  # type: ignore[arg-type]
            vol("community"),
            vol("compound", compound="compound:jinyuan"),
        ],
        ["compound", "community", "near", "far"],
    ),
    (
        "fewest recent tasks and hours first",
        [vol("busy", recent_tasks=4, recent_hours=10), vol("idle"), vol("some", recent_tasks=1)],
        ["idle", "some", "busy"],
    ),
    (
        "fairness outweighs a closer but much busier volunteer",
        [vol("close-busy", compound="compound:jinyuan", recent_tasks=10), vol("idle")],
        ["idle", "close-busy"],
    ),
    (
        "more of the needed skills first",
        [vol("one"), vol("two", skills=frozenset({Skill.ELDER_CARE, Skill.HEALTH}))],
        ["two", "one"],
    ),
    (
        "inactive and already-tried volunteers are never ranked",
        [vol("gone", active=False), vol("tried"), vol("ok")],
        ["ok"],
    ),
    (
        "ties broken by id",
        [vol("c"), vol("a"), vol("b")],
        ["a", "b", "c"],
    ),
]


@pytest.mark.parametrize(("name", "cands", "expected"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_ranking_scenarios(name: str, cands: list[Candidate], expected: list[str]) -> None:
    need = NEED
    if "two" in {c.id for c in cands}:
        need = replace(NEED, skills=(Skill.ELDER_CARE, Skill.HEALTH))
    need = replace(need, exclude=frozenset({"tried"}))
    assert [r.candidate.id for r in rank(cands, need)] == expected


def test_scores_are_explained_and_weighted() -> None:
    (r,) = rank([vol("a", open_tasks=1, recent_tasks=1, recent_hours=4)], NEED)
    s = r.scores
    assert set(WEIGHTS) <= set(s) and "total" in s and "distance_km" in s
    assert s["proximity"] == 0.7 and s["load"] == round(1 - 1 / 3, 4)
    assert s["availability"] == 1.0 and s["skill"] == 1.0
    assert s["fairness"] == 0.5  # 1 / (1 + (1 task + 4 h / 4) / 2)
    assert s["total"] == round(sum(WEIGHTS[k] * s[k] for k in WEIGHTS), 4)
    assert r.available_at == MONDAY_10 and r.skill is Skill.ELDER_CARE


def test_activity_days_count_as_availability() -> None:
    sunday = datetime(2024, 5, 12, 9, 0, tzinfo=LOCAL_TZ)
    need = replace(NEED, start=sunday, end=sunday + timedelta(hours=8))
    nobody = vol("a", windows=())
    assert rank([nobody], need) == []
    (r,) = rank([nobody], need, SUNDAY_PM)
    assert r.available_at == sunday.replace(hour=14)
    assert r.scores["availability"] == round(1 / (1 + 5 / 24), 4)


def test_exclusions_are_counted_by_reason() -> None:
    result = match(
        [
            vol("a", active=False),
            vol("b", open_tasks=3),
            vol("c", skills=frozenset({Skill.LEGAL})),
            vol("d", windows=()),
            vol("tried"),
            vol("ok"),
        ],
        replace(NEED, exclude=frozenset({"tried"})),
    )
    assert result.best is not None and result.best.candidate.id == "ok"
    assert result.excluded == {
        Exclusion.INACTIVE.value: 1,
        Exclusion.OVERLOADED.value: 1,
        Exclusion.SKILL.value: 1,
        Exclusion.UNAVAILABLE.value: 1,
        Exclusion.TRIED.value: 1,
    }


# --- properties ------------------------------------------------------------------------------

SKILLS = list(Skill)
windows_st = st.lists(
    st.builds(
        lambda d, s, length: Window(d, s, min(24 * 60, s + length)),
        st.integers(0, 6),
        st.integers(0, 23 * 60),
        st.integers(1, 12 * 60),
    ),
    max_size=4,
).map(tuple)

candidate_st = st.builds(
    Candidate,
    id=st.text("abcdefgh", min_size=1, max_size=4),
    name=st.just("x"),
    skills=st.frozensets(st.sampled_from(SKILLS), max_size=3),
    community=st.sampled_from(["community:liyuan", "community:chengdong", None]),
    compound=st.sampled_from(["compound:jinyuan", "compound:fuxing", None]),
    lat=st.one_of(st.none(), st.floats(26.0, 27.0)),
    lng=st.one_of(st.none(), st.floats(100.0, 101.0)),
    max_tasks=st.integers(1, 5),
    open_tasks=st.integers(0, 6),
    recent_tasks=st.integers(0, 20),
    recent_hours=st.floats(0, 100),
    windows=windows_st,
    active=st.booleans(),
)

need_st = st.builds(
    lambda skills, start_h, length_h, exclude: replace(
        NEED,
        skills=tuple(skills),
        start=MONDAY_10 + timedelta(hours=start_h),
        end=MONDAY_10 + timedelta(hours=start_h + length_h),
        exclude=frozenset(exclude),
    ),
    st.lists(st.sampled_from(SKILLS), min_size=1, max_size=2, unique=True),
    st.integers(0, 7 * 24),
    st.integers(0, 72),
    st.frozensets(st.text("abcdefgh", min_size=1, max_size=4), max_size=3),
)


def eligible(c: Candidate, need: Need) -> bool:
    return (
        c.active
        and c.id not in need.exclude
        and c.open_tasks < c.max_tasks
        and bool(set(need.skills) & c.skills)
        and first_available(c.windows, need.start, need.end) is not None
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(candidate_st, max_size=12, unique_by=lambda c: c.id), need_st)
def test_never_offers_to_an_ineligible_volunteer(cands: list[Candidate], need: Need) -> None:
    ranked = rank(cands, need)
    for r in ranked:
        c = r.candidate
        assert c.active, "inactive"
        assert c.id not in need.exclude, "already declined / tried"
        assert c.open_tasks < c.max_tasks, "overloaded"
        assert r.skill in c.skills and r.skill in need.skills, "wrong skill"
        assert need.start <= r.available_at <= need.end, "unavailable"
        assert any(w.day == r.available_at.astimezone(LOCAL_TZ).weekday() for w in c.windows), (
            "available_at outside every window"
        )
    # and nobody eligible is left out
    assert {r.candidate.id for r in ranked} == {c.id for c in cands if eligible(c, need)}


@settings(max_examples=200, deadline=None)
@given(st.lists(candidate_st, max_size=12, unique_by=lambda c: c.id), need_st, st.randoms())
def test_ranking_is_deterministic_whatever_the_input_order(
    cands: list[Candidate], need: Need, rnd: random.Random
) -> None:
    shuffled = list(cands)
    rnd.shuffle(shuffled)
    first = [(r.candidate.id, r.scores) for r in rank(cands, need)]
    assert first == [(r.candidate.id, r.scores) for r in rank(shuffled, need)]
    totals = [s["total"] for _, s in first]
    assert totals == sorted(totals, reverse=True)
    assert all(0.0 <= s["total"] <= 1.0 for _, s in first)

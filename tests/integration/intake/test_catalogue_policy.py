"""Intake's catalogue shows the department each category goes to from the routing policy
file — the one place that fact lives — so what residents read is what routing does."""

from __future__ import annotations

import json

from tests.integration.intake.conftest import Intake
from tongxin.contracts.enums import Category
from tongxin.runtime.settings import REPO_ROOT


async def test_the_catalogue_names_the_department_routing_sends_each_category_to(
    intake: Intake,
) -> None:
    policy = json.loads((REPO_ROOT / "deploy" / "policy" / "routing.json").read_text("utf-8"))
    units = json.loads((REPO_ROOT / "deploy" / "seed" / "units.json").read_text("utf-8"))
    names = {d["id"]: d["name"] for d in units["departments"]}
    r = await intake.http.get("/v1/categories")
    assert r.status_code == 200
    shown = {c["code"]: c["department"] for c in r.json()}
    routes = policy["department_of"]
    expected = {c.value: names[routes[c.value]] if c.value in routes else None for c in Category}
    assert shown == expected
    # the two used to disagree: a safety hazard goes to the housing department
    assert shown["safety_hazard"] == names["dept:housing"]
    services = (await intake.http.get("/open311/v2/services.json")).json()
    groups = {s["service_code"]: s["group"] for s in services}
    assert groups["legal_aid"] == names["dept:justice"]
    assert groups["sanitation"] == "社区"  # the community's own item

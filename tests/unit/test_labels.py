"""The zh-CN names the pages show: one table (tongxin.contracts.enums), served as labels.js."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tongxin import console
from tongxin.contracts.enums import CareType, Category, Rating, Skill, Tier, labels_zh
from tongxin.runtime.pages import LABELS_JS

ROOT = Path(__file__).resolve().parents[2]
PAGES = {
    "console": ROOT / "tongxin/console/static",
    "v": ROOT / "tongxin/volunteer_page/static",
    "r": ROOT / "tongxin/resident/static",
}


@pytest.mark.parametrize(
    ("kind", "enum"),
    [
        ("category", Category),
        ("tier", Tier),
        ("mode", Tier),
        ("skill", Skill),
        ("care", CareType),
        ("rating", Rating),
    ],
)
def test_every_value_has_a_name(kind: str, enum: type[StrEnum]) -> None:
    names = labels_zh()[kind]
    assert set(names) == {str(v) for v in enum}
    assert all(re.search(r"[\u4e00-\u9fff]", n) for n in names.values()), names


def test_labels_js_is_the_table_as_a_script() -> None:
    body = re.fullmatch(r'"use strict";\n//[^\n]*\nconst LABELS = (\{.*\});\n', LABELS_JS, re.S)
    assert body is not None, LABELS_JS[:200]
    assert json.loads(body.group(1)) == labels_zh()


@pytest.mark.parametrize("prefix", list(PAGES))
def test_each_page_loads_labels_before_its_script_and_keeps_no_copy(prefix: str) -> None:
    static = PAGES[prefix]
    html = (static / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert scripts[0] == f"/{prefix}/static/labels.js", scripts
    pairs = [(v, n) for names in labels_zh().values() for v, n in names.items()]
    for js in static.glob("*.js"):
        text = js.read_text(encoding="utf-8")
        for value, name in pairs:  # a table of its own: `value: "name"`
            copy = re.search(rf'["\']?\b{value}\b["\']?\s*:\s*["\']{name}["\']', text)
            assert copy is None, f"{js.name} keeps its own copy: {copy.group(0)}"


async def test_the_console_serves_labels_js() -> None:
    app = FastAPI()
    app.include_router(console.router)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://intake"
    ) as http:
        r = await http.get("/console/static/labels.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert r.text == LABELS_JS
    assert "script-src 'self'" in r.headers["content-security-policy"]

"""The AsyncAPI document passes the reference parser (@asyncapi/parser from npm)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tongxin.contracts.topics import TOPICS

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "asyncapi"


def test_asyncapi_document_passes_the_reference_parser() -> None:
    if shutil.which("node") is None:
        pytest.fail("Node.js is needed to validate the AsyncAPI document")
    if not (TOOL / "node_modules" / "@asyncapi" / "parser").exists():
        subprocess.run(["npm", "ci", "--silent"], cwd=TOOL, check=True, timeout=300)
    out = subprocess.run(
        ["node", "validate.mjs", str(ROOT / "docs" / "contracts" / "asyncapi.json")],
        cwd=TOOL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # the parser read every topic of the contract and every message the document holds
    doc = json.loads((ROOT / "docs" / "contracts" / "asyncapi.json").read_text(encoding="utf-8"))
    messages = len(doc["components"]["messages"])
    assert len(doc["channels"]) == len(TOPICS)
    assert f"valid AsyncAPI 3.0.0: {len(TOPICS)} channels, {messages} messages" in out.stdout

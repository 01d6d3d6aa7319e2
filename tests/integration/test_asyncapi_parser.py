"""The AsyncAPI document passes the reference parser (@asyncapi/parser from npm)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

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
    assert "valid AsyncAPI 3.0.0: 7 channels" in out.stdout

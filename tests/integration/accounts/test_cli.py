"""``tongxin users …`` against the real database: an account the CLI creates signs in over
the API; reset, deactivate and list work; the password never shows in the output."""

from __future__ import annotations

import asyncio
import os
import sys

from tests.integration.accounts.conftest import Front
from tests.support import unique


async def users(front: Front, *args: str, stdin: str = "") -> tuple[int, str]:
    env = {
        **os.environ,
        "TONGXIN_MONGODB_URI": front.settings.mongodb_uri,
        "TONGXIN_DB_PREFIX": front.settings.db_prefix,
        "TONGXIN_ENV": "test",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from tongxin.accounts.cli import app; app()",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(stdin.encode()), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_users_create_reset_deactivate_list(front: Front) -> None:
    name = unique("cli").lower()
    first, chosen, temp = f"First-{unique('p')}", f"Chosen-{unique('p')}", f"Temp-{unique('p')}"
    code, out = await users(
        front,
        "create",
        name,
        "--role",
        "department",
        "--unit",
        "dept:housing",
        "--display-name",
        "李明",
        "--password-stdin",
        stdin=first + "\n",
    )
    assert code == 0, out
    assert f"created {name}" in out and first not in out

    r = await front.sign_in(name, first, "10.7.0.1")
    assert r.status_code == 403 and r.json()["error"]["code"] == "password_change_required"
    r = await front.call(
        "POST",
        "/v1/session/password",
        client="10.7.0.1",
        json={"name": name, "current_password": first, "new_password": chosen},
    )
    assert r.status_code == 200 and r.json()["unit"] == "dept:housing"

    code, out = await users(front, "reset-password", name, "--password-stdin", stdin=temp + "\n")
    assert code == 0 and temp not in out, out
    assert (await front.sign_in(name, chosen, "10.7.0.1")).status_code == 401
    code, out = await users(front, "deactivate", name)
    assert code == 0, out
    code, out = await users(front, "list")
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith(f"{name}\t"))
    assert "department" in line and "inactive" in line and "$argon2" not in out
    # the policy speaks zh-CN here too, and nothing is created
    code, out = await users(
        front,
        "create",
        unique("w").lower(),
        "--role",
        "staff",
        "--password-stdin",
        stdin="123456789012\n",
    )
    assert code == 1 and "数字" in out
    records = [d async for d in front.db["account_audit"].find({"name": name})]
    by_cli = {d["event"]: d["by"] for d in records if d["event"] != "signin"}
    assert by_cli["create"].startswith("cli:") and by_cli["reset_password"] == by_cli["create"]
    assert by_cli["deactivate"] == by_cli["create"] and by_cli["change_password"] == name

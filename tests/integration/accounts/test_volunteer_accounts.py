"""The volunteer registry and the accounts stay in step, on the real stack: the volunteer
service (in process, on the accounts' topics) registers and deactivates volunteers, and
intake's accounts follow through ``tongxin.volunteer.registry.v1`` — a registered volunteer
gets an account an admin's reset hands over, a deactivated one can no longer sign in, a
redelivered event changes nothing, and no password reaches a log, a topic or the audit."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.volunteer.app import create_app
from services.volunteer.config import VolunteerSettings
from tests.integration.accounts.conftest import Front, session_of, with_session
from tests.support import eventually, headers_of, on_stack, read_topic, unique
from tongxin.contracts.topics import VOLUNTEER_REGISTRY
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.auth import Role, mint_token
from tongxin.runtime.kafka import make_producer
from tongxin.runtime.settings import REPO_ROOT

CONSUMER = "intake.volunteer-accounts"


@dataclass
class Registry:
    """The running volunteer service and a staff member's headers."""

    http: httpx.AsyncClient
    settings: VolunteerSettings

    def staff(self) -> dict[str, str]:
        token = mint_token(self.settings.jwt_secret, sub="staff:1", role=Role.STAFF)
        return {"authorization": f"Bearer {token}"}

    async def register(self, vid: str, name: str = "赵红梅") -> dict[str, Any]:
        r = await self.http.post(
            "/v1/volunteers",
            headers=self.staff(),
            json={
                "id": vid,
                "name": name,
                "phone": "13800001234",
                "skills": ["elder_care"],
                "community": "community:liyuan",
            },
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def deactivate(self, vid: str) -> None:
        r = await self.http.delete(f"/v1/volunteers/{vid}", headers=self.staff())
        assert r.status_code == 200 and r.json()["active"] is False, r.text


@pytest.fixture(scope="module")
async def registry(stack: LocalStack, front: Front) -> AsyncIterator[Registry]:
    """The volunteer service on the accounts' topics (the same prefix as ``front``)."""
    run = front.settings.topic_prefix.removesuffix(".")
    seed_dir = Path(tempfile.mkdtemp(prefix=f"{run}-seed-"))
    shutil.copy(REPO_ROOT / "deploy" / "seed" / "communities.json", seed_dir)
    (seed_dir / "volunteers.json").write_text(json.dumps({"volunteers": []}), "utf-8")
    settings = VolunteerSettings(**on_stack(stack, run), seed_dir=seed_dir)
    assert settings.topic_prefix == front.settings.topic_prefix
    app = create_app(settings)
    # building an app routes the root logger anew: keep collecting intake's lines
    logging.getLogger().addHandler(front.logs)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://volunteer", timeout=30
            ) as http:
                yield Registry(http, settings)
    finally:
        shutil.rmtree(seed_dir, ignore_errors=True)


async def account_of(front: Front, vid: str) -> dict[str, Any] | None:
    """The account answering as volunteer ``vid``, as admins see it."""
    r = await front.call("GET", "/v1/accounts", headers=front.admin())
    assert r.status_code == 200, r.text
    found = [a for a in r.json() if a["subject"] == vid]
    assert len(found) <= 1, found
    return found[0] if found else None


async def audit_of(front: Front, name: str) -> list[tuple[str, str, str]]:
    """(event, outcome, by) of an account's audit records, oldest first."""
    r = await front.call("GET", "/v1/accounts/audit", headers=front.admin(), params={"name": name})
    assert r.status_code == 200, r.text
    return [(e["event"], e["outcome"], e["by"]) for e in reversed(r.json())]


def consumed(front: Front, type_: str, outcome: str) -> float:
    """How many registry records of ``type_`` the accounts' consumer counted as ``outcome``."""
    value = front.app.state.metrics.registry.get_sample_value(
        "tongxin_events_consumed_total",
        {
            "consumer": CONSUMER,
            "topic": front.settings.topic(VOLUNTEER_REGISTRY.name),
            "type": type_,
            "outcome": outcome,
        },
    )
    return float(value or 0.0)


async def test_a_registered_volunteer_gets_an_account_and_loses_it_when_deactivated(
    front: Front, registry: Registry
) -> None:
    vid = f"vol:{unique('t')}"
    await registry.register(vid)

    account = await eventually(
        lambda: account_of(front, vid), timeout=60, what="the volunteer's account"
    )
    name = vid.replace(":", "-")
    assert account["name"] == name
    assert (account["role"], account["unit"], account["display_name"]) == (
        "volunteer",
        None,
        "赵红梅",
    )
    assert account["active"] is True and account["must_change_password"] is True
    # one account per volunteer: a second one answering as them is refused
    r = await front.call(
        "POST",
        "/v1/accounts",
        headers=front.admin(),
        json={
            "name": unique("zhao"),
            "role": "volunteer",
            "subject": vid,
            "password": f"Other-{unique('pw')}-密码",
        },
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "subject_taken", r.text
    assert name in r.json()["error"]["message"]
    # no password was handed over yet: nothing signs in
    r = await front.sign_in(name, "Guess-1234-abc", "10.7.0.1")
    assert r.status_code == 401, r.text

    # the admin hands one over (tongxin users reset-password, or the API) …
    temporary = f"Temp-{unique('pw')}-密码"
    r = await front.call(
        "POST", f"/v1/accounts/{name}/password", headers=front.admin(), json={"password": temporary}
    )
    assert r.status_code == 200, r.text
    assert temporary not in r.text
    r = await front.sign_in(name, temporary, "10.7.0.1")
    assert r.status_code == 403 and r.json()["error"]["code"] == "password_change_required"
    # … which the volunteer must change at the first sign-in; then they are signed in as
    # their volunteer id
    chosen = f"Chosen-{unique('pw')}-密码"
    r = await front.call(
        "POST",
        "/v1/session/password",
        client="10.7.0.1",
        json={"name": name, "current_password": temporary, "new_password": chosen},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["role"]) == (vid, "volunteer")
    session = session_of(r)
    me = await front.call("GET", "/v1/session", client="10.7.0.1", headers=with_session(session))
    assert me.status_code == 200 and me.json()["name"] == vid, me.text

    await registry.deactivate(vid)

    async def disabled() -> bool:
        found = await account_of(front, vid)
        return found is not None and found["active"] is False

    await eventually(disabled, timeout=60, what="the account deactivated")
    r = await front.sign_in(name, chosen, "10.7.0.1")
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert (error["code"], error["message"]) == ("account_disabled", "该账号已停用，请联系管理员。")
    # the session held before ends at its next check
    gone = await front.call("GET", "/v1/session", client="10.7.0.1", headers=with_session(session))
    assert gone.status_code == 401 and gone.json()["error"]["message"] == "请重新登录。"

    assert await audit_of(front, name) == [
        ("create", "ok", "volunteer-registry"),
        ("signin", "bad_password", name),
        ("reset_password", "ok", "admin-1"),
        ("signin", "password_change_required", name),
        ("change_password", "ok", name),
        ("deactivate", "ok", "volunteer-registry"),
        ("signin", "inactive", name),
    ]

    # no password anywhere: the registry's topic, the logs, the audit
    records = await read_topic(
        front.settings.kafka_bootstrap, front.settings.topic(VOLUNTEER_REGISTRY.name)
    )
    mine = [rec for rec in records if rec.key == vid.encode()]
    assert [headers_of(rec)["ce_type"] for rec in mine] == [
        "tongxin.volunteer.registered.v1",
        "tongxin.volunteer.deactivated.v1",
    ]
    on_topic = "\n".join(rec.value.decode() for rec in records)
    await front.call("GET", "/v1/accounts/audit", headers=front.admin(), params={"name": name})
    seen = "\n".join([on_topic, *front.logs.lines, *front.answers])
    for secret in (temporary, chosen):
        assert secret not in seen
    assert "13800001234" not in on_topic  # the registry keeps the phone to itself


async def test_redelivered_registry_events_change_nothing(front: Front, registry: Registry) -> None:
    vid = f"vol:{unique('t')}"
    name = vid.replace(":", "-")
    await registry.register(vid)
    await eventually(lambda: account_of(front, vid), timeout=60, what="the account")
    await registry.deactivate(vid)

    async def disabled() -> dict[str, Any] | None:
        found = await account_of(front, vid)
        return found if found is not None and not found["active"] else None

    before = await eventually(disabled, timeout=60, what="the account deactivated")
    topic = front.settings.topic(VOLUNTEER_REGISTRY.name)
    records = [
        r
        for r in await read_topic(front.settings.kafka_bootstrap, topic, min_count=2)
        if r.key == vid.encode()
    ]
    assert len(records) == 2

    def repeated(kind: str) -> float:
        return consumed(front, f"tongxin.volunteer.{kind}.v1", "duplicate")

    repeats = {kind: repeated(kind) for kind in ("registered", "deactivated")}
    producer = make_producer(
        front.settings.kafka_bootstrap, idempotence=front.settings.kafka_idempotence
    )
    await producer.start()
    try:
        for rec in records:  # both events again, in order (a relay that republished)
            await producer.send_and_wait(
                topic, value=rec.value, key=rec.key, headers=list(rec.headers)
            )
    finally:
        await producer.stop()

    async def all_seen() -> bool:
        return all(repeated(kind) > seen for kind, seen in repeats.items())

    await eventually(all_seen, timeout=60, what="both repeats consumed")
    assert await account_of(front, vid) == before  # not re-created, not re-activated
    assert await audit_of(front, name) == [
        ("create", "ok", "volunteer-registry"),
        ("deactivate", "ok", "volunteer-registry"),
    ]


async def test_an_admins_unbound_volunteer_account_is_bound_and_a_taken_name_left_alone(
    front: Front, registry: Registry
) -> None:
    # an admin made the volunteer's account before the registration, without a subject
    suffix = unique("t")
    vid, name = f"vol:{suffix}", f"vol-{suffix}"
    r = await front.call(
        "POST",
        "/v1/accounts",
        headers=front.admin(),
        json={"name": name, "role": "volunteer", "password": f"First-{unique('pw')}-密码"},
    )
    assert r.status_code == 201, r.text
    # a staff member holds the name another volunteer's id would give
    other = unique("t")
    r = await front.call(
        "POST",
        "/v1/accounts",
        headers=front.admin(),
        json={
            "name": f"vol-{other}",
            "role": "staff",
            "unit": "community:liyuan",
            "password": f"First-{unique('pw')}-密码",
        },
    )
    assert r.status_code == 201, r.text

    await registry.register(f"vol:{other}", name="钱多多")
    await registry.register(vid)

    bound = await eventually(lambda: account_of(front, vid), timeout=60, what="bound")
    assert (bound["name"], bound["role"]) == (name, "volunteer")
    assert await audit_of(front, name) == [
        ("create", "ok", "admin-1"),
        ("link", "ok", "volunteer-registry"),
    ]
    # the staff member's account is left as it was, and why is on record

    async def recorded() -> list[tuple[str, str, str]]:
        return [a for a in await audit_of(front, f"vol-{other}") if a[1] == "name_taken"]

    assert await eventually(recorded, timeout=60, what="the taken name recorded") == [
        ("volunteer.registered", "name_taken", "volunteer-registry")
    ]
    staff = await account_of(front, f"vol-{other}")
    assert staff is not None and staff["role"] == "staff" and staff["active"] is True
    assert await account_of(front, f"vol:{other}") is None

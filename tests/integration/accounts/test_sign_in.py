"""Accounts and sign-in on the real stack (intake in process, SecantusDB): first sign-in
must change the password, the session cookie and its flags, CSRF on cookie writes, the
lockout, no user enumeration, deactivation, audit, and no password or hash anywhere."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from tests.integration.accounts.conftest import Front, session_of, set_cookie, with_session
from tests.support import unique

# every password the tests use; the last test looks for each in logs, answers and audit
PASSWORDS: list[str] = []


def pw(prefix: str = "Pw") -> str:
    p = f"{prefix}-{unique('x')}-密码"
    PASSWORDS.append(p)
    return p


async def test_first_sign_in_must_set_a_password_then_the_session_works(front: Front) -> None:
    first = pw("Initial")
    name = await front.create(first, unit="community:liyuan")
    client = "10.1.0.1"

    r = await front.sign_in(name, first, client)
    assert r.status_code == 403 and r.json()["error"]["code"] == "password_change_required"
    assert "设置新密码" in r.json()["error"]["message"]
    assert "set-cookie" not in r.headers

    weak = await front.call(
        "POST",
        "/v1/session/password",
        client=client,
        json={"name": name, "current_password": first, "new_password": "1234567890"},
    )
    assert weak.status_code == 422 and "数字" in weak.json()["error"]["message"]
    PASSWORDS.append("1234567890")
    new = pw("Chosen")
    r = await front.call(
        "POST",
        "/v1/session/password",
        client=client,
        json={"name": name, "current_password": first, "new_password": new},
    )
    assert r.status_code == 200, r.text
    assert (await front.sign_in(name, first, client)).status_code == 401  # the old one is gone

    r = await front.sign_in(name, new, client)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["name"], body["role"], body["unit"]) == (name, "staff", "community:liyuan")
    assert body["csrf_token"] and body["expires_at"]
    flags = [f.strip().lower() for f in set_cookie(r).split(";")[1:]]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags  # TONGXIN_ENV=test: plain http; Secure in production
    session = session_of(r)

    me = await front.call("GET", "/v1/session", client=client, headers=with_session(session))
    assert me.status_code == 200, me.text
    assert (me.json()["name"], me.json()["unit"]) == (name, "community:liyuan")
    assert me.json()["csrf_token"] == body["csrf_token"]
    assert me.json()["display_name"] == body["display_name"] == "王芳"
    # intake's own staff reads accept the cookie
    reads = await front.call("GET", "/v1/requests", client=client, headers=with_session(session))
    assert reads.status_code == 200, reads.text
    assert (await front.call("GET", "/v1/requests", client=client)).status_code == 401

    out = await front.call("DELETE", "/v1/session", client=client, headers=with_session(session))
    assert out.status_code == 204
    cleared = set_cookie(out).lower()
    assert cleared.startswith("tongxin_session=") and "max-age=0" in cleared
    gone = await front.call("GET", "/v1/session", client=client)
    assert gone.status_code == 401 and gone.json()["error"]["message"] == "请重新登录。"


async def test_writes_with_the_cookie_need_the_csrf_token_and_the_same_site(front: Front) -> None:
    password = pw()
    admin = await front.ready(password, role="admin", unit=None)
    r = await front.sign_in(admin, password)
    session, csrf = session_of(r), r.json()["csrf_token"]
    body = {"name": unique("n").lower(), "role": "staff", "password": pw()}

    missing = await front.call("POST", "/v1/accounts", headers=with_session(session), json=body)
    assert missing.status_code == 403 and missing.json()["error"]["code"] == "csrf"
    wrong = await front.call(
        "POST",
        "/v1/accounts",
        headers=with_session(session, **{"x-csrf-token": "0" * 64}),
        json=body,
    )
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "csrf"
    cross = await front.call(
        "POST",
        "/v1/accounts",
        headers={**with_session(session, **{"x-csrf-token": csrf}), "sec-fetch-site": "cross-site"},
        json=body,
    )
    assert cross.status_code == 403 and cross.json()["error"]["code"] == "cross_site"
    other_origin = await front.call(
        "POST",
        "/v1/accounts",
        headers={
            "cookie": f"tongxin_session={session}",
            "origin": "http://evil.example",
            "x-csrf-token": csrf,
        },
        json=body,
    )
    assert other_origin.status_code == 403
    assert (await front.db["accounts"].find_one({"_id": body["name"]})) is None

    ok = await front.call(
        "POST", "/v1/accounts", headers=with_session(session, **{"x-csrf-token": csrf}), json=body
    )
    assert ok.status_code == 201, ok.text
    # the console's proxy refuses the same way before anything is forwarded
    proxied = await front.call(
        "POST", "/console/api/routing/v1/cases/x/acknowledge", headers=with_session(session)
    )
    assert proxied.status_code == 403 and proxied.json()["error"]["code"] == "csrf"
    proxied = await front.call(
        "GET",
        "/console/api/routing/v1/cases",
        headers={**with_session(session), "sec-fetch-site": "cross-site"},
    )
    assert proxied.status_code == 403 and proxied.json()["error"]["code"] == "cross_site"
    # a sign-in posted from another site's page is refused too (login CSRF)
    r = await front.call(
        "POST",
        "/v1/session",
        headers={"sec-fetch-site": "cross-site"},
        json={"name": admin, "password": password},
    )
    assert r.status_code == 403 and "set-cookie" not in r.headers


async def test_five_wrong_passwords_lock_the_account_with_retry_after(front: Front) -> None:
    password = pw()
    name = await front.ready(password)
    client = "10.2.0.1"
    for _ in range(4):
        r = await front.sign_in(name, pw("Wrong"), client)
        assert r.status_code == 401 and r.json()["error"]["message"] == "用户名或密码错误。"
    r = await front.sign_in(name, pw("Wrong"), client)
    assert r.status_code == 429, r.text
    assert 0 < int(r.headers["retry-after"]) <= 15 * 60
    assert "分钟后再试" in r.json()["error"]["message"]
    metrics = (await front.call("GET", "/metrics")).text
    assert 'tongxin_signins_total{outcome="bad_password"}' in metrics
    lockouts = re.search(r"^tongxin_signin_lockouts_total (\S+)$", metrics, re.M)
    assert lockouts is not None and float(lockouts.group(1)) >= 1
    # locked: the right password from another address does not help
    r = await front.sign_in(name, password, "10.2.0.2")
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert "set-cookie" not in r.headers
    # the counter is in the database (it survives a restart)
    counter = await front.db["signin_throttle"].find_one({"_id": f"account:{name}"})
    assert counter is not None and counter["locked_until"] is not None
    # an admin's reset lifts the lock (and asks for a new password)
    reset = await front.call(
        "POST", f"/v1/accounts/{name}/password", headers=front.admin(), json={"password": pw()}
    )
    assert reset.status_code == 200 and reset.json()["must_change_password"] is True
    r = await front.sign_in(name, PASSWORDS[-1], "10.2.0.3")
    assert r.status_code == 403 and r.json()["error"]["code"] == "password_change_required"


async def test_guesses_sent_at_once_are_tried_one_by_one(front: Front) -> None:
    password = pw()
    name = await front.ready(password)
    guesses = [pw("Wrong") for _ in range(12)] + [password]
    answers = await asyncio.gather(*(front.sign_in(name, g, "10.2.1.1") for g in guesses))
    statuses = [r.status_code for r in answers]
    # only five guesses were tried; the right one, sent with them, came too late
    assert sorted(statuses) == [401] * 4 + [429] * 9, statuses
    tried = await front.db["account_audit"].count_documents(
        {"name": name, "event": "signin", "outcome": "bad_password"}
    )
    assert tried == 5


async def test_unknown_names_get_the_same_answers(front: Front) -> None:
    known = await front.ready(pw())
    wrong_known = await front.sign_in(known, pw("Wrong"), "10.3.0.1")
    unknown = unique("nobody").lower()
    wrong_unknown = await front.sign_in(unknown, pw("Wrong"), "10.3.0.2")
    assert wrong_known.status_code == wrong_unknown.status_code == 401
    assert wrong_known.json() == wrong_unknown.json()
    for _ in range(4):
        r = await front.sign_in(unknown, pw("Wrong"), "10.3.0.2")
    assert r.status_code == 429 and "retry-after" in r.headers  # locks as a real name does


async def test_many_failures_from_one_client_are_throttled(front: Front) -> None:
    client = "10.4.0.1"
    for _ in range(front.settings.signin_client_max_failures):
        await front.sign_in(unique("guess").lower(), pw("Wrong"), client)
    password = pw()
    name = await front.ready(password)
    r = await front.sign_in(name, password, client)
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert (await front.sign_in(name, password, "10.4.0.2")).status_code == 200


async def test_one_client_guessing_many_names_at_once_is_held_to_its_limit(
    front: Front,
) -> None:
    client = "10.4.1.1"
    names = [unique("spray").lower() for _ in range(30)]
    answers = await asyncio.gather(*(front.sign_in(n, pw("Wrong"), client) for n in names))
    assert {r.status_code for r in answers} == {401, 429}
    tried = await front.db["account_audit"].count_documents(
        {"client": client, "outcome": {"$in": ["bad_password", "unknown_name"]}}
    )
    limit = front.settings.signin_client_max_failures
    assert limit <= tried <= limit + 3, tried  # at most 4 in flight overshoot it


async def test_a_deactivated_account_cannot_sign_in(front: Front) -> None:
    password = pw()
    name = await front.ready(password)
    r = await front.call("POST", f"/v1/accounts/{name}/deactivate", headers=front.admin())
    assert r.status_code == 200 and r.json()["active"] is False
    r = await front.sign_in(name, password, "10.5.0.1")
    assert r.status_code == 403 and r.json()["error"]["code"] == "account_disabled"
    assert "set-cookie" not in r.headers
    r = await front.call("POST", f"/v1/accounts/{name}/activate", headers=front.admin())
    assert r.status_code == 200 and r.json()["active"] is True
    assert (await front.sign_in(name, password, "10.5.0.1")).status_code == 200


async def test_deactivation_and_password_changes_end_sessions(front: Front) -> None:
    password = pw()
    name = await front.ready(password)
    client = "10.8.0.1"

    async def stands(session: str) -> bool:
        r = await front.call("GET", "/v1/session", client=client, headers=with_session(session))
        assert r.status_code in (200, 401), r.text
        return r.status_code == 200

    first = session_of(await front.sign_in(name, password, client))
    assert await stands(first)
    r = await front.call("POST", f"/v1/accounts/{name}/deactivate", headers=front.admin())
    assert r.status_code == 200
    assert not await stands(first)
    reads = await front.call("GET", "/v1/requests", client=client, headers=with_session(first))
    assert reads.status_code == 401
    await front.call("POST", f"/v1/accounts/{name}/activate", headers=front.admin())
    assert not await stands(first)  # deactivation ended it for good

    second = session_of(await front.sign_in(name, password, client))
    assert await stands(second)
    new = pw()
    r = await front.call(
        "POST",
        "/v1/session/password",
        client=client,
        json={"name": name, "current_password": password, "new_password": new},
    )
    assert r.status_code == 200
    assert await stands(session_of(r))  # the session the change started
    assert not await stands(second)  # every earlier one ended
    # a token that is no account's session is no session, even when validly signed
    forged = front.admin()["authorization"].split(" ", 1)[1]
    assert not await stands(forged)


async def test_only_admins_manage_accounts_and_nobody_sees_a_hash(front: Front) -> None:
    from tongxin.runtime.auth import Role, mint_token

    staff = mint_token(front.settings.jwt_secret, sub="s", role=Role.STAFF, unit="town:yongbei")
    staff_h = {"authorization": f"Bearer {staff}"}
    assert (await front.call("GET", "/v1/accounts", headers=staff_h)).status_code == 403
    body = {"name": unique("n").lower(), "role": "admin", "password": pw()}
    assert (await front.call("POST", "/v1/accounts", headers=staff_h, json=body)).status_code == 403
    assert (await front.call("GET", "/v1/accounts")).status_code == 401

    name = await front.create(pw())
    listed = await front.call("GET", "/v1/accounts", headers=front.admin())
    assert listed.status_code == 200 and listed.json()
    assert all("password_hash" not in a and "password" not in a for a in listed.json())
    # the policy and the account's shape, in zh-CN
    cases: list[tuple[dict[str, Any], str]] = [
        ({"password": "short"}, "至少"),
        ({"password": "9876543210123"}, "数字"),
        ({"name": "wangfang", "password": "wangfang-2026!"}, "用户名"),
        ({"password": "Password123"}, "常见"),
        ({"role": "platform"}, "platform"),
        ({"role": "department", "unit": None}, "单位"),
        ({"unit": "community:nowhere"}, "没有编号"),
    ]
    for change, words in cases:
        attempt = {"name": unique("p").lower(), "role": "staff", "password": pw(), **change}
        r = await front.call("POST", "/v1/accounts", headers=front.admin(), json=attempt)
        assert r.status_code == 422, (change, r.text)
        assert words in json.dumps(r.json(), ensure_ascii=False), (change, r.text)
    # text that is no Unicode (a lone surrogate) is refused, not a server error
    lone = '{"name": "a\\ud800", "password": "b\\ud800"}'
    r = await front.call(
        "POST", "/v1/session", content=lone, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    again = await front.call(
        "POST",
        "/v1/accounts",
        headers=front.admin(),
        json={"name": name, "role": "staff", "password": pw()},
    )
    assert again.status_code == 409


async def test_every_sign_in_and_change_is_audited(front: Front) -> None:
    password = pw()
    name = await front.ready(password, client="10.6.0.1")
    await front.sign_in(name, password, "10.6.0.2")
    await front.sign_in(name, pw("Wrong"), "10.6.0.3")
    await front.call(
        "POST", f"/v1/accounts/{name}/password", headers=front.admin(), json={"password": pw()}
    )
    await front.call("POST", f"/v1/accounts/{name}/deactivate", headers=front.admin())
    records = [d async for d in front.db["account_audit"].find({"name": name}).sort("at", 1)]
    seen = [(d["event"], d["outcome"]) for d in records]
    assert seen == [
        ("create", "ok"),
        ("change_password", "ok"),
        ("signin", "ok"),
        ("signin", "bad_password"),
        ("reset_password", "ok"),
        ("deactivate", "ok"),
    ], seen
    clients = [d["client"] for d in records]
    assert clients[1:4] == ["10.6.0.1", "10.6.0.2", "10.6.0.3"]
    assert records[0]["by"] == "admin-1" and records[2]["by"] == name
    assert all(d["at"] is not None for d in records)
    # admins read it over the API
    r = await front.call("GET", f"/v1/accounts/audit?name={name}", headers=front.admin())
    assert r.status_code == 200 and len(r.json()) == len(records)


async def test_housekeeping_removes_dead_counters_and_old_audit(front: Front) -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    old, fresh = unique("old").lower(), unique("fresh").lower()
    await front.db["signin_throttle"].insert_many(
        [
            {
                "_id": f"account:{old}",
                "failures": 5,
                "window_start": now - timedelta(hours=1),
                "locked_until": now - timedelta(minutes=30),
                "v": 1,
            },
            {
                "_id": f"account:{fresh}",
                "failures": 5,
                "window_start": now,
                "locked_until": now + timedelta(minutes=15),
                "v": 1,
            },
        ]
    )
    await front.db["account_audit"].insert_many(
        [
            {"at": now - timedelta(days=181), "event": "signin", "outcome": "ok", "name": old},
            {"at": now - timedelta(days=179), "event": "signin", "outcome": "ok", "name": fresh},
        ]
    )
    counters, records = await front.app.state.rt.extra["accounts"].purge()
    assert counters >= 1 and records >= 1
    left = {d["_id"] async for d in front.db["signin_throttle"].find({})}
    assert f"account:{old}" not in left and f"account:{fresh}" in left
    assert await front.db["account_audit"].count_documents({"name": old}) == 0
    assert await front.db["account_audit"].count_documents({"name": fresh}) == 1


async def test_no_password_or_hash_reaches_a_log_an_answer_or_the_audit(front: Front) -> None:
    """Run last: scans everything the tests above produced."""
    hashes = [d["password_hash"] async for d in front.db["accounts"].find({})]
    assert hashes and all(h.startswith("$argon2id$") for h in hashes)
    audit = [
        json.dumps(d, default=str, ensure_ascii=False)
        async for d in front.db["account_audit"].find({})
    ]
    assert len(PASSWORDS) > 20 and front.logs.lines and front.answers and audit
    places = {"log": front.logs.lines, "answer": front.answers, "audit": audit}
    for where, texts in places.items():
        blob = "\n".join(texts)
        for secret in [*PASSWORDS, *hashes, "$argon2"]:
            assert secret not in blob, f"a password or hash in the {where}s"
    assert any("account signin" in line for line in front.logs.lines)  # the scan saw logs

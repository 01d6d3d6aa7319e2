"""The Open311 GeoReport v2 facade: services, a form-encoded post, and reading it back
with status, notes, agency and the expected time from the case deadline; public reads
without credentials (a real GeoReport client), api keys, the read limit."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from georeport import GeoReport
from pydantic import SecretStr

from services.intake.limits import TokenBucketLimiter
from tests.integration.intake.conftest import Intake, now
from tests.integration.intake.test_timeline import CASES, case, routed
from tests.support import unique
from tongxin.contracts.events import CaseClosed, CaseProgressed, CaseResolved
from tongxin.runtime.auth import Role

# what anyone may read of a request (GeoReport reads are public)
PUBLIC_KEYS = {
    "service_request_id",
    "status",
    "status_notes",
    "service_name",
    "service_code",
    "agency_responsible",
    "service_notice",
    "requested_datetime",
    "updated_datetime",
    "expected_datetime",
}


async def test_services_and_definitions(intake: Intake) -> None:
    services = (await intake.http.get("/open311/v2/services.json")).json()
    assert len(services) == 15
    codes = {s["service_code"]: s for s in services}
    assert codes["elderly_care"]["service_name"] == "养老助老"
    assert codes["elderly_care"]["metadata"] is True
    d = (await intake.http.get("/open311/v2/services/safety_hazard.json")).json()
    assert "hazard" in [a["code"] for a in d["attributes"]]
    assert (await intake.http.get("/open311/v2/services/nope.json")).status_code == 404


async def test_open311_round_trip(intake: Intake) -> None:
    desc = unique("东升小区门口的路灯不亮了，请尽快维修。")
    form = {
        "service_code": "public_facilities",
        "lat": "26.6921",
        "long": "100.7612",  # at 东升小区: the nearest compound names the community
        "address_string": "城东路1号",
        "description": desc,
        "first_name": "强",
        "last_name": "王",
        "phone": "13700001111",
        "attribute[facility]": "street_light",
        "media_url": "https://img.example.cn/lamp.jpg",
    }
    r = await intake.http.post("/open311/v2/requests.json", data=form)
    assert r.status_code == 201, r.text
    [answer] = r.json()
    rid, code = answer["service_request_id"], answer["tracking_code"]
    staff_doc = await intake.view(rid)
    assert staff_doc["compound"] == "compound:dongsheng"
    assert staff_doc["community"] == "community:chengdong"
    assert staff_doc["submitter"]["name"] == "王强"
    assert staff_doc["attributes"] == {"facility": "street_light"}

    url = f"/open311/v2/requests/{rid}.json"
    [public] = (await intake.http.get(url)).json()
    assert set(public) == PUBLIC_KEYS and public["status_notes"] == "已受理"
    [mine] = (await intake.http.get(url, params={"tracking_code": code})).json()
    assert mine["status"] == "open" and mine["service_code"] == "public_facilities"
    assert "description" not in mine and "address" not in mine
    assert mine["expected_datetime"] is None

    ev = routed(rid)
    ev = ev.model_copy(
        update={"units": ["community:chengdong"], "resolve_by": now() + timedelta(hours=24)}
    )
    await intake.publish(CASES, ev)
    await intake.wait_status(rid, "routed")
    [staff] = (await intake.http.get(url, headers=intake.staff())).json()
    assert staff["status"] == "open"
    assert staff["agency_responsible"] == "城东社区"
    assert staff["expected_datetime"].endswith("+08:00")
    assert staff["status_notes"].startswith("已派单")
    assert staff["description"] == desc and staff["lat"] == 26.6921

    await intake.publish(CASES, case(CaseResolved, rid))
    await intake.publish(CASES, case(CaseClosed, rid, reason="satisfied"))
    await intake.wait_status(rid, "closed")
    [closed] = (await intake.http.get(url, params={"tracking_code": code})).json()
    assert closed["status"] == "closed"

    listed = await intake.http.get(
        "/open311/v2/requests.json",
        params={"service_request_id": rid, "status": "closed"},
        headers=intake.staff(),
    )
    assert [x["service_request_id"] for x in listed.json()] == [rid]


async def test_open311_bad_posts_name_the_form_field(intake: Intake) -> None:
    before = await intake.db.requests.count_documents({})
    r = await intake.http.post(
        "/open311/v2/requests.json",
        data={"service_code": "nope", "description": "随便说点什么内容", "address_id": "x"},
    )
    assert r.status_code == 422
    locs = [d["loc"] for d in r.json()["error"]["details"]]
    assert ["form", "service_code"] in locs
    nowhere = await intake.http.post(
        "/open311/v2/requests.json",
        data={
            "service_code": "sanitation",
            "description": "垃圾很多没人清理",
            "lat": "26",
            "long": "100.9",
        },
    )
    assert nowhere.status_code == 422
    assert ["form", "community"] in [d["loc"] for d in nowhere.json()["error"]["details"]]
    attr = await intake.http.post(
        "/open311/v2/requests.json",
        data={
            "service_code": "sanitation",
            "description": "垃圾很多没人清理",
            "address_id": "compound:jinyuan",
            "attribute[issue]": "dragons",
        },
    )
    assert attr.status_code == 422
    assert ["form", "attribute[issue]"] in [d["loc"] for d in attr.json()["error"]["details"]]
    as_json = await intake.http.post("/open311/v2/requests.json", json={"service_code": "x"})
    assert as_json.status_code == 415
    assert await intake.db.requests.count_documents({}) == before


def fms_form(**over: str) -> dict[str, str]:
    """A post as FixMyStreet's Open311 integration sends it: contact, account and device
    fields besides the report."""
    form = {
        "service_code": "sanitation",
        "lat": "26.6907",
        "long": "100.7478",  # at 金园小区
        "address_string": unique("私密地址") + "3栋",
        "description": unique("楼道垃圾堆积，私密描述"),
        "first_name": "秀英",
        "last_name": "张",
        "email": unique("resident") + "@example.cn",
        "phone": "13912345678",
        "device_id": unique("device"),
        "account_id": unique("account"),
        "media_url": "https://img.example.cn/" + unique("private") + ".jpg",
        "attribute[issue]": "garbage",
    }
    return {**form, **over}


PRIVATE = ("address_string", "description", "first_name", "last_name", "email", "phone")


def leaked(text: str, form: dict[str, str]) -> list[str]:
    """The private form values (and the place) that appear in ``text``."""
    values = [form[k] for k in PRIVATE] + [form["media_url"], form["lat"], "jinyuan", "张秀英"]
    return [v for v in values if v in text]


async def test_anonymous_reads_answer_the_public_view_only(intake: Intake) -> None:
    form = fms_form()
    r = await intake.http.post("/open311/v2/requests.json", data=form)
    assert r.status_code == 201, r.text
    [answer] = r.json()
    rid = answer["service_request_id"]
    single = await intake.http.get(f"/open311/v2/requests/{rid}.json")
    assert single.status_code == 200, single.text
    [view] = single.json()
    assert set(view) == PUBLIC_KEYS
    assert view["service_code"] == "sanitation" and view["service_name"] == "环境卫生"
    assert view["status"] == "open" and view["status_notes"] == "已受理"
    assert leaked(single.text, form) == []
    # staff free text on the timeline stays out of the public notes
    await intake.publish(CASES, routed(rid))
    await intake.wait_status(rid, "routed")
    secret_note = unique("内部备注")
    await intake.publish(CASES, case(CaseProgressed, rid, note=secret_note))
    await intake.wait_status(rid, "in_progress")
    single = await intake.http.get(f"/open311/v2/requests/{rid}.json")
    [view] = single.json()
    assert view["status_notes"] == "办理中" and view["agency_responsible"] == "梨园社区"
    assert secret_note not in single.text and leaked(single.text, form) == []

    queries: list[dict[str, str]] = [
        {"service_request_id": rid},
        {"service_code": "sanitation,elderly_care", "status": "open"},
        {},
    ]
    for params in queries:
        listed = await intake.http.get("/open311/v2/requests.json", params=params)
        assert listed.status_code == 200, (params, listed.text)
        rows = {x["service_request_id"]: x for x in listed.json()}
        assert rid in rows, params
        assert all(set(x) == PUBLIC_KEYS for x in rows.values()), params
        assert leaked(listed.text, form) == [] and "13912345678" not in listed.text
        assert secret_note not in listed.text
    closed = await intake.http.get(
        "/open311/v2/requests.json", params={"service_request_id": rid, "status": "closed"}
    )
    assert closed.json() == []
    bad = await intake.http.get("/open311/v2/requests.json", params={"status": "open,lost"})
    assert bad.status_code == 422
    assert (await intake.http.get("/open311/v2/requests/YS-nope.json")).status_code == 404

    # staff read it whole, within their scope; a community's staff see only their own
    [whole] = (
        await intake.http.get(f"/open311/v2/requests/{rid}.json", headers=intake.staff())
    ).json()
    assert whole["description"] == form["description"]
    assert whole["address"] == form["address_string"] and whole["lat"] == 26.6907
    assert whole["media_url"] == form["media_url"] and whole["address_id"] == "compound:jinyuan"
    staff_list = await intake.http.get(
        "/open311/v2/requests.json", params={"service_request_id": rid}, headers=intake.staff()
    )
    assert [x["description"] for x in staff_list.json()] == [form["description"]]
    other = intake.staff(Role.STAFF, "community:chengdong")
    elsewhere = await intake.http.get(
        "/open311/v2/requests.json", params={"service_request_id": rid}, headers=other
    )
    assert elsewhere.status_code == 200 and elsewhere.json() == []


async def test_georeport_fields_are_accepted_and_contact_extras_not_kept(
    intake: Intake, caplog: pytest.LogCaptureFixture
) -> None:
    form = fms_form(api_key="no-keys-configured")
    caplog.set_level(logging.DEBUG)
    r = await intake.http.post("/open311/v2/requests.json", data=form)
    assert r.status_code == 201, r.text
    [answer] = r.json()
    assert answer["account_id"] is None and answer["tracking_code"]
    stored = await intake.db.requests.find_one({"_id": answer["service_request_id"]})
    assert stored is not None
    assert stored["submitter"]["name"] == "张秀英" and stored["submitter"]["phone"] == form["phone"]
    assert stored["attachments"] == [form["media_url"]]
    kept = json.dumps(stored, default=str, ensure_ascii=False)
    for field in ("email", "device_id", "account_id", "api_key"):
        assert form[field] not in kept, field
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for field in ("email", "phone", "device_id", "account_id", "api_key"):
        assert form[field] not in logged, field


async def test_the_api_key_is_checked_when_keys_are_configured(
    intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "fms-" + unique("key")
    keys = [SecretStr("other-integrator-key"), SecretStr(key)]
    monkeypatch.setattr(intake.settings, "intake_open311_api_keys", keys)
    # a keyed client is accountable: not held to the anonymous limit (burst of one here)
    limiter = TokenBucketLimiter(per_minute=1, burst=1)
    monkeypatch.setattr(intake.app.state, "anonymous_limiter", limiter, raising=False)
    before = await intake.db.requests.count_documents({})
    for sent in ({}, {"api_key": ""}, {"api_key": key + "x"}, {"api_key": key[:-1]}):
        r = await intake.http.post("/open311/v2/requests.json", data=fms_form(**sent))
        assert r.status_code == 403, (sent, r.text)
        [error] = r.json()
        assert error["code"] == 403 and error["description"]
    assert await intake.db.requests.count_documents({}) == before
    for _ in range(3):
        r = await intake.http.post("/open311/v2/requests.json", data=fms_form(api_key=key))
        assert r.status_code == 201, r.text
    r = await intake.http.post(
        "/open311/v2/requests.json", data=fms_form(), headers=intake.staff(Role.PLATFORM)
    )
    assert r.status_code == 201, r.text  # a bearer token needs no key
    assert await intake.db.requests.count_documents({}) == before + 4


async def test_anonymous_reads_are_rate_limited_per_client(
    intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    [answer] = (await intake.http.post("/open311/v2/requests.json", data=fms_form())).json()
    url = f"/open311/v2/requests/{answer['service_request_id']}.json"
    limiter = TokenBucketLimiter(per_minute=1, burst=1)
    monkeypatch.setattr(intake.app.state, "anonymous_limiter", limiter, raising=False)
    codes = [(await intake.http.get(url)).status_code for _ in range(5)]
    assert codes == [200] * 5  # a read costs a fifth of a submission
    refused = await intake.http.get("/open311/v2/requests.json")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert (await intake.http.get(url, headers=intake.staff())).status_code == 200
    # submissions have a bucket of their own
    r = await intake.http.post("/open311/v2/requests.json", data=fms_form())
    assert r.status_code == 201, r.text


@pytest.fixture
async def served(intake: Intake) -> AsyncIterator[str]:
    """The running intake over real HTTP on a free port (its lifespan is the fixture's)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(intake.app, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
    try:
        yield f"http://127.0.0.1:{port}/open311/v2"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_a_georeport_client_reads_and_lists_a_fixmystreet_post(
    intake: Intake, served: str
) -> None:
    form = fms_form(api_key="no-keys-configured")
    # FixMyStreet posts application/x-www-form-urlencoded over HTTP
    async with httpx.AsyncClient(timeout=30) as http:
        posted = await http.post(f"{served}/requests.json", data=form)
    assert posted.status_code == 201, posted.text
    assert posted.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    rid = posted.json()[0]["service_request_id"]

    client = GeoReport(served)
    codes = [s["service_code"] for s in await asyncio.to_thread(client.get_service_list)]
    assert "sanitation" in codes
    one: dict[str, Any] = await asyncio.to_thread(client.get_service_request, rid)
    assert one["service_request_id"] == rid and one["status"] == "open"
    assert one["service_code"] == "sanitation" and one["status_notes"] == "已受理"
    assert set(one) == PUBLIC_KEYS and leaked(json.dumps(one, ensure_ascii=False), form) == []
    by_id = await asyncio.to_thread(client.get_service_requests, service_request_id=rid)
    assert [x["service_request_id"] for x in by_id] == [rid]
    listed = await asyncio.to_thread(
        client.get_service_requests, service_code="sanitation", status="open"
    )
    assert rid in [x["service_request_id"] for x in listed]
    assert leaked(json.dumps(listed, ensure_ascii=False), form) == []

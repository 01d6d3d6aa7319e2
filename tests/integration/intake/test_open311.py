"""The Open311 GeoReport v2 facade: services, a form-encoded post, and reading it back
with status, notes, agency and the expected time from the case deadline."""

from __future__ import annotations

from datetime import timedelta

from tests.integration.intake.conftest import Intake, now
from tests.integration.intake.test_timeline import CASES, case, routed
from tests.support import unique
from tongxin.contracts.events import CaseClosed, CaseResolved


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
    assert (await intake.http.get(url)).status_code == 401
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

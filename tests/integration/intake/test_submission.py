"""Submission over HTTP against the real stack: stored with its events, masked public
status, metrics, and bad input that changes nothing."""

from __future__ import annotations

from typing import Any

from tests.integration.intake.conftest import BODY, Intake
from tests.support import unique


async def counts(intake: Intake) -> tuple[int, int]:
    return (
        await intake.db.requests.count_documents({}),
        await intake.db.outbox.count_documents({}),
    )


async def test_submission_is_stored_published_and_masked_on_the_public_topic(
    intake: Intake,
) -> None:
    body = {**BODY, "title": unique("路灯"), "address": "梨园路18号3栋"}
    r = await intake.submit(body)
    assert r.status_code == 201, r.text
    answer = r.json()
    rid = answer["id"]
    assert answer["status"] == "submitted"
    assert r.headers["location"] == f"/v1/requests/{rid}"
    parts = rid.split("-")
    assert parts[0] == "YS" and len(parts[1]) == 8 and len(parts[2]) == 6
    assert len(answer["tracking_code"]) >= 16

    submitted = await intake.records("tongxin.requests.v1", rid)
    headers, data = submitted[0]
    assert headers["ce_type"] == "tongxin.request.submitted.v1"
    assert data["submitter"]["phone"] == "13812341234"
    assert data["attributes"] == {"facility": "street_light"}

    public = await intake.records("tongxin.public.status.v1", rid)
    headers, data = public[0]
    assert headers["ce_type"] == "tongxin.request.status.v1"
    assert data["status"] == "submitted"
    assert data["phone_masked"] == "138****1234"
    raw = str(data)
    assert "张秀英" not in raw and "梨园路18号" not in raw and "13812341234" not in raw

    metrics = (await intake.http.get("/metrics")).text
    assert 'tongxin_requests_submitted_total{category="public_facilities",channel="app"}' in metrics


async def test_resident_reads_masked_staff_read_whole_and_codes_cannot_be_probed(
    intake: Intake,
) -> None:
    answer = await intake.new_request(address="梨园路18号")
    rid, code = answer["id"], answer["tracking_code"]
    mine = await intake.http.get(f"/v1/requests/{rid}", params={"tracking_code": code})
    assert mine.status_code == 200
    view = mine.json()
    assert view["submitter"] == {"name": "张**", "phone": "138****1234", "party_member": False}
    assert "address" not in view and "tracking_hash" not in view
    assert view["timeline"][0]["note"] == "诉求已受理"
    staff = await intake.view(rid)
    assert staff["submitter"]["phone"] == "13812341234" and staff["address"] == "梨园路18号"

    wrong = await intake.http.get(f"/v1/requests/{rid}", params={"tracking_code": "x" * 16})
    unknown = await intake.http.get(
        "/v1/requests/YS-20000101-999999", params={"tracking_code": code}
    )
    assert wrong.status_code == unknown.status_code == 404
    assert wrong.json() == unknown.json()
    assert (await intake.http.get(f"/v1/requests/{rid}")).status_code == 401
    dept = intake.staff(intake_role("department"), "dept:civil-affairs")
    assert (await intake.http.get(f"/v1/requests/{rid}", headers=dept)).status_code == 403


def intake_role(name: str) -> Any:
    from tongxin.runtime.auth import Role

    return Role(name)


BAD_BODIES: list[tuple[dict[str, Any], tuple[str, ...]]] = [
    ({**BODY, "category": "nope"}, ("body", "category")),
    ({**BODY, "compound": "compound:nowhere"}, ("body", "compound")),
    ({**BODY, "compound": "compound:dongsheng"}, ("body", "compound")),  # other community
    ({**BODY, "community": "community:nowhere"}, ("body", "community")),
    ({**BODY, "title": "x"}, ("body", "title")),
    ({**BODY, "description": "长" * 2001}, ("body", "description")),
    ({**BODY, "submitter": {"name": "王", "phone": "12345"}}, ("body", "submitter", "phone")),
    ({**BODY, "location": {"lat": 39.9, "lng": 116.4}}, ("body", "location")),
    ({**BODY, "urgency": "whenever"}, ("body", "urgency")),
    ({**BODY, "channel": "fax"}, ("body", "channel")),
    ({**BODY, "attributes": {"facility": "moon"}}, ("body", "attributes", "facility")),
    ({**BODY, "attributes": {"colour": "red"}}, ("body", "attributes", "colour")),
    ({**BODY, "attachments": ["https://x.cn/a.jpg"] * 10}, ("body", "attachments")),
    ({**BODY, "attachments": ["ftp://x.cn/a.jpg"]}, ("body", "attachments", 0)),
    ({**BODY, "attachments": ["https://x.cn/" + "a" * 1100]}, ("body", "attachments", 0)),
    ({**BODY, "surprise": 1}, ("body", "surprise")),
]


async def test_bad_input_gets_field_level_422_and_changes_nothing(intake: Intake) -> None:
    before = await counts(intake)
    for body, loc in BAD_BODIES:
        r = await intake.submit(body)
        assert r.status_code == 422, (loc, r.text)
        err = r.json()["error"]
        assert err["code"] == "validation_error"
        assert list(loc) in [d["loc"] for d in err["details"]], (loc, err["details"])
    assert await counts(intake) == before


async def test_oversize_body_gets_413_and_changes_nothing(intake: Intake) -> None:
    before = await counts(intake)
    huge = {**BODY, "description": "长" * 40000}
    r = await intake.submit(huge)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"

    async def chunks() -> Any:
        for _ in range(100):
            yield b"x" * 1024

    chunked = await intake.http.post(
        "/v1/requests", content=chunks(), headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 413
    assert await counts(intake) == before


async def test_categories_describe_typed_attributes(intake: Intake) -> None:
    cats = (await intake.http.get("/v1/categories")).json()
    assert len(cats) == 15
    elderly = next(c for c in cats if c["code"] == "elderly_care")
    codes = {a["code"]: a for a in elderly["attributes"]}
    assert codes["needs"]["datatype"] == "multivaluelist"
    assert {"key": "meals", "name": "助餐"} in codes["needs"]["values"]
    compounds = (await intake.http.get("/v1/compounds")).json()
    assert sum(len(c["compounds"]) for c in compounds) == 10
    assert all(x["owners_committee"] for c in compounds for x in c["compounds"])

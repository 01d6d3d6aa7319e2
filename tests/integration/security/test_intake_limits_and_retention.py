"""Intake's abuse limits (429 with Retry-After, 413) and the contact-retention job, on the
real stack."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.intake.store import RequestStore
from tests.integration.security.conftest import Services
from tests.support import eventually, unique

INTAKE_SETTINGS: dict[str, Any] = {
    "intake_anonymous_limit": True,
    "intake_anonymous_per_minute": 1,
    "intake_anonymous_burst": 3,
    "intake_contact_retention_days": 30,
    "intake_retention_interval_s": 0.2,
    # published outbox records go soon, so a purged request's are seen gone
    "outbox_keep_sent_s": 0.5,
}

BODY: dict[str, Any] = {
    "category": "public_facilities",
    "title": "路灯不亮",
    "description": "3栋门口的路灯坏了，联系电话13698765432。",
    "community": "community:liyuan",
    "compound": "compound:jinyuan",
    "address": "金苑小区3栋",
    "location": {"lat": 26.68, "lng": 100.75},
    "submitter": {"name": "欧阳明月", "phone": "13512345678", "party_member": True},
    "attributes": {"facility": "street_light"},
}


def body(**over: Any) -> dict[str, Any]:
    return {**BODY, "title": unique("路灯"), **over}


async def test_anonymous_submissions_are_rate_limited_per_client(services: Services) -> None:
    http = services.intake
    before = await services.db("intake").requests.count_documents({})
    for _ in range(3):
        assert (await http.post("/v1/requests", json=body())).status_code == 201
    # another X-Forwarded-For does not make a new client: the header is not trusted
    r = await http.post("/v1/requests", json=body(), headers={"x-forwarded-for": "9.9.9.9"})
    assert r.status_code == 429
    assert r.json() == {
        "error": {"code": "rate_limited", "message": r.json()["error"]["message"], "details": None}
    }
    assert 1 <= int(r.headers["retry-after"]) <= 60
    r = await http.post("/open311/v2/requests.json", data={"service_code": "sanitation"})
    assert r.status_code == 429  # the Open311 facade shares the bucket
    # nothing was stored for the refused ones
    assert await services.db("intake").requests.count_documents({}) == before + 3
    # callers with a token are accountable and not limited here
    r = await http.post("/v1/requests", json=body(), headers=services.auth("platform_1"))
    assert r.status_code == 201


async def test_oversize_bodies_are_413_before_parsing(services: Services) -> None:
    http = services.intake
    limit = services.settings["intake"].intake_max_body_bytes
    big = b'{"title": "' + b"x" * (limit + 10) + b'"}'
    headers = {"content-type": "application/json", **services.auth("platform_1")}
    r = await http.post("/v1/requests", content=big, headers=headers)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"

    async def chunks() -> Any:  # no Content-Length: counted as it arrives
        for _ in range(limit // 1000 + 5):
            yield b"x" * 1000

    r = await http.post("/v1/requests", content=chunks(), headers=headers)
    assert r.status_code == 413


async def _sent(services: Services, rid: str) -> bool:
    outbox = services.db("intake").outbox
    unsent: int = await outbox.count_documents({"keys": rid.encode(), "sent": False})
    return unsent == 0


async def test_contact_details_are_removed_after_closure_statistics_stay(
    services: Services,
) -> None:
    s = services
    staff = s.auth("staff_town")
    made: dict[str, dict[str, Any]] = {}
    for name in ("old_closed", "recent_closed", "open", "old_withdrawn"):
        r = await s.intake.post("/v1/requests", json=body(), headers=staff)
        assert r.status_code == 201, r.text
        made[name] = r.json()
    for answer in made.values():
        rid = str(answer["id"])

        async def sent(rid: str = rid) -> bool:
            return await _sent(s, rid)

        await eventually(sent, timeout=20, what="outbox sent")
    requests = s.db("intake").requests
    now = datetime.now(UTC)
    await requests.update_one(
        {"_id": made["old_closed"]["id"]},
        {"$set": {"status": "closed", "closed_at": now - timedelta(days=31), "tier": "routine"}},
    )
    await requests.update_one(
        {"_id": made["recent_closed"]["id"]},
        {"$set": {"status": "closed", "closed_at": now - timedelta(days=29)}},
    )
    await requests.update_one(
        {"_id": made["old_withdrawn"]["id"]},
        {"$set": {"status": "withdrawn", "withdrawn_at": now - timedelta(days=45)}},
    )

    async def purged() -> bool:
        n: int = await requests.count_documents({"contact_purged_at": {"$exists": True}})
        return n >= 2

    # the service's own periodic sweep does it
    await eventually(purged, timeout=20, what="retention sweep")

    for name in ("old_closed", "old_withdrawn"):
        doc = await requests.find_one({"_id": made[name]["id"]})
        assert doc is not None
        assert doc["submitter"] == {"party_member": True}
        assert "address" not in doc and "location" not in doc
        assert "13698765432" not in doc["description"] and "136****5432" in doc["description"]
        for kept in ("category", "community", "compound", "channel", "submitted_at", "status"):
            assert doc[kept] is not None, kept
    for name in ("old_closed", "old_withdrawn"):  # its published events, contact and all

        async def gone(rid: str = made[name]["id"]) -> bool:
            return await s.db("intake").outbox.count_documents({"keys": rid.encode()}) == 0

        await eventually(gone, timeout=20, what="its outbox records deleted")
    assert (await requests.find_one({"_id": made["old_closed"]["id"]}) or {})["tier"] == "routine"
    for name in ("recent_closed", "open"):
        doc = await requests.find_one({"_id": made[name]["id"]})
        assert doc is not None and doc["submitter"]["phone"] == "13512345678"
        assert doc["address"] == "金苑小区3栋" and "contact_purged_at" not in doc

    # the views still work without the contact
    rid = made["old_closed"]["id"]
    r = await s.intake.get(f"/v1/requests/{rid}", headers=staff)
    assert r.status_code == 200 and "phone" not in r.json()["submitter"]
    code = made["old_closed"]["tracking_code"]
    r = await s.intake.get(f"/v1/requests/{rid}?tracking_code={code}")
    assert r.status_code == 200 and r.json()["submitter"]["phone"] is None
    r = await s.intake.get("/v1/requests?status=closed", headers=staff)
    assert rid in {i["id"] for i in r.json()["items"]}

    # idempotent: a second sweep changes nothing
    now = datetime.now(UTC)
    assert await RequestStore(s.db("intake")).purge_contacts(now - timedelta(days=30), now) == 0

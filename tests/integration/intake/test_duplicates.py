"""Duplicate linking: similar text, same compound and category, within 72 h of an open one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.intake.store import RequestStore
from tests.integration.intake.conftest import BODY, Intake
from tests.support import unique


async def test_similar_request_is_linked_not_dropped_and_staff_can_unlink(intake: Intake) -> None:
    place = {"community": "community:chengdong", "compound": "compound:xingfu-li"}
    marker = unique("")
    first = await intake.submit(
        {
            **BODY,
            **place,
            "title": "小区东门路灯坏了",
            "description": f"幸福里东门的路灯坏了好几天，晚上很黑。{marker}",
        }
    )
    assert first.status_code == 201 and first.json()["duplicate_of"] is None
    original = first.json()["id"]
    second = await intake.submit(
        {
            **BODY,
            **place,
            "title": "东门路灯坏了",
            "description": f"幸福里东门路灯坏了好几天了，晚上太黑。{marker}",
        }
    )
    assert second.status_code == 201
    dup = second.json()
    assert dup["duplicate_of"] == original
    assert await intake.db.requests.count_documents({"_id": dup["id"]}) == 1
    submitted = await intake.records("tongxin.requests.v1", dup["id"])
    assert submitted[0][1]["duplicate_of"] == original

    # different text in the same place is not a duplicate; nor the same text elsewhere
    other = await intake.submit(
        {**BODY, **place, "title": "健身器材损坏", "description": f"广场健身器材松动危险{marker}"}
    )
    assert other.json()["duplicate_of"] is None
    elsewhere = await intake.submit(
        {
            **BODY,
            "title": "东门路灯坏了",
            "description": f"幸福里东门路灯坏了好几天了，晚上太黑。{marker}",
        }
    )
    assert elsewhere.json()["duplicate_of"] is None

    listed = await intake.http.get(
        "/v1/requests", params={"duplicate_of": original}, headers=intake.staff()
    )
    assert [i["id"] for i in listed.json()["items"]] == [dup["id"]]

    url = f"/v1/requests/{dup['id']}/duplicate-link"
    resident = await intake.http.delete(url)
    assert resident.status_code == 401
    r = await intake.http.delete(url, headers=intake.staff())
    assert r.status_code == 200 and r.json()["unlinked_from"] == original
    assert (await intake.view(dup["id"]))["duplicate_of"] is None
    again = await intake.http.delete(url, headers=intake.staff())
    assert again.status_code == 409


async def test_the_comparison_reads_only_the_newest_open_requests(intake: Intake) -> None:
    """One bounded read per batch: per place, the newest ``duplicate_candidates`` open ones."""
    place = {"community": BODY["community"], "compound": BODY["compound"]}
    since = datetime.now(UTC) - timedelta(milliseconds=1)  # this test's requests only
    ids = []
    for i in range(4):
        body = {**BODY, **place, "title": f"楼道灯不亮{i}", "description": f"第{i}栋楼道灯不亮"}
        r = await intake.submit(body)
        assert r.status_code == 201
        ids.append(r.json()["id"])
    store = RequestStore(intake.db)
    key = (place["compound"], BODY["category"])
    found = await store.similar_open([key], since, ["submitted"], 2)
    assert [d["_id"] for d in found[key]] == ids[:1:-1]  # the two newest, newest first
    everything = await store.similar_open([key], since, ["submitted"], 50)
    assert sorted(d["_id"] for d in everything[key]) == sorted(ids)

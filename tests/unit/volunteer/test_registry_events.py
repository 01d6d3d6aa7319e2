"""What a registry change publishes (pure): a registration, a deactivation, nothing else."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from services.volunteer.domain.volunteers import Volunteer, registry_events
from tongxin.contracts.events import VolunteerDeactivated, VolunteerRegistered

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def vol(**kw: object) -> Volunteer:
    base: dict[str, object] = {
        "_id": "vol:0007",
        "name": "赵红梅",
        "skills": ["elder_care", "health"],
        "community": "community:liyuan",
        "compound": "compound:jinyuan",
        "phone": "13800001234",
    }
    return Volunteer.from_doc({**base, **kw})


def test_a_registration_publishes_who_without_contact_details() -> None:
    [event] = registry_events(None, vol(), NOW)
    assert isinstance(event, VolunteerRegistered)
    assert (event.request_id, event.volunteer_id, event.name) == ("vol:0007", "vol:0007", "赵红梅")
    assert (event.community, event.active, event.at) == ("community:liyuan", True, NOW)
    assert [s.value for s in event.skills] == ["elder_care", "health"]
    data = event.model_dump(mode="json")
    assert "13800001234" not in str(data) and "compound:jinyuan" not in str(data)


def test_registered_inactive_says_so() -> None:
    [event] = registry_events(None, vol(active=False), NOW)
    assert isinstance(event, VolunteerRegistered) and event.active is False


def test_deactivation_publishes_once() -> None:
    before = vol()
    after = copy.deepcopy(before)
    after.change({"active": False}, NOW)
    [event] = registry_events(before, after, NOW)
    assert isinstance(event, VolunteerDeactivated)
    assert (event.request_id, event.volunteer_id, event.at) == ("vol:0007", "vol:0007", NOW)
    again = copy.deepcopy(after)
    again.change({"active": False}, NOW)
    assert registry_events(after, again, NOW) == []


def test_other_edits_publish_nothing() -> None:
    before = vol()
    after = copy.deepcopy(before)
    after.change({"name": "赵红", "availability": [], "phone": "13900001234"}, NOW)
    assert registry_events(before, after, NOW) == []
    back = copy.deepcopy(before)
    back.active = False
    on = copy.deepcopy(back)
    on.change({"active": True}, NOW)  # reactivating: an admin re-enables the account
    assert registry_events(back, on, NOW) == []

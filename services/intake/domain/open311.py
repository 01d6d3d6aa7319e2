"""Open311 GeoReport v2 mapping: the catalogue as services, form posts as requests, and
stored requests in GeoReport's shape (status ``open``/``closed``): the public view anyone
may read, and the views of the resident (tracking code) and of staff."""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from services.intake.domain.catalogue import attribute_view, attributes_of
from services.intake.domain.registry import Registry
from services.intake.domain.requests import CST
from services.intake.domain.timeline import STATUS_NAMES_ZH, Status
from tongxin.contracts.enums import CATEGORY_NAMES_ZH, Category
from tongxin.contracts.events import GeoPoint

ATTRIBUTE_KEY = re.compile(r"^attribute\[([A-Za-z0-9_]{1,40})\]$")
ANONYMOUS = "匿名"
CLOSED = frozenset({Status.RESOLVED.value, Status.CLOSED.value, Status.WITHDRAWN.value})
TITLE_LENGTH = 30


def services(departments: Mapping[Category, str]) -> list[dict[str, Any]]:
    """``services.json``: one service per catalogue category, grouped by the department it
    goes to (the community's own items: 社区)."""
    return [
        {
            "service_code": c.value,
            "service_name": CATEGORY_NAMES_ZH[c],
            "description": CATEGORY_NAMES_ZH[c],
            "metadata": True,
            "type": "realtime",
            "keywords": c.value.replace("_", ","),
            "group": departments.get(c, "社区"),
        }
        for c in Category
    ]


def service_definition(category: Category) -> dict[str, Any]:
    """``services/{code}.json``: the category's attributes."""
    return {
        "service_code": category.value,
        "attributes": [attribute_view(a, i) for i, a in enumerate(attributes_of(category), 1)],
    }


def _flag(value: str | None) -> bool | str | None:
    if value is None:
        return None
    v = value.strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off", ""):
        return False
    return value  # left for validation to refuse


def _number(value: str | None) -> float | str | None:
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        return value


def form_to_body(
    form: Mapping[str, str], registry: Registry, nearest_km: float
) -> tuple[dict[str, Any], dict[str, str]]:
    """A GeoReport form post → (a ``RequestCreate`` body, where each field came from).

    ``address_id`` names a compound (``compound:jinyuan``); without it a lat/long picks
    the nearest compound. ``community``, ``title``, ``urgency``, ``vulnerable`` and
    ``party_member`` are accepted as extensions. What else GeoReport clients send is
    neither needed nor kept: ``email``, ``device_id`` and ``account_id`` (residents are
    reached by phone; collect no more than is used), ``api_key`` (checked by the caller).
    """
    origin: dict[str, str] = {}
    attributes: dict[str, Any] = {}
    for key, value in form.items():
        m = ATTRIBUTE_KEY.match(key)
        if m:
            attributes[m.group(1)] = value
    description = (form.get("description") or "").strip()
    title = (form.get("title") or "").strip() or description[:TITLE_LENGTH]
    origin["title"] = "title" if form.get("title") else "description"
    name = f"{form.get('last_name', '').strip()}{form.get('first_name', '').strip()}"
    lat, lng = _number(form.get("lat")), _number(form.get("long"))
    location: dict[str, Any] | None = None
    if lat is not None or lng is not None:
        location = {"lat": lat, "lng": lng}
        origin["location"] = "lat"
    compound = (form.get("address_id") or "").strip() or None
    origin["compound"] = "address_id"
    if compound is None and isinstance(lat, float) and isinstance(lng, float):
        near = registry.nearest_compound(GeoPoint(lat=lat, lng=lng), nearest_km)
        compound = near.id if near else None
    community = (form.get("community") or "").strip() or None
    origin["community"] = "community"
    if community is None and compound and compound in registry.compounds:
        community = registry.compounds[compound].community
    media = (form.get("media_url") or "").strip()
    body: dict[str, Any] = {
        "channel": "platform",
        "category": form.get("service_code"),
        "title": title,
        "description": description,
        "community": community or "",
        "compound": compound,
        "address": (form.get("address_string") or "").strip() or None,
        "location": location,
        "submitter": {
            "name": name or ANONYMOUS,
            "phone": (form.get("phone") or "").strip() or None,
            "party_member": _flag(form.get("party_member")) or False,
        },
        "attributes": attributes,
        "attachments": [media] if media else [],
    }
    if form.get("urgency"):
        body["urgency"] = form["urgency"]
    if form.get("vulnerable") is not None:
        body["vulnerable"] = _flag(form.get("vulnerable"))
    return body, origin


# body field -> the GeoReport parameter a client sent
FORM_NAMES = {
    "category": "service_code",
    "description": "description",
    "compound": "address_id",
    "address": "address_string",
    "location": "lat",
    "attachments": "media_url",
}


def form_loc(loc: list[Any], origin: Mapping[str, str]) -> list[Any]:
    """Translate an error location in the body to the form parameter the client sent."""
    if len(loc) < 2 or loc[0] != "body":
        return loc
    field = str(loc[1])
    if field == "attributes" and len(loc) > 2:
        return ["form", f"attribute[{loc[2]}]"]
    if field == "submitter" and len(loc) > 2:
        return ["form", {"name": "last_name"}.get(str(loc[2]), str(loc[2]))]
    if field == "location" and len(loc) > 2:
        return ["form", "long" if loc[2] == "lng" else "lat"]
    return ["form", origin.get(field) or FORM_NAMES.get(field, field)]


def _iso(t: datetime | None) -> str | None:
    return t.astimezone(CST).isoformat() if t else None


def api_key_valid(given: str | None, keys: Sequence[str]) -> bool:
    """Is ``given`` one of the configured keys? Compared in constant time with each of them
    (no early exit), so the answer's timing tells nothing about a key."""
    if not given:
        return False
    offered = given.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(offered, key.encode())
    return found


def public_view(doc: Mapping[str, Any], unit_names: Mapping[str, str]) -> dict[str, Any]:
    """What anyone may read of a request (GeoReport reads are public): where it stands and
    who handles it. Built from these fields only — no text, place, contact or media — and
    ``status_notes`` is the status's fixed name, never a note someone wrote."""
    status = str(doc.get("status", ""))
    units = list(doc.get("units") or [])
    if doc.get("escalated_to"):
        units.append(doc["escalated_to"])
    agency = "、".join(dict.fromkeys(unit_names.get(u, u) for u in units)) or None
    updated = doc.get("status_changed_at") or doc.get("submitted_at")
    return {
        "service_request_id": doc["_id"],
        "status": "closed" if status in CLOSED else "open",
        "status_notes": _status_name(status),
        "service_name": CATEGORY_NAMES_ZH.get(Category(doc["category"]), doc["category"]),
        "service_code": doc["category"],
        "agency_responsible": agency,
        "service_notice": None,
        "requested_datetime": _iso(doc.get("submitted_at")),
        "updated_datetime": _iso(updated),
        "expected_datetime": _iso(doc.get("resolve_by")),
    }


def _status_name(status: str) -> str:
    try:
        return STATUS_NAMES_ZH[Status(status)]
    except ValueError:
        return status


def request_view(
    doc: Mapping[str, Any], unit_names: Mapping[str, str], *, full: bool
) -> dict[str, Any]:
    """One stored request for its resident (tracking code) or, ``full``, for staff: the
    public view, the compound, the newest public timeline note in ``status_notes``, and
    for staff the text, place and media."""
    out = public_view(doc, unit_names)
    timeline = [e for e in doc.get("timeline") or [] if e.get("public", True)]
    if timeline:
        note = sorted(timeline, key=lambda e: e["at"])[-1]["note"]
        out["status_notes"] = f"{out['status_notes']}：{note}"
    out["address_id"] = doc.get("compound")
    if full:
        loc = doc.get("location") or {}
        media = doc.get("attachments") or []
        out.update(
            {
                "description": doc.get("description"),
                "address": doc.get("address"),
                "lat": loc.get("lat"),
                "long": loc.get("lng"),
                "media_url": media[0] if media else None,
            }
        )
    return out

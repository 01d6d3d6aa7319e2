"""The town's communities and compounds (from the editable seed), for validation and distance."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.volunteer.domain.refusals import Invalid


@dataclass(frozen=True, slots=True)
class Compound:
    """A residential compound 小区 of a community."""

    id: str
    name: str
    community: str
    lat: float | None
    lng: float | None


@dataclass(frozen=True, slots=True)
class Places:
    """Communities, their compounds and the county's bounding box."""

    communities: Mapping[str, str]  # id → name
    compounds: Mapping[str, Compound]
    bounds: tuple[float, float, float, float] | None = None  # min_lat, max_lat, min_lng, max_lng

    @classmethod
    def from_seed(cls, raw: Mapping[str, Any]) -> Places:
        """Build from ``communities.json``."""
        communities: dict[str, str] = {}
        compounds: dict[str, Compound] = {}
        for c in raw.get("communities", []):
            communities[c["id"]] = c.get("name", c["id"])
            for cp in c.get("compounds", []):
                compounds[cp["id"]] = Compound(
                    cp["id"], cp.get("name", cp["id"]), c["id"], cp.get("lat"), cp.get("lng")
                )
        b = raw.get("bounds")
        bounds = (b["min_lat"], b["max_lat"], b["min_lng"], b["max_lng"]) if b else None
        return cls(communities, compounds, bounds)

    def check(self, community: str, compound: str | None) -> str | None:
        """None when the place is known; otherwise which field is wrong."""
        if community not in self.communities:
            return "community"
        if compound is not None:
            cp = self.compounds.get(compound)
            if cp is None or cp.community != community:
                return "compound"
        return None

    def within(self, lat: float, lng: float) -> bool:
        """Inside the county's bounding box (always true when none is configured)."""
        if self.bounds is None:
            return True
        min_lat, max_lat, min_lng, max_lng = self.bounds
        return min_lat <= lat <= max_lat and min_lng <= lng <= max_lng

    def point(self, compound: str | None) -> tuple[float | None, float | None]:
        """A compound's coordinates, when known."""
        cp = self.compounds.get(compound) if compound else None
        return (cp.lat, cp.lng) if cp else (None, None)

    def check_place(self, community: str, compound: str | None) -> None:
        """Refuse an unknown community, or a compound that is not the community's."""
        bad = self.check(community, compound)
        if bad == "community":
            raise Invalid("community", f"Unknown community {community!r}.")
        if bad == "compound":
            raise Invalid("compound", f"Unknown compound {compound!r} in {community!r}.")

    def locate(
        self, community: str, compound: str | None, lat: float | None, lng: float | None
    ) -> tuple[float | None, float | None]:
        """A home's coordinates: the given ones (both, inside the county) or, when none are
        given, the compound's. Refuses an unknown place or half a point."""
        self.check_place(community, compound)
        if (lat is None) != (lng is None):
            raise Invalid("lat", "Give both lat and lng, or neither.")
        if lat is not None and lng is not None:
            if not self.within(lat, lng):
                raise Invalid("lat", "The coordinates are outside the county.")
            return lat, lng
        return self.point(compound)

"""The communities and compounds a request may name (seed data, editable)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tongxin.contracts.events import GeoPoint


@dataclass(frozen=True, slots=True)
class Compound:
    """A residential compound 小区 with its owners' committee 业委会."""

    id: str
    name: str
    community: str
    owners_committee: str | None
    lat: float | None = None
    lng: float | None = None


@dataclass(frozen=True, slots=True)
class Community:
    """A community 社区 and its stations."""

    id: str
    name: str
    stations: dict[str, dict[str, str]]
    compounds: tuple[Compound, ...]


@dataclass(frozen=True, slots=True)
class Bounds:
    """The county's bounding box (WGS-84)."""

    min_lat: float
    max_lat: float
    min_lng: float
    max_lng: float

    def contains(self, p: GeoPoint) -> bool:
        """True when the point lies inside the box."""
        return self.min_lat <= p.lat <= self.max_lat and self.min_lng <= p.lng <= self.max_lng


@dataclass(frozen=True, slots=True)
class Registry:
    """Communities and compounds by id."""

    communities: dict[str, Community]
    compounds: dict[str, Compound]
    bounds: Bounds

    @classmethod
    def from_seed(cls, raw: dict[str, Any]) -> Registry:
        """Build from the parsed ``communities.json``."""
        communities: dict[str, Community] = {}
        compounds: dict[str, Compound] = {}
        for c in raw["communities"]:
            cps = tuple(
                Compound(
                    id=x["id"],
                    name=x["name"],
                    community=c["id"],
                    owners_committee=x.get("owners_committee"),
                    lat=x.get("lat"),
                    lng=x.get("lng"),
                )
                for x in c.get("compounds", [])
            )
            communities[c["id"]] = Community(c["id"], c["name"], c.get("stations", {}), cps)
            compounds.update({x.id: x for x in cps})
        return cls(communities, compounds, Bounds(**raw["bounds"]))

    def check_place(
        self, community: str, compound: str | None, location: GeoPoint | None
    ) -> list[dict[str, Any]]:
        """Field errors (SPEC error ``details``) for an unknown or inconsistent place."""
        errors: list[dict[str, Any]] = []
        if community not in self.communities:
            errors.append(
                {
                    "loc": ["body", "community"],
                    "msg": f"unknown community; one of {sorted(self.communities)}",
                    "type": "unknown_community",
                }
            )
        if compound is not None:
            cp = self.compounds.get(compound)
            if cp is None:
                errors.append(
                    {"loc": ["body", "compound"], "msg": "unknown compound", "type": "unknown"}
                )
            elif cp.community != community:
                errors.append(
                    {
                        "loc": ["body", "compound"],
                        "msg": f"compound belongs to {cp.community}, not {community}",
                        "type": "compound_mismatch",
                    }
                )
        if location is not None and not self.bounds.contains(location):
            errors.append(
                {
                    "loc": ["body", "location"],
                    "msg": "location lies outside the county",
                    "type": "out_of_bounds",
                }
            )
        return errors

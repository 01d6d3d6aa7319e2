"""The communities and compounds a request may name (seed data, editable)."""

from __future__ import annotations

import math
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


def collect_names(raw: Any, into: dict[str, str] | None = None) -> dict[str, str]:
    """Every ``{"id": …, "name": …}`` found anywhere in parsed seed data: unit names."""
    out = {} if into is None else into
    if isinstance(raw, dict):
        if isinstance(raw.get("id"), str) and isinstance(raw.get("name"), str):
            out.setdefault(raw["id"], raw["name"])
        for v in raw.values():
            collect_names(v, out)
    elif isinstance(raw, list):
        for v in raw:
            collect_names(v, out)
    return out


def distance_km(a_lat: float, a_lng: float, b_lat: float, b_lng: float) -> float:
    """Great-circle distance (haversine) in kilometres."""
    p1, p2 = math.radians(a_lat), math.radians(b_lat)
    dp, dl = p2 - p1, math.radians(b_lng - a_lng)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0 * 2 * math.asin(min(1.0, math.sqrt(h)))


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

    def nearest_compound(self, point: GeoPoint, max_km: float = 1.5) -> Compound | None:
        """The compound closest to ``point`` within ``max_km`` (Open311 posts a lat/long)."""
        best: tuple[float, Compound] | None = None
        for c in self.compounds.values():
            if c.lat is None or c.lng is None:
                continue
            d = distance_km(point.lat, point.lng, c.lat, c.lng)
            if d <= max_km and (best is None or d < best[0]):
                best = (d, c)
        return best[1] if best else None

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
                    {
                        "loc": ["body", "compound"],
                        "msg": "unknown compound; see GET /v1/compounds",
                        "type": "unknown_compound",
                    }
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

"""The unit registry: town committee, county, alliance departments, communities and their
stations, owners' committees — built from the editable seed files (no I/O here)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class UnitKind(StrEnum):
    """What a unit is."""

    TOWN = "town"  # 永北镇党委 — coordinator
    COUNTY = "county"  # 县委县政府 — top of the escalation chain
    DEPARTMENT = "department"  # 党建联盟成员单位
    COMMUNITY = "community"  # 社区
    SOCIAL_WORK = "social_work"  # 社工站
    MASS_ORG = "mass_org"  # 群团工作站
    PROPERTY = "property"  # 物业服务中心
    OWNERS_COMMITTEE = "owners_committee"  # 业委会


# Escalation level of each kind: the first level of the chain is "community" (which
# includes departments called by a whistle); town and county are the levels above.
LEVEL_OF: dict[UnitKind, str] = {
    UnitKind.TOWN: "town",
    UnitKind.COUNTY: "county",
}


@dataclass(frozen=True, slots=True)
class Unit:
    """One handling unit."""

    id: str
    name: str
    kind: UnitKind
    liaison: str | None = None
    community: str | None = None
    compound: str | None = None
    liaison_group: tuple[dict[str, str], ...] = ()

    @property
    def level(self) -> str:
        """Its level in the escalation chain."""
        return LEVEL_OF.get(self.kind, "community")

    def to_dict(self) -> dict[str, Any]:
        """The JSON view of ``GET /v1/units``."""
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "kind": self.kind.value,
            "level": self.level,
            "liaison": self.liaison,
            "community": self.community,
        }
        if self.compound:
            out["compound"] = self.compound
        if self.liaison_group:
            out["liaison_group"] = [dict(m) for m in self.liaison_group]
        return out


STATION_KINDS = {
    "social_work": UnitKind.SOCIAL_WORK,
    "mass_org": UnitKind.MASS_ORG,
    "property": UnitKind.PROPERTY,
}


@dataclass(frozen=True, slots=True)
class UnitRegistry:
    """Every known unit by id, in seed order."""

    units: dict[str, Unit] = field(default_factory=dict)

    def get(self, unit_id: str) -> Unit | None:
        """One unit, or None."""
        return self.units.get(unit_id)

    def __contains__(self, unit_id: object) -> bool:
        return unit_id in self.units

    def of_kind(self, *kinds: UnitKind) -> list[Unit]:
        """The units of the given kinds (all when none given)."""
        return [u for u in self.units.values() if not kinds or u.kind in kinds]

    def is_department(self, unit_id: str) -> bool:
        """True for an alliance department."""
        u = self.units.get(unit_id)
        return u is not None and u.kind == UnitKind.DEPARTMENT

    def level_of(self, unit_id: str) -> str:
        """The escalation level of a unit ("community" for unknown ones)."""
        u = self.units.get(unit_id)
        return u.level if u else "community"

    @classmethod
    def from_seed(
        cls, units_seed: Mapping[str, Any], communities_seed: Mapping[str, Any]
    ) -> UnitRegistry:
        """Build from ``units.json`` and ``communities.json``."""
        out: dict[str, Unit] = {}

        def add(units: Iterable[Unit]) -> None:
            for u in units:
                if u.id in out:
                    raise ValueError(f"duplicate unit id {u.id!r} in the seed data")
                out[u.id] = u

        town = units_seed.get("town")
        if town:
            add(
                [
                    Unit(
                        town["id"],
                        town["name"],
                        UnitKind.TOWN,
                        town.get("liaison"),
                        liaison_group=tuple(
                            {str(k): str(v) for k, v in m.items()}
                            for m in town.get("liaison_group", [])
                        ),
                    )
                ]
            )
        county = units_seed.get("county")
        if county:
            add([Unit(county["id"], county["name"], UnitKind.COUNTY, county.get("liaison"))])
        add(
            Unit(d["id"], d["name"], UnitKind.DEPARTMENT, d.get("liaison"))
            for d in units_seed.get("departments", [])
        )
        for c in communities_seed.get("communities", []):
            add([Unit(c["id"], c["name"], UnitKind.COMMUNITY, community=c["id"])])
            for key, st in dict(c.get("stations", {})).items():
                kind = STATION_KINDS.get(key)
                if kind is not None:
                    add([Unit(st["id"], st["name"], kind, community=c["id"])])
            for comp in c.get("compounds", []):
                owc = comp.get("owners_committee")
                if owc:
                    add(
                        [
                            Unit(
                                owc,
                                f"{comp['name']}业委会",
                                UnitKind.OWNERS_COMMITTEE,
                                community=c["id"],
                                compound=comp["id"],
                            )
                        ]
                    )
        return cls(out)

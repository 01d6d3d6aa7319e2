"""Compatibility guard: an event schema may only change compatibly within its version.

Compared with the last released schema of the same ``ce_type``, a change is *breaking*
when it removes or renames a property, changes a property's type, or adds a new required
property. A breaking change needs a new version (``…v2``) and an upcaster from the old one.
"""

from __future__ import annotations

from typing import Any


def _types(prop: dict[str, Any], defs: dict[str, Any]) -> set[str]:
    """The JSON types a property schema admits (``$ref`` and ``anyOf`` resolved one level)."""
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        target = defs.get(name, {})
        return {f"ref:{name}"} if "properties" in target else _types(target, defs)
    if "anyOf" in prop:
        out: set[str] = set()
        for alt in prop["anyOf"]:
            out |= _types(alt, defs)
        return out
    if "enum" in prop or "const" in prop:
        return {prop.get("type", "string")}
    t = prop.get("type")
    if isinstance(t, list):
        return set(t)
    return {t} if t else {"any"}


def breaking_changes(
    released: dict[str, Any], current: dict[str, Any], path: str = ""
) -> list[str]:
    """What in ``current`` breaks consumers of ``released`` (empty when compatible)."""
    problems: list[str] = []
    r_defs = released.get("$defs", {})
    c_defs = current.get("$defs", {})
    r_props: dict[str, Any] = released.get("properties", {})
    c_props: dict[str, Any] = current.get("properties", {})
    for name, r_prop in r_props.items():
        where = f"{path}{name}"
        if name not in c_props:
            problems.append(f"{where}: removed")
            continue
        r_t, c_t = _types(r_prop, r_defs), _types(c_props[name], c_defs)
        if not r_t <= c_t:
            problems.append(f"{where}: type changed from {sorted(r_t)} to {sorted(c_t)}")
            continue
        r_ref = next((t for t in r_t if t.startswith("ref:")), None)
        if r_ref:
            ref = r_ref[4:]
            nested_r = {**r_defs.get(ref, {}), "$defs": r_defs}
            nested_c = {**c_defs.get(ref, {}), "$defs": c_defs}
            problems += breaking_changes(nested_r, nested_c, f"{where}.")
    new_required = set(current.get("required", [])) - set(released.get("required", []))
    for name in sorted(new_required):
        problems.append(f"{path}{name}: new required property")
    return problems

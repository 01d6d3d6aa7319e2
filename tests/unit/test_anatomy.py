"""One anatomy for every service (STYLE.md), held by reading the code (no I/O).

- the same files with the same roles in all four services;
- ``store.py`` is the only module that touches the service's collections: no other
  module imports PyMongo or reaches the database through the runtime (``app.py`` may
  hand ``rt.db`` to the store and the deadline scheduler it builds);
- ``domain/`` is pure: no I/O library, no web framework, no runtime;
- services never import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tongxin.cli import SERVICES
from tongxin.runtime.settings import REPO_ROOT

ROOT = REPO_ROOT / "services"
FILES = {"app.py", "api.py", "handlers.py", "service.py", "store.py", "config.py", "metrics.py"}
IO_LIBRARIES = ("pymongo", "motor", "bson", "aiokafka", "httpx", "fastapi", "starlette")


def modules(service: str) -> list[Path]:
    return sorted((ROOT / service).rglob("*.py"))


def imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def database_reaches(tree: ast.AST) -> list[str]:
    """``<x>.db``, ``<x>.mongo`` and ``<x>.uow.client`` used in a module (the runtime's
    database handles), with their line numbers."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        if node.attr in ("db", "mongo"):
            found.append(f"line {node.lineno}: .{node.attr}")
        elif node.attr == "client" and getattr(node.value, "attr", None) == "uow":
            found.append(f"line {node.lineno}: .uow.client")
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_the_same_files(service: str) -> None:
    present = {p.name for p in (ROOT / service).glob("*.py")} - {"__init__.py"}
    assert present >= FILES, f"{service} lacks {sorted(FILES - present)}"
    assert (ROOT / service / "domain").is_dir()
    extra = present - FILES
    # a service may keep API models or channel plumbing next to them, nothing that
    # would take over a role of the seven files
    assert not extra & {"cases.py", "walk.py", "care.py", "delivery.py", "retention.py"}, extra


@pytest.mark.parametrize("service", SERVICES)
def test_only_the_store_touches_collections(service: str) -> None:
    offenders: dict[str, list[str]] = {}
    for path in modules(service):
        rel = str(path.relative_to(ROOT))
        if path.name == "store.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bad = [f"imports {m}" for m in imported(tree) if m.split(".")[0] in ("pymongo", "bson")]
        reaches = database_reaches(tree)
        if path.name == "app.py":  # wiring: hands rt.db to the store and the scheduler
            reaches = [r for r in reaches if not r.endswith(".db")]
        bad += reaches
        if bad:
            offenders[rel] = bad
    assert not offenders, offenders


@pytest.mark.parametrize("service", SERVICES)
def test_the_domain_is_pure(service: str) -> None:
    offenders: dict[str, list[str]] = {}
    for path in sorted((ROOT / service / "domain").rglob("*.py")):
        names = imported(ast.parse(path.read_text(encoding="utf-8")))
        bad = sorted(
            n
            for n in names
            if n.split(".")[0] in IO_LIBRARIES
            or n.startswith(("tongxin.runtime", "asyncio"))
            or (n.startswith("services.") and not n.startswith(f"services.{service}.domain"))
        )
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert not offenders, offenders


@pytest.mark.parametrize("service", SERVICES)
def test_services_never_import_each_other(service: str) -> None:
    for path in modules(service):
        for name in imported(ast.parse(path.read_text(encoding="utf-8"))):
            if name.startswith("services."):
                assert name.split(".")[1] == service, f"{path}: imports {name}"


def test_the_kernel_never_imports_a_service() -> None:
    for path in (REPO_ROOT / "tongxin").rglob("*.py"):
        for name in imported(ast.parse(path.read_text(encoding="utf-8"))):
            assert not name.startswith("services."), f"{path}: imports {name}"


def test_the_check_sees_a_collection_reached_outside_the_store() -> None:
    """The rule catches what it is for: a use case reading a collection itself."""
    code = "async def f(rt):\n    return await rt.db['cases'].find_one({})\n"
    assert database_reaches(ast.parse(code)) == ["line 2: .db"]
    assert "pymongo" in imported(ast.parse("from pymongo import ASCENDING\n"))


def test_every_module_is_seen() -> None:
    seen = {p for s in SERVICES for p in modules(s)}
    assert len(seen) > 40 and all(isinstance(p, Path) for p in seen)


ACCOUNTS = REPO_ROOT / "tongxin" / "accounts"


def test_the_accounts_keep_the_same_anatomy() -> None:
    """tongxin/accounts (mounted by intake) has a service's roles: only its store touches
    collections, its domain is pure."""
    present = {p.name for p in ACCOUNTS.glob("*.py")}
    assert present >= {"api.py", "service.py", "store.py", "config.py"}
    offenders: dict[str, list[str]] = {}
    for path in sorted(ACCOUNTS.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = imported(tree)
        bad = []
        if path.name != "store.py":
            bad += [f"imports {m}" for m in names if m.split(".")[0] in ("pymongo", "bson")]
            if path.name != "__init__.py":  # the wiring hands rt.db to the store
                bad += database_reaches(tree)
        if path.parent.name == "domain":
            bad += sorted(
                n
                for n in names
                if n.split(".")[0] in IO_LIBRARIES
                or n.startswith(("tongxin.runtime", "asyncio", "argon2"))
            )
        if bad:
            offenders[str(path.relative_to(ACCOUNTS))] = bad
    assert not offenders, offenders

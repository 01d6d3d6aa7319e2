"""Accounts and sign-in for the people who use the platform (staff, department liaisons,
admins, volunteers): a place of its own, like the console, with a service's anatomy
(api.py, service.py, store.py, domain/, config.py, cli.py).

The front door (intake) mounts :data:`routers` and calls :func:`start` in its lifespan:
the accounts live in its database, and its session cookie is same-origin with the
console it serves. Every other service keeps verifying tokens only.
"""

from __future__ import annotations

from fastapi import FastAPI

from tongxin.accounts.api import accounts_router, session_router
from tongxin.accounts.config import AccountSettings
from tongxin.accounts.service import AccountService
from tongxin.accounts.store import INDEXES, AccountStore
from tongxin.runtime.service import ServiceRuntime

routers = [session_router, accounts_router]

__all__ = ["INDEXES", "AccountService", "AccountSettings", "enable_sessions", "routers", "start"]


def start(
    rt: ServiceRuntime, settings: AccountSettings, known_units: frozenset[str] = frozenset()
) -> AccountService:
    """Build the accounts' use cases in the lifespan (``rt.db`` is the home database)."""
    service = AccountService(AccountStore(rt.db), settings, known_units)
    rt.extra["accounts"] = service
    return service


def enable_sessions(app: FastAPI) -> None:
    """Let the session cookie authenticate this app's routes (bearer tokens still do)."""
    app.state.verifier.cookie_sessions = True

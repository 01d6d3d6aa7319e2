"""Accounts and sign-in for the people who use the platform (staff, department liaisons,
admins, volunteers): a place of its own, like the console, with a service's anatomy
(api.py, service.py, store.py, domain/, config.py, cli.py).

The front door (intake) mounts :data:`routers` and calls :func:`start` in its lifespan:
the accounts live in its database, and its session cookie is same-origin with the
console it serves. Every other service keeps verifying tokens only. With
``TONGXIN_OIDC_ISSUER`` set, people may also sign in through the county's identity provider
(tongxin.accounts.oidc).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import FastAPI, Request

from tongxin.accounts.api import SESSION_GEN, accounts_router, session_router
from tongxin.accounts.config import AccountSettings
from tongxin.accounts.metrics import AccountMetrics
from tongxin.accounts.oidc import OidcClient
from tongxin.accounts.service import AccountService
from tongxin.accounts.store import INDEXES, AccountStore
from tongxin.runtime.auth import Principal
from tongxin.runtime.service import ServiceRuntime

log = logging.getLogger(__name__)

routers = [session_router, accounts_router]

__all__ = ["INDEXES", "AccountService", "AccountSettings", "enable_sessions", "routers", "start"]


def start(
    rt: ServiceRuntime, settings: AccountSettings, known_units: frozenset[str] = frozenset()
) -> AccountService:
    """Build the accounts' use cases in the lifespan (``rt.db`` is the home database)."""
    metrics = AccountMetrics.of(rt.metrics.registry)
    service = AccountService(AccountStore(rt.db), settings, known_units, metrics=metrics)
    rt.extra["accounts"] = service
    if settings.oidc_issuer is not None and settings.oidc_client_id is not None:
        secret = settings.oidc_client_secret
        oidc = OidcClient(
            settings.oidc_issuer,
            settings.oidc_client_id,
            secret.get_secret_value() if secret is not None else None,
            scope=settings.oidc_scope,
            claim=settings.oidc_claim,
            timeout_s=settings.oidc_timeout_s,
        )
        rt.extra["oidc"] = oidc  # discovery waits for the first sign-in: the provider may be down
        rt.closers.append(oidc.aclose)
    stop = asyncio.Event()

    async def housekeeping() -> None:
        while not stop.is_set():
            try:
                await service.purge()
            except Exception as exc:
                log.warning("accounts housekeeping failed", extra={"error": repr(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.accounts_housekeeping_interval_s)

    rt.run_in_background("accounts-housekeeping", housekeeping, stop.set)
    return service


def enable_sessions(app: FastAPI) -> None:
    """Let the session cookie authenticate this app's routes (bearer tokens still do), as
    long as its account is active and its session generation current (server-side
    revocation: one read by subject per cookie request)."""

    async def stands(request: Request, principal: Principal, claims: dict[str, Any]) -> bool:
        service: AccountService = request.app.state.rt.extra["accounts"]
        return await service.session_stands(principal.sub, claims.get(SESSION_GEN))

    app.state.verifier.cookie_sessions = True
    app.state.verifier.session_check = stands

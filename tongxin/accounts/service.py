"""The accounts' use cases: create, reset, (de)activate, list; sign in; change a password.

Passwords are hashed with Argon2id (argon2-cffi's RFC 9106 profile) in a worker thread,
never on the event loop. A password is only ever an argument here: it is not logged, not
stored, not put in an audit record and not answered. Unknown names cost the same work as
known ones (a dummy hash is verified) and get the same answer, so sign-in does not tell
which names exist.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import ValidationError

from tongxin.accounts.config import AccountSettings
from tongxin.accounts.domain.accounts import (
    Account,
    AccountInvalid,
    check_account,
    session_stands,
)
from tongxin.accounts.domain.passwords import PasswordRejected, check_password
from tongxin.accounts.domain.throttle import Counter, Limit, record_failure, retry_after
from tongxin.accounts.domain.volunteers import (
    VOLUNTEER_ROLE,
    Plan,
    Step,
    login_name_for,
    on_deactivated,
    on_registered,
)
from tongxin.accounts.metrics import AccountMetrics
from tongxin.accounts.store import AccountExists, AccountStore
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import VolunteerDeactivated, VolunteerRegistered, parse_event
from tongxin.runtime.uow import Decision, Effects
from tongxin.runtime.uow import Refused as EventRefused

log = logging.getLogger(__name__)

BAD_CREDENTIALS = "用户名或密码错误。"
# the identity provider vouched for someone who has no account here
NO_ACCOUNT = "统一身份认证账号在本平台没有对应账号，请联系管理员开通。"
# who changes an account when the volunteer registry does (the audit records' ``by``)
REGISTRY_ACTOR = "volunteer-registry"
# sign-in attempts one client address may have in progress at once (per process)
CLIENT_IN_FLIGHT = 4


class Refused(Exception):
    """A use case said no: an HTTP status, a stable code, a zh-CN message (and, for a
    lockout, the seconds until it ends)."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks (an admin's name, ``cli:<os user>``, or the account itself) and from where."""

    name: str
    client: str


def _now() -> datetime:
    return datetime.now(UTC)


class AccountService:
    """Use cases over the accounts' store."""

    def __init__(
        self,
        store: AccountStore,
        settings: AccountSettings,
        known_units: frozenset[str] = frozenset(),
        hasher: PasswordHasher | None = None,
        clock: Callable[[], datetime] = _now,
        metrics: AccountMetrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.store = store
        self.settings = settings
        self.known_units = known_units
        self.hasher = hasher or PasswordHasher()  # Argon2id, RFC 9106 low-memory profile
        self.clock = clock
        self._dummy: str | None = None
        # one attempt per name at a time in this process: guesses sent in parallel cannot
        # all pass the lock check before the first failure is counted
        self._attempts: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        # … and a few per client address, so one address guessing many names in parallel
        # overshoots its own limit by at most CLIENT_IN_FLIGHT - 1
        self._clients: weakref.WeakValueDictionary[str, asyncio.Semaphore] = (
            weakref.WeakValueDictionary()
        )

    # — hashing, off the loop —

    async def _hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        def verify() -> bool:
            try:
                return self.hasher.verify(password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(verify)

    async def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = await self._hash(secrets.token_urlsafe(16))
        return self._dummy

    async def _audit(self, event: str, outcome: str, name: str, actor: Actor, **more: Any) -> None:
        entry = {
            "at": self.clock(),
            "event": event,
            "outcome": outcome,
            "name": name,
            "by": actor.name,
            "client": actor.client,
            **more,
        }
        await self.store.record(entry)
        if self.metrics is not None:
            if event == "signin":
                self.metrics.signins.labels(outcome).inc()
            elif event == "lockout":
                self.metrics.lockouts.inc()
        log.info("account %s: %s", event, outcome, extra={"account": name, "by": actor.name})

    # — administration —

    async def create(
        self,
        actor: Actor,
        *,
        name: str,
        display_name: str,
        role: str,
        unit: str | None,
        password: str,
        subject: str | None = None,
    ) -> Account:
        """A new account whose initial password must be changed at its first sign-in;
        refused when its subject (a volunteer's id) already has an account."""
        try:
            check_account(name, role, unit, self.known_units)
            check_password(password, name)
        except (AccountInvalid, PasswordRejected) as exc:
            raise Refused(422, "invalid_account", str(exc)) from exc
        now = self.clock()
        account = Account(
            name=name,
            display_name=display_name.strip() or name,
            role=role,
            unit=unit,
            active=True,
            must_change_password=True,
            subject=subject or name,
            created_at=now,
            updated_at=now,
        )
        holder = await self.store.by_subject(account.subject)
        if holder is not None and holder.name != name:
            # one account per person: a token's subject names one account (a registered
            # volunteer has one from the registry already: an admin hands it over instead)
            raise Refused(
                409,
                "subject_taken",
                f"{account.subject} 已有账号 {holder.name}，请重置该账号的密码，不要另建账号。",
            )
        try:
            await self.store.insert(account, await self._hash(password))
        except AccountExists as exc:
            raise Refused(409, "account_exists", f"用户名 {name} 已被使用。") from exc
        await self._audit("create", "ok", name, actor, role=role, unit=unit)
        return account

    async def reset_password(self, actor: Actor, name: str, password: str) -> Account:
        """Set a temporary password; the account must change it at its next sign-in."""
        try:
            check_password(password, name)
        except PasswordRejected as exc:
            raise Refused(422, "weak_password", str(exc)) from exc
        if not await self.store.set_password(
            name, await self._hash(password), must_change=True, now=self.clock()
        ):
            raise Refused(404, "not_found", f"没有用户名为 {name} 的账号。")
        await self.store.clear_counter(_account_key(name))  # a reset also lifts a lockout
        await self._audit("reset_password", "ok", name, actor)
        account = await self.store.get(name)
        assert account is not None
        return account

    async def set_active(self, actor: Actor, name: str, active: bool) -> Account:
        """Activate or deactivate an account (a deactivated one cannot sign in)."""
        account = await self.store.set_active(name, active, self.clock())
        if account is None:
            raise Refused(404, "not_found", f"没有用户名为 {name} 的账号。")
        await self._audit("activate" if active else "deactivate", "ok", name, actor)
        return account

    async def accounts(self) -> list[Account]:
        """Every account (no hashes)."""
        return await self.store.all()

    async def get(self, name: str) -> Account | None:
        """One account (no hash)."""
        return await self.store.get(name)

    # — signing in —

    async def _check_locks(self, name: str, actor: Actor) -> None:
        keys = [_account_key(name), _client_key(actor.client)]
        now = self.clock()
        counters = await self.store.counters(keys)
        waits = [w for c in counters.values() if (w := retry_after(c, now)) is not None]
        if waits:
            await self._audit("signin", "locked", name, actor)
            raise _locked(max(waits))

    async def _failed(self, name: str, actor: Actor, outcome: str) -> Refused:
        now = self.clock()

        def fail(limit: Limit) -> Callable[[Counter], Counter]:
            return lambda c: record_failure(c, now, limit)

        by_name = await self.store.update_counter(
            _account_key(name), fail(self.settings.account_limit())
        )
        by_client = await self.store.update_counter(
            _client_key(actor.client), fail(self.settings.client_limit())
        )
        await self._audit("signin", outcome, name, actor)
        wait = [w for c in (by_name, by_client) if (w := retry_after(c, now)) is not None]
        if wait:
            await self._audit("lockout", "locked", name, actor, retry_after=max(wait))
            return _locked(max(wait))
        return Refused(401, "bad_credentials", BAD_CREDENTIALS)

    async def _authenticate(self, name: str, password: str, actor: Actor) -> Account:
        """The account whose name and password these are, or Refused (counted as a
        failure). Unknown names and wrong passwords are told apart nowhere. Attempts on
        one name are taken one at a time (per process)."""
        key = _account_key(name)
        attempt = self._attempts.get(key)
        if attempt is None:
            attempt = self._attempts[key] = asyncio.Lock()
        gate = self._clients.get(actor.client)
        if gate is None:
            gate = self._clients[actor.client] = asyncio.Semaphore(CLIENT_IN_FLIGHT)
        async with gate, attempt:  # always client first, then name: no deadlock
            return await self._authenticate_one(name, password, actor)

    async def _authenticate_one(self, name: str, password: str, actor: Actor) -> Account:
        await self._check_locks(name, actor)
        found = await self.store.credentials(name)
        if found is None:
            await self._verify(await self._dummy_hash(), password)  # the same work
            raise await self._failed(name, actor, "unknown_name")
        account, password_hash = found
        if not await self._verify(password_hash, password):
            raise await self._failed(name, actor, "bad_password")
        if not account.active:
            await self._audit("signin", "inactive", name, actor)
            raise Refused(403, "account_disabled", "该账号已停用，请联系管理员。")
        await self.store.clear_counter(_account_key(name))
        if self.hasher.check_needs_rehash(password_hash):
            new_hash = await self._hash(password)
            await self.store.set_password(  # the same password, stronger hash: no revocation
                name,
                new_hash,
                must_change=account.must_change_password,
                now=self.clock(),
                revoke=False,
            )
        return account

    async def sign_in(self, name: str, password: str, actor: Actor) -> Account:
        """The signed-in account; Refused when the name, password or account say no, or
        when the account must set a new password first (``password_change_required``)."""
        account = await self._authenticate(name, password, actor)
        if account.must_change_password:
            await self._audit("signin", "password_change_required", name, actor)
            raise Refused(
                403,
                "password_change_required",
                "首次登录或密码已被重置，请先设置新密码。",
            )
        await self._audit("signin", "ok", name, actor)
        return account

    async def change_password(self, name: str, current: str, new: str, actor: Actor) -> Account:
        """Set a new password, proven by the current one (also the way out of a reset)."""
        account = await self._authenticate(name, current, actor)
        try:
            check_password(new, name)
        except PasswordRejected as exc:
            await self._audit("change_password", "weak_password", name, actor)
            raise Refused(422, "weak_password", str(exc)) from exc
        if secrets.compare_digest(new.encode(), current.encode()):
            await self._audit("change_password", "same_password", name, actor)
            raise Refused(422, "weak_password", "新密码不能与当前密码相同。")
        await self.store.set_password(
            name, await self._hash(new), must_change=False, now=self.clock()
        )
        await self._audit("change_password", "ok", name, actor)
        changed = await self.store.get(name)  # in its new session generation
        return changed or replace(account, must_change_password=False)

    # — signing in through the identity provider (OpenID Connect) —

    async def sign_in_external(self, login: str, actor: Actor, **more: Any) -> Account:
        """The account the identity provider vouched for, by the login name its claim
        gave; Refused when there is none or it is deactivated. No password is involved:
        the provider authenticated the person (a password change this platform asks of a
        new account concerns its own password only). Audited like every sign-in
        (``method``: ``oidc``; ``more``: e.g. the provider's subject)."""
        name = login.strip().lower()
        account = await self.store.get(name) if name else None
        if account is None:
            await self._audit("signin", "no_account", name or "-", actor, method="oidc", **more)
            raise Refused(403, "no_account", NO_ACCOUNT)
        if not account.active:
            await self._audit("signin", "inactive", name, actor, method="oidc", **more)
            raise Refused(403, "account_disabled", "该账号已停用，请联系管理员。")
        await self._audit("signin", "ok", name, actor, method="oidc", **more)
        return account

    async def external_failed(self, reason: str, actor: Actor, **more: Any) -> None:
        """Audit a sign-in through the identity provider that failed before naming anyone
        (a forged or replayed callback, the provider's refusal, an invalid ID token)."""
        await self._audit("signin", reason, "-", actor, method="oidc", **more)

    async def purge(self) -> tuple[int, int]:
        """Remove sign-in counters that can no longer lock, and audit records past their
        retention; how many of each."""
        now = self.clock()
        settings = self.settings
        dead = now - timedelta(seconds=settings.signin_window_s + settings.signin_lockout_s)
        kept = now - timedelta(days=settings.account_audit_retention_days)
        counters, records = await self.store.purge(dead, kept)
        if counters or records:
            log.info("accounts housekeeping", extra={"counters": counters, "audit": records})
        return counters, records

    async def by_subject(self, subject: str) -> Account | None:
        """The account a token's subject names, if any (no hash)."""
        return await self.store.by_subject(subject)

    async def session_stands(self, subject: str, token_gen: object) -> bool:
        """Whether a session token of ``subject`` from generation ``token_gen`` still
        counts: its account exists and is active, and no password change, reset or
        deactivation came after it."""
        return session_stands(await self.store.by_subject(subject), token_gen)

    async def audit(self, name: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest audit records."""
        return await self.store.audit_of(name, limit)

    # — following the volunteer registry —

    async def on_volunteers(self, envs: Sequence[Envelope]) -> Decision[None]:
        """``tongxin.volunteer.registry.v1``: a registered volunteer gets an account with
        no password anyone knows (an admin's reset hands one over, changed at the first
        sign-in), or keeps the one bound to them; a deactivated one's account is
        deactivated (its sessions end). Each change is an audit record, committed with it;
        a payload that does not parse is refused (parked on the DLQ with why)."""
        decision: Decision[None] = Decision()
        events: dict[int, VolunteerRegistered | VolunteerDeactivated] = {}
        for n, env in enumerate(envs):
            try:
                event = parse_event(env.type, env.data)
            except ValidationError as exc:
                decision.refuse(n, InvalidVolunteerEvent(f"{env.type}: {exc}"))
                continue
            if isinstance(event, VolunteerRegistered | VolunteerDeactivated):
                events[n] = event
            else:
                decision.refuse(n, InvalidVolunteerEvent(f"not a registry event: {env.type}"))
        vids = {e.volunteer_id for e in events.values()}
        names = {name for v in vids if (name := login_name_for(v))}
        bound, named = await self.store.of_volunteers(vids, names)
        now = self.clock()
        fx = decision.effects
        for n, event in events.items():
            if isinstance(event, VolunteerRegistered):
                plan = on_registered(
                    event.volunteer_id,
                    bound.get(event.volunteer_id),
                    named.get(login_name_for(event.volunteer_id) or ""),
                )
            else:
                plan = on_deactivated(bound.get(event.volunteer_id))
            await self._follow(plan, event, envs[n], bound, named, fx, now)
            decision.done(n, None)
        return decision

    async def _follow(
        self,
        plan: Plan,
        event: VolunteerRegistered | VolunteerDeactivated,
        env: Envelope,
        bound: dict[str, Account],
        named: dict[str, Account],
        fx: Effects,
        now: datetime,
    ) -> None:
        """Write what ``plan`` says into ``fx`` and keep the batch's view of the accounts
        (a later event of the batch sees it)."""
        vid = event.volunteer_id
        account: Account | None = None
        if plan.step == Step.CREATE and isinstance(event, VolunteerRegistered):
            assert plan.name is not None
            account = Account(
                name=plan.name,
                display_name=event.name.strip() or plan.name,
                role=VOLUNTEER_ROLE,
                unit=None,
                active=event.active,
                must_change_password=True,
                subject=vid,
                created_at=now,
                updated_at=now,
            )
            # a password nobody knows, forgotten at once: the account cannot be signed in
            # to until an admin resets it (which hands a password over)
            self.store.add(fx, account, await self._hash(secrets.token_urlsafe(32)))
        elif plan.step == Step.LINK and plan.name in named:
            self.store.bind(fx, plan.name, vid, now)
            account = replace(named[plan.name], subject=vid, updated_at=now)
        elif plan.step == Step.DEACTIVATE and vid in bound:
            self.store.disable(fx, bound[vid].name, now)
            account = replace(bound[vid], active=False, updated_at=now)
        if account is not None:
            bound[vid] = named[account.name] = account
        if plan.outcome is None:
            return
        entry = {
            "at": now,
            "event": plan.step.value if plan.step != Step.NOTHING else event.event_type,
            "outcome": plan.outcome,
            "name": plan.name or "",
            "by": REGISTRY_ACTOR,
            "client": env.source,
            "volunteer_id": vid,
            "event_id": env.id,
        }
        self.store.log(fx, entry)
        level = logging.INFO if plan.step != Step.NOTHING else logging.WARNING
        fx.on_commit(
            lambda: log.log(
                level,
                "account %s: %s",
                entry["event"],
                entry["outcome"],
                extra={"account": entry["name"], "by": REGISTRY_ACTOR, "volunteer": vid},
            )
        )


class InvalidVolunteerEvent(EventRefused):
    """A registry event whose payload does not parse."""


def _account_key(name: str) -> str:
    return f"account:{name.lower()}"


def _client_key(client: str) -> str:
    return f"client:{client}"


def _locked(seconds: int) -> Refused:
    minutes = max(1, -(-seconds // 60))
    return Refused(
        429,
        "locked",
        f"登录失败次数过多，请 {minutes} 分钟后再试。",
        retry_after=seconds,
    )

"""The only module that touches the accounts' collections (in intake's database):
``accounts`` (one document per login name, with its Argon2id hash), ``account_audit``
(append-only: who did what, when, from where, and how it ended) and ``signin_throttle``
(failed sign-in counters per account name and per client address; they survive restarts).

The hash is read only by :meth:`AccountStore.credentials`; every other read leaves it out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from tongxin.accounts.domain.accounts import Account
from tongxin.accounts.domain.throttle import Counter
from tongxin.runtime.mongo import Doc, IndexSpec
from tongxin.runtime.uow import Effects

ACCOUNTS = "accounts"
AUDIT = "account_audit"
THROTTLE = "signin_throttle"

INDEXES = [
    IndexSpec(ACCOUNTS, [("subject", 1)]),
    IndexSpec(AUDIT, [("at", -1)]),
    IndexSpec(AUDIT, [("name", 1), ("at", -1)]),
    IndexSpec(THROTTLE, [("window_start", 1)]),
]

# an account's fields as stored, without the hash
_PUBLIC = {"password_hash": 0}


class AccountExists(Exception):
    """An account of that name exists already."""


def _aware(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _account(d: Doc) -> Account:
    return Account(
        name=d["_id"],
        display_name=d["display_name"],
        role=d["role"],
        unit=d.get("unit"),
        active=bool(d["active"]),
        must_change_password=bool(d["must_change_password"]),
        subject=d.get("subject") or d["_id"],
        created_at=_aware(d["created_at"]) or d["created_at"],
        updated_at=_aware(d["updated_at"]) or d["updated_at"],
        session_gen=int(d.get("session_gen", 0)),
    )


def _counter(d: Doc | None) -> tuple[Counter, int]:
    if d is None:
        return Counter(), 0
    c = Counter(int(d["failures"]), _aware(d.get("window_start")), _aware(d.get("locked_until")))
    return c, int(d.get("v", 0))


def _doc(account: Account, password_hash: str) -> Doc:
    return {
        "_id": account.name,
        "display_name": account.display_name,
        "role": account.role,
        "unit": account.unit,
        "active": account.active,
        "must_change_password": account.must_change_password,
        "subject": account.subject,
        "created_at": account.created_at,
        "updated_at": account.updated_at,
        "session_gen": account.session_gen,
        "password_hash": password_hash,
    }


class AccountStore:
    """Reads and writes of the accounts' collections."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.accounts = db[ACCOUNTS]
        self.audit = db[AUDIT]
        self.throttle = db[THROTTLE]

    # — accounts —

    async def insert(self, account: Account, password_hash: str) -> None:
        """Store a new account; :class:`AccountExists` when the name is taken."""
        try:
            await self.accounts.insert_one(_doc(account, password_hash))
        except DuplicateKeyError as exc:
            raise AccountExists(account.name) from exc

    async def get(self, name: str) -> Account | None:
        """One account (no hash)."""
        d = await self.accounts.find_one({"_id": name}, _PUBLIC)
        return None if d is None else _account(d)

    async def credentials(self, name: str) -> tuple[Account, str] | None:
        """An account with its password hash: for verifying a sign-in only."""
        d = await self.accounts.find_one({"_id": name})
        return None if d is None else (_account(d), str(d["password_hash"]))

    async def by_subject(self, subject: str) -> Account | None:
        """The account a session token names by its subject (no hash)."""
        d = await self.accounts.find_one({"subject": subject}, _PUBLIC)
        return None if d is None else _account(d)

    async def all(self) -> list[Account]:
        """Every account by name (no hashes)."""
        return [_account(d) async for d in self.accounts.find({}, _PUBLIC).sort("_id", 1)]

    async def set_password(
        self,
        name: str,
        password_hash: str,
        *,
        must_change: bool,
        now: datetime,
        revoke: bool = True,
    ) -> bool:
        """Replace the hash (``revoke``: sessions issued before no longer stand); False when
        there is no such account."""
        change: Doc = {
            "$set": {
                "password_hash": password_hash,
                "must_change_password": must_change,
                "updated_at": now,
            }
        }
        if revoke:
            change["$inc"] = {"session_gen": 1}
        r = await self.accounts.update_one({"_id": name}, change)
        return r.matched_count == 1

    async def set_active(self, name: str, active: bool, now: datetime) -> Account | None:
        """Activate or deactivate; the account after, None when there is none."""
        change: Doc = {"$set": {"active": active, "updated_at": now}}
        if not active:
            change["$inc"] = {"session_gen": 1}
        r = await self.accounts.update_one({"_id": name}, change)
        return None if r.matched_count == 0 else await self.get(name)

    # — following the volunteer registry (effects for the unit of work) —

    async def of_volunteers(
        self, subjects: Iterable[str], names: Iterable[str]
    ) -> tuple[dict[str, Account], dict[str, Account]]:
        """The accounts answering as ``subjects`` and those holding ``names``, each by its
        key (two queries, each on an index: a top-level ``$or`` would scan; no hashes)."""

        async def having(field: str, values: Iterable[str]) -> list[Account]:
            wanted = sorted(set(values))
            if not wanted:
                return []
            cursor = self.accounts.find({field: {"$in": wanted}}, _PUBLIC)
            return [_account(d) async for d in cursor]

        bound, named = await asyncio.gather(having("subject", subjects), having("_id", names))
        return {a.subject: a for a in bound}, {a.name: a for a in named}

    def add(self, fx: Effects, account: Account, password_hash: str) -> None:
        """A new account, in ``fx`` (a taken name decides the batch again)."""
        fx.insert(ACCOUNTS, _doc(account, password_hash))

    def bind(self, fx: Effects, name: str, subject: str, now: datetime) -> None:
        """An account still answering as its own name answers as ``subject`` from now on
        (its sessions end), in ``fx``; if it changed since it was read, decided again."""
        fx.update(
            ACCOUNTS,
            {"_id": name, "subject": name},
            {"$set": {"subject": subject, "updated_at": now}, "$inc": {"session_gen": 1}},
            must_match=True,
        )

    def disable(self, fx: Effects, name: str, now: datetime) -> None:
        """Deactivate an account (its sessions end), in ``fx``."""
        fx.update(
            ACCOUNTS,
            {"_id": name},
            {"$set": {"active": False, "updated_at": now}, "$inc": {"session_gen": 1}},
        )

    def log(self, fx: Effects, entry: dict[str, Any]) -> None:
        """One audit record, in ``fx`` (never a password or hash in it)."""
        fx.insert(AUDIT, dict(entry))

    # — audit —

    async def record(self, entry: dict[str, Any]) -> None:
        """Append one audit record (the caller never puts a password or hash in it)."""
        await self.audit.insert_one(dict(entry))

    async def audit_of(self, name: str | None = None, limit: int = 100) -> list[Doc]:
        """The newest audit records, of one account name or all."""
        query = {} if name is None else {"name": name}
        cursor = self.audit.find(query, {"_id": 0}).sort("at", -1).limit(limit)
        return [d async for d in cursor]

    # — sign-in throttle —

    async def counters(self, keys: Sequence[str]) -> dict[str, Counter]:
        """The counters of ``keys`` (one query); fresh ones for keys never seen."""
        found = {d["_id"]: d async for d in self.throttle.find({"_id": {"$in": list(keys)}})}
        return {k: _counter(found.get(k))[0] for k in keys}

    async def update_counter(self, key: str, change: Any) -> Counter:
        """Apply ``change`` (Counter → Counter) to a counter, safe against concurrent
        updates: the write names the version it read, and a lost race reads again."""
        for _ in range(10):
            d = await self.throttle.find_one({"_id": key})
            current, version = _counter(d)
            new: Counter = change(current)
            doc = {
                "failures": new.failures,
                "window_start": new.window_start,
                "locked_until": new.locked_until,
                "v": version + 1,
            }
            try:
                if d is None:
                    await self.throttle.insert_one({"_id": key, **doc})
                    return new
                r = await self.throttle.update_one({"_id": key, "v": version}, {"$set": doc})
            except DuplicateKeyError:
                continue
            if r.matched_count == 1:
                return new
        raise RuntimeError(f"the sign-in counter {key} is contended")

    async def purge(self, counters_before: datetime, audit_before: datetime) -> tuple[int, int]:
        """Remove counters whose window opened before ``counters_before`` (they can no
        longer lock) and audit records older than ``audit_before``; how many of each."""
        c = await self.throttle.delete_many({"window_start": {"$lt": counters_before}})
        a = await self.audit.delete_many({"at": {"$lt": audit_before}})
        return c.deleted_count, a.deleted_count

    async def clear_counter(self, key: str) -> None:
        """Forget a counter (a successful sign-in clears its account's failures)."""
        await self.throttle.delete_one({"_id": key})

"""The local database as the stack starts it: its WiredTiger settings (a real server)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from tongxin.devstack.procs import free_port
from tongxin.devstack.secantus_main import TRANSACTION_LIFETIME_S
from tongxin.devstack.servers import DB_CACHE_SIZE, DB_CHECKPOINT_S, SecantusServer
from tongxin.devstack.stack import StackConfig


def test_the_database_runs_with_the_configured_checkpoint_interval_and_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = Path(tempfile.mkdtemp(prefix="tongxin-ckpt-"))
    monkeypatch.setenv("TONGXIN_DB_CHECKPOINT_S", "123")
    monkeypatch.setenv("TONGXIN_DB_CACHE_SIZE", "256M")
    cfg = StackConfig.from_env(data, mongo_port=free_port())
    assert (cfg.db_checkpoint_s, cfg.db_cache_size) == (123, "256M")
    server = SecantusServer(
        data / "db",
        cfg.mongo_port,
        checkpoint_s=cfg.db_checkpoint_s,
        cache_size=cfg.db_cache_size,
    )
    server.start()
    try:
        assert server.proc is not None
        environ = Path(f"/proc/{server.proc.pid}/environ").read_bytes().split(b"\0")
        assert b"SECANTUS_CHECKPOINT_SECONDS=123" in environ
        cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[cmdline.index(b"--cache-size") + 1] == b"256M"
        with MongoClient(server.uri, serverSelectionTimeoutMS=10000) as client:
            assert client.admin.command("ping")["ok"] == 1
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def test_the_defaults_are_the_database_s_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TONGXIN_DB_CHECKPOINT_S", raising=False)
    monkeypatch.delenv("TONGXIN_DB_CACHE_SIZE", raising=False)
    cfg = StackConfig.from_env(Path("/nonexistent"))
    assert (
        (cfg.db_checkpoint_s, cfg.db_cache_size) == (DB_CHECKPOINT_S, DB_CACHE_SIZE) == (60, "1G")
    )


_HOLDER = """
import sys, time
from pymongo import MongoClient
client = MongoClient(sys.argv[1], serverSelectionTimeoutMS=10000)
with client.start_session(causal_consistency=False) as s:
    s.start_transaction()
    client.t.cases.update_one({"_id": "c1"}, {"$set": {"by": "killed"}}, session=s)
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_killed_process_s_open_transaction_stops_holding_its_documents_soon() -> None:
    """A service SIGKILLed between its writes and its commit leaves the transaction open;
    the local database reaps it after TRANSACTION_LIFETIME_S (SecantusDB's default, like
    mongod's, is 60 s — a minute in which the restarted service conflicts on its own
    records). Seen here: the document is locked at first, and free again well before
    the default lifetime would free it."""
    data = Path(tempfile.mkdtemp(prefix="tongxin-txn-"))
    server = SecantusServer(data / "db", free_port())
    server.start()
    try:
        with MongoClient(server.uri, serverSelectionTimeoutMS=10000) as client:
            client.t.cases.insert_one({"_id": "c1", "by": "nobody"})
            holder = subprocess.Popen(
                [sys.executable, "-c", _HOLDER, server.uri], stdout=subprocess.PIPE, text=True
            )
            try:
                assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
            finally:
                holder.kill()
                holder.wait()
            killed = time.monotonic()

            def update_in_transaction() -> bool:
                with client.start_session(causal_consistency=False) as s:
                    s.start_transaction()
                    try:
                        client.t.cases.update_one(
                            {"_id": "c1"}, {"$set": {"by": "successor"}}, session=s
                        )
                        s.commit_transaction()
                        return True
                    except OperationFailure as exc:
                        assert exc.has_error_label("TransientTransactionError"), exc
                        return False

            assert not update_in_transaction(), "the killed process's transaction held nothing"
            while not update_in_transaction():
                assert time.monotonic() - killed < 30, "the open transaction held on for 30 s"
                time.sleep(0.5)
            assert client.t.cases.find_one({"_id": "c1"}) == {"_id": "c1", "by": "successor"}
            assert TRANSACTION_LIFETIME_S <= 10
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)

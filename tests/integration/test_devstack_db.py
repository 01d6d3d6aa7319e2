"""The local database as the stack starts it: its WiredTiger settings (a real server)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from pymongo import MongoClient

from tongxin.devstack.procs import free_port
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

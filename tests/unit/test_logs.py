"""JSON log lines, with contact details masked wherever they appear."""

from __future__ import annotations

import json
import logging

import pytest

from tongxin.runtime.logs import (
    BenignErrorFilter,
    JsonFormatter,
    RepeatFilter,
    configure_logging,
    redact,
)


def test_redact_masks_mobile_numbers_and_nothing_else() -> None:
    assert redact("call 13812341234 now") == "call 138****1234 now"
    assert redact("a=15900001111,b=18612345678") == "a=159****1111,b=186****5678"
    assert redact("order 2026112700001 id 12812341234") == "order 2026112700001 id 12812341234"
    assert redact("YS-20261127-000001") == "YS-20261127-000001"


def test_formatter_writes_one_json_object_with_extras_and_masks_them() -> None:
    rec = logging.makeLogRecord(
        {
            "name": "t",
            "levelno": logging.ERROR,
            "levelname": "ERROR",
            "msg": "submit failed for %s",
            "args": ("13987654321",),
            "submitter": {"name": "张三", "phone": "13987654321"},
        }
    )
    line = JsonFormatter("intake").format(rec)
    out = json.loads(line)
    assert out["service"] == "intake" and out["level"] == "error"
    assert out["msg"] == "submit failed for 139****4321"
    assert out["submitter"] == {"name": "张三", "phone": "139****4321"}
    assert "13987654321" not in line


def _rec(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.makeLogRecord(
        {"name": name, "msg": msg, "args": args, "levelno": level, "levelname": "ERROR"}
    )


def test_a_library_repeating_itself_is_let_through_once_a_window_with_a_count() -> None:
    now = [0.0]
    f = RepeatFilter(window=10.0, clock=lambda: now[0])
    template = "Unable connect to node with id %s: %s"
    passed = []
    for i in range(1200):  # a second of a broker restart
        now[0] = i / 100
        rec = _rec("aiokafka.conn", template, 1, "[Errno 111] Connection refused")
        if f.filter(rec):
            passed.append(rec)
    assert len(passed) == 2  # at 0 s and at 10 s
    assert not hasattr(passed[0], "repeated")
    assert passed[1].repeated == 999  # type: ignore[attr-defined]
    out = json.loads(JsonFormatter("routing").format(passed[1]))
    assert out["repeated"] == 999 and out["msg"].startswith("Unable connect to node with id 1")


def test_other_messages_levels_and_loggers_are_not_held_back() -> None:
    f = RepeatFilter(window=10.0, clock=lambda: 0.0)
    assert f.filter(_rec("aiokafka.conn", "a %s", 1))
    assert f.filter(_rec("aiokafka.conn", "b %s", 1))  # another message
    assert f.filter(_rec("aiokafka.conn", "a %s", 1, level=logging.WARNING))  # another level
    assert f.filter(_rec("aiokafka.cluster", "a %s", 1))  # another logger
    assert not f.filter(_rec("aiokafka.conn", "a %s", 2))  # same template, other values
    for _ in range(50):  # the platform's own lines are never dropped
        assert f.filter(_rec("tongxin.runtime.outbox", "outbox publish failed; will retry"))


def test_the_memory_of_templates_is_bounded() -> None:
    f = RepeatFilter(window=10.0, clock=lambda: 0.0, max_keys=10)
    for i in range(100):
        assert f.filter(_rec("aiokafka.conn", f"preformatted {i}"))
    assert len(f._seen) <= 10


def test_a_coordinator_not_yet_available_at_start_is_written_at_info_other_errors_stay() -> None:
    from aiokafka import errors

    f = BenignErrorFilter()
    name, template = "aiokafka.consumer.group_coordinator", "Group Coordinator Request failed: %s"
    for err in (
        errors.GroupCoordinatorNotAvailableError(),
        errors.CoordinatorLoadInProgressError(),
    ):
        rec = _rec(name, template, err)
        assert f.filter(rec) and rec.levelno == logging.INFO and rec.levelname == "INFO"
        assert json.loads(JsonFormatter("routing").format(rec))["level"] == "info"
    real = [
        _rec(name, template, errors.NodeNotReadyError("node 1")),  # the broker is down
        _rec(name, template, errors.GroupAuthorizationFailedError()),
        _rec(name, "Heartbeat session expired - marking coordinator dead"),
        _rec("tongxin.runtime.consumer", template, errors.GroupCoordinatorNotAvailableError()),
    ]
    for rec in real:
        assert f.filter(rec) and rec.levelno == logging.ERROR, rec.getMessage()


def test_the_service_handler_lowers_benign_errors_before_it_counts_repeats(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from aiokafka import errors

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("intake")
        log = logging.getLogger("aiokafka.consumer.group_coordinator")
        log.error(
            "Group Coordinator Request failed: %s", errors.GroupCoordinatorNotAvailableError()
        )
        log.error("Group Coordinator Request failed: %s", errors.NodeNotReadyError("node 1"))
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["level"] for line in lines] == ["info", "error"]

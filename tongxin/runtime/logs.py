"""Structured JSON logs on stdout, one object a line, with phone numbers masked.

Whatever a log line carries — message, extra fields, a traceback — mainland mobile
numbers in it are masked (``138****1234``) before it is written, so contact details
never reach the logs even when an error message quotes a payload. Passwords in URIs
(``mongodb://user:secret@host``) are masked the same way.

Library loggers that repeat themselves while a dependency is away (aiokafka logs every
failed reconnect: thousands of lines a second per service while the broker restarted) pass
through :class:`RepeatFilter`: one line per message and ``window`` seconds, the next one
saying how many were left out.

A few library errors are part of every normal start: aiokafka asks the broker for its
group's coordinator before the broker has loaded its offsets topic, and logs the broker's
"not available (yet)" answer at ERROR although it simply asks again.
:class:`BenignErrorFilter` writes exactly those at INFO; every other error stays an error.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from tongxin.runtime.settings import redact_uri

_RESERVED = {*vars(logging.makeLogRecord({})), "color_message"}
_MOBILE = re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)")


def redact(text: str) -> str:
    """Mask every mainland mobile number and every URI password in ``text``."""
    return redact_uri(_MOBILE.sub(r"\1****\3", text))


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line, with ``extra=`` fields merged in."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in vars(record).items():
            if k not in _RESERVED and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(out, ensure_ascii=False, default=str))


class RepeatFilter(logging.Filter):
    """Lets one record per (logger, message template, level) through every ``window``
    seconds for loggers under ``prefixes``; the next one let through carries ``repeated``:
    how many like it were left out since. Other loggers pass untouched."""

    def __init__(
        self,
        prefixes: tuple[str, ...] = ("aiokafka",),
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1000,
    ) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._seen: dict[tuple[str, str, int], tuple[float, int]] = {}  # key: (since, left out)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, str(record.msg), record.levelno)
        now = self.clock()
        since, left_out = self._seen.get(key, (None, 0))
        if since is not None and now - since < self.window:
            self._seen[key] = (since, left_out + 1)
            return False
        if left_out:
            record.repeated = left_out
        if len(self._seen) >= self.max_keys and key not in self._seen:
            self._seen.clear()  # messages with their values in the template: start afresh
        self._seen[key] = (now, 0)
        return True


class BenignErrorFilter(logging.Filter):
    """Lowers the known-benign library errors to INFO: a group coordinator lookup answered
    "not available" or "loading" (the broker's first seconds, or a coordinator moving) —
    the consumer retries it and joins. Matched by logger, message template and error type,
    so a lookup that fails any other way (the broker is down, authorization) stays ERROR."""

    BENIGN: ClassVar[dict[tuple[str, str], frozenset[str]]] = {
        ("aiokafka.consumer.group_coordinator", "Group Coordinator Request failed: %s"): (
            frozenset({"GroupCoordinatorNotAvailableError", "GroupLoadInProgressError"})
        ),
    }

    def filter(self, record: logging.LogRecord) -> bool:
        errors = self.BENIGN.get((record.name, str(record.msg)))
        if (
            errors is not None
            and record.levelno > logging.INFO
            and isinstance(record.args, tuple)
            and record.args
            and type(record.args[0]).__name__ in errors
        ):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route all logging to stdout as JSON lines tagged with the service name."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(BenignErrorFilter())
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "pymongo", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

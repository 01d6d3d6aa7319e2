"""Structured JSON logs on stdout, one object a line, with phone numbers masked.

Whatever a log line carries — message, extra fields, a traceback — mainland mobile
numbers in it are masked (``138****1234``) before it is written, so contact details
never reach the logs even when an error message quotes a payload. Passwords in URIs
(``mongodb://user:secret@host``) are masked the same way.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

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


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route all logging to stdout as JSON lines tagged with the service name."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "pymongo", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

"""JSON log lines, with contact details masked wherever they appear."""

from __future__ import annotations

import json
import logging

from tongxin.runtime.logs import JsonFormatter, redact


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

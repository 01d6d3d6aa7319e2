"""Channel signatures and message shapes, computed independently (no I/O)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from services.notify.channels import (
    ChannelHealth,
    Outgoing,
    SmtpConfig,
    SmtpSender,
    dingtalk_sign,
    notification_id,
    sign,
    verify,
)
from services.notify.domain.templates import Message
from tongxin.contracts.enums import NotifyChannel


def test_webhook_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = '{"text":"你好"}'.encode()
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("s3cret", "1700000000", body) == expected


def test_verify_checks_signature_and_freshness() -> None:
    body = b"{}"
    ts = str(int(time.time()))
    good = sign("k", ts, body)
    assert verify("k", ts, body, good)
    assert not verify("k", ts, b"{ }", good)
    assert not verify("other", ts, body, good)
    old = str(int(time.time()) - 3600)
    assert not verify("k", old, body, sign("k", old, body))
    assert not verify("k", "not-a-number", body, good)


def test_dingtalk_sign_is_base64_hmac_of_timestamp_newline_secret() -> None:
    secret, ts = "SECabc", "1700000000000"
    digest = hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
    assert dingtalk_sign(secret, ts) == base64.b64encode(digest).decode()


def test_email_has_utf8_subject_names_and_a_stable_message_id() -> None:
    out = Outgoing(
        delivery_id="e|r|email",
        notification_id=notification_id("e|r|email"),
        recipient="community:liyuan",
        recipient_name="梨园社区",
        addresses={"email": "liyuan@example.gov.cn"},
        message=Message("【同心】新工单", "请于今天响应。"),
        meta={"event_type": "case.routed", "request_id": "YS-1"},
    )
    msg = SmtpSender(SmtpConfig(host="localhost"), 5).build(out)
    assert msg["Subject"] == "【同心】新工单"
    assert "liyuan@example.gov.cn" in msg["To"]
    assert msg["Message-ID"] == f"<{out.notification_id}@tongxin>"
    assert msg.get_content().strip() == "请于今天响应。"
    assert notification_id("e|r|email") == out.notification_id  # stable


def test_channel_health_moves_from_ok_to_failing_and_back() -> None:
    h = ChannelHealth(NotifyChannel.WEBHOOK, True, 4, 5.0)
    assert h.status == "ok"
    h.failed("boom")
    assert h.status == "degraded"
    for _ in range(4):
        h.failed("boom")
    assert h.status == "failing" and h.failures == 5
    h.ok()
    assert h.status == "ok" and h.last_ok_at is not None
    assert ChannelHealth(NotifyChannel.SMS, False, 1, 1).status == "disabled"

"""Each channel as a real protocol client against a real local server."""

from __future__ import annotations

import email
import json
from collections.abc import AsyncIterator, Iterator
from email.policy import default as default_policy

import httpx
import pytest

from services.notify.channels import (
    DeliveryError,
    DingTalkSender,
    Outgoing,
    SmsGatewaySender,
    SmtpConfig,
    SmtpSender,
    WebhookSender,
    WeComSender,
    dingtalk_sign,
    notification_id,
    verify,
)
from services.notify.domain.templates import Message
from tests.integration.notify.servers import Reply, ScriptedHTTP, SmtpServer


def out(**kw: object) -> Outgoing:
    base: dict[str, object] = {
        "delivery_id": "ev-1|community:liyuan|x",
        "notification_id": notification_id("ev-1|community:liyuan|x"),
        "recipient": "community:liyuan",
        "recipient_name": "梨园社区",
        "addresses": {},
        "message": Message("【同心】新工单", "诉求 YS-1 已分派，请及时响应。"),
        "meta": {"event_type": "case.routed", "event_id": "ev-1", "request_id": "YS-1"},
    }
    base.update(kw)
    return Outgoing(**base)  # type: ignore[arg-type]


@pytest.fixture
def http_server() -> Iterator[ScriptedHTTP]:
    s = ScriptedHTTP(key=lambda _h: "all").start()
    yield s
    s.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=1.0) as c:
        yield c


async def test_webhook_body_and_signature_verify(
    http_server: ScriptedHTTP, client: httpx.AsyncClient
) -> None:
    sender = WebhookSender(client, f"{http_server.url}/hook", "top-secret")
    await sender.send(out())
    [hit] = http_server.hits
    body = hit.json()
    assert body["text"] == "诉求 YS-1 已分派，请及时响应。"
    assert body["event_type"] == "case.routed" and body["recipient"] == "community:liyuan"
    assert body["request_id"] == "YS-1" and body["event_id"] == "ev-1"
    ts, sig = hit.headers["x-tongxin-timestamp"], hit.headers["x-tongxin-signature"]
    assert verify("top-secret", ts, hit.body, sig)
    assert not verify("wrong-secret", ts, hit.body, sig)
    assert hit.headers["x-tongxin-delivery"] == out().notification_id


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [
        (Reply(500, b"oops"), True),
        (Reply(503, b""), True),
        (Reply(429, b""), True),
        (Reply(400, b"bad"), False),
        (Reply(404, b""), False),
        (Reply(410, b""), False),
    ],
)
async def test_webhook_status_classification(
    http_server: ScriptedHTTP, client: httpx.AsyncClient, reply: Reply, retryable: bool
) -> None:
    http_server.script("all", [reply])
    with pytest.raises(DeliveryError) as err:
        await WebhookSender(client, http_server.url, None).send(out())
    assert err.value.retryable is retryable


async def test_a_hanging_webhook_is_a_retryable_timeout(http_server: ScriptedHTTP) -> None:
    http_server.script("all", [Reply(200, b"", delay=2.0)])
    async with httpx.AsyncClient(timeout=0.3) as c:
        with pytest.raises(DeliveryError, match="timed out") as err:
            await WebhookSender(c, http_server.url, None).send(out())
    assert err.value.retryable


async def test_unreachable_webhook_is_retryable(client: httpx.AsyncClient) -> None:
    from tongxin.devstack.procs import free_port

    with pytest.raises(DeliveryError) as err:
        await WebhookSender(client, f"http://127.0.0.1:{free_port()}/", None).send(out())
    assert err.value.retryable


async def test_wecom_robot_markdown_and_errcodes(
    http_server: ScriptedHTTP, client: httpx.AsyncClient
) -> None:
    sender = WeComSender(client, f"{http_server.url}/cgi-bin/webhook/send")
    o = out(addresses={"wecom_key": "robot-key-1"}, markdown=True)
    await sender.send(o)
    hit = http_server.hits[-1]
    assert hit.path == "/cgi-bin/webhook/send" and hit.query == {"key": "robot-key-1"}
    assert hit.json() == {"msgtype": "markdown", "markdown": {"content": o.message.text}}
    await sender.send(out(addresses={"wecom_key": "k"}))
    assert http_server.hits[-1].json()["msgtype"] == "text"

    http_server.script("all", [Reply(200, b'{"errcode":93000,"errmsg":"invalid webhook url"}')])
    with pytest.raises(DeliveryError, match="93000") as refused:
        await sender.send(o)
    assert not refused.value.retryable
    http_server.script("all", [Reply(200, b'{"errcode":45009,"errmsg":"api freq out of limit"}')])
    with pytest.raises(DeliveryError) as limited:
        await sender.send(o)
    assert limited.value.retryable
    http_server.script("all", [Reply(200, b"<html>proxy error</html>")])
    with pytest.raises(DeliveryError, match="garbage") as garbage:
        await sender.send(o)
    assert garbage.value.retryable
    with pytest.raises(DeliveryError) as no_key:
        await sender.send(out())
    assert not no_key.value.retryable


async def test_dingtalk_robot_signs_its_request(
    http_server: ScriptedHTTP, client: httpx.AsyncClient
) -> None:
    sender = DingTalkSender(client, f"{http_server.url}/robot/send")
    o = out(addresses={"dingtalk_token": "tok-1", "dingtalk_secret": "SECxyz"}, markdown=True)
    await sender.send(o)
    hit = http_server.hits[-1]
    assert hit.path == "/robot/send"
    assert hit.query["access_token"] == "tok-1"
    # the receiver recomputes the signature from the timestamp it got (parse_qs decoded it)
    assert hit.query["sign"] == dingtalk_sign("SECxyz", hit.query["timestamp"])
    assert hit.json() == {
        "msgtype": "markdown",
        "markdown": {"title": o.message.title, "text": o.message.text},
    }
    http_server.script("all", [Reply(200, b'{"errcode":310000,"errmsg":"sign not match"}')])
    with pytest.raises(DeliveryError, match="310000") as err:
        await sender.send(o)
    assert not err.value.retryable


async def test_sms_gateway_gets_template_code_and_params(
    http_server: ScriptedHTTP, client: httpx.AsyncClient
) -> None:
    sender = SmsGatewaySender(client, f"{http_server.url}/sms", "同心平台", "sms-secret")
    msg = Message("t", "x", "SMS_TX_REQUEST_RECEIVED", {"name": "李建华", "id": "YS-1"})
    http_server.script("all", [Reply(200, b'{"Code":"OK","Message":"OK","BizId":"biz-42"}')])
    provider_id = await sender.send(out(addresses={"phone": "13987654321"}, message=msg))
    assert provider_id == "biz-42"
    hit = http_server.hits[-1]
    body = hit.json()
    assert body["PhoneNumbers"] == "13987654321" and body["SignName"] == "同心平台"
    assert body["TemplateCode"] == "SMS_TX_REQUEST_RECEIVED"
    assert json.loads(body["TemplateParam"]) == {"name": "李建华", "id": "YS-1"}
    assert verify(
        "sms-secret",
        hit.headers["x-tongxin-timestamp"],
        hit.body,
        hit.headers["x-tongxin-signature"],
    )

    http_server.script("all", [Reply(200, b'{"Code":"isv.MOBILE_NUMBER_ILLEGAL","Message":"bad"}')])
    with pytest.raises(DeliveryError) as bad:
        await sender.send(out(addresses={"phone": "123"}, message=msg))
    assert not bad.value.retryable
    http_server.script("all", [Reply(200, b'{"Code":"isv.BUSINESS_LIMIT_CONTROL"}')])
    with pytest.raises(DeliveryError) as throttled:
        await sender.send(out(addresses={"phone": "13987654321"}, message=msg))
    assert throttled.value.retryable
    with pytest.raises(DeliveryError):  # a message without a template code never goes out
        await sender.send(out(addresses={"phone": "13987654321"}))


async def test_smtp_delivers_utf8_mail_and_classifies_refusals() -> None:
    answers = iter(["250 OK", "451 4.3.0 try again later", "550 5.1.1 no such user"])
    server = SmtpServer(reply=lambda _e: next(answers)).start()
    try:
        sender = SmtpSender(SmtpConfig(host="127.0.0.1", port=server.port), timeout=5)
        o = out(addresses={"email": "liyuan@yongsheng.example.gov.cn"})
        mid = await sender.send(o)
        [env] = server.messages
        assert env.rcpt_tos == ["liyuan@yongsheng.example.gov.cn"]
        parsed = email.message_from_bytes(env.content, policy=default_policy)  # type: ignore[arg-type]
        assert parsed["Subject"] == "【同心】新工单"
        assert parsed.get_content().strip() == "诉求 YS-1 已分派，请及时响应。"
        assert parsed["Message-ID"] == mid
        with pytest.raises(DeliveryError) as later:
            await sender.send(o)
        assert later.value.retryable
        with pytest.raises(DeliveryError) as never:
            await sender.send(o)
        assert not never.value.retryable
        assert len(server.messages) == 1
    finally:
        server.stop()


async def test_smtp_server_down_is_retryable() -> None:
    from tongxin.devstack.procs import free_port

    sender = SmtpSender(SmtpConfig(host="127.0.0.1", port=free_port()), timeout=2)
    with pytest.raises(DeliveryError) as err:
        await sender.send(out(addresses={"email": "a@b.example"}))
    assert err.value.retryable

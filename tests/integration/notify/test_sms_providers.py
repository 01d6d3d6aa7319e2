"""Alibaba Cloud SMS and Tencent Cloud SMS through their real SDKs, against local fakes of their
``SendSms`` endpoints reached through the SDKs' endpoint settings: the request each sends, and
how each answer maps to sent / retry / give up — without the resident's number in any log."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from services.notify.channels import PLUGS, DeliveryError, Outgoing, notification_id
from services.notify.channels.aliyun_sms import AliyunSmsSender
from services.notify.channels.tencent_sms import TencentSmsSender
from services.notify.config import NotifySettings
from services.notify.domain.templates import Message
from tests.integration.notify.sms_fakes import (
    BAD_TEMPLATE,
    BROKEN,
    INVALID,
    THROTTLED,
    FakeProvider,
    Seen,
    aliyun_answer,
    tencent_answer,
)
from tongxin.contracts.enums import NotifyChannel

OK_PHONE = "13900000001"
ALL_PHONES = (OK_PHONE, THROTTLED, INVALID, BAD_TEMPLATE, BROKEN)
TEMPLATES = {
    # Aliyun's template names its variable ``code`` where ours is ``id``
    "aliyun": {
        "SMS_TX_REQUEST_RECEIVED": {"id": "SMS_460725012", "params": {"name": "name", "code": "id"}}
    },
    # Tencent's are positional: {1} the request id, {2} the name
    "tencent": {"SMS_TX_REQUEST_RECEIVED": {"id": "1234567", "params": ["id", "name"]}},
}


def out(phone: str, code: str = "SMS_TX_REQUEST_RECEIVED") -> Outgoing:
    msg = Message("t", "x", code, {"name": "李建华", "id": "YS-20250501-0001"})
    return Outgoing(
        delivery_id="ev-1|submitter:YS-1|sms",
        notification_id=notification_id("ev-1|submitter:YS-1|sms"),
        recipient="submitter:YS-1",
        recipient_name="李建华",
        addresses={"phone": phone},
        message=msg,
    )


def settings(provider: str, endpoint: str, **kw: Any) -> NotifySettings:
    base: dict[str, Any] = {
        "notify_sms_provider": provider,
        "notify_sms_access_key_id": "AKID-test" if provider == "tencent" else "LTAI-test-id",
        "notify_sms_access_key_secret": "test-secret-key",
        "notify_sms_app_id": "1400006666",
        "notify_sms_endpoint": endpoint,
        "notify_sms_templates": TEMPLATES[provider],
        "notify_channel_timeouts": {"sms": 5.0},
    }
    return NotifySettings(**(base | kw))


@pytest.fixture
async def clients() -> AsyncIterator[list[httpx.AsyncClient]]:
    made: list[httpx.AsyncClient] = []
    yield made
    for c in made:
        await c.aclose()


def build(s: NotifySettings, made: list[httpx.AsyncClient]) -> Any:
    """The SMS sender as notify builds it from its settings (the registry's plug)."""

    def client(channel: NotifyChannel) -> httpx.AsyncClient:
        c = httpx.AsyncClient(timeout=s.timeout_for(channel))
        made.append(c)
        return c

    plug = PLUGS[NotifyChannel.SMS]
    assert plug.enabled(s)
    return plug.build(s, client)


@pytest.fixture
def aliyun() -> Iterator[FakeProvider]:
    fake = FakeProvider(aliyun_answer).start()
    yield fake
    fake.stop()


@pytest.fixture
def tencent() -> Iterator[FakeProvider]:
    fake = FakeProvider(tencent_answer).start()
    yield fake
    fake.stop()


async def test_aliyun_sends_the_mapped_template_through_the_sdk(
    aliyun: FakeProvider, clients: list[httpx.AsyncClient]
) -> None:
    sender = build(settings("aliyun", aliyun.url), clients)
    assert isinstance(sender, AliyunSmsSender)
    assert await sender.send(out(OK_PHONE)) == "9006197469364984^0"
    assert aliyun.problems == []
    [seen] = aliyun.seen
    p = seen.params
    assert p["PhoneNumbers"] == OK_PHONE and p["SignName"] == "同心平台"
    assert p["TemplateCode"] == "SMS_460725012"
    assert json.loads(p["TemplateParam"]) == {"name": "李建华", "code": "YS-20250501-0001"}
    assert p["OutId"] == out(OK_PHONE).notification_id


async def test_tencent_sends_the_mapped_template_through_the_sdk(
    tencent: FakeProvider, clients: list[httpx.AsyncClient]
) -> None:
    sender = build(settings("tencent", tencent.url), clients)
    assert isinstance(sender, TencentSmsSender)
    assert await sender.send(out(OK_PHONE)) == "5000:1045710669157053657849499619"
    assert tencent.problems == []
    [seen] = tencent.seen
    p = seen.params
    assert p["PhoneNumberSet"] == [f"+86{OK_PHONE}"] and p["SmsSdkAppId"] == "1400006666"
    assert p["SignName"] == "同心平台" and p["TemplateId"] == "1234567"
    assert p["TemplateParamSet"] == ["YS-20250501-0001", "李建华"]  # the template's order
    assert p["SessionContext"] == out(OK_PHONE).notification_id


@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
@pytest.mark.parametrize(
    ("phone", "retryable", "config_error"),
    [
        (THROTTLED, True, False),  # isv.BUSINESS_LIMIT_CONTROL / LimitExceeded.…ThirtySecond…
        (INVALID, False, False),  # isv.MOBILE_NUMBER_ILLEGAL / …IncorrectPhoneNumber
        (BAD_TEMPLATE, False, True),  # isv.SMS_TEMPLATE_ILLEGAL / AuthFailure.SecretIdNotFound
        (BROKEN, True, False),  # HTTP 503 / 502
    ],
)
async def test_answers_map_to_retry_or_give_up(
    provider: str,
    phone: str,
    retryable: bool,
    config_error: bool,
    aliyun: FakeProvider,
    tencent: FakeProvider,
    clients: list[httpx.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = aliyun if provider == "aliyun" else tencent
    sender = build(settings(provider, fake.url), clients)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DeliveryError) as err:
        await sender.send(out(phone))
    assert fake.problems == [] and len(fake.seen) == 1
    assert err.value.retryable is retryable, str(err.value)
    assert ("configuration error" in str(err.value)) is config_error
    config_logs = [
        r for r in caplog.records if r.levelno == logging.ERROR and "configuration" in r.message
    ]
    assert bool(config_logs) is config_error
    assert phone not in str(err.value) and phone not in caplog.text


@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
async def test_an_unreachable_provider_is_retried(
    provider: str, clients: list[httpx.AsyncClient]
) -> None:
    from tongxin.devstack.procs import free_port

    sender = build(settings(provider, f"http://127.0.0.1:{free_port()}"), clients)
    with pytest.raises(DeliveryError) as err:
        await sender.send(out(OK_PHONE))
    assert err.value.retryable and OK_PHONE not in str(err.value)


async def test_no_number_in_any_log_at_debug(
    aliyun: FakeProvider,
    tencent: FakeProvider,
    clients: list[httpx.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The SDKs and their HTTP stacks log requests at DEBUG; the number never shows."""
    senders = [
        build(settings("aliyun", aliyun.url), clients),
        build(settings("tencent", tencent.url), clients),
    ]
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    for sender in senders:
        for phone in ALL_PHONES:
            try:
                await sender.send(out(phone))
            except DeliveryError as exc:
                errors.append(str(exc))
    assert len(aliyun.seen) == len(tencent.seen) == len(ALL_PHONES)
    assert len(errors) == 2 * (len(ALL_PHONES) - 1)
    assert caplog.records  # the SDKs' HTTP stacks did log
    for phone in ALL_PHONES:
        assert phone not in caplog.text, phone
        assert not any(phone in e for e in errors), phone
    assert "test-secret-key" not in caplog.text


async def test_tencent_never_guesses_an_unmapped_template(
    tencent: FakeProvider, clients: list[httpx.AsyncClient]
) -> None:
    sender = build(settings("tencent", tencent.url), clients)
    with pytest.raises(DeliveryError, match="configuration error") as err:
        await sender.send(out(OK_PHONE, code="SMS_TX_CASE_CLOSED"))
    assert not err.value.retryable and tencent.seen == []


async def test_aliyun_sends_as_many_at_once_as_the_channel_allows(
    aliyun: FakeProvider, clients: list[httpx.AsyncClient]
) -> None:
    """The blocking SDK runs on a pool as large as the channel's concurrency: the fake
    answers only once 12 requests are in at once (the loop's default pool has 6 threads on
    two CPUs, so it would hang there and answer an error)."""
    import asyncio

    together = threading.Barrier(12, timeout=10)

    def answer(seen: Seen) -> tuple[int, dict[str, Any]]:
        try:
            together.wait()
        except threading.BrokenBarrierError:
            return 400, {"Code": "isv.INVALID_PARAMETERS", "Message": "not together"}
        return aliyun_answer(seen)

    aliyun.answer = answer
    s = settings("aliyun", aliyun.url, notify_channel_concurrency={"sms": 12})
    sender = build(s, clients)
    ids = await asyncio.gather(*(sender.send(out(OK_PHONE)) for _ in range(12)))
    assert ids == ["9006197469364984^0"] * 12

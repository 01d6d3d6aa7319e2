"""Alibaba Cloud SMS (阿里云短信服务) through the official SDK, ``alibabacloud_dysmsapi20170525``:
``SendSms`` with PhoneNumbers, SignName, TemplateCode and TemplateParam (a JSON object of
strings), OutId = the notification id; ``Code`` ``OK`` is sent, ``BizId`` the provider id.

The SDK is blocking (requests): each call runs on a thread pool of its own, as large as the
channel's concurrency (the loop's default pool has min(32, CPUs + 4) threads, which would cap
SMS below the channel's concurrency), with the SDK's connect and read timeouts set to the
channel's timeout so a thread never outlives its attempt by more than that. The SDK retries
nothing; notify's own retries and backoff apply. The parameters travel in the URL's query,
which urllib3 logs at DEBUG, so that logger is held at INFO.

The SDK is imported only when this provider is configured.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from services.notify.channels.base import DeliveryError, Outgoing
from services.notify.channels.sms import Verdict, lookup, phone_of, refusal, template_for
from tongxin.contracts.enums import NotifyChannel

if TYPE_CHECKING:
    from services.notify.config import NotifySettings, SmsTemplateMap

PROVIDER = "aliyun"
ENDPOINT = "https://dysmsapi.aliyuncs.com"

# SendSms answer codes (help.aliyun.com/document_detail/101346), and the API gateway's codes
# for an HTTP error (throttling, signature, AccessKey). One place: docs/notify.md shows it.
ERRORS: dict[str, Verdict] = {
    # flow control and the platform's own trouble: later
    "isv.BUSINESS_LIMIT_CONTROL": Verdict.RETRY,  # per-number minute/hour/day flow control
    "ServiceUnavailable": Verdict.RETRY,
    "InternalError": Verdict.RETRY,
    "SignatureNonceUsed": Verdict.RETRY,
    # this number or this message: never
    "isv.MOBILE_NUMBER_ILLEGAL": Verdict.REFUSED,
    "isv.MOBILE_COUNT_OVER_LIMIT": Verdict.REFUSED,
    "isv.BLACK_KEY_CONTROL_LIMIT": Verdict.REFUSED,  # a blacklisted word in a parameter
    "isv.PARAM_LENGTH_LIMIT": Verdict.REFUSED,
    "isv.PARAM_NOT_SUPPORT_URL": Verdict.REFUSED,
    "isv.INVALID_JSON_PARAM": Verdict.REFUSED,
    "isv.SMS_CONTENT_ILLEGAL": Verdict.REFUSED,
    "isv.DOMESTIC_NUMBER_NOT_SUPPORTED": Verdict.REFUSED,
    # the setup: sign, template, account, AccessKey — nothing goes until it is fixed
    "isv.SMS_TEMPLATE_ILLEGAL": Verdict.CONFIG,
    "isv.SMS_SIGNATURE_ILLEGAL": Verdict.CONFIG,
    "isv.SMS_SIGN_ILLEGAL": Verdict.CONFIG,
    "isv.SIGN_STATE_ILLEGAL": Verdict.CONFIG,
    "isv.SMS_SIGNATURE_SCENE_ILLEGAL": Verdict.CONFIG,
    "isv.TEMPLATE_MISSING_PARAMETERS": Verdict.CONFIG,
    "isv.INVALID_PARAMETERS": Verdict.CONFIG,
    "isv.DAY_LIMIT_CONTROL": Verdict.CONFIG,  # the account's daily cap set in the console
    "isv.MONTH_LIMIT_CONTROL": Verdict.CONFIG,
    "isv.OUT_OF_SERVICE": Verdict.CONFIG,  # suspended: balance
    "isv.AMOUNT_NOT_ENOUGH": Verdict.CONFIG,
    "isv.PRODUCT_UN_SUBSCRIPT": Verdict.CONFIG,
    "isv.PRODUCT_UNSUBSCRIBE": Verdict.CONFIG,
    "isv.ACCOUNT_NOT_EXISTS": Verdict.CONFIG,
    "isv.ACCOUNT_ABNORMAL": Verdict.CONFIG,
    "isv.DENY_IP_RANGE": Verdict.CONFIG,
    "isp.RAM_PERMISSION_DENY": Verdict.CONFIG,
    "SignatureDoesNotMatch": Verdict.CONFIG,
    "IncompleteSignature": Verdict.CONFIG,
    "InvalidTimeStamp.Expired": Verdict.CONFIG,  # the host's clock
    "MissingSignName": Verdict.CONFIG,
    "MissingTemplateCode": Verdict.CONFIG,
}
PREFIXES: tuple[tuple[str, Verdict], ...] = (
    ("isp.", Verdict.RETRY),  # the platform's side (isp.SYSTEM_ERROR, isp.GATEWAY_ERROR, …)
    ("Throttling", Verdict.RETRY),  # Throttling, Throttling.User, Throttling.Api
    ("InvalidAccessKeyId", Verdict.CONFIG),
    ("Forbidden", Verdict.CONFIG),
    ("NoPermission", Verdict.CONFIG),
    ("isv.", Verdict.REFUSED),
)


def verdict(code: str, status: int | None = None) -> Verdict:
    """An answer code's verdict; an unknown code by its HTTP status (5xx later, else never)."""
    later = status is not None and (status >= 500 or status == 429)  # None: a 200 answer
    return lookup(ERRORS, PREFIXES, code, Verdict.RETRY if later else Verdict.REFUSED)


@dataclass(frozen=True, slots=True)
class AliyunConfig:
    """What the sender needs, credentials included (never logged)."""

    access_key_id: str
    access_key_secret: str
    sign_name: str
    templates: Mapping[str, SmsTemplateMap]
    endpoint: str = ENDPOINT
    region: str = "cn-hangzhou"
    timeout_s: float = 10.0
    concurrency: int = 32


class AliyunSmsSender:
    """Alibaba Cloud SMS through the SDK (on threads); returns the ``BizId``."""

    channel = NotifyChannel.SMS

    def __init__(self, cfg: AliyunConfig) -> None:
        # the SDK: only now, when this provider is configured
        from alibabacloud_dysmsapi20170525 import models
        from alibabacloud_dysmsapi20170525.client import Client
        from alibabacloud_tea_openapi.utils_models import Config
        from darabonba.runtime import RuntimeOptions

        # its DEBUG line is the request's URL, the number in its query
        logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)
        url = urlsplit(cfg.endpoint if "://" in cfg.endpoint else f"https://{cfg.endpoint}")
        ms = max(1, int(cfg.timeout_s * 1000))
        self.cfg = cfg
        self._models = models
        self._client = Client(
            Config(
                access_key_id=cfg.access_key_id,
                access_key_secret=cfg.access_key_secret,
                endpoint=url.netloc,
                protocol=url.scheme,
                region_id=cfg.region,
                connect_timeout=ms,
                read_timeout=ms,
                max_idle_conns=cfg.concurrency,
            )
        )
        self._runtime = RuntimeOptions(
            autoretry=False, max_attempts=0, connect_timeout=ms, read_timeout=ms
        )
        self._pool = ThreadPoolExecutor(
            max_workers=cfg.concurrency, thread_name_prefix="sms-aliyun"
        )

    @classmethod
    def from_settings(cls, s: NotifySettings) -> AliyunSmsSender:
        assert s.notify_sms_access_key_id and s.notify_sms_access_key_secret  # the settings check
        return cls(
            AliyunConfig(
                access_key_id=s.notify_sms_access_key_id.get_secret_value(),
                access_key_secret=s.notify_sms_access_key_secret.get_secret_value(),
                sign_name=s.notify_sms_sign_name,
                templates=s.notify_sms_templates,
                endpoint=s.notify_sms_endpoint or ENDPOINT,
                region=s.notify_sms_region or "cn-hangzhou",
                timeout_s=s.timeout_for(NotifyChannel.SMS),
                concurrency=s.concurrency_for(NotifyChannel.SMS),
            )
        )

    async def send(self, out: Outgoing) -> str | None:
        phone = phone_of(out)
        template, params = template_for(PROVIDER, self.cfg.templates, out, mapped_only=False)
        request = self._models.SendSmsRequest(
            phone_numbers=phone,
            sign_name=self.cfg.sign_name,
            template_code=template,
            template_param=json.dumps(params, ensure_ascii=False) if params else None,
            out_id=out.notification_id,
        )
        loop = asyncio.get_running_loop()
        try:
            resp = await loop.run_in_executor(self._pool, self._send, request)
        except DeliveryError:
            raise
        except Exception as exc:  # the SDK's own errors: an HTTP error answer, the network
            raise self._failure(exc, phone) from None  # its text may carry the request's URL
        body = resp.body
        code = str(getattr(body, "code", "") or "")
        if code == "OK":
            return str(getattr(body, "biz_id", "") or "") or None
        if not code:
            raise DeliveryError("aliyun sms answered garbage (no Code)", retryable=True)
        raise refusal(PROVIDER, code, getattr(body, "message", ""), verdict(code), phone)

    def _send(self, request: Any) -> Any:
        return self._client.send_sms_with_options(request, self._runtime)

    def _failure(self, exc: Exception, phone: str) -> DeliveryError:
        from alibabacloud_tea_openapi.exceptions import AlibabaCloudException

        if isinstance(exc, AlibabaCloudException) and exc.code:
            status = exc.status_code if isinstance(exc.status_code, int) else None
            code = str(exc.code)
            return refusal(PROVIDER, code, exc.message, verdict(code, status or 500), phone)
        # no answer (refused, reset, timed out) or an unreadable one: later
        return DeliveryError(f"aliyun sms unreachable: {type(exc).__name__}", retryable=True)

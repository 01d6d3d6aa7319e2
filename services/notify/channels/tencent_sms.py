"""Tencent Cloud SMS (腾讯云短信) through the official SDK, ``tencentcloud-sdk-python-sms``
(API 2021-01-11): ``SendSms`` with PhoneNumberSet (E.164, ``+86…``), SmsSdkAppId,
SignName, TemplateId, TemplateParamSet (positional) and SessionContext = the notification
id, signed TC3-HMAC-SHA256 by the SDK. A request-level error comes back as
``Response.Error.Code``; a per-number one as ``SendStatusSet[0].Code`` (``Ok`` is sent,
``SerialNo`` the provider id).

The SDK's async client (httpx) is used, on the channel's own HTTP client — the channel's
timeout and connection limit, closed when the service stops. The SDK retries nothing;
notify's own retries and backoff apply. Its debug log prints requests and answers (the
number among them), so that logger is held at INFO.

The SDK is imported only when this provider is configured.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from services.notify.channels.base import DeliveryError, Outgoing
from services.notify.channels.sms import Verdict, lookup, phone_of, refusal, template_for
from tongxin.contracts.enums import NotifyChannel

if TYPE_CHECKING:
    from services.notify.config import NotifySettings, SmsTemplateMap

PROVIDER = "tencent"
ENDPOINT = "https://sms.tencentcloudapi.com"
SDK_LOGGER = "tencentcloud_sdk_common"

# SendSms error codes (cloud.tencent.com/document/api/382/55981, the SDK's errorcodes.py) and
# the common ones (AuthFailure.*, RequestLimitExceeded.*). One place: docs/notify.md shows it.
ERRORS: dict[str, Verdict] = {
    # frequency limits that pass, and the platform's own trouble: later
    "LimitExceeded.PhoneNumberThirtySecondLimit": Verdict.RETRY,
    "LimitExceeded.PhoneNumberOneHourLimit": Verdict.RETRY,
    "LimitExceeded.DeliveryFrequencyLimit": Verdict.RETRY,
    "LimitExceeded.GlobalSmsSendingRateLimit": Verdict.RETRY,
    "InternalError.Timeout": Verdict.RETRY,
    "InternalError.SendAndRecvFail": Verdict.RETRY,
    "InternalError.RequestTimeException": Verdict.RETRY,  # also the host's clock; passes
    "InternalError.OtherError": Verdict.RETRY,
    "InternalError.UnknownError": Verdict.RETRY,
    "InternalError.ParseBackendResponseFail": Verdict.RETRY,
    "ServerNetworkError": Verdict.RETRY,  # the SDK's: a non-200 HTTP answer
    "ClientNetworkError": Verdict.RETRY,
    # this number or this message: never (a day's limit does not pass within the retries)
    "InvalidParameterValue.IncorrectPhoneNumber": Verdict.REFUSED,
    "FailedOperation.PhoneNumberParseFail": Verdict.REFUSED,
    "FailedOperation.PhoneNumberInBlacklist": Verdict.REFUSED,  # the resident unsubscribed
    "FailedOperation.ContainSensitiveWord": Verdict.REFUSED,
    "InvalidParameter.DirtyWordFound": Verdict.REFUSED,
    "InvalidParameterValue.ContentLengthLimit": Verdict.REFUSED,
    "InvalidParameterValue.TemplateParameterLengthLimit": Verdict.REFUSED,
    "InvalidParameterValue.TemplateParameterFormatError": Verdict.REFUSED,
    "InvalidParameterValue.ProhibitedUseUrlInTemplateParameter": Verdict.REFUSED,
    "LimitExceeded.PhoneNumberDailyLimit": Verdict.REFUSED,
    "LimitExceeded.PhoneNumberSameContentDailyLimit": Verdict.REFUSED,
    "LimitExceeded.PhoneNumberCountLimit": Verdict.REFUSED,
    "LimitExceeded.AppCountryOrRegionInBlacklist": Verdict.REFUSED,
    "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber": Verdict.REFUSED,
    "UnsupportedOperation.ChineseMainlandTemplateToGlobalPhone": Verdict.REFUSED,
    "UnsupportedOperation.UnsupportedRegion": Verdict.REFUSED,
    "FailedOperation.MarketingSendTimeConstraint": Verdict.REFUSED,
    # the setup: sign, template, app, account, keys — nothing goes until it is fixed
    "FailedOperation.SignatureIncorrectOrUnapproved": Verdict.CONFIG,
    "FailedOperation.MissingSignature": Verdict.CONFIG,
    "FailedOperation.TemplateIncorrectOrUnapproved": Verdict.CONFIG,
    "FailedOperation.TemplateParamSetNotMatchApprovedTemplate": Verdict.CONFIG,
    "FailedOperation.TemplateUnapprovedOrNotExist": Verdict.CONFIG,
    "FailedOperation.TemplateIdNotExist": Verdict.CONFIG,
    "FailedOperation.InsufficientBalanceInSmsPackage": Verdict.CONFIG,
    "FailedOperation.FailResolvePacket": Verdict.CONFIG,
    "FailedOperation.JsonParseFail": Verdict.CONFIG,
    "InvalidParameterValue.SdkAppIdNotExist": Verdict.CONFIG,
    "UnsupportedOperation.GlobalTemplateToChineseMainlandPhone": Verdict.CONFIG,
    "LimitExceeded.AppDailyLimit": Verdict.CONFIG,  # the app's daily caps set in the console
    "LimitExceeded.AppGlobalDailyLimit": Verdict.CONFIG,
    "LimitExceeded.AppMainlandChinaDailyLimit": Verdict.CONFIG,
    "LimitExceeded.AppCountryOrRegionDailyLimit": Verdict.CONFIG,
    "LimitExceeded.DailyLimit": Verdict.CONFIG,
    "InternalError.SigVerificationFail": Verdict.CONFIG,
    "InternalError.SigFieldMissing": Verdict.CONFIG,
    "InternalError.RestApiInterfaceNotExist": Verdict.CONFIG,
    "ClientError": Verdict.CONFIG,
    "ClientParamsError": Verdict.CONFIG,
}
PREFIXES: tuple[tuple[str, Verdict], ...] = (
    ("RequestLimitExceeded", Verdict.RETRY),  # the API's request rate
    ("InternalError", Verdict.RETRY),
    ("AuthFailure", Verdict.CONFIG),  # SecretId / SecretKey / signature / clock
    ("UnauthorizedOperation", Verdict.CONFIG),  # app disabled, arrears, IP allow-list, CAM
    ("MissingParameter", Verdict.CONFIG),
    ("InvalidParameter", Verdict.REFUSED),
    ("FailedOperation", Verdict.REFUSED),
    ("LimitExceeded", Verdict.RETRY),
)


def verdict(code: str) -> Verdict:
    """An error code's verdict; an unknown one is refused (a request the API turned down)."""
    return lookup(ERRORS, PREFIXES, code, Verdict.REFUSED)


def e164(phone: str) -> str:
    """A number as Tencent wants it: ``+86`` and the 11 digits for a mainland mobile."""
    if phone.startswith("+"):
        return phone
    if phone.startswith("0086"):
        return "+" + phone[2:]
    if re.fullmatch(r"861\d{10}", phone):
        return "+" + phone
    if re.fullmatch(r"1\d{10}", phone):
        return "+86" + phone
    return phone


@dataclass(frozen=True, slots=True)
class TencentConfig:
    """What the sender needs, credentials included (never logged)."""

    secret_id: str
    secret_key: str
    app_id: str
    sign_name: str
    templates: Mapping[str, SmsTemplateMap]
    endpoint: str = ENDPOINT
    region: str = "ap-guangzhou"


class TencentSmsSender:
    """Tencent Cloud SMS through the SDK's async client; returns the ``SerialNo``."""

    channel = NotifyChannel.SMS

    def __init__(self, cfg: TencentConfig, http: httpx.AsyncClient) -> None:
        # the SDK: only now, when this provider is configured
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.sms.v20210111 import models
        from tencentcloud.sms.v20210111.sms_client_async import SmsClient

        logging.getLogger(SDK_LOGGER).setLevel(logging.INFO)  # its DEBUG prints the number
        url = urlsplit(cfg.endpoint if "://" in cfg.endpoint else f"https://{cfg.endpoint}")
        profile = ClientProfile(
            httpProfile=HttpProfile(
                protocol=url.scheme, endpoint=url.netloc, reqMethod="POST", keepAlive=True
            )
        )
        self.cfg = cfg
        self._models = models
        self._client = SmsClient(
            credential.Credential(cfg.secret_id, cfg.secret_key), cfg.region, profile
        )
        # the channel's client (its timeout and connection limit, closed at stop) instead
        # of the one the SDK made (unused, nothing to close)
        self._client.http_client = http

    @classmethod
    def from_settings(cls, s: NotifySettings, http: httpx.AsyncClient) -> TencentSmsSender:
        assert s.notify_sms_access_key_id and s.notify_sms_access_key_secret  # the settings check
        return cls(
            TencentConfig(
                secret_id=s.notify_sms_access_key_id.get_secret_value(),
                secret_key=s.notify_sms_access_key_secret.get_secret_value(),
                app_id=s.notify_sms_app_id or "",
                sign_name=s.notify_sms_sign_name,
                templates=s.notify_sms_templates,
                endpoint=s.notify_sms_endpoint or ENDPOINT,
                region=s.notify_sms_region or "ap-guangzhou",
            ),
            http,
        )

    async def send(self, out: Outgoing) -> str | None:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
            TencentCloudSDKException,
        )

        phone = e164(phone_of(out))
        template, params = template_for(PROVIDER, self.cfg.templates, out, mapped_only=True)
        req = self._models.SendSmsRequest()
        req.PhoneNumberSet = [phone]
        req.SmsSdkAppId = self.cfg.app_id
        req.SignName = self.cfg.sign_name
        req.TemplateId = template
        req.TemplateParamSet = list(params.values())
        req.SessionContext = out.notification_id
        try:
            resp = await self._client.SendSms(req)
        except TencentCloudSDKException as exc:
            code = str(exc.code or "")
            if not code:
                raise DeliveryError("tencent sms failed (no code)", retryable=True) from None
            raise refusal(PROVIDER, code, exc.message, verdict(code), phone) from None
        except httpx.TimeoutException:
            raise DeliveryError("tencent sms timed out", retryable=True) from None
        except Exception as exc:  # no answer, or a garbled one (its text may carry the
            # request, the number in it: never kept)
            raise DeliveryError(
                f"tencent sms failed: {type(exc).__name__}", retryable=True
            ) from None
        statuses = list(getattr(resp, "SendStatusSet", None) or [])
        if not statuses:
            raise DeliveryError("tencent sms answered garbage (no SendStatusSet)", retryable=True)
        status = statuses[0]
        code = str(getattr(status, "Code", "") or "")
        if code == "Ok":
            return str(getattr(status, "SerialNo", "") or "") or None
        if not code:
            raise DeliveryError("tencent sms answered garbage (no Code)", retryable=True)
        raise refusal(PROVIDER, code, getattr(status, "Message", ""), verdict(code), phone)

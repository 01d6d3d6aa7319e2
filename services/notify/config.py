"""Notify settings (env prefix ``TONGXIN_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from tongxin.contracts.enums import NotifyChannel
from tongxin.runtime.settings import REPO_ROOT, ServiceSettings

NOTIFY_DIR = REPO_ROOT / "deploy" / "notify"

SmsProvider = Literal["gateway", "aliyun", "tencent"]


class SmsTemplateMap(BaseModel):
    """A message's SMS template as registered with the provider: its id there, and which of
    the message's parameters (``sms.params`` in templates.yaml) fill it, in its order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Aliyun TemplateCode (``SMS_123456789``) or Tencent TemplateId (``1234567``)
    id: str = Field(min_length=1)
    # the provider's parameter name → ours, in the template's order; a list names ours and
    # sends them under the same names. Unset: ours as they are (Aliyun only — Tencent's
    # parameters are positional, so their order must be written down).
    params: dict[str, str] | list[str] | None = None

    def named(self) -> dict[str, str] | None:
        """Provider parameter name → ours, in order (None: ours as they are)."""
        if self.params is None or isinstance(self.params, dict):
            return self.params
        return {p: p for p in self.params}


class NotifySettings(ServiceSettings):
    """What notify needs beyond the shared settings."""

    notify_port: int = 8004
    # Config files owned by notify: who hears of what, the messages, the recipients.
    notify_rules_file: Path = NOTIFY_DIR / "rules.yaml"
    notify_templates_file: Path = NOTIFY_DIR / "templates.yaml"
    notify_directory_file: Path = NOTIFY_DIR / "directory.yaml"
    # A missing template variable is an error; default: everywhere but production.
    notify_strict_templates: bool | None = None

    # A default webhook that receives every staff notification (SPEC §5).
    notify_webhook_url: str | None = None
    # When set, webhook bodies are signed: X-Tongxin-Signature = hex HMAC-SHA256(ts + "." + body).
    notify_webhook_secret: str | None = None
    # WeCom / DingTalk robot endpoints (keys and tokens are per recipient, in the directory).
    # Production: https://qyapi.weixin.qq.com/cgi-bin/webhook/send, https://oapi.dingtalk.com/robot/send
    notify_wecom_url: str | None = None
    notify_dingtalk_url: str | None = None
    # SMTP email.
    notify_smtp_host: str | None = None
    notify_smtp_port: int = Field(default=25, gt=0, lt=65536)
    notify_smtp_username: str | None = None
    notify_smtp_password: str | None = None
    notify_smtp_security: Literal["none", "starttls", "tls"] = "none"
    notify_smtp_from: str = "noreply@tongxin.example.gov.cn"
    notify_smtp_from_name: str = "同心平台"
    # SMS: through a generic HTTP gateway adapter (Aliyun SendSms shape, signed like the
    # webhook when a secret is set), or Alibaba Cloud SMS / Tencent Cloud SMS through their SDKs.
    notify_sms_provider: SmsProvider = "gateway"
    notify_sms_gateway_url: str | None = None
    notify_sms_sign_name: str = "同心平台"
    notify_sms_secret: SecretStr | None = None
    # Aliyun AccessKey ID / Secret, or Tencent SecretId / SecretKey
    notify_sms_access_key_id: SecretStr | None = None
    notify_sms_access_key_secret: SecretStr | None = None
    notify_sms_app_id: str | None = None  # Tencent SmsSdkAppId (1400…)
    notify_sms_region: str | None = None  # Tencent: ap-guangzhou; Aliyun: cn-hangzhou
    # The provider's API endpoint as a URL (default https://dysmsapi.aliyuncs.com,
    # https://sms.tencentcloudapi.com); tests point it at a local fake.
    notify_sms_endpoint: str | None = None
    # The templates' SMS codes (templates.yaml ``sms.code``) → the provider's templates.
    notify_sms_templates: dict[str, SmsTemplateMap] = Field(default_factory=dict)
    # The console channel (logs); with fallback, a recipient no channel can reach gets it.
    notify_console: bool = True
    notify_console_fallback: bool = True

    # Delivery: attempts per message with exponential backoff and jitter, per channel limits.
    notify_attempts: int = Field(default=4, ge=1, le=20)
    notify_backoff_initial_s: float = Field(default=1.0, ge=0)
    notify_backoff_max_s: float = Field(default=30.0, ge=0)
    notify_timeout_s: float = Field(default=10.0, gt=0)
    notify_concurrency: int = Field(default=32, ge=1)
    notify_channel_timeouts: dict[NotifyChannel, float] = Field(default_factory=dict)
    notify_channel_concurrency: dict[NotifyChannel, int] = Field(default_factory=dict)
    # A delivery between attempts is held by its process until its next attempt plus this
    # lease, and a planned one is left to its event's handler this long; after that any
    # replica's resume sweep takes it over (so a crash delays it by about this much).
    notify_delivery_lease_s: float = Field(default=30.0, gt=0)
    # How often each replica looks for open deliveries nobody holds.
    notify_sweep_interval_s: float = Field(default=5.0, gt=0)
    # Sent and failed deliveries are deleted this long after their last attempt's lease
    # (docs/operations.md, "Retention"): the API's history of a request's notifications.
    notify_deliveries_keep_s: float = Field(default=180 * 86400.0, gt=0)
    # A submitter's contact (name, phone) and the case notify kept of a request are deleted
    # this long after notify heard the request closed (case.closed, request.withdrawn), and
    # at the latest this long after they were stored (a request that never closes). PIPL:
    # notify needs them only for the request's messages (docs/operations.md, "Retention").
    notify_contacts_keep_s: float = Field(default=30 * 86400.0, gt=0)
    notify_contacts_cap_s: float = Field(default=365 * 86400.0, gt=0)

    @model_validator(mode="after")
    def _positive_limits(self) -> NotifySettings:
        if any(v <= 0 for v in self.notify_channel_timeouts.values()):
            raise ValueError("TONGXIN_NOTIFY_CHANNEL_TIMEOUTS values must be positive")
        if any(v < 1 for v in self.notify_channel_concurrency.values()):
            raise ValueError("TONGXIN_NOTIFY_CHANNEL_CONCURRENCY values must be at least 1")
        return self

    @model_validator(mode="after")
    def _sms_provider_credentials(self) -> NotifySettings:
        provider = self.notify_sms_provider
        if provider == "gateway":
            return self
        need = ["ACCESS_KEY_ID", "ACCESS_KEY_SECRET"] + (
            ["APP_ID"] if provider == "tencent" else []
        )
        missing = [n for n in need if not getattr(self, f"notify_sms_{n.lower()}")]
        if missing:
            names = ", ".join(f"TONGXIN_NOTIFY_SMS_{n}" for n in missing)
            raise ValueError(f"TONGXIN_NOTIFY_SMS_PROVIDER={provider} needs {names}")
        if provider == "tencent":
            unordered = [c for c, t in self.notify_sms_templates.items() if t.params is None]
            if unordered:
                raise ValueError(
                    "Tencent SMS parameters are positional: name them in order (params) for "
                    + ", ".join(unordered)
                )
        return self

    @property
    def strict_templates(self) -> bool:
        """Whether a missing template variable is an error."""
        if self.notify_strict_templates is not None:
            return self.notify_strict_templates
        return self.env != "production"

    def timeout_for(self, channel: NotifyChannel) -> float:
        """The per-attempt timeout of a channel."""
        return self.notify_channel_timeouts.get(channel, self.notify_timeout_s)

    def concurrency_for(self, channel: NotifyChannel) -> int:
        """How many messages a channel sends at once."""
        return self.notify_channel_concurrency.get(channel, self.notify_concurrency)

    def enabled_channels(self) -> frozenset[NotifyChannel]:
        """Channels configured in this process (each channel's plug says by which settings)."""
        from services.notify.channels import PLUGS  # the channels read these settings

        return frozenset(c for c, plug in PLUGS.items() if plug.enabled(self))

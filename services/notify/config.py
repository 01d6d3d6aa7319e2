"""Notify settings (env prefix ``TONGXIN_``)."""

from pydantic import Field

from tongxin.runtime.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    """What notify needs beyond the shared settings."""

    notify_port: int = 8004
    # A default webhook that receives every staff notification (SPEC §5).
    notify_webhook_url: str | None = None
    # When set, webhook bodies are signed: X-Tongxin-Signature = hex HMAC-SHA256(ts + "." + body).
    notify_webhook_secret: str | None = None
    notify_timeout_s: float = Field(default=5.0, gt=0)
    notify_attempts: int = Field(default=3, ge=1)

"""Intake settings (env prefix ``TONGXIN_``)."""

from pydantic import Field

from tongxin.runtime.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    """What intake needs beyond the shared settings."""

    intake_port: int = 8001
    request_id_prefix: str = "YS"
    idempotency_ttl_s: int = Field(default=24 * 3600, gt=0)

"""Intake settings (env prefix ``TONGXIN_``)."""

from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from tongxin.accounts.config import AccountSettings


class IntakeSettings(AccountSettings):
    """What intake needs beyond the shared settings (and the accounts' it mounts)."""

    intake_port: int = 8001
    request_id_prefix: str = Field(default="YS", pattern=r"^[A-Z]{1,8}$")
    idempotency_ttl_s: int = Field(default=24 * 3600, gt=0)
    # Bodies larger than this are refused with 413 before they are parsed.
    intake_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Anonymous submissions (no bearer token) per client: a token bucket of
    # ``intake_anonymous_burst`` refilled at ``intake_anonymous_per_minute``; over it, 429
    # with Retry-After. On in every environment (the local platform is a real deployment);
    # the test platform and the bench turn it off. Anonymous Open311 reads have a bucket of
    # their own at five times the rate. The buckets live in the process: per replica (see
    # docs/security.md).
    intake_anonymous_limit: bool = True
    intake_anonymous_per_minute: float = Field(default=10.0, gt=0)
    intake_anonymous_burst: int = Field(default=20, ge=1)
    # Behind a reverse proxy, the client is the last X-Forwarded-For address (the one the
    # proxy appended); never trust the header when clients reach intake directly.
    intake_trust_forwarded_for: bool = False
    # Contact details (name, phone, street address) are removed this many days after a
    # request is closed or withdrawn; statistics fields stay (PIPL: shortest retention).
    intake_contact_retention_days: float = Field(default=180.0, gt=0)
    intake_retention_interval_s: float = Field(default=3600.0, gt=0)
    # Duplicate linking: same compound and category, similar text, within the window.
    duplicate_window_h: float = Field(default=72.0, gt=0)
    duplicate_threshold: float = Field(default=0.5, gt=0, le=1)
    # … compared with at most this many of the newest open ones (a read per submission)
    duplicate_candidates: int = Field(default=50, ge=1, le=1000)
    # How long after a resolution the resident may rate it (scaled by deadline_scale).
    feedback_window_s: float = Field(default=7 * 24 * 3600, gt=0)
    # Open311 posts with only a lat/long: the nearest compound within this distance.
    open311_nearest_km: float = Field(default=1.5, gt=0)
    # Keys a GeoReport client must send as ``api_key`` to post (comma-separated in the
    # environment); a caller with a bearer token needs none. Empty: no check. A client with
    # a valid key is accountable and not held to the anonymous limit.
    intake_open311_api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, repr=False
    )
    # The staff console (/console/) reaches routing and volunteer through intake's
    # same-origin proxy (/console/api/{service}/...). By default they run on this host at
    # their own ports (the same TONGXIN_ROUTING_PORT / TONGXIN_VOLUNTEER_PORT they listen
    # on); set the URLs when they run elsewhere (e.g. http://routing:8002 in Compose).
    routing_port: int = 8002
    volunteer_port: int = 8003
    console_routing_url: str | None = Field(default=None, pattern=r"^https?://")
    console_volunteer_url: str | None = Field(default=None, pattern=r"^https?://")
    console_upstream_timeout_s: float = Field(default=10.0, gt=0)

    @property
    def feedback_window_scaled_s(self) -> float:
        """The feedback window after ``TONGXIN_DEADLINE_SCALE``."""
        return self.feedback_window_s * self.deadline_scale

    @field_validator("intake_open311_api_keys", mode="before")
    @classmethod
    def _split_keys(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [k.strip() for k in v.split(",") if k.strip()]
        return v

    @property
    def anonymous_limit_enabled(self) -> bool:
        """Whether anonymous clients are rate-limited (default: yes, in every environment)."""
        return self.intake_anonymous_limit

    def open311_api_keys(self) -> list[str]:
        """The configured Open311 keys in the clear (empty: posts need none)."""
        return [k.get_secret_value() for k in self.intake_open311_api_keys]

    def console_upstreams(self) -> dict[str, str]:
        """Base URLs of the services the console's proxy forwards to."""
        return {
            "routing": self.console_routing_url or f"http://127.0.0.1:{self.routing_port}",
            "volunteer": self.console_volunteer_url or f"http://127.0.0.1:{self.volunteer_port}",
        }

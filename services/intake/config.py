"""Intake settings (env prefix ``TONGXIN_``)."""

from pydantic import Field

from tongxin.runtime.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    """What intake needs beyond the shared settings."""

    intake_port: int = 8001
    request_id_prefix: str = Field(default="YS", pattern=r"^[A-Z]{1,8}$")
    idempotency_ttl_s: int = Field(default=24 * 3600, gt=0)
    # Bodies larger than this are refused with 413 before they are parsed.
    intake_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Anonymous submissions (no bearer token) per client: a token bucket of
    # ``intake_anonymous_burst`` refilled at ``intake_anonymous_per_minute``; over it, 429
    # with Retry-After. Unset ``intake_anonymous_limit``: on in production, off otherwise.
    # The buckets live in the process: per replica (see docs/security.md).
    intake_anonymous_limit: bool | None = None
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

    @property
    def anonymous_limit_enabled(self) -> bool:
        """Whether anonymous submissions are rate-limited (default: in production)."""
        if self.intake_anonymous_limit is None:
            return self.env == "production"
        return self.intake_anonymous_limit

    def console_upstreams(self) -> dict[str, str]:
        """Base URLs of the services the console's proxy forwards to."""
        return {
            "routing": self.console_routing_url or f"http://127.0.0.1:{self.routing_port}",
            "volunteer": self.console_volunteer_url or f"http://127.0.0.1:{self.volunteer_port}",
        }

"""Settings shared by every service, read from ``TONGXIN_*`` env vars (SPEC §5).

Each service subclasses :class:`ServiceSettings` in its own ``config.py``; nothing else
reads ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _repo_root() -> Path:
    """The checkout (editable install), else the working directory (an installed package
    in a container whose WORKDIR holds ``deploy/``)."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "deploy").is_dir() else Path.cwd()


REPO_ROOT = _repo_root()
PLACEHOLDER_SECRET = "tongxin-development-secret-change-me!"  # refused outside development
MIN_SECRET_BYTES = 32  # an HS256 key at least as long as the hash (RFC 7518 §3.2)


class ServiceSettings(BaseSettings):
    """Settings every service needs; env prefix ``TONGXIN_``."""

    model_config = SettingsConfigDict(env_prefix="TONGXIN_", env_ignore_empty=True, extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    kafka_bootstrap: str = "127.0.0.1:9092"
    mongodb_uri: str = "mongodb://127.0.0.1:27017/?directConnection=true"
    # Database names are "<db_prefix><service>" so tests can isolate runs.
    db_prefix: str = "tongxin_"
    # Topic names are "<topic_prefix><contract name>"; empty in production.
    topic_prefix: str = ""
    kafka_idempotence: bool = True
    # Bearer tokens (SPEC §4): HS256 with jwt_secret (default), or RS256 with the keys of
    # an identity provider's JWKS URL. One algorithm per deployment.
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_secret: str = PLACEHOLDER_SECRET
    jwks_url: str | None = None
    jwks_cache_s: float = Field(default=300.0, gt=0)
    # When set, tokens must carry this issuer / audience.
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    deadline_scale: float = Field(default=1.0, gt=0)
    host: str = "127.0.0.1"
    log_level: str = "INFO"
    # Consumer retry policy: attempts before a record is parked on <topic>.dlq.
    consumer_max_attempts: int = Field(default=5, ge=1)
    consumer_backoff_initial_s: float = Field(default=0.2, ge=0)
    consumer_backoff_max_s: float = Field(default=5.0, ge=0)
    outbox_poll_interval_s: float = Field(default=0.5, gt=0)
    # Editable seed data (communities, units, volunteers) and the routing policy file.
    seed_dir: Path = REPO_ROOT / "deploy" / "seed"

    @model_validator(mode="after")
    def _check_auth(self) -> ServiceSettings:
        """Refuse auth settings that would be unsafe, or could not work.

        Outside development and test (i.e. in production) an HS256 deployment needs a
        real secret of at least 32 bytes (RFC 7518 §3.2); the placeholder is refused. An
        RS256 deployment needs a JWKS URL (https in production); its jwt_secret is not
        used for verification then.
        """
        if self.jwt_algorithm == "RS256":
            if not self.jwks_url:
                raise ValueError("TONGXIN_JWKS_URL is required when TONGXIN_JWT_ALGORITHM=RS256")
            if not self.jwks_url.startswith(("https://", "http://")):
                raise ValueError("TONGXIN_JWKS_URL must be an http(s) URL")
            if self.env == "production" and not self.jwks_url.startswith("https://"):
                raise ValueError("TONGXIN_JWKS_URL must be an https:// URL in production")
            return self
        if self.env == "production":
            if self.jwt_secret == PLACEHOLDER_SECRET:
                raise ValueError("TONGXIN_JWT_SECRET must be set to a real secret in production")
            if len(self.jwt_secret.encode()) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"TONGXIN_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes in production"
                )
        return self

    def topic(self, name: str) -> str:
        """The physical topic name for a contract topic name."""
        return self.topic_prefix + name

    def db_name(self, service: str) -> str:
        """The database that belongs to ``service`` (services share no collection)."""
        return self.db_prefix + service

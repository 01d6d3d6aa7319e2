"""Settings shared by every service, read from ``TONGXIN_*`` env vars (SPEC §5).

Each service subclasses :class:`ServiceSettings` in its own ``config.py``; nothing else
reads ``os.environ``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _repo_root() -> Path:
    """The checkout (editable install), else the working directory (an installed package
    in a container whose WORKDIR holds ``deploy/``)."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "deploy").is_dir() else Path.cwd()


REPO_ROOT = _repo_root()
PLACEHOLDER_SECRET = "tongxin-development-secret-change-me!"  # refused outside development
MIN_SECRET_BYTES = 32  # an HS256 key at least as long as the hash (RFC 7518 §3.2)

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]

_URI_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@")


def redact_uri(uri: str) -> str:
    """``uri`` with the password of its user-info replaced by ``***`` (safe to print)."""
    return _URI_USERINFO.sub(r"\g<scheme>\g<user>:***@", uri)


class ServiceSettings(BaseSettings):
    """Settings every service needs; env prefix ``TONGXIN_``."""

    model_config = SettingsConfigDict(env_prefix="TONGXIN_", env_ignore_empty=True, extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    kafka_bootstrap: str = "127.0.0.1:9092"
    # may carry credentials: kept out of repr (use mongodb_uri_redacted to show it)
    mongodb_uri: str = Field(default="mongodb://127.0.0.1:27017/?directConnection=true", repr=False)
    # Database names are "<db_prefix><service>" so tests can isolate runs.
    db_prefix: str = "tongxin_"
    # Topic names are "<topic_prefix><contract name>"; empty in production.
    topic_prefix: str = ""
    kafka_idempotence: bool = True
    # Transport security of every Kafka client (docs/security.md, "Transport"). SASL needs
    # a username and a password; SSL/SASL_SSL verify the broker against kafka_ssl_cafile
    # (else the system CAs); a client certificate (mutual TLS) is certfile + keyfile.
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: KafkaSaslMechanism = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # a file holding the password (a docker/k8s secret); read once, instead of the variable
    kafka_sasl_password_file: Path | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_check_hostname: bool = True
    # MongoDB credentials ride in the URI (mongodb://user:password@host/?authSource=admin);
    # or name a file holding the whole URI (a docker/k8s secret), read once at start-up.
    mongodb_uri_file: Path | None = None
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
    # At a stop, how long records in hand may take to finish before they are given up
    # (rolled back, delivered again later); keep it under the process manager's grace.
    consumer_stop_grace_s: float = Field(default=10.0, ge=0)
    # Records a consumer decides and commits together at most (one unit of work per poll).
    consumer_max_records: int = Field(default=500, ge=1)
    # This process's name among the service's replicas, unique and stable across restarts
    # (`tongxin serve` sets <host>-<port>): its consumers join their groups as static
    # members (Kafka group.instance.id), so a restarted process gets its partitions back at
    # once instead of after the killed one's session timed out. Unset: dynamic membership.
    instance: str | None = None
    outbox_poll_interval_s: float = Field(default=0.5, gt=0)
    # how long published outbox records are kept before the relay deletes them
    outbox_keep_sent_s: float = Field(default=3600.0, gt=0)
    # Retention (docs/operations.md, "Retention"): how long what grows with traffic is kept.
    # Processed-event marks must outlive Kafka's retention plus the DLQ replay window (a
    # record redelivered or replayed after its mark is gone would be handled twice);
    # `tongxin dlq replay` refuses parked records older than this without --force.
    processed_keep_s: float = Field(default=30 * 86400.0, gt=0)
    # fired and cancelled deadlines, counted from their due time
    deadlines_keep_s: float = Field(default=7 * 86400.0, gt=0)
    # how often expired documents are deleted, and the collections counted (gauge)
    retention_interval_s: float = Field(default=3600.0, gt=0)
    retention_count_interval_s: float = Field(default=60.0, gt=0)
    # How often each service counts the records waiting on the DLQs of what it consumes.
    dlq_watch_interval_s: float = Field(default=30.0, gt=0)
    # Under overload: writes (POST/PUT/PATCH/DELETE) handled at once per process, and how
    # long a write may wait — for its turn and for a database slot — before 503 ``busy``
    # (nothing stored). Consumers are not limited: their backlog waits in Kafka.
    http_max_concurrent_writes: int = Field(default=64, ge=1)
    http_write_wait_s: float = Field(default=5.0, gt=0)
    # Editable seed data (communities, units, volunteers) and the routing policy file.
    seed_dir: Path = REPO_ROOT / "deploy" / "seed"
    # The policy file: tiers, rules, category → department, routine categories, the skill
    # a category needs, the escalation chain, meetings. The one place of these facts:
    # routing decides with it, intake's catalogue shows its departments. Unset:
    # <seed_dir>/../policy/routing.json.
    routing_policy_file: Path | None = None

    def policy_path(self) -> Path:
        """The policy file in force."""
        if self.routing_policy_file is not None:
            return self.routing_policy_file
        return self.seed_dir.parent / "policy" / "routing.json"

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

    @model_validator(mode="after")
    def _check_transport(self) -> ServiceSettings:
        """Read secret files; refuse Kafka security settings that contradict each other.

        SASL needs a username and a password; SASL or TLS options given with a protocol that
        would not use them are refused rather than silently ignored (a deployment that
        believes it authenticates must not run in plaintext); TLS files must exist.
        """
        if self.kafka_sasl_password_file is not None:
            if self.kafka_sasl_password is not None:
                raise ValueError(
                    "set TONGXIN_KAFKA_SASL_PASSWORD or TONGXIN_KAFKA_SASL_PASSWORD_FILE, not both"
                )
            secret = _read_secret(self.kafka_sasl_password_file, "TONGXIN_KAFKA_SASL_PASSWORD_FILE")
            self.kafka_sasl_password = SecretStr(secret)
        if self.mongodb_uri_file is not None:
            self.mongodb_uri = _read_secret(self.mongodb_uri_file, "TONGXIN_MONGODB_URI_FILE")
        protocol = self.kafka_security_protocol
        sasl = protocol.startswith("SASL_")
        tls = protocol.endswith("SSL")
        if sasl:
            if not self.kafka_sasl_username:
                raise ValueError(
                    f"TONGXIN_KAFKA_SECURITY_PROTOCOL={protocol} needs TONGXIN_KAFKA_SASL_USERNAME"
                )
            if self.kafka_sasl_password is None or not self.kafka_sasl_password.get_secret_value():
                raise ValueError(
                    f"TONGXIN_KAFKA_SECURITY_PROTOCOL={protocol} needs "
                    "TONGXIN_KAFKA_SASL_PASSWORD (or TONGXIN_KAFKA_SASL_PASSWORD_FILE)"
                )
            if (
                self.env == "production"
                and protocol == "SASL_PLAINTEXT"
                and self.kafka_sasl_mechanism == "PLAIN"
            ):
                raise ValueError(
                    "SASL PLAIN over SASL_PLAINTEXT sends the password in clear text; use "
                    "SCRAM-SHA-256/512 or SASL_SSL in production"
                )
        elif self.kafka_sasl_username or self.kafka_sasl_password is not None:
            raise ValueError(
                "TONGXIN_KAFKA_SASL_USERNAME/PASSWORD are set but "
                f"TONGXIN_KAFKA_SECURITY_PROTOCOL={protocol} does not use SASL "
                "(use SASL_PLAINTEXT or SASL_SSL)"
            )
        files = {
            "TONGXIN_KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
            "TONGXIN_KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
            "TONGXIN_KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile,
        }
        given = {name: path for name, path in files.items() if path is not None}
        if not tls and (given or self.kafka_ssl_key_password is not None):
            raise ValueError(
                f"TLS files are set but TONGXIN_KAFKA_SECURITY_PROTOCOL={protocol} does not use "
                "TLS (use SSL or SASL_SSL)"
            )
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            raise ValueError("TONGXIN_KAFKA_SSL_KEYFILE needs TONGXIN_KAFKA_SSL_CERTFILE")
        for name, path in given.items():
            if not path.is_file():
                raise ValueError(f"{name}: no such file: {path}")
        return self

    @property
    def mongodb_uri_redacted(self) -> str:
        """The database URI with its password masked, for output and logs."""
        return redact_uri(self.mongodb_uri)

    def topic(self, name: str) -> str:
        """The physical topic name for a contract topic name."""
        return self.topic_prefix + name

    def db_name(self, service: str) -> str:
        """The database that belongs to ``service`` (services share no collection)."""
        return self.db_prefix + service


def _read_secret(path: Path, name: str) -> str:
    """The stripped contents of a secret file; a clear error when it cannot be read."""
    try:
        value = path.read_text("utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{name}: cannot read {path}: {exc.strerror}") from exc
    if not value:
        raise ValueError(f"{name}: {path} is empty")
    return value

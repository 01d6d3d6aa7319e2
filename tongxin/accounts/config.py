"""The accounts' settings (env prefix ``TONGXIN_``): sign-in sessions and throttling, and
the county's identity provider when people may also sign in through it (OpenID Connect).

The service that mounts the accounts (intake) inherits them into its own settings class,
so one ``Settings`` object still describes a process; ``tongxin users`` reads them alone.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, SecretStr, model_validator

from tongxin.accounts.domain.throttle import Limit
from tongxin.runtime.settings import ServiceSettings

# the service whose database holds the accounts (the front door that serves the console)
HOME_SERVICE = "intake"


class AccountSettings(ServiceSettings):
    """What sign-in needs beyond the shared settings."""

    # How long a sign-in lasts (the session cookie's token expires then).
    session_ttl_s: int = Field(default=8 * 3600, ge=60, le=7 * 24 * 3600)
    # Failed sign-ins per account name within the window before it is locked.
    signin_max_failures: int = Field(default=5, ge=1)
    signin_window_s: float = Field(default=15 * 60, gt=0)
    signin_lockout_s: float = Field(default=15 * 60, gt=0)
    # … and per client address (an office behind one NAT shares it: a higher limit).
    signin_client_max_failures: int = Field(default=30, ge=1)
    # Audit records (they hold client addresses) are kept this long (PIPL: no longer than
    # needed); expired sign-in counters and old records are removed every interval.
    account_audit_retention_days: float = Field(default=180.0, gt=0)
    accounts_housekeeping_interval_s: float = Field(default=3600.0, gt=0)

    # OpenID Connect sign-in through the county's identity provider (off unless the issuer
    # is set): its issuer URL (discovery), this platform's client id and secret there, the
    # claim whose value is an account's login name, the scopes asked, and the callback URL
    # registered with the provider (default: this service's own /v1/session/oidc/callback
    # as the request reached it; set it behind a reverse proxy).
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_claim: str = "preferred_username"
    oidc_scope: str = "openid profile"
    oidc_redirect_uri: str | None = None
    oidc_timeout_s: float = Field(default=10.0, gt=0)

    @property
    def oidc_enabled(self) -> bool:
        """Whether the console offers sign-in through the identity provider."""
        return self.oidc_issuer is not None

    @model_validator(mode="after")
    def _check_oidc(self) -> AccountSettings:
        """An identity provider needs a client id (and https outside development and test)."""
        if self.oidc_issuer is None:
            return self
        if not self.oidc_client_id:
            raise ValueError("TONGXIN_OIDC_CLIENT_ID is required when TONGXIN_OIDC_ISSUER is set")
        if self.jwt_algorithm != "HS256":  # the session is the platform's own token
            raise ValueError("TONGXIN_OIDC_ISSUER needs TONGXIN_JWT_ALGORITHM=HS256")
        for name, url in (("ISSUER", self.oidc_issuer), ("REDIRECT_URI", self.oidc_redirect_uri)):
            if url is None:
                continue
            if not url.startswith(("https://", "http://")):
                raise ValueError(f"TONGXIN_OIDC_{name} must be an http(s) URL")
            if self.env == "production" and not url.startswith("https://"):
                raise ValueError(f"TONGXIN_OIDC_{name} must be an https:// URL in production")
        return self

    @property
    def secure_cookies(self) -> bool:
        """Cookies are ``Secure`` except in development and test (plain http locally)."""
        return self.env not in ("development", "test")

    def account_limit(self) -> Limit:
        """The lockout rule per account name."""
        return Limit(
            self.signin_max_failures,
            timedelta(seconds=self.signin_window_s),
            timedelta(seconds=self.signin_lockout_s),
        )

    def client_limit(self) -> Limit:
        """The lockout rule per client address."""
        return Limit(
            self.signin_client_max_failures,
            timedelta(seconds=self.signin_window_s),
            timedelta(seconds=self.signin_lockout_s),
        )

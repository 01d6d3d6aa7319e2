"""The accounts' settings (env prefix ``TONGXIN_``): sign-in sessions and throttling.

The service that mounts the accounts (intake) inherits them into its own settings class,
so one ``Settings`` object still describes a process; ``tongxin users`` reads them alone.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

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

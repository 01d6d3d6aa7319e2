"""The accounts' Prometheus metrics, on the mounting service's registry (bounded labels):
sign-in outcomes and lockouts, so a guessing attack shows on a dashboard."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

# the outcomes a sign-in or password change is counted under (a fixed set)
OUTCOMES = (
    "ok",
    "bad_password",
    "unknown_name",
    "inactive",
    "locked",
    "password_change_required",
)

_BY_REGISTRY: dict[int, AccountMetrics] = {}


class AccountMetrics:
    """Counters of sign-ins by outcome and of lockouts."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.signins = Counter(
            "tongxin_signins_total",
            "Password sign-ins by outcome (ok, bad_password, unknown_name, inactive, locked, "
            "password_change_required)",
            ["outcome"],
            registry=registry,
        )
        self.lockouts = Counter(
            "tongxin_signin_lockouts_total",
            "Account names or client addresses locked after too many failed sign-ins",
            registry=registry,
        )

    @classmethod
    def of(cls, registry: CollectorRegistry) -> AccountMetrics:
        """The metrics on ``registry``, registered once however often a lifespan runs."""
        found = _BY_REGISTRY.get(id(registry))
        if found is None:
            found = _BY_REGISTRY[id(registry)] = cls(registry)
        return found

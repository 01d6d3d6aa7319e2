"""Routing settings (env prefix ``TONGXIN_``)."""

from pathlib import Path

from pydantic import Field

from tongxin.runtime.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    """What routing needs beyond the shared settings."""

    routing_port: int = 8002
    # The routing policy file; unset: <seed_dir>/../policy/routing.json when present,
    # else the built-in defaults (equal to deploy/policy/routing.json).
    routing_policy_file: Path | None = None
    # Deadline scanner: how often each replica looks for due deadlines, and how long a
    # claim is held before another replica may take it over (seconds, not scaled).
    routing_deadline_tick_s: float = Field(default=0.5, gt=0)
    routing_deadline_lease_s: float = Field(default=30.0, gt=0)
    # Unit KPI gauges: the window they cover (days) and how often they are recomputed.
    routing_kpi_window_days: float = Field(default=30.0, gt=0)
    routing_gauge_refresh_s: float = Field(default=30.0, gt=0)

    def policy_path(self) -> Path | None:
        """The policy file in force, or None for the built-in defaults."""
        if self.routing_policy_file is not None:
            return self.routing_policy_file
        default = self.seed_dir.parent / "policy" / "routing.json"
        return default if default.is_file() else None

"""Routing settings (env prefix ``TONGXIN_``)."""

from pydantic import Field

from tongxin.runtime.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    """What routing needs beyond the shared settings."""

    routing_port: int = 8002
    # Deadline scanner: how often each replica looks for due deadlines, and how long a
    # claim is held before another replica may take it over (seconds, not scaled).
    routing_deadline_tick_s: float = Field(default=0.5, gt=0)
    routing_deadline_lease_s: float = Field(default=30.0, gt=0)
    # Unit KPI gauges: the window they cover (days) and how often they are recomputed.
    routing_kpi_window_days: float = Field(default=30.0, gt=0)
    routing_gauge_refresh_s: float = Field(default=30.0, gt=0)

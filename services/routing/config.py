"""Routing settings (env prefix ``TONGXIN_``)."""

from tongxin.runtime.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    """What routing needs beyond the shared settings."""

    routing_port: int = 8002

"""Volunteer settings (env prefix ``TONGXIN_``)."""

from datetime import timedelta

from pydantic import Field

from tongxin.runtime.settings import ServiceSettings


class VolunteerSettings(ServiceSettings):
    """What volunteer needs beyond the shared settings."""

    volunteer_port: int = 8003
    # How long a volunteer has to accept an offer (real time; scaled by deadline_scale).
    offer_accept_s: float = Field(default=30 * 60, gt=0)

    @property
    def accept_window(self) -> timedelta:
        """The scaled accept deadline of an offer."""
        return timedelta(seconds=self.offer_accept_s * self.deadline_scale)

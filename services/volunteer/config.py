"""Volunteer settings (env prefix ``TONGXIN_``)."""

from datetime import timedelta

from pydantic import Field, field_validator

from services.volunteer.domain.availability import Window, parse_activity_days
from tongxin.runtime.settings import ServiceSettings

DAY_S = 86400.0


class VolunteerSettings(ServiceSettings):
    """What volunteer needs beyond the shared settings. Durations are real time and are
    multiplied by ``deadline_scale``."""

    volunteer_port: int = 8003
    # How long a volunteer has to accept an offer (TONGXIN_OFFER_ACCEPT_S).
    offer_accept_s: float = Field(default=30 * 60, gt=0)
    # Fixed activity days that count as everyone's availability: "day@HH:MM-HH:MM", comma
    # separated, day 0 = Monday … 6 = Sunday. Default: volunteer service on Sunday afternoons.
    activity_days: str = "6@14:00-18:00"
    # Fairness looks at tasks and hours in this many (unscaled) days.
    fairness_window_days: int = Field(default=30, ge=1, le=365)
    # A care visit must be recorded within this window after it falls due, or it is overdue.
    care_visit_window_s: float = Field(default=2 * DAY_S, gt=0)
    # One cadence "day" of a care recipient, in seconds (scaled like every duration).
    care_day_s: float = Field(default=DAY_S, gt=0)
    # Deadline scheduler: scan interval and lease (real seconds, not scaled).
    deadline_tick_s: float = Field(default=0.5, gt=0)
    deadline_lease_s: float = Field(default=30.0, gt=0)
    # How often utilisation and overdue gauges are refreshed from the database.
    gauge_refresh_s: float = Field(default=10.0, gt=0)

    @field_validator("activity_days")
    @classmethod
    def _valid_activity_days(cls, v: str) -> str:
        parse_activity_days(v)
        return v

    def scaled(self, seconds: float) -> timedelta:
        """A real-time duration multiplied by ``deadline_scale``."""
        return timedelta(seconds=seconds * self.deadline_scale)

    @property
    def accept_window(self) -> timedelta:
        """The scaled accept deadline of an offer."""
        return self.scaled(self.offer_accept_s)

    @property
    def care_visit_window(self) -> timedelta:
        """The scaled window in which a due care visit must be recorded."""
        return self.scaled(self.care_visit_window_s)

    def care_cadence(self, days: int) -> timedelta:
        """The scaled interval of a visit cadence of ``days`` days."""
        return self.scaled(days * self.care_day_s)

    @property
    def activity_windows(self) -> tuple[Window, ...]:
        """The fixed activity days as availability windows."""
        return parse_activity_days(self.activity_days)

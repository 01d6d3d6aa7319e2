"""Notify's metrics on the service registry: by channel and status, latency, retries."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class NotifyMetrics:
    """Label values are bounded: channels (6) and statuses (planned, deferred, sent, failed)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.notifications = Counter(
            "tongxin_notifications_total",
            "Notifications by channel and status (planned, deferred, sent, failed, skipped)",
            ["channel", "status"],
            registry=registry,
        )
        self.delivery_seconds = Histogram(
            "tongxin_notification_delivery_seconds",
            "From the moment a delivery could go out (planned or released) to delivered",
            ["channel"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=registry,
        )
        self.attempt_seconds = Histogram(
            "tongxin_notification_attempt_seconds",
            "One send attempt, by outcome (ok, error)",
            ["channel", "outcome"],
            registry=registry,
        )
        self.retries = Counter(
            "tongxin_notification_retries_total",
            "Send attempts that failed and were retried",
            ["channel"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "tongxin_notification_in_flight",
            "Messages being sent right now",
            ["channel"],
            registry=registry,
        )

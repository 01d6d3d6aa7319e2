"""Intake's own Prometheus metrics, registered on the service registry (bounded labels)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class IntakeMetrics:
    """Counters of submissions, refusals, feedback, withdrawals and duplicate links."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.submitted = Counter(
            "tongxin_requests_submitted_total",
            "Requests accepted by intake",
            ["channel", "category"],
            registry=registry,
        )
        self.rejected = Counter(
            "tongxin_requests_rejected_total",
            "Submissions refused as invalid, by way in (http, open311, inbound)",
            ["source"],
            registry=registry,
        )
        self.idempotent_replays = Counter(
            "tongxin_requests_idempotent_replays_total",
            "Submissions answered from a stored Idempotency-Key response",
            registry=registry,
        )
        self.inbound_duplicates = Counter(
            "tongxin_requests_inbound_duplicates_total",
            "Inbound events skipped because (ce_source, ce_id) was seen before",
            registry=registry,
        )
        self.duplicates_linked = Counter(
            "tongxin_requests_duplicates_linked_total",
            "New requests linked to a similar open one (duplicate_of)",
            registry=registry,
        )
        self.feedback = Counter(
            "tongxin_request_feedback_total",
            "Residents' ratings of resolved requests (回访)",
            ["rating"],
            registry=registry,
        )
        self.withdrawn = Counter(
            "tongxin_requests_withdrawn_total",
            "Requests withdrawn before resolution",
            registry=registry,
        )

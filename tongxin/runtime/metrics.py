"""Prometheus metrics with an injected registry; names carry the ``tongxin_`` prefix."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Every metric a service exports. Label values are bounded (types, topics, routes)."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.service = service
        r = self.registry
        self.http_requests = Counter(
            "tongxin_http_requests_total",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "tongxin_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=r,
        )
        self.events_consumed = Counter(
            "tongxin_events_consumed_total",
            "Records handled by a consumer, by outcome (handled, ignored, dead_lettered)",
            ["consumer", "topic", "type", "outcome"],
            registry=r,
        )
        self.handler_seconds = Histogram(
            "tongxin_event_handler_seconds",
            "From the start of a record's batch until its effects committed (retries included)",
            ["consumer", "type"],
            registry=r,
        )
        self.consumer_batch = Histogram(
            "tongxin_consumer_batch_records",
            "Records decided and committed together in one unit of work, per poll",
            ["consumer"],
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
            registry=r,
        )
        self.event_age = Histogram(
            "tongxin_event_age_seconds",
            "From an event's time (its producer's commit) until this consumer handled it",
            ["consumer", "type"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
            registry=r,
        )
        self.handler_retries = Counter(
            "tongxin_event_handler_retries_total",
            "Handler attempts that failed and were retried",
            ["consumer", "type"],
            registry=r,
        )
        self.events_published = Counter(
            "tongxin_events_published_total",
            "Events published by the outbox relay",
            ["topic", "type"],
            registry=r,
        )
        self.producer_renewals = Counter(
            "tongxin_kafka_producer_renewals_total",
            "Kafka producers replaced after a send failed for good (sequence out of order)",
            registry=r,
        )
        self.outbox_pending = Gauge(
            "tongxin_outbox_pending",
            "Outbox records not yet published (last relay pass)",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "tongxin_consumer_lag",
            "Records behind the partition's end, per consumer group and partition",
            ["consumer", "topic", "partition"],
            registry=r,
        )
        self.dlq = Counter(
            "tongxin_dlq_records_total",
            "Records parked on a dead-letter topic",
            ["consumer", "topic"],
            registry=r,
        )
        self.dlq_pending = Gauge(
            "tongxin_dlq_pending",
            "Records on a dead-letter topic this service consumes from, not yet replayed",
            ["topic"],
            registry=r,
        )
        self.db_documents = Gauge(
            "tongxin_db_documents",
            "Documents in each collection of the service's database (estimated count)",
            ["collection"],
            registry=r,
        )
        self.retention_deleted = Counter(
            "tongxin_retention_deleted_total",
            "Documents the retention sweeper deleted once their window was over",
            ["collection"],
            registry=r,
        )
        self.uow_batch = Histogram(
            "tongxin_unit_of_work_inputs",
            "Inputs (records, requests, deadlines) decided and committed in one transaction",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
            registry=r,
        )
        self.uow_seconds = Histogram(
            "tongxin_unit_of_work_seconds",
            "From the first read of a batch until its transaction committed",
            registry=r,
        )

    def observe_batch(self, inputs: int, seconds: float) -> None:
        """One committed unit of work."""
        self.uow_batch.observe(inputs)
        self.uow_seconds.observe(seconds)

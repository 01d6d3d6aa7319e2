"""The topic registry of SPEC §3: names, owners and the event types each carries."""

from __future__ import annotations

from dataclasses import dataclass

DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True, slots=True)
class Topic:
    """One Kafka topic of the published contract."""

    name: str
    owner: str
    event_types: tuple[str, ...]
    partitions: int = 6


REQUESTS = Topic(
    "tongxin.requests.v1",
    "intake",
    ("request.submitted", "request.feedback_given", "request.withdrawn"),
)
CASES = Topic(
    "tongxin.cases.v1",
    "routing",
    (
        "case.routed",
        "case.acknowledged",
        "case.progressed",
        "case.resolved",
        "case.returned",
        "case.escalated",
        "case.reopened",
        "case.closed",
    ),
)
VOLUNTEER_TASKS = Topic(
    "tongxin.volunteer.tasks.v1",
    "volunteer",
    (
        "task.offered",
        "task.accepted",
        "task.declined",
        "task.expired",
        "task.completed",
        "task.unmatched",
        "care.visit_overdue",
    ),
)
VOLUNTEER_REGISTRY = Topic(
    "tongxin.volunteer.registry.v1",
    "volunteer",
    ("volunteer.registered", "volunteer.deactivated"),
)
NOTIFICATIONS = Topic(
    "tongxin.notifications.v1",
    "notify",
    ("notification.sent", "notification.failed"),
)
INBOUND_REQUESTS = Topic(
    "tongxin.inbound.requests.v1",
    "other platforms",
    ("request.submitted",),
)
INBOUND_CASE_COMMANDS = Topic(
    "tongxin.inbound.case-commands.v1",
    "department systems",
    ("case.acknowledge", "case.progress", "case.resolve", "case.return"),
)
PUBLIC_STATUS = Topic("tongxin.public.status.v1", "intake", ("request.status",))

TOPICS: tuple[Topic, ...] = (
    REQUESTS,
    CASES,
    VOLUNTEER_TASKS,
    VOLUNTEER_REGISTRY,
    NOTIFICATIONS,
    INBOUND_REQUESTS,
    INBOUND_CASE_COMMANDS,
    PUBLIC_STATUS,
)


def dlq_topic(topic: str) -> str:
    """Name of the dead-letter topic that parks records of ``topic``."""
    return topic + DLQ_SUFFIX


def all_topic_names(prefix: str = "") -> list[str]:
    """Every topic and its DLQ, optionally prefixed (tests isolate by prefix)."""
    names: list[str] = []
    for t in TOPICS:
        names += [prefix + t.name, prefix + dlq_topic(t.name)]
    return names

"""The published language of Tongxin: topics, enums and event models.

Integrators may import this package; it has no I/O and depends only on pydantic
and the CloudEvents SDK.
"""

from tongxin.contracts.envelope import Envelope, decode_record, encode_record
from tongxin.contracts.events import (
    EVENT_MODELS,
    CaseRouted,
    Event,
    NotificationSent,
    RequestSubmitted,
    TaskOffered,
    TaskUnmatched,
    event_model_for,
)
from tongxin.contracts.topics import DLQ_SUFFIX, TOPICS, Topic, dlq_topic

__all__ = [
    "DLQ_SUFFIX",
    "EVENT_MODELS",
    "TOPICS",
    "CaseRouted",
    "Envelope",
    "Event",
    "NotificationSent",
    "RequestSubmitted",
    "TaskOffered",
    "TaskUnmatched",
    "Topic",
    "decode_record",
    "dlq_topic",
    "encode_record",
    "event_model_for",
]

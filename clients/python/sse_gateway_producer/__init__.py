"""Publish events to sse-gateway streams with a history id.

Plain ``PUBLISH`` still reaches live browsers, but without an id a
reconnecting browser cannot resume and a late one misses what came before.
This package runs the gateway's own publish script (the same Redis command
sequence as its POST routes), so every event gets an ``id:`` and is kept in
the capped per-stream history::

    from sse_gateway_producer import Producer

    producer = Producer.from_url("redis://127.0.0.1:6379")
    published = producer.publish_execution_event("exec-1", '{"event_type":"pod_running"}')
    published.id, published.channel  # ("1732712345678-0", "sse:exec:exec-1")
"""

from .contract import PUBLISH_SCRIPT, PUBLISH_SCRIPT_SHA1, Event, ProducerConfig, prepare_event, valid_id
from .errors import (
    EventTooLargeError,
    ExecutionIdMismatchError,
    InvalidEventError,
    InvalidIdError,
    MissingEventTypeError,
    NotJsonObjectError,
    ProducerError,
    RedisPublishError,
    ReservedFieldError,
)
from .producer import AsyncProducer, Producer, Published

__all__ = [
    "AsyncProducer",
    "Event",
    "EventTooLargeError",
    "ExecutionIdMismatchError",
    "InvalidEventError",
    "InvalidIdError",
    "MissingEventTypeError",
    "NotJsonObjectError",
    "PUBLISH_SCRIPT",
    "PUBLISH_SCRIPT_SHA1",
    "Producer",
    "ProducerConfig",
    "ProducerError",
    "Published",
    "RedisPublishError",
    "ReservedFieldError",
    "prepare_event",
    "valid_id",
]

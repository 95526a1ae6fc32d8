"""Typed errors, so a producer can tell a bad event (its own bug: retrying
cannot help) from Redis trouble (retrying may)."""

from __future__ import annotations


class ProducerError(Exception):
    """Base of every error this package raises."""


class InvalidIdError(ProducerError, ValueError):
    """An execution or user id the gateway would refuse in a path (400).

    Ids name Redis channels and keys, so the gateway accepts only 1 to 128
    characters from ``A-Z a-z 0-9 - _ . :``, not only dots; an event on any
    other channel could never be streamed.
    """

    def __init__(self, what: str, value: str) -> None:
        self.what = what
        self.value = value
        super().__init__(
            f"invalid {what} {value!r}: use 1 to 128 characters from "
            "A-Z a-z 0-9 - _ . : (not only dots)"
        )


class InvalidEventError(ProducerError, ValueError):
    """The event breaks a rule of the gateway's publish route; nothing was
    published. ``detail`` says which, in the route's words."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class NotJsonObjectError(InvalidEventError):
    """Not UTF-8, not JSON, not a JSON object, or a top-level key twice."""


class MissingEventTypeError(InvalidEventError):
    """An execution event without a non-empty string ``event_type``."""


class ReservedFieldError(InvalidEventError):
    """The event has ``_sse_id``, the field the history id travels in."""


class ExecutionIdMismatchError(InvalidEventError):
    """The event's ``execution_id`` is not the execution it is published to."""


class EventTooLargeError(InvalidEventError):
    """More bytes than ``max_event_bytes`` (the route's 413)."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"event is {size} bytes; at most {limit} are allowed")


class RedisPublishError(ProducerError):
    """Redis failed (connection, timeout, an error reply). The original
    ``redis.exceptions.RedisError`` is ``__cause__``. After a connection
    lost mid-command the event may or may not have been published."""

"""The gateway's publish contract, mirrored from its Rust source.

Everything here is pure (no Redis I/O) so it can be checked against the
gateway without a server. Each item names where the gateway defines it:

- ``PUBLISH_SCRIPT`` and the history key: ``src/rules/history.rs``
  (``PUBLISH_SCRIPT``, ``key``, ``publish_command``);
- event validation: ``src/rules/events.rs`` (``prepare_publish``) and
  ``src/json.rs`` (``object_fields``);
- id rules: ``src/http/routes.rs`` (``valid_id``);
- prefixes, limits and their defaults: ``src/config.rs``.

An event published with these exact bytes and arguments is streamed by the
gateway exactly as one published through its POST routes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from .errors import (
    EventTooLargeError,
    ExecutionIdMismatchError,
    InvalidIdError,
    MissingEventTypeError,
    NotJsonObjectError,
    ReservedFieldError,
)

#: Atomic append + publish, byte for byte the gateway's ``PUBLISH_SCRIPT``.
#: ``KEYS[1]`` history stream; ``ARGV``: channel, event (a JSON object),
#: approximate max length, TTL seconds, publish command and (optional) the
#: gateway's ``max_event_bytes``: an event longer than that plus 512 bytes is
#: refused with an error reply and stored nowhere. Returns the entry id.
PUBLISH_SCRIPT = """if ARGV[6] and #ARGV[2] > tonumber(ARGV[6]) + 512 then return redis.error_reply('ERR event larger than max_event_bytes') end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'data', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
local rest = string.sub(ARGV[2], 2)
local sep = ','
if string.match(rest, '^%s*}') then sep = '' end
redis.call(ARGV[5] or 'PUBLISH', ARGV[1], '{"_sse_id":"' .. id .. '"' .. sep .. rest)
return id"""

#: What ``SCRIPT LOAD`` answers and ``EVALSHA`` takes (Redis' SHA1 of the text).
PUBLISH_SCRIPT_SHA1 = hashlib.sha1(PUBLISH_SCRIPT.encode()).hexdigest()

#: The field the script puts first in the live message; producers may not send it.
ID_FIELD = "_sse_id"

#: The longest id the gateway accepts in a path (``routes::MAX_ID_LEN``).
MAX_ID_LEN = 128

#: The largest ``max_event_bytes`` the gateway accepts (half its 8 MiB reply cap).
MAX_EVENT_BYTES_LIMIT = 8 * 1024 * 1024 // 2

_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,%d}\Z" % MAX_ID_LEN)
_JSON_WHITESPACE = " \t\n\r"

ScriptArgs = Tuple[List[str], List[Union[str, bytes]]]
"""``KEYS`` and ``ARGV`` of one run of the publish script."""

Event = Union[str, bytes, bytearray, memoryview, Mapping[str, Any]]
"""An event: JSON text (``str`` or bytes, published as given, never
re-serialized) or a mapping (serialized compactly)."""


def _bounded(name: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, not {value!r}")
    return value


@dataclass(frozen=True)
class ProducerConfig:
    """The gateway settings a producer must agree with; the defaults are the
    gateway's, so a producer and a gateway left at defaults match. Set the
    same values as the gateway's variables of the same (upper-case) name."""

    exec_channel_prefix: str = "sse:exec:"
    notif_channel_prefix: str = "sse:notif:"
    history_key_prefix: str = "history:"
    history_max_len: int = 1000
    history_ttl_seconds: int = 86_400
    max_event_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        # The gateway's bounds (src/config.rs): a value it would refuse at
        # start-up is refused here too rather than published with.
        _bounded("history_max_len", self.history_max_len, 1, 1_000_000)
        _bounded("history_ttl_seconds", self.history_ttl_seconds, 1, 30 * 86_400)
        _bounded("max_event_bytes", self.max_event_bytes, 64, MAX_EVENT_BYTES_LIMIT)

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "ProducerConfig":
        """Reads the portable gateway's environment variable names
        (``EXEC_CHANNEL_PREFIX``, ``HISTORY_MAX_LEN``, ...), so one
        deployment config can feed both. Unset or blank means the default,
        as in the gateway."""
        env = os.environ if environ is None else environ
        base = cls()
        values: Dict[str, Any] = {}
        for name, default in vars(base).items():
            raw = env.get(name.upper())
            if raw is None or not raw.strip():
                continue
            if isinstance(default, int):
                try:
                    values[name] = int(raw.strip())
                except ValueError:
                    raise ValueError(f"{name.upper()} must be a whole number, not {raw!r}") from None
            else:
                values[name] = raw
        return cls(**values)

    def execution_channel(self, execution_id: str) -> str:
        """``sse:exec:{execution_id}``; the id must pass the gateway's rules."""
        return self.exec_channel_prefix + check_id("execution_id", execution_id)

    def notification_channel(self, user_id: str) -> str:
        """``sse:notif:{user_id}``; the id must pass the gateway's rules."""
        return self.notif_channel_prefix + check_id("user_id", user_id)

    def history_key(self, channel: str) -> str:
        """``history:{<channel>}``: the hash tag keeps it in the channel's
        Redis Cluster slot, so the script touches one shard."""
        return f"{self.history_key_prefix}{{{channel}}}"

    def script_args(self, channel: str, event: bytes, sharded: bool) -> "ScriptArgs":
        """``KEYS`` and ``ARGV`` of the publish script, as the gateway's
        ``history::publish_command`` builds them: the publish command is
        always passed, ``SPUBLISH`` on Redis Cluster (sharded pub/sub, what
        the gateway subscribes with there), else ``PUBLISH``."""
        return (
            [self.history_key(channel)],
            [
                channel,
                event,
                str(self.history_max_len),
                str(self.history_ttl_seconds),
                "SPUBLISH" if sharded else "PUBLISH",
                str(self.max_event_bytes),
            ],
        )


def valid_id(value: str) -> bool:
    """The gateway's id rule: 1-128 of ``A-Z a-z 0-9 - _ . :``, not only dots."""
    return isinstance(value, str) and bool(_ID_RE.match(value)) and value.strip(".") != ""


def check_id(what: str, value: str) -> str:
    """``value`` if it is a valid id, else :class:`InvalidIdError`."""
    if not valid_id(value):
        raise InvalidIdError(what, value)
    return value


class _TopLevel(List[Tuple[str, Any]]):
    """The top-level object's ``(key, value)`` pairs, in text order."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)


def _has_lone_surrogate(text: str) -> bool:
    """True when a ``\\uD800``-``\\uDFFF`` escape is not half of a pair.
    serde_json refuses those where the gateway reads a string, Python
    accepts them; refusing them always keeps every event this package
    publishes one the gateway takes."""
    if "\\" not in text:
        return False
    pending_high = False
    last_end = -1
    for m in _ESCAPE.finditer(text):
        esc = m.group(1)
        unit = int(esc[1:], 16) if esc[0] == "u" and len(esc) == 5 else None
        adjacent = m.start() == last_end
        if pending_high and not (adjacent and unit is not None and 0xDC00 <= unit <= 0xDFFF):
            return True
        if pending_high:
            pending_high = False
        elif unit is not None and 0xD800 <= unit <= 0xDBFF:
            pending_high = True
        elif unit is not None and 0xDC00 <= unit <= 0xDFFF:
            return True
        last_end = m.end()
    return pending_high


def _parse_object(text: str) -> _TopLevel:
    """One JSON object with unique top-level keys (``json::object_fields``)."""
    try:
        value = json.loads(
            text,
            object_pairs_hook=_TopLevel,
            parse_constant=_reject_constant,
        )
    except (ValueError, RecursionError) as e:
        raise NotJsonObjectError(f"event is not valid JSON: {e}") from None
    if not isinstance(value, _TopLevel) or not text.startswith("{"):
        raise NotJsonObjectError("event must be a JSON object")
    if _has_lone_surrogate(text):
        raise NotJsonObjectError("event is not valid JSON: lone surrogate in a \\u escape")
    seen = set()
    for key, _ in value:
        if key in seen:
            raise NotJsonObjectError(f"event repeats the top-level key {key!r}")
        seen.add(key)
    return value


def event_bytes(event: Event) -> bytes:
    """The event as the bytes a POST body would carry: JSON text as given,
    a mapping serialized compactly (UTF-8, no spaces, no NaN)."""
    if isinstance(event, (bytes, bytearray, memoryview)):
        return bytes(event)
    if isinstance(event, str):
        try:
            return event.encode("utf-8")
        except UnicodeEncodeError:
            raise NotJsonObjectError("event is not valid UTF-8") from None
    if isinstance(event, Mapping):
        try:
            text = json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            return text.encode("utf-8")
        except (TypeError, ValueError) as e:  # UnicodeEncodeError is a ValueError
            raise NotJsonObjectError(f"event is not JSON-serializable: {e}") from None
    raise NotJsonObjectError(f"event must be JSON text or a mapping, not {type(event).__name__}")


def prepare_event(event: Event, max_event_bytes: int, execution_id: Optional[str] = None) -> bytes:
    """The bytes to publish, checked as the gateway's publish routes check a
    body (``events::prepare_publish``), in the same order: size (413), UTF-8,
    one JSON object with unique top-level keys, no ``_sse_id``; for an
    execution event (``execution_id`` given) a non-empty string
    ``event_type`` and an ``execution_id`` equal to the target, appended
    when absent. The text is published as given minus surrounding JSON
    whitespace, never re-serialized: big integers, ``1.10``, key order and
    line breaks reach browsers unchanged, as through the POST route."""
    raw = event_bytes(event)
    if len(raw) > max_event_bytes:
        raise EventTooLargeError(len(raw), max_event_bytes)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NotJsonObjectError("event is not valid UTF-8") from None
    text = text.strip(_JSON_WHITESPACE)
    fields = _parse_object(text)
    picked = {k: v for k, v in fields if k in (ID_FIELD, "event_type", "execution_id")}
    if ID_FIELD in picked:
        raise ReservedFieldError(f"field {ID_FIELD} is reserved")
    if execution_id is None:
        return text.encode("utf-8")
    event_type = picked.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise MissingEventTypeError("event_type must be a non-empty string")
    if "execution_id" not in picked:
        # A valid object ends with "}"; it has event_type, so a comma follows.
        return (text[:-1] + ',"execution_id":' + json.dumps(execution_id) + "}").encode("utf-8")
    if picked["execution_id"] != execution_id or not isinstance(picked["execution_id"], str):
        raise ExecutionIdMismatchError(f'execution_id must be "{execution_id}", as in the path')
    return text.encode("utf-8")

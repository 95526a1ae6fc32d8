"""The contract mirrored from the gateway's source, checked without servers:
the script and defaults against the Rust text itself, the validation rules
case by case (the e2e tests check the same bodies against the real route)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sse_gateway_producer import (
    PUBLISH_SCRIPT,
    EventTooLargeError,
    ExecutionIdMismatchError,
    InvalidIdError,
    MissingEventTypeError,
    NotJsonObjectError,
    ProducerConfig,
    ReservedFieldError,
    prepare_event,
    valid_id,
)

REPO = Path(__file__).resolve().parents[3]


def rust(path: str) -> str:
    return (REPO / path).read_text()


def test_script_is_the_gateways_byte_for_byte() -> None:
    m = re.search(r'pub const PUBLISH_SCRIPT: &str = r#"(.*?)"#;', rust("src/rules/history.rs"), re.S)
    assert m, "PUBLISH_SCRIPT not found in src/rules/history.rs"
    assert PUBLISH_SCRIPT == m.group(1)


def test_defaults_are_the_gateways() -> None:
    config = rust("src/config.rs")
    c = ProducerConfig()
    for name, value in [
        ("exec_channel_prefix", c.exec_channel_prefix),
        ("notif_channel_prefix", c.notif_channel_prefix),
        ("history_key_prefix", c.history_key_prefix),
    ]:
        assert f'"{name}" => Kind::Text("{value}")' in config, name
    assert '"history_max_len" => Kind::Number { default: 1000, min: 1, max: 1_000_000 }' in config
    assert (
        '"history_ttl_seconds" => Kind::Number { default: 86_400, min: 1, max: 30 * 86_400 }'
        in config
    )
    assert re.search(r'"max_event_bytes" => Kind::Number \{\s*default: 64 \* 1024,\s*min: 64,', config)
    assert (c.history_max_len, c.history_ttl_seconds, c.max_event_bytes) == (1000, 86_400, 65_536)
    # Always passes the publish command, SPUBLISH on a cluster.
    assert 'if sharded { "SPUBLISH" } else { "PUBLISH" }' in rust("src/rules/history.rs")


def test_script_arguments_and_names() -> None:
    c = ProducerConfig()
    assert c.execution_channel("e-1") == "sse:exec:e-1"
    assert c.notification_channel("u:1") == "sse:notif:u:1"
    keys, args = c.script_args("sse:exec:e-1", b'{"a":1}', sharded=False)
    assert keys == ["history:{sse:exec:e-1}"]
    assert args == ["sse:exec:e-1", b'{"a":1}', "1000", "86400", "PUBLISH", "65536"]
    assert c.script_args("c", b"{}", sharded=True)[1][-2] == "SPUBLISH"


def test_config_from_env_uses_the_gateways_variable_names() -> None:
    c = ProducerConfig.from_env(
        {
            "EXEC_CHANNEL_PREFIX": "x:",
            "HISTORY_MAX_LEN": " 50 ",
            "MAX_EVENT_BYTES": "128",
            "NOTIF_CHANNEL_PREFIX": "  ",
        }
    )
    assert (c.exec_channel_prefix, c.history_max_len, c.max_event_bytes) == ("x:", 50, 128)
    assert c.notif_channel_prefix == "sse:notif:"
    for env in [{"HISTORY_MAX_LEN": "0"}, {"MAX_EVENT_BYTES": "63"}, {"HISTORY_TTL_SECONDS": "x"}]:
        with pytest.raises(ValueError):
            ProducerConfig.from_env(env)


@pytest.mark.parametrize(
    "good", ["a", "A-z_0.9:x", "x" * 128, ".a", "a.."]
)
def test_valid_ids(good: str) -> None:
    assert valid_id(good)


@pytest.mark.parametrize("bad", ["", ".", "...", "x" * 129, "a b", "a/b", "a*", "é", "a\n"])
def test_invalid_ids(bad: str) -> None:
    assert not valid_id(bad)
    with pytest.raises(InvalidIdError):
        ProducerConfig().execution_channel(bad)


def test_text_is_published_as_given_minus_outer_whitespace() -> None:
    body = ' \n{"event_type":"x","execution_id":"e1","n":12345678901234567890,"f":1.10}\r\n\t'
    assert prepare_event(body, 1024, "e1") == body.strip().encode()
    multi = '{\n  "event_type": "x",\n  "execution_id": "e1"\n}'
    assert prepare_event(multi, 1024, "e1") == multi.encode()


def test_missing_execution_id_is_appended() -> None:
    assert prepare_event('{"event_type":"x"}', 1024, "e1") == b'{"event_type":"x","execution_id":"e1"}'
    assert prepare_event('{"event_type":"x" }', 1024, "e1") == b'{"event_type":"x" ,"execution_id":"e1"}'


def test_mappings_are_serialized_compactly() -> None:
    got = prepare_event({"event_type": "x", "s": "é"}, 1024, "e1")
    assert got == '{"event_type":"x","s":"é","execution_id":"e1"}'.encode()
    assert prepare_event({}, 1024) == b"{}"


def test_notifications_need_no_event_type() -> None:
    assert prepare_event("{ }", 64) == b"{ }"
    assert prepare_event(b'{"title":"t","event_type":5}', 64) == b'{"title":"t","event_type":5}'


@pytest.mark.parametrize(
    "body, error",
    [
        (b"\xff{}", NotJsonObjectError),
        ("nope", NotJsonObjectError),
        ("[1]", NotJsonObjectError),
        ("42", NotJsonObjectError),
        ('{"a":1} x', NotJsonObjectError),
        ('{"event_type":"x","a":NaN}', NotJsonObjectError),
        ('{"event_type":"x","a":1,"a":2}', NotJsonObjectError),
        ('{"event_type":"x","event\\u005ftype":"y"}', NotJsonObjectError),
        ('{"event_type":"x","s":"\\ud800"}', NotJsonObjectError),
        ('{"event_type":"x","s":"\\udc00\\ud800"}', NotJsonObjectError),
        ('{"event_type":"x","_sse_id":"1-0"}', ReservedFieldError),
        ('{"execution_id":"e1"}', MissingEventTypeError),
        ('{"event_type":""}', MissingEventTypeError),
        ('{"event_type":7}', MissingEventTypeError),
        ('{"event_type":"x","execution_id":"e2"}', ExecutionIdMismatchError),
        ('{"event_type":"x","execution_id":null}', ExecutionIdMismatchError),
        ({"event_type": "x", "bad": object()}, NotJsonObjectError),
        (5, NotJsonObjectError),
    ],
)
def test_invalid_execution_events(body: object, error: type) -> None:
    with pytest.raises(error):
        prepare_event(body, 1024, "e1")  # type: ignore[arg-type]


def test_paired_surrogates_and_escaped_backslashes_pass() -> None:
    for s in ['"\\ud83d\\ude00"', '"\\\\ud800"', '"\\\\\\ud83d\\ude00"']:
        prepare_event('{"event_type":"x","s":%s}' % s, 1024, "e1")


def test_size_is_counted_on_the_raw_bytes() -> None:
    body = '{"event_type":"x","pad":"' + "p" * 40 + '"}'
    n = len(body.encode())
    assert prepare_event(body, n, "e1")
    with pytest.raises(EventTooLargeError) as e:
        prepare_event(body + " ", n, "e1")
    assert (e.value.size, e.value.limit) == (n + 1, n)

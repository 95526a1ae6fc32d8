"""The package against a real Redis and the real gateway component: what a
browser reading the stream notices, and that an event published from
Python is the same on Redis and on the wire as one POSTed to the gateway."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Iterator, List

import pytest
import redis

from conftest import Gateway, RedisServer, new_id, put_execution
from sse_gateway_producer import (
    AsyncProducer,
    EventTooLargeError,
    ExecutionIdMismatchError,
    InvalidEventError,
    InvalidIdError,
    MissingEventTypeError,
    NotJsonObjectError,
    Producer,
    ProducerConfig,
    Published,
    RedisPublishError,
    ReservedFieldError,
)


@pytest.fixture
def producer(redis_server: RedisServer) -> Iterator[Producer]:
    p = Producer.from_url(redis_server.url)
    yield p
    p.close()


def exec_path(execution_id: str) -> str:
    return f"/api/v1/events/executions/{execution_id}"


def event(kind: str, execution_id: str, **extra: object) -> str:
    return json.dumps({"event_type": kind, "execution_id": execution_id, **extra}, separators=(",", ":"))


def test_a_browser_sees_each_event_once_in_order_with_its_id(gateway: Gateway, redis_server: RedisServer, producer: Producer) -> None:
    eid, user = new_id(), new_id("user")
    put_execution(redis_server.client(), eid, user)
    stream = gateway.stream(exec_path(eid), user)
    status = stream.next()
    assert status is not None and json.loads(status.data)["event_type"] == "status" and status.id is None
    sent: List[Published] = []
    bodies = [event("pod_created", eid, n=1), event("pod_running", eid, n=2), event("result_stored", eid, result=None)]
    for body in bodies:
        sent.append(producer.publish_execution_event(eid, body))
    assert all(p.channel == f"sse:exec:{eid}" for p in sent)
    got = stream.take(3)
    assert [e.data for e in got] == bodies
    assert [e.id for e in got] == [p.id for p in sent]
    assert len({p.id for p in sent}) == 3
    # result_stored is terminal: the gateway finishes the body.
    assert stream.next() is None


def test_reconnect_with_last_event_id_gets_the_later_ones(gateway: Gateway, redis_server: RedisServer, producer: Producer) -> None:
    eid, user = new_id(), new_id("user")
    put_execution(redis_server.client(), eid, user)
    first = gateway.stream(exec_path(eid), user)
    first.take(1)  # status
    ids = [producer.publish_execution_event(eid, event("pod_running", eid, n=n)).id for n in range(3)]
    seen = first.take(3)
    assert [e.id for e in seen] == ids
    first.close()  # the browser drops off after event 2 of 3 ...
    # ... while it is away one more event is published.
    ids.append(producer.publish_execution_event(eid, event("execution_completed", eid, n=3)).id)
    again = gateway.stream(exec_path(eid), user, last_event_id=ids[1])
    assert json.loads(again.take(1)[0].data)["event_type"] == "status"
    resumed = again.take(2)
    assert [(e.id, json.loads(e.data)["n"]) for e in resumed] == [(ids[2], 2), (ids[3], 3)]
    live = producer.publish_execution_event(eid, {"event_type": "result_failed", "n": 4})
    last = again.take(1)[0]
    assert (last.id, json.loads(last.data)) == (live.id, {"event_type": "result_failed", "n": 4, "execution_id": eid})
    assert again.next() is None


def test_a_late_browser_gets_the_history(gateway: Gateway, redis_server: RedisServer, producer: Producer) -> None:
    eid, user = new_id(), new_id("user")
    put_execution(redis_server.client(), eid, user)
    sent = [producer.publish_execution_event(eid, event(kind, eid)) for kind in ("execution_queued", "pod_created", "execution_failed")]
    stream = gateway.stream(exec_path(eid), user)
    got = stream.take(4)[1:]
    assert [e.id for e in got] == [p.id for p in sent]
    assert [json.loads(e.data)["event_type"] for e in got] == ["execution_queued", "pod_created", "execution_failed"]
    assert stream.next() is None


def test_notifications_carry_an_id(gateway: Gateway, producer: Producer) -> None:
    user = new_id("user")
    stream = gateway.stream("/api/v1/events/notifications/stream", user)
    time.sleep(0.3)  # no history is read without Last-Event-ID: let it subscribe
    body = '{"title":"Build finished","level":"info"}'
    published = producer.publish_notification(user, body)
    assert published.channel == f"sse:notif:{user}"
    got = stream.next()
    assert got is not None and (got.event, got.id, got.data) == ("notification", published.id, body)
    stream.close()


def _live_without_id(message: bytes) -> bytes:
    prefix, rest = message.split(b'"', 4)[:4], message.split(b'"', 4)[4]
    assert prefix[1] == b"_sse_id"
    return b"{" + rest.lstrip(b",")


def test_the_same_bytes_as_the_gateways_post_route(gateway: Gateway, redis_server: RedisServer, producer: Producer) -> None:
    """Redis sees the same live message (but for the id) and the same
    history entry, and the browser the same frames, whichever way an
    event is published."""
    eid, user = new_id(), new_id("user")
    client = redis_server.client()
    put_execution(client, eid, user)
    stream = gateway.stream(exec_path(eid), user)
    stream.take(1)
    sub = client.pubsub(ignore_subscribe_messages=True)
    sub.subscribe(f"sse:exec:{eid}")
    bodies = [
        b'{"event_type":"pod_running"}',
        b'  {\n  "event_type": "pod_running",\n  "big": 123456789012345678901234567890,\n  "f": 1.10, "s": "\xc3\xa9"\n}\n',
        b'{"event_type":"pod_running","execution_id":"%s" }' % eid.encode(),
    ]
    ids = []
    for body in bodies:
        status, answer = gateway.post_event(exec_path(eid), body)
        assert status == 202, answer
        via_post = json.loads(answer)
        via_python = producer.publish_execution_event(eid, body)
        assert via_post["channel"] == via_python.channel
        ids += [via_post["id"], via_python.id]
    messages = []
    deadline = time.monotonic() + 10
    while len(messages) < 2 * len(bodies):
        assert time.monotonic() < deadline, f"only {messages}"
        m = sub.get_message(timeout=1)  # None for the (ignored) subscribe reply too
        if m is not None:
            messages.append(m["data"])
    sub.close()
    for a, b in zip(messages[::2], messages[1::2]):
        assert _live_without_id(a) == _live_without_id(b)
    history = client.xrange(f"history:{{sse:exec:{eid}}}")
    assert [entry_id.decode() for entry_id, _ in history] == ids
    datas = [fields[b"data"] for _, fields in history]
    assert datas[::2] == datas[1::2]
    assert 0 < client.ttl(f"history:{{sse:exec:{eid}}}") <= 86_400
    frames = stream.take(2 * len(bodies))
    assert [f.id for f in frames] == ids
    assert [f.data for f in frames[::2]] == [f.data for f in frames[1::2]]
    stream.close()


INVALID = [
    (b"not json", NotJsonObjectError, 400),
    (b"[1,2]", NotJsonObjectError, 400),
    (b'{"event_type":"x","a":1,"a":2}', NotJsonObjectError, 400),
    (b'{"execution_id":"E"}', MissingEventTypeError, 400),
    (b'{"event_type":""}', MissingEventTypeError, 400),
    (b'{"event_type":"x","_sse_id":"1-0"}', ReservedFieldError, 400),
    (b'{"event_type":"x","execution_id":"other"}', ExecutionIdMismatchError, 400),
    (b'{"event_type":"x","pad":"' + b"p" * 70_000 + b'"}', EventTooLargeError, 413),
]


@pytest.mark.parametrize("body, error, route_status", INVALID, ids=[e.__name__ + str(i) for i, (_, e, _) in enumerate(INVALID)])
def test_invalid_events_raise_and_publish_nothing(
    gateway: Gateway, redis_server: RedisServer, producer: Producer, body: bytes, error: type, route_status: int
) -> None:
    eid, user = new_id(), new_id("user")
    body = body.replace(b'"E"', b'"%s"' % eid.encode())
    client = redis_server.client()
    put_execution(client, eid, user)
    stream = gateway.stream(exec_path(eid), user)
    stream.take(1)
    with pytest.raises(error) as raised:
        producer.publish_execution_event(eid, body)
    assert isinstance(raised.value, InvalidEventError) and raised.value.detail
    # The gateway's own route refuses the same body.
    assert gateway.post_event(exec_path(eid), body)[0] == route_status
    assert client.exists(f"history:{{sse:exec:{eid}}}") == 0
    # The next event the browser gets is the valid one published after.
    ok = producer.publish_execution_event(eid, '{"event_type":"result_stored"}')
    got = stream.take(1)[0]
    assert got.id == ok.id
    assert stream.next() is None


def test_an_invalid_id_publishes_nothing(producer: Producer, gateway: Gateway) -> None:
    for bad in ["a/b", "..", "x" * 129, ""]:
        with pytest.raises(InvalidIdError):
            producer.publish_execution_event(bad, '{"event_type":"x"}')
        with pytest.raises(InvalidIdError):
            producer.publish_notification(bad, "{}")


def test_the_script_is_reloaded_after_noscript(gateway: Gateway, redis_server: RedisServer, producer: Producer) -> None:
    eid, user = new_id(), new_id("user")
    client = redis_server.client()
    put_execution(client, eid, user)
    producer.publish_execution_event(eid, '{"event_type":"pod_created"}')
    client.script_flush()  # what a Redis restart or failover does to the cache
    again = producer.publish_execution_event(eid, '{"event_type":"execution_timeout"}')
    stream = gateway.stream(exec_path(eid), user)
    got = stream.take(3)
    assert got[2].id == again.id and json.loads(got[2].data)["event_type"] == "execution_timeout"
    assert stream.next() is None


def test_redis_errors_are_typed() -> None:
    from conftest import free_port

    nowhere = Producer.from_url(f"redis://127.0.0.1:{free_port()}", socket_connect_timeout=1)
    with pytest.raises(RedisPublishError) as raised:
        nowhere.publish_notification("u1", "{}")
    assert isinstance(raised.value.__cause__, redis.RedisError)


def test_async_producer(gateway: Gateway, redis_server: RedisServer) -> None:
    eid, user = new_id(), new_id("user")
    put_execution(redis_server.client(), eid, user)
    stream = gateway.stream(exec_path(eid), user)
    stream.take(1)

    async def publish() -> List[Published]:
        p = AsyncProducer.from_url(redis_server.url)
        try:
            return [
                await p.publish_execution_event(eid, b'{"event_type":"pod_running"}'),
                await p.publish_execution_event(eid, {"event_type": "result_stored", "result": None}),
            ]
        finally:
            await p.aclose()

    sent = asyncio.run(publish())
    got = stream.take(2)
    assert [e.id for e in got] == [p.id for p in sent]
    assert got[1].data == f'{{"event_type":"result_stored","result":null,"execution_id":"{eid}"}}'
    assert stream.next() is None


def test_changed_prefixes_and_limits_agree_through_from_env(redis_server: RedisServer) -> None:
    """One set of variables configures both sides."""
    env = {
        "EXEC_CHANNEL_PREFIX": "py:exec:",
        "NOTIF_CHANNEL_PREFIX": "py:notif:",
        "HISTORY_KEY_PREFIX": "py:hist:",
        "EXEC_KEY_PREFIX": "py:rec:",
        "HISTORY_TTL_SECONDS": "600",
        "MAX_EVENT_BYTES": "1024",
    }
    gw = Gateway(redis_server.url, env)
    try:
        client = redis_server.client()
        producer = Producer(client, ProducerConfig.from_env(env))
        eid, user = new_id(), new_id("user")
        put_execution(client, eid, user, prefix="py:rec:")
        stream = gw.stream(exec_path(eid), user)
        stream.take(1)
        big = '{"event_type":"x","pad":"' + "p" * 1100 + '"}'
        with pytest.raises(EventTooLargeError):
            producer.publish_execution_event(eid, big)
        assert gw.post_event(exec_path(eid), big.encode())[0] == 413
        done = producer.publish_execution_event(eid, '{"event_type":"result_stored"}')
        assert done.channel == f"py:exec:{eid}"
        assert 0 < client.ttl(f"py:hist:{{py:exec:{eid}}}") <= 600
        got = stream.take(1)[0]
        assert got.id == done.id
        assert stream.next() is None
        notif = gw.stream("/api/v1/events/notifications/stream", user, last_event_id="0-0")
        sent = producer.publish_notification(user, '{"title":"t"}')
        assert sent.channel == f"py:notif:{user}"
        got = notif.next()
        assert got is not None and (got.id, got.data) == (sent.id, '{"title":"t"}')
        notif.close()
    finally:
        gw.stop()

"""On a real three-node Redis Cluster (as tests/cluster.rs starts one), with
the gateway's ``REDIS_CLUSTER=true``: the gateway subscribes with
``SSUBSCRIBE`` on each channel's shard, so a browser gets live events only
if the package publishes with ``SPUBLISH``, on that shard."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Iterator, List

import pytest
from redis.cluster import RedisCluster

from conftest import Gateway, RedisServer, free_port, new_id, put_execution
from sse_gateway_producer import AsyncProducer, Producer


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port + 10_000 > 65_535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10_000))
                return port
            except OSError:
                continue


@pytest.fixture(scope="module")
def cluster() -> Iterator[List[RedisServer]]:
    workdir = tempfile.mkdtemp(prefix="sse-py-cluster-")
    nodes: List[RedisServer] = []
    try:
        for _ in range(3):
            port = cluster_port()
            nodes.append(RedisServer(
                ("--cluster-enabled", "yes", "--cluster-node-timeout", "5000",
                 "--cluster-config-file", f"nodes-{port}.conf"),
                port=port, workdir=workdir,
            ))
        subprocess.run(
            ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in nodes],
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        for n in nodes:
            while b"cluster_state:ok" not in n.client().execute_command("CLUSTER", "INFO"):
                assert time.monotonic() < deadline, "cluster did not become ok"
                time.sleep(0.1)
        yield nodes
    finally:
        for n in nodes:
            n.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster_gateway(cluster: List[RedisServer]) -> Iterator[Gateway]:
    gw = Gateway(cluster[0].url, {"REDIS_CLUSTER": "true"})
    yield gw
    gw.stop()


def test_events_reach_browsers_on_every_shard_with_ids(cluster: List[RedisServer], cluster_gateway: Gateway) -> None:
    producer = Producer.from_url(cluster[0].url, cluster=True)
    assert producer.sharded
    client = RedisCluster.from_url(cluster[0].url)
    # Executions until three shards are covered (the slot decides the node).
    owners = {}
    while len(owners) < 3:
        eid = new_id()
        node = client.get_node_from_key(f"sse:exec:{eid}")
        owners.setdefault(node.name, eid)
    user = new_id("user")
    streams = {}
    for eid in owners.values():
        put_execution(client, eid, user)
        streams[eid] = cluster_gateway.stream(f"/api/v1/events/executions/{eid}", user)
        streams[eid].take(1)
    for eid, stream in streams.items():
        a = producer.publish_execution_event(eid, '{"event_type":"pod_running"}')
        b = producer.publish_execution_event(eid, {"event_type": "result_stored", "result": None})
        got = stream.take(2)
        assert [e.id for e in got] == [a.id, b.id]
        assert json.loads(got[0].data) == {"event_type": "pod_running", "execution_id": eid}
        assert stream.next() is None
    # A reconnect resumes from the history on the channel's shard.
    eid = next(iter(owners.values()))
    first = producer.publish_execution_event(eid, '{"event_type":"pod_created"}')
    resumed = cluster_gateway.stream(f"/api/v1/events/executions/{eid}", user, last_event_id=first.id)
    resumed.take(1)

    async def publish_async() -> str:
        p = AsyncProducer.from_url(cluster[0].url, cluster=True)
        try:
            assert p.sharded
            return (await p.publish_execution_event(eid, '{"event_type":"execution_failed"}')).id
        finally:
            await p.aclose()

    last_id = asyncio.run(publish_async())
    got = resumed.take(1)[0]
    assert (got.id, json.loads(got.data)["event_type"]) == (last_id, "execution_failed")
    assert resumed.next() is None
    producer.close()
    client.close()


"""Publishing through the gateway's own Redis command sequence.

The gateway's POST routes run one Lua script (``contract.PUBLISH_SCRIPT``)
that appends the event to the channel's capped history, refreshes the
history's expiry and publishes it with the entry id; the id becomes the
SSE ``id:`` that lets a reconnecting browser resume without a gap. These
classes run the same script with the same arguments, straight against
Redis: no HTTP hop, no service token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple, Union

import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisError

from .contract import PUBLISH_SCRIPT, PUBLISH_SCRIPT_SHA1, Event, ProducerConfig, ScriptArgs, prepare_event
from .errors import RedisPublishError


@dataclass(frozen=True)
class Published:
    """What the gateway's publish route answers (``202 {"id","channel"}``):
    the history entry id (the ``id:`` browsers see) and the channel."""

    id: str
    channel: str


def _text(reply: Any) -> str:
    return reply.decode() if isinstance(reply, (bytes, bytearray)) else str(reply)


class _Base:
    """What both producers share: the config, the target naming and the
    choice of publish command."""

    def __init__(self, client: Any, config: Optional[ProducerConfig], sharded: bool) -> None:
        self.client = client
        self.config = config or ProducerConfig()
        #: ``SPUBLISH`` (Redis Cluster's sharded pub/sub, which the gateway
        #: subscribes with when ``redis_cluster`` is on) instead of ``PUBLISH``.
        self.sharded = sharded
        self._script_loaded = False

    def _execution(self, execution_id: str, event: Event) -> Tuple[str, ScriptArgs]:
        channel = self.config.execution_channel(execution_id)
        data = prepare_event(event, self.config.max_event_bytes, execution_id)
        return channel, self.config.script_args(channel, data, self.sharded)

    def _notification(self, user_id: str, notification: Event) -> Tuple[str, ScriptArgs]:
        channel = self.config.notification_channel(user_id)
        data = prepare_event(notification, self.config.max_event_bytes)
        return channel, self.config.script_args(channel, data, self.sharded)


class Producer(_Base):
    """Publishes execution events and notifications with a history id.

    Give it a ``redis.Redis`` (or ``redis.cluster.RedisCluster``: then it
    publishes with ``SPUBLISH``, as the gateway with ``redis_cluster=true``
    expects) or build one with :meth:`from_url`. Thread-safe as the client is.
    """

    def __init__(
        self,
        client: Union[redis.Redis, RedisCluster],
        config: Optional[ProducerConfig] = None,
    ) -> None:
        super().__init__(client, config, isinstance(client, RedisCluster))

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        cluster: bool = False,
        config: Optional[ProducerConfig] = None,
        **client_options: Any,
    ) -> "Producer":
        """A producer on a new client for ``url`` (``redis://`` or
        ``rediss://``); ``cluster=True`` uses redis-py's cluster client."""
        client = (RedisCluster if cluster else redis.Redis).from_url(url, **client_options)
        return cls(client, config)

    def publish_execution_event(self, execution_id: str, event: Event) -> Published:
        """Publishes ``event`` to ``sse:exec:{execution_id}`` and records it
        in the capped history. Raises :class:`InvalidIdError` or
        :class:`InvalidEventError` (nothing published) or
        :class:`RedisPublishError`."""
        channel, (keys, args) = self._execution(execution_id, event)
        return Published(self._run(keys, args), channel)

    def publish_notification(self, user_id: str, notification: Event) -> Published:
        """Publishes ``notification`` (any JSON object) to
        ``sse:notif:{user_id}`` with a history id. Errors as for
        :meth:`publish_execution_event`."""
        channel, (keys, args) = self._notification(user_id, notification)
        return Published(self._run(keys, args), channel)

    def load_script(self) -> None:
        """``SCRIPT LOAD`` (on every primary of a cluster). Called once by
        the first publish and again after ``NOSCRIPT`` (a Redis restart,
        ``SCRIPT FLUSH``, a failover to a node that never saw it)."""
        try:
            sha = _text(self.client.script_load(PUBLISH_SCRIPT))
        except RedisError as e:
            raise RedisPublishError(f"SCRIPT LOAD failed: {e}") from e
        if sha != PUBLISH_SCRIPT_SHA1:
            raise RedisPublishError(f"SCRIPT LOAD answered {sha}, expected {PUBLISH_SCRIPT_SHA1}")
        self._script_loaded = True

    def _run(self, keys: List[str], args: List[Union[str, bytes]]) -> str:
        if not self._script_loaded:
            self.load_script()
        try:
            try:
                reply = self.client.evalsha(PUBLISH_SCRIPT_SHA1, len(keys), *keys, *args)
            except NoScriptError:
                # NOSCRIPT means the script did not run: safe to load and retry.
                self.load_script()
                reply = self.client.evalsha(PUBLISH_SCRIPT_SHA1, len(keys), *keys, *args)
        except RedisError as e:
            raise RedisPublishError(f"publish to {_text(args[0])} failed: {e}") from e
        return _text(reply)

    def close(self) -> None:
        """Closes the client (for producers made by :meth:`from_url`)."""
        self.client.close()


class AsyncProducer(_Base):
    """:class:`Producer` for asyncio services, on ``redis.asyncio.Redis``
    (or ``redis.asyncio.cluster.RedisCluster``: then ``SPUBLISH``)."""

    def __init__(
        self,
        client: Union[redis.asyncio.Redis, AsyncRedisCluster],
        config: Optional[ProducerConfig] = None,
    ) -> None:
        super().__init__(client, config, isinstance(client, AsyncRedisCluster))

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        cluster: bool = False,
        config: Optional[ProducerConfig] = None,
        **client_options: Any,
    ) -> "AsyncProducer":
        """As :meth:`Producer.from_url`, with redis-py's asyncio clients."""
        client = (AsyncRedisCluster if cluster else redis.asyncio.Redis).from_url(url, **client_options)
        return cls(client, config)

    async def publish_execution_event(self, execution_id: str, event: Event) -> Published:
        """See :meth:`Producer.publish_execution_event`."""
        channel, (keys, args) = self._execution(execution_id, event)
        return Published(await self._run(keys, args), channel)

    async def publish_notification(self, user_id: str, notification: Event) -> Published:
        """See :meth:`Producer.publish_notification`."""
        channel, (keys, args) = self._notification(user_id, notification)
        return Published(await self._run(keys, args), channel)

    async def load_script(self) -> None:
        """See :meth:`Producer.load_script`."""
        try:
            sha = _text(await self.client.script_load(PUBLISH_SCRIPT))
        except RedisError as e:
            raise RedisPublishError(f"SCRIPT LOAD failed: {e}") from e
        if sha != PUBLISH_SCRIPT_SHA1:
            raise RedisPublishError(f"SCRIPT LOAD answered {sha}, expected {PUBLISH_SCRIPT_SHA1}")
        self._script_loaded = True

    async def _run(self, keys: List[str], args: List[Union[str, bytes]]) -> str:
        if not self._script_loaded:
            await self.load_script()
        try:
            try:
                reply = await self.client.evalsha(PUBLISH_SCRIPT_SHA1, len(keys), *keys, *args)
            except NoScriptError:
                await self.load_script()
                reply = await self.client.evalsha(PUBLISH_SCRIPT_SHA1, len(keys), *keys, *args)
        except RedisError as e:
            raise RedisPublishError(f"publish to {_text(args[0])} failed: {e}") from e
        return _text(reply)

    async def aclose(self) -> None:
        """Closes the client (for producers made by :meth:`from_url`)."""
        await self.client.aclose()

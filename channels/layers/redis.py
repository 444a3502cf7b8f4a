"""The Redis channel layer: the same contract as the shm layer, across several hosts.

Select it with ``CHANNEL_LAYERS["default"]["BACKEND"] = "asgi_redis.RedisChannelLayer"``
(or ``channels.layers.redis.RedisChannelLayer``); ``CONFIG`` takes asgi_redis's keys.
Every operation is one Lua script run atomically by Redis (key layout and invariants in
:mod:`channels.layers._redis_scripts`), so a message is delivered at most once.

Sharding (several ``hosts``): a channel lives on the shard its name hashes to, a
process channel ``pre!loc`` on the shard of ``pre!`` (so all replies of one interface
process live on one host and are read with one call), a group on the shard of its
name. Blocking receives wait on per-queue wake-up lists with BLPOP (sync) or
``redis.asyncio`` (async); nothing polls.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from typing import Any, Iterable, Mapping, Sequence

import redis.exceptions

from shmlayer.contract import (
    BaseChannelLayer,
    ChannelFull,
    channel_list,
    deserialize,
    random_suffix,
    validate_channel_name,
    validate_group_name,
)

from ._redis_crypto import make_crypter
from ._redis_shards import RedisLayerConnectionError, Shard, make_shards, shard_index, translate_errors

__all__ = ["RedisChannelLayer", "RedisLayerConnectionError"]

logger = logging.getLogger(__name__)

#: Longest a blocking ``receive`` waits before returning ``(None, None)`` (INTERFACES.md).
BLOCKING_WAIT = 1.0
#: With several shards a sync receive waits on each in turn for this long (BLPOP, no spin).
_SHARD_SLICE = 0.1

_Result = tuple[str | None, dict[str, Any] | None]


def _queue_of(channel: str) -> str:
    # 'pre!loc' -> 'pre!': one Redis queue per process, as the owner receives on 'pre!'
    bang = channel.find("!")
    return channel if bang < 0 else channel[: bang + 1]


def _glob_to_lua(pattern: object) -> str | None:
    # channel_capacity globs as anchored Lua patterns, so a group send can pick each
    # member's capacity inside its one script; None when it cannot be translated
    # (a compiled regex or a [set]) and the client must look capacities up itself.
    if not isinstance(pattern, str) or "[" in pattern or "]" in pattern:
        return None
    out = []
    for char in pattern:
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char in "^$()%.+-":
            out.append("%" + char)
        else:
            out.append(char)
    return "^" + "".join(out) + "$"


def _escape_glob(text: str) -> str:
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


class RedisChannelLayer(BaseChannelLayer):
    """ASGI 1 channel layer on one or several Redis servers.

    Args:
        hosts: ``redis://`` URLs and/or ``(host, port)`` tuples; several = shards.
            Default ``[("localhost", 6379)]``.
        prefix: prefix of every key, so several projects can share one Redis.
        expiry: seconds an unread message lives after its own send.
        group_expiry: seconds a membership lives after its last ``group_add``.
        capacity: live messages a channel holds before ``send`` raises ``ChannelFull``
            (a process channel counts per full name).
        channel_capacity: ``{glob or compiled regex: capacity}``; first match wins.
        symmetric_encryption_keys: encrypt message bodies at rest (needs ``cryptography``).
        max_message_size: largest serialised message in bytes (default 1 MiB).
        connect_timeout: seconds to wait for a TCP connection to Redis.
        socket_timeout: seconds to wait for any Redis reply.
        connection_kwargs: extra redis-py connection options (``password``, ``ssl_*``...).

    Raises:
        TypeError: a bad or unknown option.
        ImportError: encryption keys given without the ``cryptography`` package.
    """

    extensions = ["groups", "flush", "statistics", "asyncio"]
    ConnectionError = RedisLayerConnectionError

    def __init__(
        self,
        hosts: Sequence[Any] | str | None = None,
        prefix: str = "asgi:",
        expiry: float = 60,
        group_expiry: int = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[Any, int] | None = None,
        symmetric_encryption_keys: Sequence[str | bytes] | None = None,
        max_message_size: int = 1024 * 1024,
        connect_timeout: float = 2.0,
        socket_timeout: float = 5.0,
        connection_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(
                f"Unknown RedisChannelLayer option(s) {sorted(kwargs)}; known: hosts, prefix, expiry, "
                "group_expiry, capacity, channel_capacity, symmetric_encryption_keys, max_message_size, "
                "connect_timeout, socket_timeout, connection_kwargs"
            )
        super().__init__(expiry=expiry, group_expiry=group_expiry, capacity=capacity, channel_capacity=channel_capacity,
                         max_message_size=max_message_size)
        if not isinstance(prefix, str) or not prefix:
            raise TypeError(f"prefix must be a non-empty str, not {prefix!r}")
        for name, value in (("connect_timeout", connect_timeout), ("socket_timeout", socket_timeout)):
            if not isinstance(value, (int, float)) or value <= 0:
                raise TypeError(f"{name} must be a positive number of seconds, not {value!r}")
        if socket_timeout <= BLOCKING_WAIT:
            raise TypeError(f"socket_timeout must exceed the {BLOCKING_WAIT} s blocking receive wait")
        self.prefix = prefix
        self.crypter = make_crypter(symmetric_encryption_keys)
        self.shards: list[Shard] = make_shards(hosts, connect_timeout, socket_timeout, connection_kwargs)
        self._expiry_ms = max(1, int(self.expiry * 1000))
        self._group_expiry_ms = self.group_expiry * 1000
        self._epoch: int | None = None
        lua = [(_glob_to_lua(pattern), capacity) for pattern, capacity in (channel_capacity or {}).items()]
        self._lua_capacities: list[Any] | None = (
            None if any(pattern is None for pattern, _ in lua) else [part for pair in lua for part in pair]
        )

    # -- helpers ---------------------------------------------------------------------------

    def _shard_of(self, name: str) -> int:
        return shard_index(name, len(self.shards))

    def _run(self, index: int, script: str, *args: Any) -> Any:
        shard = self.shards[index]
        with translate_errors(shard.label):
            return shard.scripts[script](args=[self.prefix, *args])

    async def _run_async(self, index: int, script: str, *args: Any) -> Any:
        shard = self.shards[index]
        with translate_errors(shard.label):
            _, found = shard.async_client()
            return await found[script](args=[self.prefix, *args])

    def _apply_drops(self, origin: int, drops: Sequence[bytes]) -> None:
        # Scripts already removed the memberships held on their own shard; with several
        # shards the group may live elsewhere. Best effort: the caller's operation is done.
        if len(self.shards) == 1:
            return
        for group, channel in zip(drops[0::2], drops[1::2]):
            index = self._shard_of(group.decode())
            if index != origin:
                try:
                    self._run(index, "GROUP_DISCARD", group, channel, "1", "0")
                except RedisLayerConnectionError as exc:
                    logger.warning("could not drop %r from group %r: %s", channel, group, exc)

    async def _apply_drops_async(self, origin: int, drops: Sequence[bytes]) -> None:
        if len(self.shards) == 1:
            return
        for group, channel in zip(drops[0::2], drops[1::2]):
            index = self._shard_of(group.decode())
            if index != origin:
                try:
                    await self._run_async(index, "GROUP_DISCARD", group, channel, "1", "0")
                except RedisLayerConnectionError as exc:
                    logger.warning("could not drop %r from group %r: %s", channel, group, exc)

    def _encode(self, message: Any) -> bytes:
        data = self.encode_message(message)
        return self.crypter.encrypt(data) if self.crypter else data

    def _decode(self, channel: str, body: bytes) -> dict[str, Any]:
        if self.crypter:
            body = self.crypter.decrypt(body, channel)
        return deserialize(body)

    def _receive_plan(self, channels: Iterable[str]) -> dict[int, list[str]]:
        # validated, de-duplicated queue names per shard, each list shuffled so a busy
        # channel cannot starve a quiet one (asgi1.md §4)
        plan: dict[int, list[str]] = {}
        for channel in dict.fromkeys(channel_list(channels)):
            validate_channel_name(channel, receive=True)
            plan.setdefault(self._shard_of(channel), []).append(channel)
        for queues in plan.values():
            random.shuffle(queues)
        return plan

    def _wake_keys(self, queues: list[str]) -> list[str]:
        return [f"{self.prefix}w:{queue}" for queue in queues]

    # -- core API ------------------------------------------------------------------------

    def send(self, channel: str, message: dict[str, Any]) -> None:
        """Queue ``message`` on ``channel``.

        Raises:
            ChannelFull: the channel holds ``capacity`` live messages, or Redis is at
                ``maxmemory`` (it refuses writes).
            MessageTooLarge: over ``max_message_size`` serialised.
            TypeError: bad channel name or message.
            RedisLayerConnectionError: Redis unreachable (the message may be lost).
        """
        validate_channel_name(channel)
        body = self._encode(message)
        index = self._shard_of(_queue_of(channel))
        try:
            status, drops = self._run(index, "SEND", channel, body, self._expiry_ms, self.get_capacity(channel))
        except redis.exceptions.ResponseError as exc:
            if isinstance(exc, redis.exceptions.OutOfMemoryError) or "OOM" in str(exc):
                raise ChannelFull(f"Redis {self.shards[index].label} is out of memory (maxmemory): {exc}") from exc
            raise
        self._apply_drops(index, drops)
        if status == 0:
            raise ChannelFull(f"Channel {channel!r} is full")

    def receive(self, channels: Iterable[str], block: bool = False) -> _Result:
        """Take the first available message from ``channels``.

        Args:
            channels: channel names; a process channel by its prefix (``"pre!"``).
            block: wait up to ~1 s (BLPOP on wake-up lists, no polling) for a message.

        Returns:
            ``(channel, message)`` (the full name for a process channel) or ``(None, None)``.

        Raises:
            TypeError: a bad channel name.
            RedisLayerConnectionError: Redis unreachable.
        """
        plan = self._receive_plan(channels)
        if not plan:
            return None, None
        deadline = time.monotonic() + BLOCKING_WAIT
        order = list(plan)
        while True:
            random.shuffle(order)
            for index in order:
                channel, body, drops = self._run(index, "RECEIVE", *plan[index])
                if drops:
                    self._apply_drops(index, drops)
                if channel:
                    name = channel.decode()
                    return name, self._decode(name, body)
            remaining = deadline - time.monotonic()
            if not block or remaining < 0.01:
                return None, None
            # wait for a wake-up token; with several shards, on each in turn
            index = order[0]
            wait = remaining if len(order) == 1 else min(remaining, _SHARD_SLICE)
            shard = self.shards[index]
            with translate_errors(shard.label):
                shard.client.blpop(self._wake_keys(plan[index]), timeout=wait)

    async def receive_async(self, channels: Iterable[str], timeout: float | None = None) -> _Result:
        """Coroutine form of ``receive``: waits on ``redis.asyncio``, never blocks the loop.

        Args:
            channels: as for :meth:`receive`.
            timeout: seconds to wait; None waits until a message comes.

        Returns:
            ``(channel, message)``, or ``(None, None)`` once ``timeout`` passed.

        Raises:
            TypeError: a bad channel name.
            RedisLayerConnectionError: Redis unreachable.
        """
        plan = self._receive_plan(channels)
        if not plan:
            return None, None
        deadline = None if timeout is None else time.monotonic() + timeout
        order = list(plan)
        while True:
            random.shuffle(order)
            for index in order:
                channel, body, drops = await self._run_async(index, "RECEIVE", *plan[index])
                if drops:
                    await self._apply_drops_async(index, drops)
                if channel:
                    name = channel.decode()
                    return name, self._decode(name, body)
            wait = BLOCKING_WAIT
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining < 0.01:
                    return None, None
                wait = min(wait, remaining)
            await self._wait_async(plan, order, wait)

    async def _wait_async(self, plan: dict[int, list[str]], order: list[int], wait: float) -> None:
        # One BLPOP per shard at once; the first wake-up cancels the others (a cancelled
        # BLPOP's connection is dropped by redis-py, which is fine: tokens are only hints).
        async def blpop(index: int) -> Any:
            shard = self.shards[index]
            with translate_errors(shard.label):
                client, _ = shard.async_client()
                return await client.blpop(self._wake_keys(plan[index]), timeout=wait)

        if len(order) == 1:
            await blpop(order[0])
            return
        tasks = [asyncio.ensure_future(blpop(index)) for index in order]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
        for task in done:
            task.result()

    def new_channel(self, pattern: str) -> str:
        """A new single-reader channel name ``pattern + random`` that holds no messages.

        Raises:
            TypeError: ``pattern`` does not end in ``?``.
        """
        for _ in range(10):
            name = self._new_channel_name(pattern)
            shard = self.shards[self._shard_of(name)]
            with translate_errors(shard.label):
                if not shard.client.exists(f"{self.prefix}q:{name}"):
                    return name
        raise RuntimeError(f"new_channel({pattern!r}) kept finding names in use")

    # -- groups ----------------------------------------------------------------------------

    def _group_call(self, script: str, group: str, channel: str, *args: Any) -> None:
        validate_group_name(group)
        validate_channel_name(channel)
        g_index, c_index = self._shard_of(group), self._shard_of(_queue_of(channel))
        if g_index == c_index:
            self._run(g_index, script, group, channel, *args, "1", "1")
        else:
            self._run(g_index, script, group, channel, *args, "1", "0")
            self._run(c_index, script, group, channel, *args, "0", "1")

    def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group`` (idempotent; restamps the membership time).

        Raises:
            TypeError: bad names. RedisLayerConnectionError: Redis unreachable.
        """
        self._group_call("GROUP_ADD", group, channel, self._group_expiry_ms, self._expiry_ms)

    def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; silent if it is not a member."""
        self._group_call("GROUP_DISCARD", group, channel)

    def group_channels(self, group: str) -> list[str]:
        """Live member channels of ``group`` (expired memberships excluded)."""
        validate_group_name(group)
        members = self._run(self._shard_of(group), "GROUP_CHANNELS", group, self._group_expiry_ms)
        return [member.decode() for member in members]

    def send_group(self, group: str, message: dict[str, Any]) -> None:
        """Send one copy of ``message`` to every member; full members silently miss it.

        A member with a message that expired unread leaves every group and gets nothing.

        Raises:
            MessageTooLarge: over ``max_message_size``. TypeError: bad name or message.
        """
        validate_group_name(group)
        body = self._encode(message)
        g_index = self._shard_of(group)
        if len(self.shards) == 1 and self._lua_capacities is not None:
            # one round trip: the script reads the members, picks capacities and delivers
            self._run_group(g_index, body, group, *self._lua_capacities)
            return
        by_shard: dict[int, list[Any]] = {}
        for channel in self.group_channels(group):
            by_shard.setdefault(self._shard_of(_queue_of(channel)), []).extend((channel, self.get_capacity(channel)))
        for index, targets in by_shard.items():
            self._apply_drops(index, self._run_group(index, body, "", *targets))

    def _run_group(self, index: int, body: bytes, group: str, *pairs: Any) -> Sequence[bytes]:
        # A Redis at maxmemory refuses the copies: to a group sender that is "every member
        # full", which send_group never raises (asgi1.md §1); say it in the log instead.
        try:
            *_, drops = self._run(
                index, "SEND_GROUP", body, self._expiry_ms, group, self._group_expiry_ms, self.capacity, *pairs
            )
        except redis.exceptions.OutOfMemoryError as exc:
            logger.warning("send_group dropped: Redis %s is out of memory (maxmemory): %s", self.shards[index].label, exc)
            return []
        return drops  # type: ignore[no-any-return]

    # -- lifecycle and administration ----------------------------------------------------------

    def flush(self) -> None:
        """Delete every key of this ``prefix`` on every shard (other prefixes untouched).

        The epoch key stays: a flush empties the layer, it does not re-create it.
        """
        keep = f"{self.prefix}epoch".encode()
        for shard in self.shards:
            with translate_errors(shard.label):
                batch = []
                for key in shard.client.scan_iter(match=_escape_glob(self.prefix) + "*", count=1000):
                    if key != keep:
                        batch.append(key)
                    if len(batch) >= 500:
                        shard.client.unlink(*batch)
                        batch = []
                if batch:
                    shard.client.unlink(*batch)

    def discard_prefix(self, prefix: str) -> None:
        """Drop the pending messages and group memberships of every channel ``prefix*``.

        Args:
            prefix: a process channel prefix such as ``"interface.AbC!"`` (the master calls
                this when that interface process died).

        Raises:
            TypeError: ``prefix`` is not a process channel prefix.
        """
        validate_channel_name(prefix, receive=True)
        if not prefix.endswith("!"):
            raise TypeError(f"discard_prefix() needs a process channel prefix ending in '!', not {prefix!r}")
        index = self._shard_of(prefix)
        drops = self._run(index, "DISCARD_PREFIX", prefix)
        self._apply_drops(index, drops)

    def check_epoch(self) -> int:
        """Read the store's identity (one GET per shard); a lost Redis gets a new one.

        Returns:
            The epoch: it changes when any shard lost its data (restart, FLUSHALL).
        """
        digest = hashlib.blake2b(digest_size=8)
        key = f"{self.prefix}epoch"
        for shard in self.shards:
            with translate_errors(shard.label):
                value = shard.client.get(key)
                if value is None:
                    shard.client.set(key, random_suffix(20), nx=True)
                    value = shard.client.get(key)
            digest.update(value if isinstance(value, bytes) else b"")
        self._epoch = int.from_bytes(digest.digest(), "big") >> 1
        return self._epoch

    @property
    def epoch(self) -> int:
        """Identity of the backing store (see :meth:`check_epoch`)."""
        if self._epoch is None:
            return self.check_epoch()
        return self._epoch

    def global_statistics(self) -> dict[str, int]:
        """``messages_count`` and ``channel_full_count`` summed over every shard."""
        totals = {"messages_count": 0, "channel_full_count": 0}
        for shard in self.shards:
            with translate_errors(shard.label):
                messages, full = shard.client.hmget(f"{self.prefix}stats", "messages", "full")
            totals["messages_count"] += int(messages or 0)
            totals["channel_full_count"] += int(full or 0)
        return totals

    def channel_statistics(self, channel: str) -> dict[str, Any]:
        """Live state and counters of one channel.

        ``messages_pending`` and ``messages_max_age`` (seconds) describe the channel (for a
        process channel: the full name, or the whole process when given ``"pre!"``);
        ``messages_count`` and ``channel_full_count`` count its queue (the whole process
        for a process channel) over roughly the last hour.
        """
        validate_channel_name(channel, receive=channel.endswith("!"))
        pending, age_ms, messages, full = self._run(
            self._shard_of(_queue_of(channel)), "CHANNEL_STATS", channel, self._expiry_ms
        )
        return {
            "messages_pending": int(pending),
            "messages_max_age": int(age_ms) / 1000,
            "messages_count": int(messages),
            "channel_full_count": int(full),
        }

    def close(self) -> None:
        """Close this process's connections (the next call would open new ones)."""
        for shard in self.shards:
            shard.close()

    async def close_async(self) -> None:
        """Close the connections of the running event loop and the sync pools."""
        for shard in self.shards:
            await shard.aclose()
        self.close()

    def __repr__(self) -> str:
        hosts = ", ".join(shard.label for shard in self.shards)
        return f"<{type(self).__module__}.{type(self).__name__} {hosts} prefix={self.prefix!r}>"

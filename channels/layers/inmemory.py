"""An ASGI 1 channel layer that lives in the memory of one process.

For ``runserver`` (an interface loop and worker threads in one process) and for tests.
It keeps the whole contract of ``shmlayer.contract`` (asgi1.md §1–4), so code that works
here works on the shared-memory and Redis layers too.

Theory of operation
-------------------
One ``threading.Lock`` guards every structure below; each public method takes it once,
for a short critical section, and never calls out (no decoding, no waking of asyncio
loops) while holding it.

- ``_queues``: receive key -> deque of :class:`_Entry` in send order. The receive key is
  the channel name, except for process channels (``prefix!local``) whose messages all go
  to the ``prefix!`` queue: the owner receives on the prefix and is handed the full name
  back, in one FIFO.
- ``_counts``: full channel name -> live messages. Capacity counts per *full* name, so
  two reply channels of one interface process each hold ``capacity`` (asgi1.md §4).
- ``_heap``: ``(expires_at, key)`` pairs. Invariant: every non-empty queue has an entry
  whose time is <= the expiry of the queue's head. Every operation first pops the due
  entries and drops expired heads, so expiry is strict (an expired message is never
  delivered and never counts toward capacity) without scanning every queue. Stale
  entries (the queue was read meanwhile) are harmless and the heap is rebuilt when they
  pile up.
- ``_groups``: group -> {channel: time of last group_add}; ``_memberships`` is the
  reverse index, so a channel whose message expired unread leaves *all* its groups in
  O(its groups) (the behaviour asgi1.md §4 recommends).

All times are ``time.monotonic()``: a wall-clock step must not expire or revive anything.

Waiting: blocking ``receive`` sleeps on a ``Condition`` of that lock (notified by every
send) for at most :data:`BLOCK_TIMEOUT` seconds. ``receive_async`` parks an asyncio
future per waiting coroutine under each key it waits on; a send pops the futures of its
key and resolves them with ``loop.call_soon_threadsafe`` — no thread per waiter, and a
send from any thread wakes the loop at once.

Messages are stored serialised (``contract.serialize``) and decoded for each receiver,
which gives the receiver its own copy and keeps bytes and str apart.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import threading
import time
from collections import OrderedDict, deque
from typing import Any, Iterable, Mapping, NamedTuple

from shmlayer.contract import (
    BaseChannelLayer,
    ChannelFull,
    channel_list,
    deserialize,
    validate_channel_name,
    validate_group_name,
)

__all__ = ["BLOCK_TIMEOUT", "InMemoryChannelLayer"]

#: Longest a ``receive(..., block=True)`` waits before returning ``(None, None)``, so
#: worker loops can heartbeat and notice a shutdown request.
BLOCK_TIMEOUT = 1.0

#: Per-channel statistics are kept for this many channel names (least recently used
#: dropped first): one-shot reply channels must not grow memory without bound.
STATISTICS_CHANNELS = 10_000

_GROUP_SWEEP_INTERVAL = 1.0


class _Entry(NamedTuple):
    expires_at: float
    channel: str  # full name (with the local part of a process channel)
    payload: bytes


class _ChannelCounters:
    __slots__ = ("messages_count", "channel_full_count")

    def __init__(self) -> None:
        self.messages_count = 0
        self.channel_full_count = 0


def _queue_key(channel: str) -> str:
    """The queue a message sent to ``channel`` lands in (``prefix!`` for process channels)."""
    bang = channel.find("!")
    return channel if bang < 0 else channel[: bang + 1]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class InMemoryChannelLayer(BaseChannelLayer):
    """The ASGI 1 layer contract inside one process; thread-safe and asyncio-friendly.

    Args:
        expiry: seconds an unread message lives after its own send.
        group_expiry: seconds a membership lives after its last ``group_add``.
        capacity: live messages a channel holds before ``send`` raises ``ChannelFull``.
        channel_capacity: ``{glob str or compiled regex: capacity}``; first match wins.
        max_message_size: largest serialised message in bytes (default 1 MiB).

    Raises:
        TypeError: a setting of the wrong type or out of range.
    """

    extensions = ["groups", "flush", "statistics", "asyncio"]

    def __init__(
        self,
        expiry: float = 60,
        group_expiry: int = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[Any, int] | None = None,
        max_message_size: int = 1024 * 1024,
    ) -> None:
        super().__init__(
            expiry=expiry, group_expiry=group_expiry, capacity=capacity, channel_capacity=channel_capacity,
            max_message_size=max_message_size,
        )
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queues: dict[str, deque[_Entry]] = {}
        self._counts: dict[str, int] = {}
        self._heap: list[tuple[float, str]] = []
        self._groups: dict[str, dict[str, float]] = {}
        self._memberships: dict[str, set[str]] = {}
        self._next_group_sweep = 0.0
        self._async_waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._stats: OrderedDict[str, _ChannelCounters] = OrderedDict()
        self._messages_count = 0
        self._channel_full_count = 0
        # A new object is a new, empty store: its epoch is random and never changes.
        self._epoch = random.SystemRandom().getrandbits(62) + 1

    # ------------------------------------------------------------------ core API

    def send(self, channel: str, message: dict[str, Any]) -> None:
        """Queue ``message`` on ``channel``; never blocks.

        Raises:
            TypeError: a bad channel name or a message ASGI does not allow.
            ChannelFull: the channel already holds its capacity of live messages.
            MessageTooLarge: the serialised message is over ``max_message_size``.
        """
        validate_channel_name(channel)
        payload = self.encode_message(message)
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            if not self._enqueue(channel, payload, now):
                raise ChannelFull(f"Channel {channel!r} is full ({self.get_capacity(channel)} messages)")
            waiters = self._async_waiters.pop(_queue_key(channel), None)
            self._cond.notify_all()
        self._wake(waiters)

    def receive(self, channels: Iterable[str], block: bool = False) -> tuple[str | None, dict[str, Any] | None]:
        """Take the next message from any of ``channels``.

        Args:
            channels: channel names; a process channel is named by its ``prefix!``.
            block: wait up to :data:`BLOCK_TIMEOUT` seconds for a message.

        Returns:
            ``(full channel name, message)``, or ``(None, None)`` when nothing came.

        Raises:
            TypeError: ``channels`` is a str or holds an invalid name.
        """
        names = self._receive_names(channels)
        if not names:
            return None, None
        with self._cond:
            deadline = time.monotonic() + BLOCK_TIMEOUT
            while True:
                now = time.monotonic()
                self._expire(now)
                entry = self._pop_any(names, now)
                if entry is not None or not block or now >= deadline:
                    break
                self._cond.wait(deadline - now)
        if entry is None:
            return None, None
        return entry.channel, deserialize(entry.payload)

    async def receive_async(
        self, channels: Iterable[str], timeout: float | None = None
    ) -> tuple[str | None, dict[str, Any] | None]:
        """Wait for the next message from any of ``channels`` without blocking the loop.

        Args:
            channels: as for :meth:`receive`.
            timeout: seconds to wait; ``None`` waits until a message comes (or the
                task is cancelled).

        Returns:
            ``(full channel name, message)``, or ``(None, None)`` after ``timeout``.

        Raises:
            TypeError: bad channel names, or a negative/non-numeric timeout.
        """
        names = self._receive_names(channels)
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
        ):
            raise TypeError(f"timeout must be None or a non-negative number of seconds, not {timeout!r}")
        if not names:
            return None, None
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        keys = set(names)
        while True:
            future: asyncio.Future[None] = loop.create_future()
            with self._lock:
                now = time.monotonic()
                self._expire(now)
                entry = self._pop_any(names, now)
                if entry is None:
                    for key in keys:
                        self._async_waiters.setdefault(key, set()).add(future)
            if entry is not None:
                return entry.channel, deserialize(entry.payload)
            try:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return None, None
                # asyncio.wait, unlike wait_for, leaves the future alone on timeout.
                await asyncio.wait((future,), timeout=remaining)
            finally:
                self._forget_waiter(keys, future)

    def new_channel(self, pattern: str) -> str:
        """Return ``pattern`` (ending in ``?``) plus a random part; the channel is empty.

        Raises:
            TypeError: ``pattern`` does not end in ``?`` or makes an invalid name.
        """
        while True:
            name = self._new_channel_name(pattern)
            with self._lock:
                if name not in self._queues and name not in self._counts:
                    return name

    # -------------------------------------------------------------------- groups

    def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group``, or renew its membership; idempotent.

        Raises:
            TypeError: an invalid group or channel name.
        """
        validate_group_name(group)
        validate_channel_name(channel)
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            self._groups.setdefault(group, {})[channel] = now
            self._memberships.setdefault(channel, set()).add(group)

    def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; silent when it is not a member.

        Raises:
            TypeError: an invalid group or channel name.
        """
        validate_group_name(group)
        validate_channel_name(channel)
        with self._lock:
            self._drop_membership(group, channel)

    def group_channels(self, group: str) -> list[str]:
        """The channels currently in ``group`` (expired memberships excluded).

        Raises:
            TypeError: an invalid group name.
        """
        validate_group_name(group)
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            return self._live_members(group, now)

    def send_group(self, group: str, message: dict[str, Any]) -> None:
        """Send one copy of ``message`` to every member of ``group``.

        Full members silently miss the message (counted in their statistics); an unknown
        or empty group is a no-op.

        Raises:
            TypeError: an invalid group name or message.
            MessageTooLarge: the serialised message is over ``max_message_size``.
        """
        validate_group_name(group)
        payload = self.encode_message(message)
        woken: list[asyncio.Future[None]] = []
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            delivered = False
            for channel in self._live_members(group, now):
                if self._enqueue(channel, payload, now):
                    delivered = True
                    woken.extend(self._async_waiters.pop(_queue_key(channel), ()))
            if delivered:
                self._cond.notify_all()
        self._wake(woken)

    # ------------------------------------------------------------ housekeeping

    def flush(self) -> None:
        """Empty every channel and group of this layer."""
        with self._lock:
            self._queues.clear()
            self._counts.clear()
            self._heap.clear()
            self._groups.clear()
            self._memberships.clear()

    def discard_prefix(self, prefix: str) -> None:
        """Drop pending messages and group memberships of every channel named ``prefix*``.

        The master calls it with a dead interface process's ``interface.AbC!`` prefix.

        Raises:
            TypeError: ``prefix`` is not a non-empty str.
        """
        if not isinstance(prefix, str) or not prefix:
            raise TypeError(f"discard_prefix() needs a non-empty str prefix, not {prefix!r}")
        with self._lock:
            for key in list(self._queues):
                queue = self._queues[key]
                if key.startswith(prefix):
                    doomed = list(queue)
                    kept: deque[_Entry] = deque()
                elif key.endswith("!") and prefix.startswith(key):
                    # Only a process queue holds names longer than its key.
                    doomed = [e for e in queue if e.channel.startswith(prefix)]
                    kept = deque(e for e in queue if not e.channel.startswith(prefix))
                else:
                    continue
                for entry in doomed:
                    self._uncount(entry.channel)
                if kept:
                    self._queues[key] = kept
                else:
                    del self._queues[key]
            for channel in [c for c in self._memberships if c.startswith(prefix)]:
                self._leave_all_groups(channel)

    @property
    def epoch(self) -> int:
        """Identity of this store; constant for the life of the object."""
        return self._epoch

    def check_epoch(self) -> int:
        """Return :attr:`epoch`; an in-memory store is never re-created under us."""
        return self._epoch

    def close(self) -> None:
        """Nothing to release: the store is this object's memory. Idempotent."""

    # ---------------------------------------------------------------- statistics

    def global_statistics(self) -> dict[str, Any]:
        """Counters for the whole layer.

        Returns:
            ``messages_count`` (sent since start), ``messages_pending`` (live now),
            ``messages_max_age`` (seconds the oldest live message has waited),
            ``channel_full_count`` (sends and group copies refused as full).
        """
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            entries = [queue[0] for queue in self._queues.values()]
            return {
                "messages_count": self._messages_count,
                "messages_pending": sum(self._counts.values()),
                "messages_max_age": self._max_age(entries, now),
                "channel_full_count": self._channel_full_count,
            }

    def channel_statistics(self, channel: str) -> dict[str, Any]:
        """Counters for one channel (a full name, or a process channel's ``prefix!``).

        Returns:
            The keys of :meth:`global_statistics`, for this channel.

        Raises:
            TypeError: an invalid channel name.
        """
        validate_channel_name(channel, receive=isinstance(channel, str) and channel.endswith("!"))
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            queue = self._queues.get(_queue_key(channel), ())
            if channel.endswith("!"):
                entries = list(queue)
                names = [name for name in self._stats if name.startswith(channel)]
            else:
                entries = [e for e in queue if e.channel == channel]
                names = [channel] if channel in self._stats else []
            counters = [self._stats[name] for name in names]
            return {
                "messages_count": sum(c.messages_count for c in counters),
                "messages_pending": len(entries),
                "messages_max_age": self._max_age(entries[:1], now),
                "channel_full_count": sum(c.channel_full_count for c in counters),
            }

    # ------------------------------------------------- internals (lock held)

    @staticmethod
    def _receive_names(channels: Iterable[str]) -> list[str]:
        names = channel_list(channels)
        for name in names:
            validate_channel_name(name, receive=True)
        return names

    def _enqueue(self, channel: str, payload: bytes, now: float) -> bool:
        """Append one message; False (and counted) when the channel is full."""
        counters = self._counters(channel)
        if self._counts.get(channel, 0) >= self.get_capacity(channel):
            counters.channel_full_count += 1
            self._channel_full_count += 1
            return False
        entry = _Entry(now + self.expiry, channel, payload)
        key = _queue_key(channel)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        if not queue:
            heapq.heappush(self._heap, (entry.expires_at, key))
        queue.append(entry)
        self._counts[channel] = self._counts.get(channel, 0) + 1
        counters.messages_count += 1
        self._messages_count += 1
        return True

    def _pop_any(self, names: list[str], now: float) -> _Entry | None:
        # A fresh random order each call: a busy channel must not starve a quiet one.
        for key in random.sample(names, len(names)):
            queue = self._queues.get(key)
            found = None
            while queue and found is None:
                entry = queue.popleft()
                self._uncount(entry.channel)
                if entry.expires_at > now:
                    found = entry
                else:
                    # Only reachable if the heap invariant broke; stay strict anyway.
                    self._expired_unread(entry)
            if queue is not None and not queue:
                del self._queues[key]
            if found is not None:
                return found
        return None

    def _expire(self, now: float) -> None:
        """Drop every message whose expiry has come; keep the heap invariant."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            queue = self._queues.get(key)
            if not queue:
                continue
            while queue and queue[0].expires_at <= now:
                entry = queue.popleft()
                self._uncount(entry.channel)
                self._expired_unread(entry)
            if queue:
                heapq.heappush(heap, (queue[0].expires_at, key))
            else:
                del self._queues[key]
        if len(heap) > 2 * len(self._queues) + 1024:
            # Stale entries (queues read empty and refilled) piled up: rebuild exactly.
            self._heap = [(queue[0].expires_at, key) for key, queue in self._queues.items()]
            heapq.heapify(self._heap)
        if now >= self._next_group_sweep:
            self._next_group_sweep = now + _GROUP_SWEEP_INTERVAL
            for group in list(self._groups):
                self._live_members(group, now)

    def _expired_unread(self, entry: _Entry) -> None:
        # asgi1.md §4: a member that let a message expire is gone; drop it everywhere.
        self._leave_all_groups(entry.channel)

    def _uncount(self, channel: str) -> None:
        left = self._counts[channel] - 1
        if left:
            self._counts[channel] = left
        else:
            del self._counts[channel]

    def _live_members(self, group: str, now: float) -> list[str]:
        members = self._groups.get(group)
        if not members:
            return []
        oldest = now - self.group_expiry
        for channel in [c for c, added in members.items() if added <= oldest]:
            self._drop_membership(group, channel)
        return list(members)

    def _drop_membership(self, group: str, channel: str) -> None:
        members = self._groups.get(group)
        if members is not None and members.pop(channel, None) is not None and not members:
            del self._groups[group]
        groups = self._memberships.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self._memberships[channel]

    def _leave_all_groups(self, channel: str) -> None:
        for group in self._memberships.pop(channel, ()):
            members = self._groups.get(group)
            if members is not None:
                members.pop(channel, None)
                if not members:
                    del self._groups[group]

    def _counters(self, channel: str) -> _ChannelCounters:
        counters = self._stats.get(channel)
        if counters is None:
            counters = self._stats[channel] = _ChannelCounters()
            if len(self._stats) > STATISTICS_CHANNELS:
                self._stats.popitem(last=False)
        else:
            self._stats.move_to_end(channel)
        return counters

    def _max_age(self, entries: Iterable[_Entry], now: float) -> float:
        return max((now - (e.expires_at - self.expiry) for e in entries), default=0.0)

    # ---------------------------------------------------- internals (no lock)

    def _forget_waiter(self, keys: set[str], future: asyncio.Future[None]) -> None:
        with self._lock:
            for key in keys:
                waiters = self._async_waiters.get(key)
                if waiters is not None:
                    waiters.discard(future)
                    if not waiters:
                        del self._async_waiters[key]

    @staticmethod
    def _wake(futures: Iterable[asyncio.Future[None]] | None) -> None:
        for future in futures or ():
            try:
                future.get_loop().call_soon_threadsafe(_resolve, future)
            except RuntimeError:
                pass  # that loop is closed: its waiter is gone with it

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__} capacity={self.capacity} expiry={self.expiry}>"

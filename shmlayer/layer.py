"""``ShmChannelLayer``: the ASGI 1 channel layer over one POSIX shared-memory segment.

This module is the boundary: it validates names and messages, serialises (msgpack via
``contract.serialize``, never pickle), takes the segment lock around one ``_store``
operation, converts status codes to exceptions after the lock is released, and does the
waiting (``_waiters``).

Capacity of a process channel counts per full name (``prefix!local``), not per prefix:
asgi_ipc and asgi_redis counted it on the ``prefix!`` part, so every connection of one
interface process shared one capacity, and a group broadcast to many sockets on that
process silently lost most of its copies once a few of them were slow. Here one slow
socket only loses its own copies, and each loss is counted (``stats``: full, group_skipped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import threading
import time
import weakref
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

from . import _layout as L
from ._fastpath import LAYOUT
from ._recovery import pid_alive, recover
from ._segment import LayoutVersionMismatch, Segment, SegmentError, default_segment_name, validate_segment_name
from ._fields import FULL, NOSPACE, kind_of, name_hash
from ._store import Store
from ._waiters import Waiter, WakeSender
from .contract import (
    BaseChannelLayer,
    ChannelFull,
    channel_list,
    deserialize,
    validate_channel_name,
    validate_group_name,
)

__all__ = ["LayoutVersionMismatch", "SegmentError", "SegmentFull", "ShmChannelLayer"]

#: How long ``receive(block=True)`` sleeps at most before returning (None, None).
BLOCK_TIMEOUT = 1.0
_EPOCH_CHECK_INTERVAL = 1.0
#: Seconds a blocking receive polls the send counter before sleeping on its socket.
SPIN_TIME = 100e-6
_SENT_Q = L.H["n_sent"] >> 3
_SWEEP = LAYOUT["SWEEP"]
_monotonic = time.monotonic
_yield = os.sched_yield
_log = logging.getLogger("shmlayer")
#: The keys asgi1.md §1 allows in global_statistics()/channel_statistics(); stats() has more.
_SPEC_STATISTICS = ("messages_count", "messages_pending", "messages_max_age", "channel_full_count")


class SegmentFull(ChannelFull):
    """The segment's heap or one of its tables is exhausted; nothing was queued.

    A subclass of ChannelFull so that code which waits and retries on a full channel
    (asgi1.md §5) also waits for memory to be freed by receivers or by expiry.
    """


_live_layers: "weakref.WeakSet[ShmChannelLayer]" = weakref.WeakSet()


def _forget_waiters_in_child() -> None:
    for layer in list(_live_layers):
        layer._after_fork()


os.register_at_fork(after_in_child=_forget_waiters_in_child)


class _SendTarget(NamedTuple):
    """What ``send`` needs of a channel name, worked out once per name."""

    name: bytes
    hash: int
    cap: int
    #: len("x!") of a local name "x!y" (its prefix entry holds the queue), 0 for a
    #: normal name, -1 for a prefix name "x!" (its entry is only ever made in Python).
    prefix_len: int
    prefix_hash: int


class ShmChannelLayer(BaseChannelLayer):
    """ASGI 1 layer in ``/dev/shm/<name>``, shared by every process of one host.

    Args:
        name: segment name; default ``shmchannels-<hash of DJANGO_SETTINGS_MODULE + cwd>``.
        size: bytes of a new segment (an existing one keeps its size). Default 64 MiB.
        capacity: live messages per channel (per full name for ``prefix!local``).
        channel_capacity: ``{glob or compiled regex: capacity}``; first match wins. The
            capacity of a channel is fixed by the process that creates its entry.
        expiry: seconds an unread message lives.
        group_expiry: seconds a membership lives after its last ``group_add``.
        max_message_size: largest *serialised* (msgpack) message, default 1 MiB.
        mode: permission bits of a new segment (0o600: only this user).

    Raises:
        TypeError: a bad name or a config value of the wrong type.
        ValueError: a size or max_message_size the segment cannot serve.
        SegmentError: /dev/shm has no room, or the name belongs to something else.
        LayoutVersionMismatch: the segment was made by another shmlayer layout version.
    """

    extensions = ["groups", "flush", "asyncio", "statistics"]
    SegmentFull = SegmentFull

    def __init__(
        self,
        name: str | None = None,
        size: int = 64 * 1024 * 1024,
        capacity: int = 100,
        channel_capacity: Mapping[Any, int] | None = None,
        expiry: float = 60,
        group_expiry: int = 86400,
        max_message_size: int = 1024 * 1024,
        mode: int = 0o600,
        _create: bool = True,
    ) -> None:
        super().__init__(expiry=expiry, group_expiry=group_expiry, capacity=capacity,
                         channel_capacity=channel_capacity, max_message_size=max_message_size)
        for label, value in (("size", size), ("mode", mode)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{label} must be an int, not {value!r}")
        if not L.MIN_SEGMENT_SIZE <= size <= L.MAX_SEGMENT_SIZE:
            raise ValueError(f"size must be between {L.MIN_SEGMENT_SIZE} and {L.MAX_SEGMENT_SIZE} bytes, not {size}")
        if not 0 <= mode <= 0o777:
            raise ValueError(f"mode must be permission bits like 0o600, not {mode!r}")
        self.segment_name = validate_segment_name(name) if name is not None else default_segment_name()
        self.size = size
        self.mode = mode
        self._create = _create
        self._lock = threading.Lock()  # guards the waiter pool and (re)attaching
        self._send_names: dict[str, _SendTarget] = {}
        self._recv_names: dict[str, tuple[bytes, int]] = {}
        self._rotate = 0
        self._pool: list[Waiter] = []
        self._waker = WakeSender()
        self._seg: Segment | None = None
        self._store: Store | None = None
        self._next_check = 0.0
        self._attach()
        _live_layers.add(self)

    # ============================================================ segment lifecycle

    def _attach(self) -> None:
        holder: list[Store] = []
        seg = Segment(self.segment_name, self.size, self.mode, create=self._create,
                      on_recover=lambda _seg: recover(holder[0]))
        store = Store(seg)
        holder.append(store)
        largest = L.max_payload(seg.geometry)
        if self.max_message_size > largest:
            seg.close()
            raise ValueError(
                f"max_message_size {self.max_message_size} does not fit segment {self.segment_name!r} "
                f"(largest block holds {largest} bytes): use a bigger size"
            )
        self._seg, self._store = seg, store
        self._waker.reset()
        self._next_check = _monotonic() + _EPOCH_CHECK_INTERVAL

    @property
    def epoch(self) -> int:
        """Identity of the segment instance currently attached (changes on re-creation)."""
        if self._seg is None:
            self._current()
        assert self._seg is not None
        return self._seg.epoch

    def check_epoch(self) -> int:
        """Re-attach if the segment file was unlinked or re-created; return the epoch."""
        seg = self._seg
        if seg is None or seg.replaced():
            with self._lock:
                if self._seg is seg:
                    self._reattach()
        assert self._seg is not None
        return self._seg.epoch

    def _reattach(self) -> None:
        old, self._seg, self._store = self._seg, None, None
        self._drop_waiters(release=False)
        if old is not None:
            old.close()
        self._attach()

    def _current(self) -> Store:
        """The store to use now; re-attaches after close() or a re-creation (≤ 1/s check)."""
        store = self._store
        if store is None:
            with self._lock:
                if self._store is None:
                    self._attach()
            store = self._store
            assert store is not None
        now = _monotonic()
        if now >= self._next_check:
            self._next_check = now + _EPOCH_CHECK_INTERVAL
            self.check_epoch()
            store = self._store
            assert store is not None
        return store

    def close(self) -> None:
        """Release this process's waiter slots, sockets and mapping (the segment stays)."""
        with self._lock:
            self._drop_waiters(release=True)
            if self._seg is not None:
                self._seg.close()
            self._seg = self._store = None

    def unlink(self) -> None:
        """Remove the segment from /dev/shm (master at clean exit) and close."""
        seg = self._seg
        if seg is None:
            try:
                os.unlink(os.path.join("/dev/shm", self.segment_name))
            except FileNotFoundError:
                pass
        else:
            seg.unlink()
        self.close()

    def _after_fork(self) -> None:
        # The parent still owns its waiter slots and sockets: forget them, don't release.
        self._lock = threading.Lock()
        for waiter in self._pool:
            waiter.close()
        self._pool = []
        self._waker.close()
        self._waker = WakeSender()

    # ================================================================== locking

    def _locked(self, store: Store, op: Any, *args: Any, lock_timeout: float | None = None) -> Any:
        seg = store.segment
        seg.acquire(lock_timeout)
        clean = False
        wake = None
        try:
            result = op(*args)
            store.finish(_monotonic())
            if store.wake:
                # Taken under the lock: another thread of ours may collect more meanwhile.
                wake, store.wake = store.wake, []
            clean = True
        finally:
            seg.release(clean)
        if wake:
            self._waker.wake(self.segment_name, seg.epoch, wake)
        return result

    # ================================================================= send side

    def _send_target(self, channel: str) -> _SendTarget:
        target = self._send_names.get(channel)
        if target is None:
            validate_channel_name(channel)
            name = channel.encode("ascii")
            kind = kind_of(name)
            if kind == L.KIND_LOCAL:
                prefix_len = name.index(b"!") + 1
            else:  # -1: the C send leaves a prefix entry ("x!") to Python
                prefix_len = -1 if kind == L.KIND_PREFIX else 0
            target = _SendTarget(name, name_hash(name), self.get_capacity(channel), prefix_len,
                                 name_hash(name[:prefix_len]) if prefix_len > 0 else 0)
            if len(self._send_names) > 10000:
                self._send_names.clear()
            self._send_names[channel] = target
        return target

    def send(self, channel: str, message: dict[str, Any]) -> None:
        """Queue ``message`` on ``channel``.

        Raises:
            TypeError: bad channel name or a message that is not an ASGI message.
            MessageTooLarge: serialised message over ``max_message_size``.
            ChannelFull: the channel holds ``capacity`` live messages.
            SegmentFull: (a ChannelFull) no memory left in the segment.
        """
        name, h, cap, prefix_len, prefix_hash = self._send_target(channel)
        data = self.encode_message(message)
        store = self._current()
        seg = store.segment
        assert seg.fast is not None
        result = seg.fast.send(name, h, data, self.expiry, cap, prefix_len, prefix_hash)
        if not result:
            return
        if result.__class__ is list:
            self._waker.wake(self.segment_name, seg.epoch, result)
            return
        # Anything but the common case (new entry, full, expired messages due): Python.
        status = self._locked(store, self._send_in_python, store, name, h, data, cap, result == _SWEEP)
        if status:
            if status == FULL:
                raise ChannelFull(f"channel {channel!r} is full")
            raise SegmentFull(f"channel layer segment {self.segment_name!r} is full (memory or tables)")

    def _send_in_python(self, store: Store, name: bytes, h: int, data: bytes, cap: int, sweep: bool) -> int:
        now = _monotonic()
        if sweep:
            store.sweep(now, 8)
        return store.send(name, h, data, now, now + self.expiry, cap)

    def new_channel(self, pattern: str) -> str:
        """A fresh single-reader channel name ``pattern + random`` (pattern ends in ``?``)."""
        return self._new_channel_name(pattern)

    # ============================================================== receive side

    def _receive_targets(self, channels: Iterable[str]) -> list[tuple[bytes, int]]:
        cache = self._recv_names
        targets = []
        for channel in channel_list(channels):
            target = cache.get(channel)
            if target is None:
                validate_channel_name(channel, receive=True)
                name = channel.encode("ascii")
                target = (name, name_hash(name))
                if len(cache) > 10000:
                    cache.clear()
                cache[channel] = target
            targets.append(target)
        return targets

    def _receive_once(self, store: Store, targets: list[tuple[bytes, int]], waiter: Waiter | None) -> Any:
        self._rotate += 1  # a busy channel must not starve a quiet one (asgi1.md §4)
        start = self._rotate
        seg = store.segment
        sweep = not start & 7  # amortised expiry sweep: 1 entry per receive
        assert seg.fast is not None
        found = seg.fast.receive(targets, start, -1 if waiter is None else waiter.slot)
        if found is None or found.__class__ is tuple:
            return found
        sweep = sweep or found == _SWEEP  # an expired message is due: Python drops it
        seg.acquire()
        clean = False
        try:
            now = _monotonic()
            if sweep:
                store.sweep(now, 8)
            found = store.receive(targets, start, now)
            if found is None and waiter is not None:
                mask = store.cmask
                store.arm(waiter.slot, [h & mask for _, h in targets])
            if store.expired_chans or store.maybe_free:
                store.finish(now)
            clean = True
        finally:
            seg.release(clean)
        return found

    def receive_batch(self, channels: Iterable[str], limit: int = 64) -> list[tuple[str, dict[str, Any]]]:
        """Take up to ``limit`` available messages from ``channels`` without waiting.

        An interface process drains its process channel after each wake-up; when the
        lock-free hint says the channels are empty, no lock is taken at all.

        Returns:
            ``[(channel, message), ...]`` in the order ``receive`` would return them;
            empty when nothing was available.

        Raises:
            TypeError: a bad channel name.
        """
        targets = self._receive_targets(channels)
        if not targets or limit < 1:
            return []
        store = self._current()
        if not store.maybe_pending(targets):
            return []  # nothing queued: skip the lock round
        found = []
        for _ in range(limit):
            item = self._receive_once(store, targets, None)
            if item is None:
                break
            found.append(item)
        return [(name.decode("ascii"), deserialize(data)) for name, data in found]

    @staticmethod
    def _decode(found: tuple[bytes, bytes] | None) -> tuple[str | None, dict[str, Any] | None]:
        if found is None:
            return None, None
        return found[0].decode("ascii"), deserialize(found[1])

    def receive(self, channels: Iterable[str], block: bool = False) -> tuple[str | None, dict[str, Any] | None]:
        """Take the next message from any of ``channels``.

        With ``block=True`` sleep (no CPU) until a message arrives, at most about a second.

        Returns:
            ``(channel, message)``; for a ``prefix!`` channel the full ``prefix!local`` name.
            ``(None, None)`` when nothing was available.

        Raises:
            TypeError: a bad channel name (a process channel must end at its ``!``).
        """
        targets = self._receive_targets(channels)
        if not targets:
            return None, None
        store = self._current()
        if not block:
            return self._decode(self._receive_once(store, targets, None))
        found = None
        if store.maybe_pending(targets):  # fast path: no waiter, no syscalls
            found = self._receive_once(store, targets, None)
        if found is None:
            found = self._spin(store, targets)
        if found is not None:
            return self._decode(found)
        deadline = _monotonic() + BLOCK_TIMEOUT
        waiter = self._take_waiter(store)
        try:
            while True:
                waiter.drain()
                found = self._receive_once(store, targets, waiter)
                if found is not None:
                    return self._decode(found)
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    return None, None
                select.select([waiter.fd], [], [], remaining)
        finally:
            self._give_back(store, waiter)

    def _spin(self, store: Store, targets: list[tuple[bytes, int]]) -> Any:
        """Watch the segment's send counter for a few tens of µs before going to sleep.

        A stream of messages then costs no sleep/wake-up per message; an idle receiver
        spends at most SPIN_TIME of CPU per (≈ 1 s) blocking call. Reading the counter
        without the lock is safe: it is one aligned u64 that only ever grows. Sends to
        other channels (replies, other workers' traffic) also move it: the lock-free
        ``maybe_pending`` hint keeps those from costing a lock round each.
        """
        u64 = store.u64
        sent = u64[_SENT_Q]
        end = _monotonic() + SPIN_TIME
        while _monotonic() < end:
            _yield()  # the sender may be waiting for this very core (2 cores, many processes)
            if u64[_SENT_Q] != sent:
                sent = u64[_SENT_Q]
                if store.maybe_pending(targets):
                    found = self._receive_once(store, targets, None)
                    if found is not None:
                        return found
        return None

    async def receive_async(self, channels: Iterable[str], timeout: float | None = None) -> tuple[str | None, dict[str, Any] | None]:
        """Coroutine form of ``receive``: waits on the waiter socket with ``loop.add_reader``.

        Args:
            channels: names as for :meth:`receive`.
            timeout: seconds to wait at most (None: until a message arrives).

        Returns:
            ``(channel, message)`` or ``(None, None)`` once ``timeout`` passed.
        """
        targets = self._receive_targets(channels)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else _monotonic() + timeout
        if not targets:  # like receive([]): nothing can ever arrive
            return None, None
        while True:
            store = self._current()
            waiter = self._take_waiter(store)
            try:
                while store is self._store:
                    waiter.drain()
                    found = self._receive_once(store, targets, waiter)
                    if found is not None:
                        return self._decode(found)
                    wait = _EPOCH_CHECK_INTERVAL
                    if deadline is not None:
                        wait = min(wait, deadline - _monotonic())
                        if wait <= 0:
                            return None, None
                    # One future woken by the socket or a timer: asyncio.wait() would add
                    # a second future, a set and callbacks on every wait.
                    ready = loop.create_future()
                    loop.add_reader(waiter.fd, _set_ready, ready)
                    timer = loop.call_later(wait, _set_ready, ready)
                    try:
                        await ready
                    finally:
                        timer.cancel()
                        loop.remove_reader(waiter.fd)
                        ready.cancel()
                    self._current()  # notice a re-created segment (at most once a second)
            finally:
                self._give_back(store, waiter)

    def _take_waiter(self, store: Store) -> Waiter:
        with self._lock:
            if self._pool and self._pool[-1].epoch == store.segment.epoch:
                return self._pool.pop()
        for _attempt in range(4):
            slot = self._locked(store, store.claim_waiter, os.getpid(), pid_alive)
            if slot < 0:
                raise SegmentFull(f"all {store.geometry.n_waiters} waiter slots of {self.segment_name!r} are in use")
            try:
                return Waiter(slot, self.segment_name, store.segment.epoch)
            except OSError:
                continue  # address still bound by a process that owns it: try another slot
        raise SegmentError(f"cannot bind a waiter socket for segment {self.segment_name!r}")

    def _give_back(self, store: Store, waiter: Waiter) -> None:
        if store is not self._store or store.segment.closed:
            waiter.close()
            return
        if store.waiter_armed(waiter.slot):
            # Reading the state without the lock is safe: only a sender turns ARMED into
            # IDLE, and only we turn IDLE into ARMED.
            fast = store.segment.fast
            if fast is None or not fast.disarm(waiter.slot):
                self._locked(store, store.disarm, waiter.slot)
        with self._lock:
            self._pool.append(waiter)

    def _drop_waiters(self, release: bool) -> None:
        pool, self._pool = self._pool, []
        store = self._store
        if release and store is not None and pool and not store.segment.closed:
            def release_all() -> None:
                for waiter in pool:
                    store.release_waiter(waiter.slot)
            try:
                self._locked(store, release_all)
            except OSError:
                pass
        for waiter in pool:
            waiter.close()

    # ==================================================================== groups

    def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group`` (idempotent; re-stamps the membership).

        Raises:
            TypeError: bad group or channel name.
            SegmentFull: no room left in the group or membership tables.
        """
        validate_group_name(group)
        target = self._send_target(channel)
        gname = group.encode("ascii")
        store = self._current()
        status = self._locked(store, store.group_add, gname, name_hash(gname), target.name, target.hash,
                              _monotonic(), target.cap)
        if status == NOSPACE:
            raise SegmentFull(f"channel layer segment {self.segment_name!r} has no room for another membership")

    def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group`` if it is a member."""
        validate_group_name(group)
        target = self._send_target(channel)
        gname = group.encode("ascii")
        store = self._current()
        self._locked(store, store.group_discard, gname, name_hash(gname), target.name, target.hash)

    def group_channels(self, group: str) -> list[str]:
        """Names of the channels in ``group`` whose membership has not expired."""
        validate_group_name(group)
        gname = group.encode("ascii")
        store = self._current()
        names = self._locked(store, store.group_channels, gname, name_hash(gname), _monotonic(), self.group_expiry)
        return [name.decode("ascii") for name in names]

    def send_group(self, group: str, message: dict[str, Any]) -> None:
        """Send one copy of ``message`` to every member; full members are skipped (counted).

        Raises:
            TypeError: bad group name or message.
            MessageTooLarge: serialised message over ``max_message_size``.
        """
        validate_group_name(group)
        data = self.encode_message(message)
        gname = group.encode("ascii")
        gh = name_hash(gname)
        store = self._current()
        seg = store.segment
        assert seg.fast is not None
        result = seg.fast.send_group(gname, gh, data, self.expiry, self.group_expiry)
        if not result:
            return
        if result.__class__ is list:
            self._waker.wake(self.segment_name, seg.epoch, result)
            return
        # Expired memberships or messages in the way, or short of memory: Python.
        now = _monotonic()
        status = self._locked(store, store.send_group, gname, gh, data, now, now + self.expiry, self.group_expiry)
        if status == NOSPACE:
            # Not raised (send_group never raises ChannelFull), but never silent either.
            _log.warning("channel layer segment %r is full: send_group(%r) dropped copies (counted in stats)",
                         self.segment_name, group)

    # ============================================================ whole-layer ops

    def flush(self, lock_timeout: float | None = None) -> None:
        """Empty every channel and group of the segment (for every process).

        Raises:
            TimeoutError: the lock stayed held for ``lock_timeout`` seconds.
        """
        store = self._current()
        self._locked(store, store.flush, lock_timeout=lock_timeout)

    def discard_prefix(self, prefix: str) -> int:
        """Drop the pending messages and memberships of every channel named ``prefix*``.

        The master calls it with ``interface.<id>!`` when an interface process dies.

        Returns:
            The number of messages dropped.

        Raises:
            TypeError: ``prefix`` is not a non-empty ASCII str.
        """
        if not isinstance(prefix, str) or not prefix or not prefix.isascii():
            raise TypeError(f"discard_prefix() needs a non-empty ASCII str, not {prefix!r}")
        store = self._current()
        return int(self._locked(store, store.discard_prefix, prefix.encode("ascii")))

    # ================================================================ statistics

    def global_statistics(self) -> dict[str, Any]:
        """Layer-wide counters (extension "statistics")."""
        from ._stats import global_statistics

        store = self._current()
        stats = self._locked(store, global_statistics, store, _monotonic())
        return {key: stats[key] for key in _SPEC_STATISTICS if key in stats}

    def channel_statistics(self, channel: str) -> dict[str, Any]:
        """Counters of one channel (extension "statistics"); zeros for an unknown channel."""
        from ._stats import channel_statistics

        validate_channel_name(channel, receive=channel.endswith("!") if isinstance(channel, str) else False)
        name = channel.encode("ascii")
        store = self._current()
        stats = self._locked(store, channel_statistics, store, name, name_hash(name), _monotonic())
        return {key: stats[key] for key in _SPEC_STATISTICS if key in stats}

    def stats(self, lock_timeout: float | None = None) -> dict[str, Any]:
        """A consistent snapshot of the whole segment (what ``python -m shmlayer stats`` prints).

        Raises:
            TimeoutError: the lock stayed held for ``lock_timeout`` seconds.
        """
        from ._stats import mapping_pids, snapshot

        store = self._current()
        snap = dict(self._locked(store, snapshot, store, _monotonic(), lock_timeout=lock_timeout))
        snap["mapped_by"] = mapping_pids(store.segment.path, store.segment.ino)  # outside the lock
        return snap

    def verify(self) -> list[str]:
        """Check every cross-structure invariant; return the problems found (empty: sound)."""
        from ._verify import verify

        store = self._current()
        return list(self._locked(store, verify, store))

    @contextlib.contextmanager
    def _hold_lock_for_test(self) -> Iterator[None]:
        """Test hook: hold the segment lock (dirty word set) for the ``with`` body."""
        store = self._current()
        store.segment.acquire()
        try:
            yield
        finally:
            store.segment.release()

    def __repr__(self) -> str:
        return f"<shmlayer.ShmChannelLayer {getattr(self, 'segment_name', None)!r}>"


def _set_ready(future: "asyncio.Future[None]") -> None:
    if not future.done():
        future.set_result(None)

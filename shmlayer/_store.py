"""Operations on the mapped tables: channels, queues, groups, memberships, waiters.

Every method here runs with the segment lock held (the layer takes it) and returns a
status code instead of raising for expected conditions (full channel, exhausted segment),
so an exception escaping a critical section always means "something went wrong half way"
and leaves the dirty word set for recovery.

Write order ("link last"): a new node, entry or membership is filled in completely before
the one store that makes it reachable from a hash chain or a queue (``bucket = i``,
``tail.next = node`` / ``head = node``); an entry, membership or node is first made
unreachable by one store and only then recycled. Everything else (counts, tails,
free lists, refcounts, group/channel membership lists, waiter counters) is derived, and
recovery recomputes it, so a holder killed between any two stores loses at most the
message it was moving.

Expiry side effects are deferred to the end of each operation (:meth:`Store.finish`):
channels that lost a message to expiry leave all their groups, and entries left empty are
freed. Doing it in the middle would let a ``send_group`` walk into memberships that were
just recycled.
"""

from __future__ import annotations

from . import _layout as L
from ._fields import (
    CW, C_CAP, C_FLAGS, C_GEN, C_HASH, C_HEAD, C_HNEXT, C_MHEAD, C_NAME, C_NCOUNT, C_NEXP,
    C_NFULL, C_NLEN, C_NSENT, C_QCOUNT, C_QUEUE, C_REFS, C_TAIL, FULL, GW, G_FLAGS, G_GEN,
    H_CHAN_BUMP, H_CHAN_FREE, H_GROUP_BUMP, H_GROUP_FREE, H_MEMBER_BUMP, H_MEMBER_FREE,
    H_NODE_BUMP, H_NODE_FREE, H_SWEEP, H_WILD, MW, M_CNEXT, NOSPACE, NW, N_CHAN, N_EXPIRES_B,
    N_FLAGS, N_NEXT, N_PAYLOAD, N_SENT_B, OK, Q_DISCARDED, Q_EXPIRED, Q_FULL, Q_RECEIVED,
    Q_SEGFULL, Q_SENT, kind_of, name_hash,
)
from ._fields import _MASK32
from ._groups import GroupTable
from ._heap import Heap
from ._segment import Segment
from ._slots import WaiterSlots


class Store(GroupTable, WaiterSlots):
    """Table operations on one mapped segment. Call only with the segment lock held."""

    def __init__(self, segment: Segment) -> None:
        g = segment.geometry
        self.segment = segment
        self.geometry = g
        self.u32 = segment.u32
        self.u64 = segment.u64
        self.f64 = segment.f64
        self.mv = segment.mv
        self.heap = Heap(segment)
        self.cw = g.chan_off >> 2
        self.cbw = g.chan_bucket_off >> 2
        self.cmask = g.n_chan_buckets - 1
        self.bww = g.bucket_waiters_off >> 2
        self.gw = g.group_off >> 2
        self.gbw = g.group_bucket_off >> 2
        self.gmask = g.n_group_buckets - 1
        self.mw = g.member_off >> 2
        self.mbw = g.member_bucket_off >> 2
        self.mmask = g.n_member_buckets - 1
        self.nw = g.node_off >> 2
        self.ww = g.waiter_off >> 2
        self.expired_chans: list[int] = []
        self.maybe_free: list[int] = []
        self.wake: list[int] = []
        self._ops = 0
        #: Set by recovery while counts are being rebuilt (empty-looking entries are not).
        self.no_evict = False
        self._chan_cache: dict[bytes, tuple[int, int]] = {}
        self._group_cache: dict[bytes, tuple[int, int]] = {}

    # ================================================================ channel entries

    def chan_name(self, i: int) -> bytes:
        e = self.cw + i * CW
        start = e * 4 + C_NAME
        return bytes(self.mv[start : start + self.u32[e + C_NLEN]])

    def lookup_chan(self, name: bytes, h: int) -> int:
        """Index of the in-use entry called ``name`` (hash ``h``), or 0."""
        u32 = self.u32
        cached = self._chan_cache.get(name)
        if cached is not None:
            i, gen = cached
            e = self.cw + i * CW
            if u32[e + C_GEN] == gen and u32[e + C_FLAGS] & 1:
                return i
        i = u32[self.cbw + (h & self.cmask)]
        n = len(name)
        mv, cw = self.mv, self.cw
        while i:
            e = cw + i * CW
            if u32[e + C_HASH] == h and u32[e + C_NLEN] == n:
                start = e * 4 + C_NAME
                if mv[start : start + n] == name:
                    if len(self._chan_cache) > 20000:
                        self._chan_cache.clear()
                    self._chan_cache[name] = (i, u32[e + C_GEN])
                    return i
            i = u32[e + C_HNEXT]
        return 0

    def _create_chan(self, name: bytes, h: int, kind: int, cap: int, queue: int) -> int:
        u32 = self.u32
        i = u32[H_CHAN_FREE]
        if i:
            u32[H_CHAN_FREE] = u32[self.cw + i * CW + C_HNEXT]
        else:
            i = u32[H_CHAN_BUMP]
            if i >= self.geometry.n_channels:
                if self.no_evict or not self._free_kept_entries():
                    return 0
                return self._create_chan(name, h, kind, cap, queue)
            u32[H_CHAN_BUMP] = i + 1
        e = self.cw + i * CW
        gen = (u32[e + C_GEN] + 1) & _MASK32
        for w in range(C_NAME >> 2):
            u32[e + w] = 0
        start = e * 4 + C_NAME
        self.mv[start : start + len(name)] = name
        u32[e + C_HASH] = h
        u32[e + C_NLEN] = len(name)
        retain = L.RETAIN if kind == L.KIND_PREFIX or (kind == L.KIND_NORMAL and b"?" not in name) else 0
        u32[e + C_FLAGS] = 1 | (kind << 1) | retain
        u32[e + C_QUEUE] = queue or i
        u32[e + C_CAP] = cap
        u32[e + C_GEN] = gen
        bucket = self.cbw + (h & self.cmask)
        u32[e + C_HNEXT] = u32[bucket]
        u32[bucket] = i  # link last
        return i

    def chan_for(self, name: bytes, h: int, cap: int) -> int:
        """Find or create the entry for a send/group_add target name; 0 if the table is full."""
        i = self.lookup_chan(name, h)
        if i:
            return i
        kind = kind_of(name)
        if kind == L.KIND_LOCAL:
            prefix = name[: name.index(b"!") + 1]
            ph = name_hash(prefix)
            q = self.lookup_chan(prefix, ph) or self._create_chan(prefix, ph, L.KIND_PREFIX, cap, 0)
            if not q:
                return 0
            # Pin the prefix entry first: a full table frees kept empty entries to make room.
            self.u32[self.cw + q * CW + C_REFS] += 1
            i = self._create_chan(name, h, kind, cap, q)
            if not i:
                self.u32[self.cw + q * CW + C_REFS] -= 1
                self.maybe_free.append(q)
            return i
        return self._create_chan(name, h, kind, cap, 0)

    def _free_chan_if_unused(self, i: int, force: bool = False) -> None:
        u32 = self.u32
        e = self.cw + i * CW
        flags = u32[e + C_FLAGS]
        if not flags & 1 or (flags & L.RETAIN and not force):
            return
        if u32[e + C_QCOUNT] or u32[e + C_NCOUNT] or u32[e + C_MHEAD] or u32[e + C_REFS]:
            return
        self._unchain(self.cbw + (u32[e + C_HASH] & self.cmask), i, self.cw, CW, C_HNEXT)
        u32[e + C_FLAGS] = 0
        u32[e + C_GEN] = (u32[e + C_GEN] + 1) & _MASK32
        u32[e + C_HNEXT] = u32[H_CHAN_FREE]
        u32[H_CHAN_FREE] = i
        q = u32[e + C_QUEUE]
        if q != i:
            eq = self.cw + q * CW
            if u32[eq + C_REFS]:
                u32[eq + C_REFS] -= 1
            self._free_chan_if_unused(q)

    def _free_kept_entries(self) -> bool:
        """The channel table is full: free the empty entries kept for reuse."""
        u32 = self.u32
        for i in range(1, u32[H_CHAN_BUMP]):
            self._free_chan_if_unused(i, force=True)
        return bool(u32[H_CHAN_FREE])

    def _unchain(self, bucket_w: int, i: int, base: int, stride: int, next_w: int) -> None:
        """Unlink entry ``i`` from the hash chain starting at word ``bucket_w`` (one store)."""
        u32 = self.u32
        cur = u32[bucket_w]
        if cur == i:
            u32[bucket_w] = u32[base + i * stride + next_w]
            return
        while cur:
            nxt_w = base + cur * stride + next_w
            nxt = u32[nxt_w]
            if nxt == i:
                u32[nxt_w] = u32[base + i * stride + next_w]
                return
            cur = nxt

    # ====================================================================== nodes

    def _new_node(self) -> int:
        u32 = self.u32
        n = u32[H_NODE_FREE]
        if n:
            u32[H_NODE_FREE] = u32[self.nw + n * NW + N_NEXT]
            return n
        n = u32[H_NODE_BUMP]
        if n >= self.geometry.n_nodes:
            return 0
        u32[H_NODE_BUMP] = n + 1
        return n

    def _free_node(self, n: int) -> None:
        u32 = self.u32
        w = self.nw + n * NW
        u32[w + N_FLAGS] = 0
        u32[w + N_NEXT] = u32[H_NODE_FREE]
        u32[H_NODE_FREE] = n

    def _enqueue(self, i: int, block: int, now: float, expires: float) -> bool:
        """Link a node for ``block`` at the tail of entry ``i``'s queue; False if no node."""
        u32, f64 = self.u32, self.f64
        n = self._new_node()
        if not n:
            return False
        w = self.nw + n * NW
        u32[w + N_NEXT] = 0
        u32[w + N_CHAN] = i
        u32[w + N_PAYLOAD] = block
        u32[w + N_FLAGS] = 1
        fb = w >> 1
        f64[fb + (N_SENT_B >> 3)] = now
        f64[fb + (N_EXPIRES_B >> 3)] = expires
        e = self.cw + i * CW
        q = u32[e + C_QUEUE]
        eq = self.cw + q * CW
        tail = u32[eq + C_TAIL]
        if tail:
            u32[self.nw + tail * NW + N_NEXT] = n  # link last
        else:
            u32[eq + C_HEAD] = n  # link last
        u32[eq + C_TAIL] = n
        u32[eq + C_QCOUNT] += 1
        u32[e + C_NCOUNT] += 1
        u32[e + C_NSENT] = (u32[e + C_NSENT] + 1) & _MASK32
        u32[(block >> 2) + 1] += 1
        self.u64[Q_SENT] += 1
        bucket = u32[eq + C_HASH] & self.cmask
        if u32[self.bww + bucket] or u32[H_WILD]:
            self._collect_waiters(bucket)
        return True

    def _pop_head(self, eq: int, n: int) -> int:
        """Unlink the head node ``n`` of the queue at entry word ``eq``; return its channel."""
        u32 = self.u32
        w = self.nw + n * NW
        nxt = u32[w + N_NEXT]
        u32[eq + C_HEAD] = nxt  # the one store that takes it off the queue
        if not nxt:
            u32[eq + C_TAIL] = 0
        u32[eq + C_QCOUNT] -= 1
        chan = u32[w + N_CHAN]
        u32[self.cw + chan * CW + C_NCOUNT] -= 1
        return chan

    def _drop_node(self, n: int, chan: int, expired: bool) -> None:
        u32 = self.u32
        w = self.nw + n * NW
        self.heap.decref(u32[w + N_PAYLOAD])
        self._free_node(n)
        if expired:
            self.u64[Q_EXPIRED] += 1
            e = self.cw + chan * CW
            u32[e + C_NEXP] = (u32[e + C_NEXP] + 1) & _MASK32
            self.expired_chans.append(chan)
        self.maybe_free.append(chan)

    def reclaim_expired(self, q: int, now: float, scan: bool = False) -> None:
        """Drop expired messages at the head of queue ``q`` (all of them when ``scan``)."""
        u32, f64 = self.u32, self.f64
        eq = self.cw + q * CW
        nw = self.nw
        n = u32[eq + C_HEAD]
        while n and f64[((nw + n * NW) >> 1) + (N_EXPIRES_B >> 3)] <= now:
            chan = self._pop_head(eq, n)
            self._drop_node(n, chan, True)
            n = u32[eq + C_HEAD]
        if not scan or not n:
            return
        # Senders with different ``expiry`` settings can leave an expired node behind a
        # live head; only a full channel pays for this walk.
        prev = n
        n = u32[nw + n * NW + N_NEXT]
        while n:
            w = nw + n * NW
            nxt = u32[w + N_NEXT]
            if f64[(w >> 1) + (N_EXPIRES_B >> 3)] <= now:
                u32[nw + prev * NW + N_NEXT] = nxt
                if not nxt:
                    u32[eq + C_TAIL] = prev
                u32[eq + C_QCOUNT] -= 1
                chan = u32[w + N_CHAN]
                u32[self.cw + chan * CW + C_NCOUNT] -= 1
                self._drop_node(n, chan, True)
            else:
                prev = n
            n = nxt

    def sweep(self, now: float, budget: int) -> None:
        """Visit ``budget`` channel entries round-robin and drop their expired heads."""
        u32, f64 = self.u32, self.f64
        bump = u32[H_CHAN_BUMP]
        cursor = u32[H_SWEEP]
        cw, nw = self.cw, self.nw
        for _ in range(budget):
            cursor += 1
            if cursor >= bump:
                cursor = 1
                if bump <= 1:
                    break
            e = cw + cursor * CW
            if u32[e + C_FLAGS] & 1 and u32[e + C_QCOUNT]:
                n = u32[e + C_HEAD]
                if f64[((nw + n * NW) >> 1) + (N_EXPIRES_B >> 3)] <= now:
                    self.reclaim_expired(cursor, now)
        u32[H_SWEEP] = cursor

    def sweep_all(self, now: float) -> None:
        """Drop every expired message (the heap or node table ran short)."""
        u32 = self.u32
        for i in range(1, u32[H_CHAN_BUMP]):
            e = self.cw + i * CW
            if u32[e + C_FLAGS] & 1 and u32[e + C_QCOUNT]:
                self.reclaim_expired(i, now, scan=True)
        # No finish() here: the caller may hold entry indices that freeing would recycle.

    # ======================================================================= send

    def _has_room(self, i: int, now: float) -> bool:
        u32 = self.u32
        e = self.cw + i * CW
        if u32[e + C_NCOUNT] < u32[e + C_CAP]:
            return True
        q = u32[e + C_QUEUE]
        self.reclaim_expired(q, now, scan=True)
        return u32[e + C_NCOUNT] < u32[e + C_CAP]

    def _alloc(self, data: bytes, now: float) -> int:
        block = self.heap.alloc(len(data))
        if not block:
            self.sweep_all(now)
            block = self.heap.alloc(len(data))
            if not block:
                return 0
        self.heap.write(block, data)
        return block

    def send(self, name: bytes, h: int, data: bytes, now: float, expires: float, cap: int) -> int:
        """Queue ``data`` on channel ``name``: OK, FULL or NOSPACE."""
        u32 = self.u32
        self._ops += 1
        if not self._ops & 3:  # amortised: 2 entries per send, one call in four
            self.sweep(now, 8)
        i = self.chan_for(name, h, cap)
        if not i:
            self.u64[Q_SEGFULL] += 1
            return NOSPACE
        if not self._has_room(i, now):
            e = self.cw + i * CW
            u32[e + C_NFULL] = (u32[e + C_NFULL] + 1) & _MASK32
            self.u64[Q_FULL] += 1
            return FULL
        block = self._alloc(data, now)
        if block and not self._enqueue(i, block, now, expires):
            self.sweep_all(now)  # the node table ran short: expired messages give theirs back
            if not self._enqueue(i, block, now, expires):
                self.heap.free(block)
                block = 0
        if not block:
            self.maybe_free.append(i)
            self.u64[Q_SEGFULL] += 1
            return NOSPACE
        return OK

    # ==================================================================== receive

    def maybe_pending(self, targets: list[tuple[bytes, int]]) -> bool:
        """Lock-free hint: False only if every target's queue looked empty.

        Read without the lock (``FastPath.pending``), so it may be stale either way;
        callers use it only to skip a lock round (a spinning or draining receiver), never
        to decide to sleep: arming still happens under the lock after a real check.
        """
        fast = self.segment.fast
        return fast is None or fast.pending(targets)

    def receive(self, targets: list[tuple[bytes, int]], start: int, now: float) -> tuple[bytes, bytes] | None:
        """Pop the first live message of the first non-empty target (from ``start``).

        Returns (exact channel name, payload copy) or None.
        """
        u32, f64 = self.u32, self.f64
        cw, nw = self.cw, self.nw
        count = len(targets)
        for k in range(count):
            name, h = targets[(start + k) % count]
            q = self.lookup_chan(name, h)
            if not q:
                continue
            eq = cw + q * CW
            n = u32[eq + C_HEAD]
            while n:
                w = nw + n * NW
                chan = self._pop_head(eq, n)
                if f64[(w >> 1) + (N_EXPIRES_B >> 3)] <= now:
                    self._drop_node(n, chan, True)
                    n = u32[eq + C_HEAD]
                    continue
                block = u32[w + N_PAYLOAD]
                payload = self.heap.payload(block)
                full_name = name if chan == q else self.chan_name(chan)
                self.heap.decref(block)
                self._free_node(n)
                if not u32[cw + chan * CW + C_NCOUNT]:
                    self.maybe_free.append(chan)
                self.u64[Q_RECEIVED] += 1
                return full_name, payload
        return None

    # ============================================================ whole-layer ops

    def discard_prefix(self, prefix: bytes) -> int:
        """Drop the messages and memberships of every channel named ``prefix*``."""
        u32 = self.u32
        dropped = 0
        matched = []
        for i in range(1, u32[H_CHAN_BUMP]):
            e = self.cw + i * CW
            if not u32[e + C_FLAGS] & 1 or u32[e + C_NLEN] < len(prefix):
                continue
            start = e * 4 + C_NAME
            if self.mv[start : start + len(prefix)] != prefix:
                continue
            n = u32[e + C_HEAD]
            while n:
                chan = self._pop_head(e, n)
                self._drop_node(n, chan, False)
                dropped += 1
                n = u32[e + C_HEAD]
            m = u32[e + C_MHEAD]
            while m:
                nxt = u32[self.mw + m * MW + M_CNEXT]
                self.remove_member(m)
                m = nxt
            matched.append(i)
        self.finish(0.0)
        for i in matched:
            self._free_chan_if_unused(i, force=True)
        self.u64[Q_DISCARDED] += dropped
        return dropped

    def flush(self) -> None:
        """Empty every channel and group (waiters stay)."""
        u32 = self.u32
        for i in range(1, u32[H_CHAN_BUMP]):
            e = self.cw + i * CW
            u32[e + C_FLAGS] = 0
            u32[e + C_GEN] = (u32[e + C_GEN] + 1) & _MASK32
        for g in range(1, u32[H_GROUP_BUMP]):
            e = self.gw + g * GW
            u32[e + G_FLAGS] = 0
            u32[e + G_GEN] = (u32[e + G_GEN] + 1) & _MASK32
        geo = self.geometry
        for off, count in (
            (geo.chan_bucket_off, geo.n_chan_buckets),
            (geo.group_bucket_off, geo.n_group_buckets),
            (geo.member_bucket_off, geo.n_member_buckets),
        ):
            self.mv[off : off + count * 4] = bytes(count * 4)
        for free, bump in (
            (H_CHAN_FREE, H_CHAN_BUMP), (H_GROUP_FREE, H_GROUP_BUMP),
            (H_MEMBER_FREE, H_MEMBER_BUMP), (H_NODE_FREE, H_NODE_BUMP),
        ):
            u32[free] = 0
            u32[bump] = 1
        u32[H_SWEEP] = 0
        self.heap.reset()
        self.expired_chans.clear()
        self.maybe_free.clear()
        self._chan_cache.clear()
        self._group_cache.clear()

    def finish(self, now: float) -> None:
        """Deferred expiry effects: expired channels leave their groups; free empty entries."""
        expired = self.expired_chans
        while expired:
            c = expired.pop()
            if self.u32[self.cw + c * CW + C_FLAGS] & 1:
                self.leave_all_groups(c)
        pending = self.maybe_free
        while pending:
            self._free_chan_if_unused(pending.pop())

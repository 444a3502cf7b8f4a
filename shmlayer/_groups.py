"""Groups and memberships (a mixin of ``_store.Store``; same locking and write-order rules).

A membership (group, channel, stamp) is reachable from the membership hash chain (the
primary link, written last on add and cut first on removal) and threaded on two doubly
linked lists: the members of its group (``send_group``) and the groups of its channel
(leaving every group when a message expires unread, ``discard_prefix``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _layout as L
from ._fields import (
    CW, C_CAP, C_FLAGS, C_MHEAD, C_NCOUNT, C_NFULL, GW, G_FLAGS, G_GEN, G_HASH, G_HNEXT,
    G_MCOUNT, G_MHEAD, G_NAME, G_NLEN, G_NSENT, H_GROUP_BUMP, H_GROUP_FREE, H_MEMBER_BUMP,
    H_MEMBER_FREE, MW, M_CHAN, M_CNEXT, M_CPREV, M_FLAGS, M_GNEXT, M_GPREV, M_GROUP, M_HASH,
    M_HNEXT, M_STAMP_B, NOSPACE, OK, Q_FULL, Q_GSENDS, Q_GSKIP, Q_MEXPIRED, Q_SEGFULL,
    member_hash,
)
from ._fields import _MASK32

if TYPE_CHECKING:
    from ._heap import Heap


class GroupTable:
    """Group operations; expects the attributes ``_store.Store`` sets up."""

    if TYPE_CHECKING:
        # Declared for the type checker only: ``_store.Store`` sets these up and defines
        # the methods; nothing here exists at run time.
        geometry: L.Geometry
        u32: memoryview
        u64: memoryview
        f64: memoryview[float]
        mv: memoryview
        heap: Heap
        cw: int
        gw: int
        gbw: int
        gmask: int
        mw: int
        mbw: int
        mmask: int
        maybe_free: list[int]
        _group_cache: dict[bytes, tuple[int, int]]

        def chan_name(self, i: int) -> bytes: ...
        def lookup_chan(self, name: bytes, h: int) -> int: ...
        def chan_for(self, name: bytes, h: int, cap: int) -> int: ...
        def _unchain(self, bucket_w: int, i: int, base: int, stride: int, next_w: int) -> None: ...
        def sweep(self, now: float, budget: int) -> None: ...
        def _alloc(self, data: bytes, now: float) -> int: ...
        def _has_room(self, i: int, now: float) -> bool: ...
        def _enqueue(self, i: int, block: int, now: float, expires: float) -> bool: ...

    def lookup_group(self, name: bytes, h: int) -> int:
        u32 = self.u32
        cached = self._group_cache.get(name)
        if cached is not None:
            g, gen = cached
            e = self.gw + g * GW
            if u32[e + G_GEN] == gen and u32[e + G_FLAGS] & 1:
                return g
        g = u32[self.gbw + (h & self.gmask)]
        n = len(name)
        while g:
            e = self.gw + g * GW
            if u32[e + G_HASH] == h and u32[e + G_NLEN] == n:
                start = e * 4 + G_NAME
                if self.mv[start : start + n] == name:
                    if len(self._group_cache) > 5000:
                        self._group_cache.clear()
                    self._group_cache[name] = (g, u32[e + G_GEN])
                    return g
            g = u32[e + G_HNEXT]
        return 0

    def _create_group(self, name: bytes, h: int) -> int:
        u32 = self.u32
        g = u32[H_GROUP_FREE]
        if g:
            u32[H_GROUP_FREE] = u32[self.gw + g * GW + G_HNEXT]
        else:
            g = u32[H_GROUP_BUMP]
            if g >= self.geometry.n_groups:
                return 0
            u32[H_GROUP_BUMP] = g + 1
        e = self.gw + g * GW
        gen = (u32[e + G_GEN] + 1) & _MASK32
        for w in range(G_NAME >> 2):
            u32[e + w] = 0
        start = e * 4 + G_NAME
        self.mv[start : start + len(name)] = name
        u32[e + G_HASH] = h
        u32[e + G_NLEN] = len(name)
        u32[e + G_FLAGS] = 1
        u32[e + G_GEN] = gen
        bucket = self.gbw + (h & self.gmask)
        u32[e + G_HNEXT] = u32[bucket]
        u32[bucket] = g  # link last
        return g

    def _free_group_if_empty(self, g: int) -> None:
        u32 = self.u32
        e = self.gw + g * GW
        if not u32[e + G_FLAGS] & 1 or u32[e + G_MHEAD]:
            return
        self._unchain(self.gbw + (u32[e + G_HASH] & self.gmask), g, self.gw, GW, G_HNEXT)
        u32[e + G_FLAGS] = 0
        u32[e + G_GEN] = (u32[e + G_GEN] + 1) & _MASK32
        u32[e + G_HNEXT] = u32[H_GROUP_FREE]
        u32[H_GROUP_FREE] = g

    def group_name(self, g: int) -> bytes:
        e = self.gw + g * GW
        start = e * 4 + G_NAME
        return bytes(self.mv[start : start + self.u32[e + G_NLEN]])

    def _lookup_member(self, g: int, c: int) -> int:
        u32 = self.u32
        m = u32[self.mbw + (member_hash(g, c) & self.mmask)]
        while m:
            w = self.mw + m * MW
            if u32[w + M_GROUP] == g and u32[w + M_CHAN] == c and u32[w + M_FLAGS] & 1:
                return m
            m = u32[w + M_HNEXT]
        return 0

    def _stamp_index(self, m: int) -> int:
        return ((self.mw + m * MW) >> 1) + (M_STAMP_B >> 3)

    def group_add(self, gname: bytes, gh: int, cname: bytes, ch: int, now: float, cap: int) -> int:
        """Add (or re-stamp) a membership: OK or NOSPACE."""
        u32 = self.u32
        c = self.chan_for(cname, ch, cap)
        if not c:
            self.u64[Q_SEGFULL] += 1
            return NOSPACE
        g = self.lookup_group(gname, gh) or self._create_group(gname, gh)
        if not g:
            self.maybe_free.append(c)
            self.u64[Q_SEGFULL] += 1
            return NOSPACE
        m = self._lookup_member(g, c)
        if m:
            self.f64[self._stamp_index(m)] = now
            return OK
        m = u32[H_MEMBER_FREE]
        if m:
            u32[H_MEMBER_FREE] = u32[self.mw + m * MW + M_HNEXT]
        else:
            m = u32[H_MEMBER_BUMP]
            if m >= self.geometry.n_members:
                self.maybe_free.append(c)
                self._free_group_if_empty(g)
                self.u64[Q_SEGFULL] += 1
                return NOSPACE
            u32[H_MEMBER_BUMP] = m + 1
        w = self.mw + m * MW
        mh = member_hash(g, c)
        u32[w + M_HASH] = mh
        u32[w + M_FLAGS] = 1
        u32[w + M_GROUP] = g
        u32[w + M_CHAN] = c
        self.f64[self._stamp_index(m)] = now
        self._link_member_lists(m, g, c)
        bucket = self.mbw + (mh & self.mmask)
        u32[w + M_HNEXT] = u32[bucket]
        u32[bucket] = m  # link last
        return OK

    def _link_member_lists(self, m: int, g: int, c: int) -> None:
        u32 = self.u32
        w = self.mw + m * MW
        ge = self.gw + g * GW
        head = u32[ge + G_MHEAD]
        u32[w + M_GPREV] = 0
        u32[w + M_GNEXT] = head
        if head:
            u32[self.mw + head * MW + M_GPREV] = m
        u32[ge + G_MHEAD] = m
        u32[ge + G_MCOUNT] += 1
        ce = self.cw + c * CW
        head = u32[ce + C_MHEAD]
        u32[w + M_CPREV] = 0
        u32[w + M_CNEXT] = head
        if head:
            u32[self.mw + head * MW + M_CPREV] = m
        u32[ce + C_MHEAD] = m

    def remove_member(self, m: int) -> None:
        """Drop membership ``m`` (hash chain first: that is the store recovery trusts)."""
        u32 = self.u32
        w = self.mw + m * MW
        g, c = u32[w + M_GROUP], u32[w + M_CHAN]
        self._unchain(self.mbw + (u32[w + M_HASH] & self.mmask), m, self.mw, MW, M_HNEXT)
        prev, nxt = u32[w + M_GPREV], u32[w + M_GNEXT]
        if prev:
            u32[self.mw + prev * MW + M_GNEXT] = nxt
        else:
            u32[self.gw + g * GW + G_MHEAD] = nxt
        if nxt:
            u32[self.mw + nxt * MW + M_GPREV] = prev
        prev, nxt = u32[w + M_CPREV], u32[w + M_CNEXT]
        if prev:
            u32[self.mw + prev * MW + M_CNEXT] = nxt
        else:
            u32[self.cw + c * CW + C_MHEAD] = nxt
        if nxt:
            u32[self.mw + nxt * MW + M_CPREV] = prev
        u32[self.gw + g * GW + G_MCOUNT] -= 1
        u32[w + M_FLAGS] = 0
        u32[w + M_HNEXT] = u32[H_MEMBER_FREE]
        u32[H_MEMBER_FREE] = m
        self._free_group_if_empty(g)
        self.maybe_free.append(c)

    def group_discard(self, gname: bytes, gh: int, cname: bytes, ch: int) -> None:
        g = self.lookup_group(gname, gh)
        c = self.lookup_chan(cname, ch)
        if g and c:
            m = self._lookup_member(g, c)
            if m:
                self.remove_member(m)

    def leave_all_groups(self, c: int) -> None:
        """Drop every membership of channel ``c`` (its message expired unread)."""
        u32 = self.u32
        e = self.cw + c * CW
        m = u32[e + C_MHEAD]
        while m and u32[e + C_FLAGS] & 1:
            nxt = u32[self.mw + m * MW + M_CNEXT]
            self.remove_member(m)
            self.u64[Q_MEXPIRED] += 1
            m = nxt

    def group_channels(self, gname: bytes, gh: int, now: float, group_expiry: float) -> list[bytes]:
        """Names of the live members; expired memberships are dropped on the way."""
        u32, f64 = self.u32, self.f64
        g = self.lookup_group(gname, gh)
        names = []
        m = u32[self.gw + g * GW + G_MHEAD] if g else 0
        while m:
            w = self.mw + m * MW
            nxt = u32[w + M_GNEXT]
            if f64[self._stamp_index(m)] + group_expiry <= now:
                self.remove_member(m)
                self.u64[Q_MEXPIRED] += 1
            else:
                names.append(self.chan_name(u32[w + M_CHAN]))
            m = nxt
        return names

    def send_group(self, gname: bytes, gh: int, data: bytes, now: float, expires: float, group_expiry: float) -> int:
        """One reference per live, non-full member to a single stored payload: OK or NOSPACE."""
        u32, f64 = self.u32, self.f64
        self.sweep(now, 2)
        g = self.lookup_group(gname, gh)
        if not g:
            return OK
        ge = self.gw + g * GW
        u32[ge + G_NSENT] = (u32[ge + G_NSENT] + 1) & _MASK32
        self.u64[Q_GSENDS] += 1
        block = self._alloc(data, now)
        if not block:
            self.u64[Q_SEGFULL] += 1
            return NOSPACE
        cw, mw = self.cw, self.mw
        stamp_off = M_STAMP_B >> 3
        m = u32[ge + G_MHEAD]
        nospace = False
        while m:
            w = mw + m * MW
            nxt = u32[w + M_GNEXT]
            if f64[(w >> 1) + stamp_off] + group_expiry <= now:
                self.remove_member(m)
                self.u64[Q_MEXPIRED] += 1
            else:
                c = u32[w + M_CHAN]
                e = cw + c * CW
                if u32[e + C_NCOUNT] >= u32[e + C_CAP] and not self._has_room(c, now):
                    u32[e + C_NFULL] = (u32[e + C_NFULL] + 1) & _MASK32
                    self.u64[Q_FULL] += 1
                    self.u64[Q_GSKIP] += 1
                elif not self._enqueue(c, block, now, expires):
                    nospace = True
                    self.u64[Q_SEGFULL] += 1
            m = nxt
        if not u32[(block >> 2) + 1]:
            self.heap.free(block)
        return NOSPACE if nospace else OK

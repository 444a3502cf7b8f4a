"""Recovery after a lock holder died mid-operation, and a consistency checker.

Recovery trusts only the *primary* links (hash chains and queue ``next`` links) and
rebuilds everything derived from them (see ``_store.py``, "link last"):

1. Walk each hash chain; cut it at the first entry that is out of range, not in use,
   already seen (a cycle) or whose name does not hash to its bucket.
2. Entries not reached become free (generation bumped so process caches drop them).
3. Re-derive each process-local entry's queue (its ``prefix!`` entry, created if missing).
4. Walk each queue; cut it at the first node that is out of range, seen twice, belongs to
   another queue or points at something that is not a USED heap block. Recount qcount,
   ncount and tails; tally block references.
5. Rebuild the heap's free lists around the referenced blocks (``Heap.rebuild``) and the
   free lists of nodes, memberships and groups.
6. Rebuild the group/channel membership lists from the membership hash chains.
7. Free waiter slots of dead processes and recount the waiter counters.

It is O(table sizes) with no allocation proportional to the heap, bounded (every loop is
bounded by a table size) and idempotent: if the recovering process dies too, the dirty
word is still set and the next holder starts over.
"""

from __future__ import annotations

import os
import zlib
from typing import Callable

from . import _layout as L
from ._fields import (
    C_CAP, C_FLAGS, C_GEN, C_HASH, C_HEAD, C_HNEXT, C_MHEAD, C_NAME, C_NCOUNT, C_NLEN, C_QCOUNT, C_QUEUE,
    C_REFS, C_TAIL, CW, G_FLAGS, G_GEN, G_HASH, G_HNEXT, G_MCOUNT, G_MHEAD, G_NAME, G_NLEN, GW,
    H_CHAN_BUMP, H_CHAN_FREE, H_GROUP_BUMP, H_GROUP_FREE, H_MEMBER_BUMP, H_MEMBER_FREE, H_NODE_BUMP,
    H_NODE_FREE, H_SWEEP, H_WBUMP, H_WILD, M_CHAN, M_FLAGS, M_GROUP, M_HASH, M_HNEXT, MW, N_CHAN,
    N_FLAGS, N_NEXT, N_PAYLOAD, NW, STATE_ARMED, STATE_FREE,
    W_BUCKETS, W_NB, W_PID, W_STATE, WW, kind_of, member_hash,
)
from ._store import Store

_MASK32 = 0xFFFFFFFF
_RECOVERIES_W = L.H["recoveries"] >> 2


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists (ours or another user's)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _walk_chains(store: Store, base: int, stride: int, buckets_w: int, nbuckets: int, bump: int,
                 hnext: int, flags: int, hash_w: int, nlen_w: int, name_off: int) -> bytearray:
    """Validate and cut the hash chains of a name table; return the reached-entry map."""
    u32, mv = store.u32, store.mv
    reached = bytearray(max(bump, 1))
    mask = nbuckets - 1
    for b in range(nbuckets):
        link_w = buckets_w + b
        i = u32[link_w]
        while i:
            e = base + i * stride
            ok = 0 < i < bump and not reached[i] and u32[e + flags] & 1
            if ok:
                n = u32[e + nlen_w]
                start = e * 4 + name_off
                h = u32[e + hash_w]
                ok = 0 < n <= L.NAME_CAPACITY and (h & mask) == b and zlib.crc32(mv[start : start + n]) == h
            if not ok:
                u32[link_w] = 0  # cut: the rest of this chain is lost
                break
            reached[i] = 1
            link_w = e + hnext
            i = u32[link_w]
    return reached


def _rebuild_free(u32: memoryview, base: int, stride: int, bump: int, reached: bytearray, link: int,
                  flags: int, gen: int | None, free_w: int) -> None:
    head = 0
    for i in range(bump - 1, 0, -1):
        if reached[i]:
            continue
        e = base + i * stride
        u32[e + flags] = 0
        if gen is not None:
            u32[e + gen] = (u32[e + gen] + 1) & _MASK32
        u32[e + link] = head
        head = i
    u32[free_w] = head


def recover(store: Store, alive: Callable[[int], bool] = pid_alive) -> None:
    """Repair the segment after a holder died mid-operation (lock held by the caller)."""
    u32 = store.u32
    geo = store.geometry
    store._chan_cache.clear()
    store._group_cache.clear()
    store.expired_chans.clear()
    store.maybe_free.clear()
    store.wake.clear()
    cw = store.cw

    # 1-2. channel chains and free channel entries
    cbump = min(u32[H_CHAN_BUMP] or 1, geo.n_channels)
    u32[H_CHAN_BUMP] = cbump
    reach_c = _walk_chains(store, cw, CW, store.cbw, geo.n_chan_buckets, cbump, C_HNEXT, C_FLAGS, C_HASH,
                           C_NLEN, C_NAME)
    _rebuild_free(u32, cw, CW, cbump, reach_c, C_HNEXT, C_FLAGS, C_GEN, H_CHAN_FREE)

    # 3. queues of process-local entries
    live_chans = [i for i in range(1, cbump) if reach_c[i]]
    for i in live_chans:
        e = cw + i * CW
        u32[e + C_QCOUNT] = u32[e + C_NCOUNT] = u32[e + C_REFS] = 0
        u32[e + C_QUEUE] = i
    store.no_evict = True
    try:
        _link_local_queues(store, live_chans, reach_c)
    finally:
        store.no_evict = False
    cbump = u32[H_CHAN_BUMP]
    live_chans = [i for i in range(1, cbump) if i < len(reach_c) and reach_c[i]]
    _walk_queues_and_rest(store, live_chans, reach_c, cbump, alive)


def _link_local_queues(store: Store, live_chans: list[int], reach_c: bytearray) -> None:
    """Point every process-local entry at its ``prefix!`` entry (created if missing)."""
    u32, cw = store.u32, store.cw
    for i in live_chans:
        name = store.chan_name(i)
        if kind_of(name) == L.KIND_LOCAL:
            u32[cw + i * CW + C_FLAGS] = 1 | (L.KIND_LOCAL << 1)
            prefix = name[: name.index(b"!") + 1]
            q = store.chan_for(prefix, zlib.crc32(prefix), u32[cw + i * CW + C_CAP])
            if q:
                if q >= len(reach_c):
                    reach_c.extend(bytes(q + 1 - len(reach_c)))
                reach_c[q] = 1
                u32[cw + i * CW + C_QUEUE] = q
                u32[cw + q * CW + C_REFS] += 1


def _walk_queues_and_rest(store: Store, live_chans: list[int], reach_c: bytearray, cbump: int,
                          alive: Callable[[int], bool]) -> None:
    u32 = store.u32
    geo = store.geometry
    cw, nw, gw, mw = store.cw, store.nw, store.gw, store.mw

    # 4. queues
    nbump = min(u32[H_NODE_BUMP] or 1, geo.n_nodes)
    u32[H_NODE_BUMP] = nbump
    reach_n = bytearray(nbump)
    live: dict[int, int] = {}
    heap = store.heap
    for q in live_chans:
        eq = cw + q * CW
        if kind_of(store.chan_name(q)) == L.KIND_LOCAL:
            u32[eq + C_HEAD] = u32[eq + C_TAIL] = 0
            continue
        link_w = eq + C_HEAD
        n = u32[link_w]
        last = 0
        count = 0
        while n:
            w = nw + n * NW
            # The node's own fields only once the index is known to be in the table.
            ok = 0 < n < nbump and reach_n[n] == 0
            if ok:
                chan = u32[w + N_CHAN]
                block = u32[w + N_PAYLOAD]
                ok = (0 < chan < cbump and reach_c[chan] == 1 and u32[cw + chan * CW + C_QUEUE] == q
                      and heap.valid_block(block))
            if not ok:
                u32[link_w] = 0
                break
            reach_n[n] = 1
            u32[w + N_FLAGS] = 1
            live[block] = live.get(block, 0) + 1
            u32[cw + chan * CW + C_NCOUNT] += 1
            count += 1
            last = n
            link_w = w + N_NEXT
            n = u32[link_w]
        u32[eq + C_TAIL] = last
        u32[eq + C_QCOUNT] = count

    # 5. heap and node free list
    dropped = heap.rebuild(live)
    if dropped:
        _drop_nodes_of(store, live_chans, dropped, reach_n)
    _rebuild_free(u32, nw, NW, nbump, reach_n, N_NEXT, N_FLAGS, None, H_NODE_FREE)

    # 6. groups and memberships
    gbump = min(u32[H_GROUP_BUMP] or 1, geo.n_groups)
    u32[H_GROUP_BUMP] = gbump
    reach_g = _walk_chains(store, gw, GW, store.gbw, geo.n_group_buckets, gbump, G_HNEXT, G_FLAGS, G_HASH,
                           G_NLEN, G_NAME)
    _rebuild_free(u32, gw, GW, gbump, reach_g, G_HNEXT, G_FLAGS, G_GEN, H_GROUP_FREE)
    for g in range(1, gbump):
        if reach_g[g]:
            u32[gw + g * GW + G_MHEAD] = u32[gw + g * GW + G_MCOUNT] = 0
    for i in live_chans:
        u32[cw + i * CW + C_MHEAD] = 0
    mbump = min(u32[H_MEMBER_BUMP] or 1, geo.n_members)
    u32[H_MEMBER_BUMP] = mbump
    reach_m = bytearray(mbump)
    pairs: set[tuple[int, int]] = set()
    mmask = geo.n_member_buckets - 1
    for b in range(geo.n_member_buckets):
        link_w = store.mbw + b
        m = u32[link_w]
        while m:
            w = mw + m * MW
            ok = 0 < m < mbump and reach_m[m] == 0 and u32[w + M_FLAGS] & 1 == 1
            if ok:  # as for nodes: the fields only once the index is in the table
                g, c = u32[w + M_GROUP], u32[w + M_CHAN]
                ok = (0 < g < gbump and reach_g[g] == 1 and 0 < c < cbump and reach_c[c] == 1
                      and u32[w + M_HASH] == member_hash(g, c) and (u32[w + M_HASH] & mmask) == b
                      and (g, c) not in pairs)
            if not ok:
                u32[link_w] = 0
                break
            reach_m[m] = 1
            pairs.add((g, c))
            store._link_member_lists(m, g, c)
            link_w = w + M_HNEXT
            m = u32[link_w]
    _rebuild_free(u32, mw, MW, mbump, reach_m, M_HNEXT, M_FLAGS, None, H_MEMBER_FREE)
    for g in range(1, gbump):
        if reach_g[g]:
            store._free_group_if_empty(g)
    store.maybe_free.extend(live_chans)
    store.finish(0.0)

    # 7. waiters
    recount_waiters(store, alive)
    if u32[H_SWEEP] >= u32[H_CHAN_BUMP]:
        u32[H_SWEEP] = 0
    u32[_RECOVERIES_W] += 1


def _drop_nodes_of(store: Store, chans: list[int], blocks: set[int], reach_n: bytearray) -> None:
    """Unlink the nodes pointing at heap blocks recovery could not keep."""
    u32 = store.u32
    cw, nw = store.cw, store.nw
    for q in chans:
        eq = cw + q * CW
        prev = 0
        n = u32[eq + C_HEAD]
        while n:
            w = nw + n * NW
            nxt = u32[w + N_NEXT]
            if u32[w + N_PAYLOAD] in blocks:
                if prev:
                    u32[nw + prev * NW + N_NEXT] = nxt
                else:
                    u32[eq + C_HEAD] = nxt
                if u32[eq + C_TAIL] == n:
                    u32[eq + C_TAIL] = prev
                u32[eq + C_QCOUNT] -= 1
                u32[cw + u32[w + N_CHAN] * CW + C_NCOUNT] -= 1
                reach_n[n] = 0
            else:
                prev = n
            n = nxt


def recount_waiters(store: Store, alive: Callable[[int], bool] = pid_alive) -> None:
    """Free the slots of dead processes and recompute the waiter counters."""
    u32 = store.u32
    geo = store.geometry
    store.mv[geo.bucket_waiters_off : geo.bucket_waiters_off + geo.n_chan_buckets * 4] = bytes(
        geo.n_chan_buckets * 4
    )
    u32[H_WILD] = 0
    wbump = min(u32[H_WBUMP], geo.n_waiters)
    u32[H_WBUMP] = wbump
    for s in range(wbump):
        w = store.ww + s * WW
        pid = u32[w + W_PID]
        if u32[w + W_STATE] == STATE_FREE and not pid:
            continue
        if not alive(pid):
            u32[w + W_STATE] = STATE_FREE
            u32[w + W_PID] = 0
            continue
        if u32[w + W_STATE] != STATE_ARMED:
            continue
        nb = u32[w + W_NB]
        if nb == L.WILDCARD:
            u32[H_WILD] += 1
        elif nb <= L.MAX_WAIT_BUCKETS and all(
            u32[w + W_BUCKETS + k] < geo.n_chan_buckets for k in range(nb)
        ):
            for k in range(nb):
                u32[store.bww + u32[w + W_BUCKETS + k]] += 1
        else:
            u32[w + W_STATE] = 1

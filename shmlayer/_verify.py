"""A read-only consistency check of every cross-structure invariant of a segment.

Used by ``stats`` ("consistency: ok"), by tests after crashes, and by the model-based
test after every step. Runs under the segment lock; bounded by the table sizes.
"""

from __future__ import annotations

import zlib

from . import _layout as L
from ._fields import (
    C_FLAGS, C_HASH, C_HEAD, C_HNEXT, C_MHEAD, C_NCOUNT, C_NLEN, C_QCOUNT, C_QUEUE, C_REFS, C_TAIL,
    CW, G_FLAGS, G_HNEXT, G_MCOUNT, G_MHEAD, GW, H_CHAN_BUMP, H_CHAN_FREE, H_GROUP_BUMP, H_GROUP_FREE,
    H_MEMBER_BUMP, H_MEMBER_FREE, H_NODE_BUMP, H_NODE_FREE, H_WBUMP, H_WILD, M_CHAN, M_CNEXT,
    M_FLAGS, M_GNEXT, M_GROUP, M_HNEXT, MW, N_CHAN, N_NEXT, N_PAYLOAD, NW, STATE_ARMED, W_BUCKETS,
    W_NB, W_STATE, WW,
)
from ._store import Store


def _chain_members(store: Store, buckets_w: int, nbuckets: int, base: int, stride: int, link: int,
                   limit: int, problems: list[str], label: str) -> set[int]:
    u32 = store.u32
    seen: set[int] = set()
    for b in range(nbuckets):
        i = u32[buckets_w + b]
        while i:
            if i in seen or i >= limit:
                problems.append(f"{label} chain {b} broken at {i}")
                break
            seen.add(i)
            i = u32[base + i * stride + link]
    return seen


def _free_list(store: Store, head: int, base: int, stride: int, link: int, limit: int,
               problems: list[str], label: str) -> set[int]:
    u32 = store.u32
    seen: set[int] = set()
    while head:
        if head in seen or head >= limit:
            problems.append(f"{label} free list broken at {head}")
            break
        seen.add(head)
        head = u32[base + head * stride + link]
    return seen


def verify(store: Store) -> list[str]:
    """Return a list of violated invariants (empty when the segment is consistent)."""
    u32 = store.u32
    geo = store.geometry
    problems: list[str] = []
    cw, nw, gw, mw = store.cw, store.nw, store.gw, store.mw
    cbump, nbump, gbump, mbump = (u32[H_CHAN_BUMP], u32[H_NODE_BUMP], u32[H_GROUP_BUMP], u32[H_MEMBER_BUMP])

    chans = _chain_members(store, store.cbw, geo.n_chan_buckets, cw, CW, C_HNEXT, cbump, problems, "channel")
    free_c = _free_list(store, u32[H_CHAN_FREE], cw, CW, C_HNEXT, cbump, problems, "channel")
    if chans & free_c or len(chans) + len(free_c) != cbump - 1:
        problems.append(f"channel entries: {len(chans)} in use + {len(free_c)} free != {cbump - 1}")
    for i in chans:
        e = cw + i * CW
        start = e * 4 + L.C["name"]
        if not u32[e + C_FLAGS] & 1 or zlib.crc32(store.mv[start : start + u32[e + C_NLEN]]) != u32[e + C_HASH]:
            problems.append(f"channel {i} in a chain but not a valid entry")

    ncount: dict[int, int] = {}
    refs: dict[int, int] = {}
    nodes: set[int] = set()
    for q in chans:
        eq = cw + q * CW
        if u32[eq + C_QUEUE] != q:
            continue
        n, last, count = u32[eq + C_HEAD], 0, 0
        while n:
            if n in nodes or n >= nbump:
                problems.append(f"queue {q} broken at node {n}")
                break
            nodes.add(n)
            w = nw + n * NW
            chan = u32[w + N_CHAN]
            if chan not in chans or u32[cw + chan * CW + C_QUEUE] != q:
                problems.append(f"node {n} in queue {q} belongs to channel {chan}")
            ncount[chan] = ncount.get(chan, 0) + 1
            block = u32[w + N_PAYLOAD]
            refs[block] = refs.get(block, 0) + 1
            last, count = n, count + 1
            n = u32[w + N_NEXT]
        if u32[eq + C_TAIL] != last or u32[eq + C_QCOUNT] != count:
            problems.append(f"queue {q}: tail/count {u32[eq + C_TAIL]}/{u32[eq + C_QCOUNT]} != {last}/{count}")
    prefix_refs: dict[int, int] = {}
    for i in chans:
        e = cw + i * CW
        if u32[e + C_NCOUNT] != ncount.get(i, 0):
            problems.append(f"channel {i}: ncount {u32[e + C_NCOUNT]} != {ncount.get(i, 0)}")
        q = u32[e + C_QUEUE]
        if q != i:
            prefix_refs[q] = prefix_refs.get(q, 0) + 1
    for i in chans:
        if u32[cw + i * CW + C_REFS] != prefix_refs.get(i, 0):
            problems.append(f"channel {i}: refs {u32[cw + i * CW + C_REFS]} != {prefix_refs.get(i, 0)}")
    free_n = _free_list(store, u32[H_NODE_FREE], nw, NW, N_NEXT, nbump, problems, "node")
    if nodes & free_n or len(nodes) + len(free_n) != nbump - 1:
        problems.append(f"nodes: {len(nodes)} queued + {len(free_n)} free != {nbump - 1}")

    # Heap: used blocks (from the queues) and free blocks tile the heap exactly.
    heap = store.heap
    spans = []
    for block, count in refs.items():
        if not heap.valid_block(block):
            problems.append(f"node points at invalid block {block}")
            continue
        if u32[(block >> 2) + 1] != count:
            problems.append(f"block {block}: refs {u32[(block >> 2) + 1]} != {count}")
        spans.append((block, 1 << (u32[block >> 2] & 0xFF)))
    used = sum(size for _, size in spans)
    if used != store.u64[L.H["heap_used"] >> 3]:
        problems.append(f"heap_used {store.u64[L.H['heap_used'] >> 3]} != {used}")
    spans += [(block, 1 << order) for block, order in heap.free_blocks()]
    spans.sort()
    cursor = heap.base
    for block, size in spans:
        if block != cursor:
            problems.append(f"heap gap/overlap at {cursor} (next block {block})")
            break
        cursor += size
    expected_end = heap.base + sum(1 << o for _, o in heap._pieces())
    if cursor != expected_end and not any("heap gap" in p for p in problems):
        problems.append(f"heap blocks end at {cursor}, not {expected_end}")

    groups = _chain_members(store, store.gbw, geo.n_group_buckets, gw, GW, G_HNEXT, gbump, problems, "group")
    free_g = _free_list(store, u32[H_GROUP_FREE], gw, GW, G_HNEXT, gbump, problems, "group")
    if groups & free_g or len(groups) + len(free_g) != gbump - 1:
        problems.append(f"groups: {len(groups)} in use + {len(free_g)} free != {gbump - 1}")
    members = _chain_members(store, store.mbw, geo.n_member_buckets, mw, MW, M_HNEXT, mbump, problems, "member")
    free_m = _free_list(store, u32[H_MEMBER_FREE], mw, MW, M_HNEXT, mbump, problems, "member")
    if members & free_m or len(members) + len(free_m) != mbump - 1:
        problems.append(f"memberships: {len(members)} in use + {len(free_m)} free != {mbump - 1}")
    by_group: dict[int, set[int]] = {}
    by_chan: dict[int, set[int]] = {}
    for m in members:
        w = mw + m * MW
        g, c = u32[w + M_GROUP], u32[w + M_CHAN]
        if not u32[w + M_FLAGS] & 1 or g not in groups or c not in chans:
            problems.append(f"membership {m} ({g}, {c}) dangles")
        by_group.setdefault(g, set()).add(m)
        by_chan.setdefault(c, set()).add(m)
    for g in groups:
        e = gw + g * GW
        listed = _list(store, u32[e + G_MHEAD], mw, MW, M_GNEXT, mbump)
        if listed != by_group.get(g, set()) or u32[e + G_MCOUNT] != len(listed) or not listed:
            problems.append(f"group {g}: member list/count does not match its memberships")
        if not u32[e + G_FLAGS] & 1:
            problems.append(f"group {g} in a chain but not in use")
    for c in chans:
        listed = _list(store, u32[cw + c * CW + C_MHEAD], mw, MW, M_CNEXT, mbump)
        if listed != by_chan.get(c, set()):
            problems.append(f"channel {c}: membership list does not match")
        e = cw + c * CW
        if not (u32[e + C_QCOUNT] or u32[e + C_NCOUNT] or u32[e + C_MHEAD] or u32[e + C_REFS]
                or u32[e + C_FLAGS] & L.RETAIN):
            problems.append(f"channel {c} is empty but not freed")

    counts = [0] * geo.n_chan_buckets
    wild = 0
    for s in range(u32[H_WBUMP]):
        w = store.ww + s * WW
        if u32[w + W_STATE] != STATE_ARMED:
            continue
        nb = u32[w + W_NB]
        if nb == L.WILDCARD:
            wild += 1
        else:
            for k in range(nb):
                counts[u32[w + W_BUCKETS + k]] += 1
    if wild != u32[H_WILD] or any(counts[b] != u32[store.bww + b] for b in range(geo.n_chan_buckets)):
        problems.append("waiter counters do not match the armed slots")
    return problems


def _list(store: Store, head: int, base: int, stride: int, link: int, limit: int) -> set[int]:
    u32 = store.u32
    seen: set[int] = set()
    while head and head < limit and head not in seen:
        seen.add(head)
        head = u32[base + head * stride + link]
    return seen

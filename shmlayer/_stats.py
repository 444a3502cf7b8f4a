"""Read-only views of a segment for ``statistics`` and ``python -m shmlayer stats``.

All functions run under the segment lock (the caller takes it), so what they report is
one consistent instant.
"""

from __future__ import annotations

import os
import time
from typing import Any

from . import _layout as L
from ._fields import (
    C_FLAGS, C_HEAD, C_MHEAD, C_NCOUNT, C_NEXP, C_NFULL, C_NSENT, C_QCOUNT, C_QUEUE, C_CAP, CW,
    G_FLAGS, G_MCOUNT, G_NSENT, GW, H_CHAN_BUMP, H_CHAN_FREE, H_GROUP_BUMP, H_GROUP_FREE,
    H_MEMBER_BUMP, H_MEMBER_FREE, H_NODE_BUMP, H_NODE_FREE, H_WBUMP, M_CNEXT, MW, N_CHAN, N_NEXT,
    N_SENT_B, NW, W_NB, W_PID, W_STATE, WW,
)
from ._recovery import pid_alive
from ._store import Store

_COUNTERS = (
    "n_sent", "n_received", "n_full", "n_expired", "n_group_skipped", "n_segment_full",
    "n_group_sends", "n_members_expired", "n_discarded",
)


def _free_count(u32: memoryview, head: int, base: int, stride: int, link: int, limit: int) -> int:
    count = 0
    while head and count <= limit:
        count += 1
        head = u32[base + head * stride + link]
    return count


def _oldest_age(store: Store, chan: int, now: float) -> float:
    """Age of the oldest message addressed to exactly ``chan`` (0.0 if none)."""
    u32, f64 = store.u32, store.f64
    e = store.cw + chan * CW
    if not u32[e + C_NCOUNT]:
        return 0.0
    n = u32[store.cw + u32[e + C_QUEUE] * CW + C_HEAD]
    steps = 0
    while n and steps <= store.geometry.n_nodes:
        w = store.nw + n * NW
        if u32[w + N_CHAN] == chan:
            return max(0.0, now - f64[(w >> 1) + (N_SENT_B >> 3)])
        n = u32[w + N_NEXT]
        steps += 1
    return 0.0


def _oldest_sent(store: Store) -> dict[int, float]:
    """Send time of the oldest queued message of every entry, in one walk of each queue.

    A ``prefix!`` entry gets its queue's head; a local entry its own oldest message.
    """
    u32, f64 = store.u32, store.f64
    oldest: dict[int, float] = {}
    limit = store.geometry.n_nodes
    for q in range(1, u32[H_CHAN_BUMP]):
        e = store.cw + q * CW
        if not u32[e + C_FLAGS] & 1 or u32[e + C_QUEUE] != q:
            continue
        n = u32[e + C_HEAD]
        steps = 0
        while n and steps <= limit:
            w = store.nw + n * NW
            sent = f64[(w >> 1) + (N_SENT_B >> 3)]
            oldest.setdefault(q, sent)
            oldest.setdefault(u32[w + N_CHAN], sent)
            n = u32[w + N_NEXT]
            steps += 1
    return oldest


def global_statistics(store: Store, now: float) -> dict[str, Any]:
    """Layer-wide counters plus memory and table use."""
    u32, u64 = store.u32, store.u64
    geo = store.geometry
    stats: dict[str, Any] = {name: u64[L.H[name] >> 3] for name in _COUNTERS}
    pending = 0
    channels = 0
    for i in range(1, u32[H_CHAN_BUMP]):
        e = store.cw + i * CW
        if u32[e + C_FLAGS] & 1:
            channels += 1
            pending += u32[e + C_QCOUNT]
    used = u64[L.H["heap_used"] >> 3]
    stats.update(
        messages_count=stats["n_sent"],
        messages_pending=pending,
        channel_full_count=stats["n_full"],
        channels=channels,
        heap_size=geo.heap_size,
        heap_used=used,
        heap_free=geo.heap_size - used,
        recoveries=u32[L.H["recoveries"] >> 2],
        epoch=store.segment.epoch,
        age=time.time() - store.f64[L.H["created_at"] >> 3],
    )
    return stats


def channel_statistics(store: Store, name: bytes, h: int, now: float) -> dict[str, Any]:
    """Counters of one channel (or ``prefix!`` queue)."""
    i = store.lookup_chan(name, h)
    if not i:
        return {"messages_count": 0, "messages_pending": 0, "messages_max_age": 0.0,
                "channel_full_count": 0, "messages_expired": 0, "capacity": 0}
    u32 = store.u32
    e = store.cw + i * CW
    pending = u32[e + C_QCOUNT] if name.endswith(b"!") else u32[e + C_NCOUNT]
    if name.endswith(b"!"):
        n = u32[e + C_HEAD]
        age = now - store.f64[((store.nw + n * NW) >> 1) + (N_SENT_B >> 3)] if n else 0.0
    else:
        age = _oldest_age(store, i, now)
    return {
        "messages_count": u32[e + C_NSENT],
        "messages_pending": pending,
        "messages_max_age": max(0.0, age),
        "channel_full_count": u32[e + C_NFULL],
        "messages_expired": u32[e + C_NEXP],
        "capacity": u32[e + C_CAP],
    }


def snapshot(store: Store, now: float) -> dict[str, Any]:
    """Everything ``stats`` prints: globals, channels, groups, tables, processes."""
    from ._verify import verify

    u32 = store.u32
    geo = store.geometry
    channels = []
    oldest = _oldest_sent(store)
    for i in range(1, u32[H_CHAN_BUMP]):
        e = store.cw + i * CW
        if not u32[e + C_FLAGS] & 1:
            continue
        kind = (u32[e + C_FLAGS] >> 1) & 3
        n_groups = 0
        m = u32[e + C_MHEAD]
        while m and n_groups <= geo.n_members:
            n_groups += 1
            m = u32[store.mw + m * MW + M_CNEXT]
        channels.append({
            "name": store.chan_name(i).decode("ascii", "replace"),
            "kind": ("normal", "prefix", "local")[kind] if kind < 3 else "?",
            "depth": u32[e + C_QCOUNT] if kind == L.KIND_PREFIX else u32[e + C_NCOUNT],
            "capacity": u32[e + C_CAP],
            "oldest_age": round(max(0.0, now - oldest[i]), 3) if i in oldest else 0.0,
            "full": u32[e + C_NFULL],
            "expired": u32[e + C_NEXP],
            "sent": u32[e + C_NSENT],
            "groups": n_groups,
        })
    groups: list[dict[str, Any]] = []
    for g in range(1, u32[H_GROUP_BUMP]):
        e = store.gw + g * GW
        if u32[e + G_FLAGS] & 1:
            groups.append({"name": store.group_name(g).decode("ascii", "replace"),
                           "members": u32[e + G_MCOUNT], "sends": u32[e + G_NSENT]})
    tables = {}
    for label, bump, free, total, base, stride, link in (
        ("channels", H_CHAN_BUMP, H_CHAN_FREE, geo.n_channels, store.cw, CW, 0),
        ("groups", H_GROUP_BUMP, H_GROUP_FREE, geo.n_groups, store.gw, GW, 0),
        ("memberships", H_MEMBER_BUMP, H_MEMBER_FREE, geo.n_members, store.mw, MW, 0),
        ("nodes", H_NODE_BUMP, H_NODE_FREE, geo.n_nodes, store.nw, NW, 0),
    ):
        used = u32[bump] - 1 - _free_count(u32, u32[free], base, stride, link, total)
        tables[label] = {"used": used, "total": total - 1}
    processes = []
    for s in range(u32[H_WBUMP]):
        w = store.ww + s * WW
        pid = u32[w + W_PID]
        if pid:
            processes.append({"slot": s, "pid": pid, "alive": pid_alive(pid),
                              "state": ("free", "idle", "waiting")[min(u32[w + W_STATE], 2)],
                              "channels": "all" if u32[w + W_NB] == L.WILDCARD else u32[w + W_NB]})
    free_blocks = [order for _, order in store.heap.free_blocks()]
    result = {
        "segment": store.segment.name,
        "size": geo.segment_size,
        "global": global_statistics(store, now),
        "largest_free_block": (1 << max(free_blocks)) if free_blocks else 0,
        "tables": tables,
        "channels": channels,
        "groups": groups,
        "processes": processes,
        "problems": verify(store),
    }
    return result


def mapping_pids(path: str, ino: int) -> list[int]:
    """Pids of the processes that have this segment file mapped (from /proc/*/maps)."""
    pids = []
    needle = f" {ino} "
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/maps", encoding="utf-8", errors="replace") as maps:
                if any(path in line and needle in line for line in maps):
                    pids.append(int(entry))
        except OSError:
            continue  # gone, or not ours to read
    return sorted(pids)


def format_stats(snap: dict[str, Any], limit: int = 50) -> str:
    """Human-readable text of a :func:`snapshot`."""
    g = snap["global"]
    mib = 1 << 20
    lines = [
        f"segment {snap['segment']}  size {snap['size'] / mib:.1f} MiB  epoch {g['epoch']:x}  "
        f"age {g['age']:.0f} s  recoveries {g['recoveries']}",
        f"memory: heap {g['heap_size'] / mib:.1f} MiB, used {g['heap_used'] / mib:.2f} MiB "
        f"({100 * g['heap_used'] / max(1, g['heap_size']):.1f} %), free {g['heap_free'] / mib:.2f} MiB, "
        f"largest free block {snap['largest_free_block'] / 1024:.0f} KiB",
        "tables: " + ", ".join(f"{k} {v['used']}/{v['total']}" for k, v in snap["tables"].items()),
        "counters: " + ", ".join(f"{k[2:]} {g[k]}" for k in _COUNTERS),
        f"consistency: {'ok' if not snap['problems'] else '; '.join(snap['problems'][:5])}",
        "",
        f"channels ({len(snap['channels'])}):",
        f"  {'name':<48} {'kind':<7} {'depth':>6} {'cap':>5} {'oldest':>8} {'full':>6} {'expired':>7} {'groups':>6}",
    ]
    chans = sorted(snap["channels"], key=lambda c: (-c["depth"], c["name"]))
    for c in chans[:limit]:
        lines.append(
            f"  {c['name'][:48]:<48} {c['kind']:<7} {c['depth']:>6} {c['capacity']:>5} "
            f"{c['oldest_age']:>7.1f}s {c['full']:>6} {c['expired']:>7} {c['groups']:>6}"
        )
    if len(chans) > limit:
        lines.append(f"  ... {len(chans) - limit} more")
    lines += ["", f"groups ({len(snap['groups'])}):"]
    for grp in sorted(snap["groups"], key=lambda x: (-x["members"], x["name"]))[:limit]:
        lines.append(f"  {grp['name'][:48]:<48} members {grp['members']:>6}  sends {grp['sends']}")
    mapped = snap.get("mapped_by", [])
    lines += ["", f"attached processes ({len(mapped)} map the segment: {' '.join(map(str, mapped))})",
              f"waiter slots ({len(snap['processes'])}):"]
    for p in snap["processes"]:
        lines.append(f"  pid {p['pid']:<8} slot {p['slot']:<4} {p['state']:<8} "
                     f"{'alive' if p['alive'] else 'dead'}  channels {p['channels']}")
    return "\n".join(lines)

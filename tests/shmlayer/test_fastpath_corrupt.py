"""A corrupt link or header met by the C path is never followed (no wild write)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

_SETUP = """
import sys, shmlayer
from shmlayer import _layout as L
from shmlayer.layer import name_hash
layer = shmlayer.ShmChannelLayer(name=sys.argv[1], size=4 << 20)
try:
    segment = layer._current().segment
    u32, g, fast = segment.u32, segment.geometry, segment.fast
    C = (b"c", name_hash(b"c"))
"""
_TEARDOWN = """
finally:
    layer.unlink()
"""

_CASES = {
    # enqueue takes the free-list head first, even with room left at the bump index.
    "node free-list head out of range": """
    layer.send("c", {"n": 0})
    u32[L.H["node_free"] >> 2] = 0x7FFFFFF0
    layer.send("c", {"n": 1})
    assert [layer.receive(["c"]) for _ in range(2)] == [("c", {"n": 0}), ("c", {"n": 1})]
    assert layer.stats()["global"]["recoveries"] == 1
    assert layer.verify() == []
""",
    # The C send creating "p!b" queues it on the "p!" entry, so that entry's own tail is
    # what it links behind: a "p!" whose queue field points elsewhere must not let a wild
    # tail through (it used to check the other entry's tail and then write at p!'s).
    "prefix entry queuing elsewhere with a wild tail": """
    layer.send("p!a", {"n": 0})
    layer.send("c", {"n": 1})
    store = layer._current()
    p = store.lookup_chan(b"p!", name_hash(b"p!"))
    e = (g.chan_off + p * L.CHAN_SIZE) >> 2
    u32[e + (L.C["queue"] >> 2)] = store.lookup_chan(*C)
    u32[e + (L.C["tail"] >> 2)] = 0x7FFFFFF0
    layer.send("p!b", {"n": 2})
    assert [layer.receive(["p!"]) for _ in range(2)] == [("p!a", {"n": 0}), ("p!b", {"n": 2})]
    assert layer.receive(["c"]) == ("c", {"n": 1})
    assert layer.stats()["global"]["recoveries"] == 1
    assert layer.verify() == []
""",
    # The C send takes a new entry from the channel free list: an entry in use there is
    # never taken (it would be overwritten under its own chain).
    "channel free-list head in use": """
    layer.send("c", {"n": 0})
    layer.send("r?1", {})
    assert layer.receive(["r?1"]) == ("r?1", {})  # its entry goes on the free list
    u32[L.H["chan_free"] >> 2] = layer._current().lookup_chan(*C)
    layer.send("new", {"n": 1})
    assert layer.receive(["c"]) == ("c", {"n": 0})
    assert layer.receive(["new"]) == ("new", {"n": 1})
    assert layer.stats()["global"]["recoveries"] == 1
    assert layer.verify() == []
""",
    # A heap free-list head outside the heap: the C send does not take it, and the Python
    # redo must not follow it either (it raised IndexError): recovery rebuilds the lists.
    # The sweep walks entries up to the bump index: one past the table is damage
    # (recovery clamps it), not a reason for the Python sweep to index past the table.
    "channel bump index past the table": """
    layer.send("c", {"n": 0})
    u32[L.H["chan_bump"] >> 2] = g.n_channels + 5
    for n in range(1, 9):  # the C send sweeps on every fourth call
        layer.send("c", {"n": n})
    assert [layer.receive(["c"])[1]["n"] for _ in range(9)] == list(range(9))
    assert layer.stats()["global"]["recoveries"] == 1
    assert layer.verify() == []
""",
    "heap free-list head out of range": """
    layer.send("c", {"n": 0})
    free_w = L.H["heap_free"] >> 2
    order = next(k for k in range(L.MIN_ORDER, 32) if u32[free_w + k])
    u32[free_w + order] = 0x7FFFFFC0
    layer.send("c", {"n": 1})
    assert [layer.receive(["c"]) for _ in range(2)] == [("c", {"n": 0}), ("c", {"n": 1})]
    assert layer.stats()["global"]["recoveries"] == 1
    assert layer.verify() == []
""",
    # A hash chain that runs out of range before the name: the C send now creates the
    # entries it misses, so a miss on a broken chain must not count as "no such channel".
    "channel chain out of range before the name": """
    layer.send("c", {"n": 0})
    mask = g.n_chan_buckets - 1
    other = next(n for n in (b"d%d" % k for k in range(1 << 16)) if name_hash(n) & mask == C[1] & mask)
    c = layer._current().lookup_chan(*C)
    u32[(g.chan_off + c * L.CHAN_SIZE + L.C["hnext"]) >> 2] = 0x7FFFFFF0
    layer.send(other.decode(), {"n": 1})
    assert layer.receive([other.decode()]) == (other.decode(), {"n": 1})
    assert layer.receive(["c"]) == ("c", {"n": 0})
    assert layer.stats()["global"]["recoveries"] == 1
    assert layer.verify() == []
""",
    # The same for a group: a miss there used to answer "no such group, nothing to do".
    "group chain out of range before the name": """
    mask = g.n_group_buckets - 1
    h = name_hash(b"room") & mask
    other = next(n for n in (b"g%d" % k for k in range(1 << 16)) if name_hash(n) & mask == h)
    layer.group_add("room", "c")
    layer.group_add(other.decode(), "c")  # the newer group heads the chain
    newer = u32[(g.group_bucket_off >> 2) + h]
    u32[(g.group_off + newer * L.GROUP_SIZE + L.G["hnext"]) >> 2] = 0x7FFFFFF0
    layer.send_group("room", {"n": 0})  # "room" lies past the cut: lost with it
    assert layer.stats()["global"]["recoveries"] == 1
    assert layer.verify() == []
""",
    # A membership naming a channel outside the table: damage (recovery drops it), not a
    # plain hand-back that the Python send_group then followed (IndexError to the caller).
    "membership channel out of range": """
    layer.group_add("room", "c")
    gi = layer._current().lookup_group(b"room", name_hash(b"room"))
    m = u32[(g.group_off + gi * L.GROUP_SIZE + L.G["mhead"]) >> 2]
    u32[(g.member_off + m * L.MEMBER_SIZE + L.M["chan"]) >> 2] = 0x7FFFFFF0
    layer.send_group("room", {"n": 0})
    assert layer.stats()["global"]["recoveries"] == 1
    assert layer.verify() == []
""",
    # A queue head outside the node table: the C receive hands the segment to recovery
    # (the queue is cut there) instead of to a Python receive that followed it.
    "queue head out of range": """
    layer.send("c", {"n": 0})
    q = layer._current().lookup_chan(*C)
    u32[(g.chan_off + q * L.CHAN_SIZE + L.C["head"]) >> 2] = 0x7FFFFFF0
    assert layer.receive(["c"]) == (None, None)  # the cut queue lost its message
    assert layer.stats()["global"]["recoveries"] == 1
    assert layer.verify() == []
""",
    # Recovery itself meets a membership link out of range: it cuts the chain there (it
    # used to read the membership's fields first and die with IndexError, every time).
    "membership chain out of range at recovery": """
    layer.group_add("room", "c")
    buckets = g.member_bucket_off >> 2
    b = next(b for b in range(g.n_member_buckets) if u32[buckets + b])
    u32[buckets + b] = 0x7FFFFFF0
    u32[L.H["lock_owner"] >> 2] = 1  # a holder died: the next locker recovers
    layer.send("c", {"n": 0})
    assert layer.stats()["global"]["recoveries"] == 1
    assert layer.group_channels("room") == []  # its membership was past the cut
    assert layer.receive(["c"]) == ("c", {"n": 0})
    assert layer.verify() == []
""",
    # A queued block whose header claims order 56: freeing it must not push it onto
    # heap_free[56], which is the mutex.
    "queued block with an impossible order": """
    layer.send("c", {"n": 0})
    layer.send("c", {"n": 1})
    q = layer._current().lookup_chan(*C)
    head = u32[(g.chan_off + q * L.CHAN_SIZE + L.C["head"]) >> 2]
    block = u32[(g.node_off + head * L.NODE_SIZE + L.N["payload"]) >> 2]
    u32[block >> 2] = (L.BLOCK_USED << 8) | ((L.H["lock"] - L.H["heap_free"]) // 4)
    layer.receive(["c"])
    assert fast.lock(2.0) is False, "the mutex was overwritten"
    fast.unlock()
    assert layer.verify() == []
""",
    # Python's % is never negative; C's is.
    "negative rotation start": """
    layer.send("a", {})
    targets = [(n, name_hash(n)) for n in (b"a", b"b", b"c")]
    try:
        found = fast.receive(targets, -7)
    except ValueError:
        found = "refused"
    assert found in ("refused", (b"a", b"\\x80")), found
""",
    # Not corruption: an allocation under the lock (the result tuple) can run the GC, and a
    # finalizer (or another thread it switches to) may close the segment right there.
    "segment closed by a finalizer inside receive": """
    layer.send("c", {"n": 0})
    import gc

    class Closer:
        def __del__(self):
            segment.close()

    keep = [(i, -i) for i in range(5000)]  # no 2-tuple left on the free list
    a = Closer()
    a.self = a
    del a
    gc.set_threshold(1)
    found = fast.receive([C], 1)
    gc.set_threshold(700)
    assert found == (b"c", b"\\x81\\xa1n\\x00"), found
""",
}


@pytest.mark.parametrize("case", sorted(_CASES))
def test_corruption_is_not_followed(case: str) -> None:
    body = textwrap.indent(textwrap.dedent(_CASES[case]), "    ")
    code = _SETUP + body + _TEARDOWN
    name = f"shmch-ut-corrupt-{os.getpid()}-{sorted(_CASES).index(case)}"
    try:
        out = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, timeout=60)
    finally:
        if os.path.exists(f"/dev/shm/{name}"):  # the child died before unlinking it
            os.unlink(f"/dev/shm/{name}")
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stderr[-2000:]}"

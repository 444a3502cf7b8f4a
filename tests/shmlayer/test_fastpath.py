"""The C fast path (``shmlayer._fastpath``, ``_fastpath*.c``) against the Python reference path and the layout table."""

from __future__ import annotations

import random
import threading
from typing import Any, Callable

import pytest

import shmlayer
from shmlayer import _fields, _heap
from shmlayer import _layout as L
from shmlayer._fastpath import LAYOUT

from .pathswitch import count_fast_path, use_python_path

Make = Callable[..., shmlayer.ShmChannelLayer]


def test_c_offsets_match_the_layout_table() -> None:
    tables = {"H": L.H, "C": L.C, "N": L.N, "B": L.B, "W": L.W, "G": L.G, "M": L.M}
    for key, value in LAYOUT.items():
        if "." in key:
            table, field = key.split(".")
            assert tables[table][field] == value, key
    for size in ("CHAN_SIZE", "NODE_SIZE", "BLOCK_SIZE", "WAITER_SIZE", "GROUP_SIZE", "MEMBER_SIZE"):
        assert getattr(L, size) == LAYOUT[size], size
    for const in ("BLOCK_USED", "BLOCK_FREE", "MIN_ORDER", "WILDCARD", "RETAIN", "MAX_WAIT_BUCKETS"):
        assert getattr(L, const) == LAYOUT[const], const
    assert LAYOUT["LAZY_MAX_ORDER"] == _heap._LAZY_MAX_ORDER
    assert (LAYOUT["STATE_IDLE"], LAYOUT["STATE_ARMED"]) == (_fields.STATE_IDLE, _fields.STATE_ARMED)
    lock_field = dict((name, size) for name, _, size, _ in L.HEADER_FIELDS)["lock"]
    assert LAYOUT["MUTEX_SIZE"] <= LAYOUT["LOCK_SPACE"] == lock_field


# Bytes that legitimately differ between two segments fed the same operations.
_TIMES = {(L.H["epoch"], 8), (L.H["created_at"], 8), (L.H["sweep_cursor"], 4)}


def _image(layer: shmlayer.ShmChannelLayer) -> bytes:
    """The segment with times, epoch, lock and the sweep cursor (a hint) blanked out."""
    segment = layer._current().segment
    image = bytearray(segment.mv)
    for offset, size in _TIMES:
        image[offset : offset + size] = bytes(size)
    image[L.H["lock"] : L.H["lock"] + 64] = bytes(64)
    g = segment.geometry
    for n in range(g.n_nodes):
        node = g.node_off + n * L.NODE_SIZE
        image[node + L.N["sent"] : node + L.NODE_SIZE] = bytes(16)
    for m in range(g.n_members):
        stamp = g.member_off + m * L.MEMBER_SIZE + L.M["stamp"]
        image[stamp : stamp + 8] = bytes(8)
    return bytes(image)


def _script(seed: int, steps: int) -> list[tuple[str, Any]]:
    rng = random.Random(seed)
    ops: list[tuple[str, Any]] = []
    for n in range(steps):
        r = rng.random()
        size = rng.choice([1, 40, 200, 3000, 20000])
        if r < 0.3:
            ops.append(("send", (f"q{rng.randrange(4)}", {"n": n, "b": b"x" * size})))
        elif r < 0.45:
            ops.append(("send", (f"p!c{rng.randrange(6)}", {"n": n})))
        elif r < 0.6:
            ops.append(("receive", [f"q{rng.randrange(4)}", "q0"]))
        elif r < 0.72:
            ops.append(("receive", ["p!"]))
        elif r < 0.8:
            ops.append(("group_add", (f"g{rng.randrange(2)}", f"p!c{rng.randrange(6)}")))
        elif r < 0.88:
            ops.append(("send_group", (f"g{rng.randrange(2)}", {"n": n})))
        elif r < 0.93:
            ops.append(("group_discard", (f"g{rng.randrange(2)}", f"p!c{rng.randrange(6)}")))
        elif r < 0.96:
            ops.append(("batch", ["p!", "q1"]))
        elif r < 0.98:
            ops.append(("send", (f"r?{rng.randrange(3)}", {"n": n})))  # a one-shot name: freed once empty
        else:
            ops.append(("receive", ["r?0", "r?1", "r?2"]))
    return ops


def _run(layer: shmlayer.ShmChannelLayer, op: str, arg: Any) -> Any:
    try:
        if op == "receive":
            return layer.receive(arg)
        if op == "batch":
            return layer.receive_batch(arg, limit=3)
        return getattr(layer, op)(*arg)
    except shmlayer.ChannelFull as exc:
        return type(exc).__name__


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fast_path_makes_the_same_stores_as_the_python_path(make_layer: Make, seed: int) -> None:
    fast = make_layer(capacity=5)
    python = make_layer(capacity=5)
    use_python_path(python)
    counter = count_fast_path(fast)
    for step, (op, arg) in enumerate(_script(seed, 400)):
        # Fairness rotation is per-process state, and receive_batch's lock-free "empty?"
        # hint (fed by the Python path's name cache) may skip a round: keep them in step.
        python._rotate = fast._rotate
        assert _run(fast, op, arg) == _run(python, op, arg), f"step {step}: {op} {arg!r}"
        if step % 50 == 49:
            assert _image(fast) == _image(python), f"segments differ after step {step}"
    assert fast.verify() == [] and python.verify() == []
    assert _image(fast) == _image(python)
    # Not vacuous: the C path itself did a share of every operation it covers.
    assert all(n >= 10 for n in counter.handled.values()), counter.handled


def test_fast_path_hands_back_what_it_does_not_do(make_layer: Make) -> None:
    layer = make_layer(capacity=2)
    fast = layer._current().segment.fast
    assert fast is not None
    target = (b"new", shmlayer.layer.name_hash(b"new"))
    assert fast.send(b"new", target[1], b"\x80", 60.0) == LAYOUT["SLOW"]  # no entry yet
    layer.send("new", {})
    assert fast.send(b"new", target[1], b"\x80", 60.0) == 0
    assert fast.send(b"new", target[1], b"\x80", 60.0) == LAYOUT["SLOW"]  # full: Python decides
    with pytest.raises(shmlayer.ChannelFull):
        layer.send("new", {})
    assert layer.receive(["new"]) == ("new", {})
    assert fast.receive([target], 1) == (b"new", b"\x80")
    assert fast.receive([target], 1) is None
    with pytest.raises(TypeError):
        fast.receive(["new"], 1)
    with pytest.raises(TypeError):
        fast.send("new", 0, b"", 60.0)


def test_send_creates_entries_only_where_it_may(make_layer: Make) -> None:
    layer = make_layer(capacity=5)
    fast = layer._current().segment.fast
    assert fast is not None
    h = shmlayer.layer.name_hash
    # A normal name: created here, with the capacity given (kept when empty: no '?').
    assert fast.send(b"fresh", h(b"fresh"), b"\x80", 60.0, 3, 0, 0) == 0
    for _ in range(2):
        layer.send("fresh", {})
    with pytest.raises(shmlayer.ChannelFull):  # the entry's capacity is the one given
        layer.send("fresh", {})
    assert [layer.receive(["fresh"])[0] for _ in range(4)] == ["fresh"] * 3 + [None]
    # A local name needs its prefix entry: without it, Python creates both.
    assert fast.send(b"p!1", h(b"p!1"), b"\x80", 60.0, 5, 2, h(b"p!")) == LAYOUT["SLOW"]
    layer.send("p!1", {"n": 1})
    assert fast.send(b"p!2", h(b"p!2"), b"\x80", 60.0, 5, 2, h(b"p!")) == 0
    assert [layer.receive(["p!"]) for _ in range(2)] == [("p!1", {"n": 1}), ("p!2", {})]
    # Left to Python: the old 4-argument form, a prefix name, no capacity, a name over the field.
    assert fast.send(b"other", h(b"other"), b"\x80", 60.0) == LAYOUT["SLOW"]
    assert fast.send(b"x!", h(b"x!"), b"\x80", 60.0, 5, -1, 0) == LAYOUT["SLOW"]
    assert fast.send(b"other", h(b"other"), b"\x80", 60.0, 0, 0, 0) == LAYOUT["SLOW"]
    long = b"n" * 300
    assert fast.send(long, h(long), b"\x80", 60.0, 5, 0, 0) == LAYOUT["SLOW"]
    assert layer.verify() == []


def test_send_leaves_a_full_channel_table_to_python(make_layer: Make) -> None:
    layer = make_layer(capacity=5)
    fast = layer._current().segment.fast
    assert fast is not None
    h = shmlayer.layer.name_hash
    made = 0
    while True:  # one-shot names until the C path finds no free entry
        name = b"r?%d" % made
        result = fast.send(name, h(name), b"\x80", 60.0, 5, 0, 0)
        if result == LAYOUT["SLOW"]:
            break
        assert result == 0
        made += 1
    assert made == layer._current().segment.geometry.n_channels - 1  # entry 0 is never used
    with pytest.raises(shmlayer.ChannelFull):  # Python: nothing to free, the table is full
        layer.send("q", {})
    assert layer.receive(["r?0"]) == ("r?0", {})  # emptied: the entry goes back...
    layer.send("q", {})  # ...and a new name can have it
    assert layer.verify() == []


def test_an_expired_message_is_left_to_the_python_path(make_layer: Make) -> None:
    layer = make_layer(expiry=0.05)
    layer.group_add("room", "expiring")
    layer.send("expiring", {"n": 1})
    fast = layer._current().segment.fast
    assert fast is not None
    deadline = __import__("time").monotonic() + 0.2
    while __import__("time").monotonic() < deadline:
        pass
    target = (b"expiring", shmlayer.layer.name_hash(b"expiring"))
    assert fast.receive([target], 1) == LAYOUT["SWEEP"]
    assert layer.receive(["expiring"]) == (None, None)
    assert layer.group_channels("room") == []  # the spec's rule, applied by the Python path
    assert layer.stats()["global"]["n_expired"] == 1


def test_the_lock_excludes_threads_of_one_process(make_layer: Make) -> None:
    layer = make_layer(capacity=100000, size=16 << 20)
    errors: list[BaseException] = []

    def hammer(k: int) -> None:
        try:
            for n in range(2000):
                layer.send(f"t{k % 2}", {"n": n})
                layer.receive([f"t{(k + 1) % 2}"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert layer.verify() == []


def test_a_closed_layer_refuses_fast_calls(make_layer: Make) -> None:
    layer = make_layer()
    fast = layer._current().segment.fast
    assert fast is not None
    layer.close()
    with pytest.raises(ValueError, match="closed"):
        fast.send(b"x", 0, b"", 1.0)
    with pytest.raises(ValueError, match="closed"):
        fast.lock()


def test_pending_hint_follows_the_queues(make_layer: Make) -> None:
    layer = make_layer()
    store = layer._current()
    targets = [(b"a", shmlayer.layer.name_hash(b"a")), (b"p!", shmlayer.layer.name_hash(b"p!"))]
    assert store.maybe_pending(targets) is False  # neither exists
    layer.send("p!x", {})
    assert store.maybe_pending(targets) is True  # queued on p! for p!x
    assert layer.receive(["a", "p!"]) == ("p!x", {})
    assert store.maybe_pending(targets) is False
    with pytest.raises(TypeError):
        store.maybe_pending([("a", 1)])  # type: ignore[list-item]


def test_arming_a_waiter_makes_the_same_stores_as_the_python_path(make_layer: Make) -> None:
    fast = make_layer()
    python = make_layer()
    use_python_path(python)
    # 28 names (MAX_WAIT_BUCKETS) still arm per bucket; 29 and 40 arm on every channel.
    names = [["a", "b!"], [f"d{n}" for n in range(L.MAX_WAIT_BUCKETS)]]
    names += [[f"c{n}" for n in range(count)] for count in (L.MAX_WAIT_BUCKETS + 1, 40)]
    for layer in (fast, python):
        layer.send("a", {})  # an entry that exists, next to ones that do not
        assert layer.receive(["a"]) == ("a", {})
    for channels in names:
        waiters = []
        for layer in (fast, python):
            store = layer._current()
            waiter = layer._take_waiter(store)
            waiters.append((layer, store, waiter))
            assert layer._receive_once(store, layer._receive_targets(channels), waiter) is None
            assert store.waiter_armed(waiter.slot)
            wildcard = len(channels) > L.MAX_WAIT_BUCKETS
            assert store.u32[L.H["wild_waiters"] >> 2] == int(wildcard)
        assert _image(fast) == _image(python)
        for layer, store, waiter in waiters:
            layer._give_back(store, waiter)
            assert not store.waiter_armed(waiter.slot)
        assert _image(fast) == _image(python)
    assert fast.verify() == [] and python.verify() == []


def test_an_out_of_range_link_is_not_followed_and_leaves_the_segment_to_recovery(make_layer: Make) -> None:
    layer = make_layer()
    layer.send("c", {"n": 0})  # the entry exists: the next send takes the C path
    segment = layer._current().segment
    u32 = segment.u32
    bogus = segment.geometry.segment_size - 4  # inside the mapping, outside the heap
    for order in range(L.MIN_ORDER, segment.geometry.heap_max_order + 1):
        head = u32[(L.H["heap_free"] >> 2) + order]
        if head:
            u32[(head >> 2) + 2] = bogus  # the head block's "next free block" link
    layer.send("c", {"n": 1})  # the C path meets the bad link while splitting a block
    assert u32[L.H["lock_owner"] >> 2] != 0, "the dirty word must stay set for recovery"
    assert layer.receive(["c"]) == ("c", {"n": 0})  # the next operation repairs first
    assert layer.receive(["c"]) == ("c", {"n": 1})
    assert layer.stats()["global"]["recoveries"] == 1
    assert layer.verify() == []


def _hold_briefly(name: str, holding: Any, seconds: float) -> None:
    layer = shmlayer.ShmChannelLayer(name=name)
    with layer._hold_lock_for_test():
        holding.set()
        __import__("time").sleep(seconds)


def test_closing_the_layer_while_a_thread_waits_for_the_lock(make_layer: Make) -> None:
    import multiprocessing

    layer = make_layer()
    layer.send("c", {})
    ctx = multiprocessing.get_context("fork")
    holding = ctx.Event()
    proc = ctx.Process(target=_hold_briefly, args=(layer.segment_name, holding, 0.5), daemon=True)
    proc.start()
    outcome: list[object] = []
    try:
        assert holding.wait(10)
        waiter = threading.Thread(target=lambda: outcome.append(_try(lambda: layer.receive(["c"]))))
        waiter.start()
        __import__("time").sleep(0.1)  # the thread is now waiting for the lock without the GIL
        layer.close()
        waiter.join(10)
    finally:
        proc.join(10)
    assert not waiter.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ValueError), outcome
    assert layer.receive(["c"]) == ("c", {})  # re-attached; nothing was lost


def _try(call: Callable[[], Any]) -> object:
    try:
        return call()
    except Exception as exc:
        return exc


def test_closing_the_layer_while_a_thread_holds_the_lock_gives_the_lock_back(make_layer: Make) -> None:
    layer = make_layer()
    other = shmlayer.ShmChannelLayer(name=layer.segment_name)  # another process, in effect
    try:
        holding = threading.Event()
        outcome: list[object] = []

        def hold() -> None:
            def body() -> None:
                with layer._hold_lock_for_test():
                    holding.set()
                    __import__("time").sleep(0.3)

            outcome.append(_try(body))

        holder = threading.Thread(target=hold)
        holder.start()
        assert holding.wait(10)
        layer.close()  # under the holder's feet: its views go, its mutex must not stay taken
        holder.join(10)
        assert not holder.is_alive() and len(outcome) == 1
        other.send("after", {})  # would wait forever on a mutex nobody can unlock
        assert other.receive(["after"]) == ("after", {})
        assert other.verify() == []
    finally:
        other.close()


def test_the_timed_lock_refuses_timeouts_it_cannot_honour(make_layer: Make) -> None:
    fast = make_layer()._current().segment.fast
    assert fast is not None
    for bad in (-1.0, float("nan"), float("inf"), 1e12):
        with pytest.raises(ValueError, match="finite"):
            fast.lock(bad)
    assert fast.lock(0.5) is False  # free: taken at once
    fast.unlock()


def test_receive_refuses_a_negative_rotation_start(make_layer: Make) -> None:
    fast = make_layer()._current().segment.fast
    assert fast is not None
    with pytest.raises(ValueError, match="start"):
        fast.receive([(b"c", shmlayer.layer.name_hash(b"c"))], -7)

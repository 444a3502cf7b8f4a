"""The C fast path's own use of the robust mutex, and fan-outs it does in C.

test_crash.py kills holders that leave the dirty word set (recovery runs in Python);
these cover what only the C path decides: a holder that died with the dirty word clear
(EOWNERDEAD made consistent and the operation carries on in C), the timed lock, the GIL
being released during a lock wait, and ``send_group`` skipping full members in C.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from typing import Any, Callable

import pytest

import shmlayer
from shmlayer import _layout as L
from shmlayer._fastpath import LAYOUT
from shmlayer.layer import name_hash

from .pathswitch import use_python_path
from .test_fastpath import _image

Make = Callable[..., shmlayer.ShmChannelLayer]
ctx = multiprocessing.get_context("fork")
_OWNER_W = L.H["lock_owner"] >> 2
_C = (b"c", name_hash(b"c"))


def _lock_and_die(name: str, holding: Any, hold_for: float, dirty: bool) -> None:
    """Take the segment mutex in another process and die holding it (SIGKILL).

    ``dirty=False`` takes the bare mutex: the dirty word stays clear, as when a holder dies
    between two operations (after ``leave()`` cleared it, before the unlock).
    """
    layer = shmlayer.ShmChannelLayer(name=name)
    segment = layer._current().segment
    if dirty:
        segment.acquire()  # dirty word = our pid, as mid-operation
    else:
        assert segment.fast is not None
        segment.fast.lock()
    holding.set()
    time.sleep(hold_for)
    os.kill(os.getpid(), signal.SIGKILL)


def _start_holder(name: str, hold_for: float, dirty: bool = False) -> Any:
    holding = ctx.Event()
    proc = ctx.Process(target=_lock_and_die, args=(name, holding, hold_for, dirty), daemon=True)
    proc.start()
    assert holding.wait(10), "the holder never took the lock"
    return proc


def _reap(proc: Any) -> None:
    proc.join(10)
    if proc.is_alive():  # pragma: no cover - only if the holder failed to kill itself
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(5)
    assert proc.exitcode == -signal.SIGKILL


def _fast(layer: shmlayer.ShmChannelLayer) -> Any:
    fast = layer._current().segment.fast
    assert fast is not None
    return fast


def test_c_path_carries_on_after_a_holder_died_between_operations(make_layer: Make) -> None:
    layer = make_layer()
    layer.send("c", {"n": 0})  # the entry exists: the next send can take the C path
    proc = _start_holder(layer.segment_name, 0.0)
    _reap(proc)
    fast = _fast(layer)
    # trylock answers EOWNERDEAD; the dirty word is clear, so the C path does the send.
    assert fast.send(*_C, b"\x80", 60.0) == 0
    # The mutex was made consistent (else this would be ENOTRECOVERABLE: OSError).
    assert fast.lock(1.0) is False
    fast.unlock()
    assert layer.receive(["c"]) == ("c", {"n": 0})
    assert layer.receive(["c"]) == ("c", {})
    assert layer.stats()["global"]["recoveries"] == 0  # nothing was half done
    assert layer.verify() == []


def test_c_path_leaves_a_half_done_operation_to_recovery(make_layer: Make) -> None:
    layer = make_layer()
    layer.send("c", {"n": 0})
    proc = _start_holder(layer.segment_name, 0.0, dirty=True)
    _reap(proc)
    fast = _fast(layer)
    segment = layer._current().segment
    dead = segment.u32[_OWNER_W]
    assert dead == proc.pid
    assert fast.send(*_C, b"\x80", 60.0) == LAYOUT["SLOW"]  # dirty: not the C path's job
    assert segment.u32[_OWNER_W] == dead, "the dirty word must stay set for recovery"
    layer.send("c", {"n": 1})  # the Python path takes the lock, recovers, sends
    assert layer.stats()["global"]["recoveries"] == 1
    assert [layer.receive(["c"]) for _ in range(2)] == [("c", {"n": 0}), ("c", {"n": 1})]
    assert layer.verify() == []


def test_a_c_lock_wait_releases_the_gil_and_survives_the_holder_dying(make_layer: Make) -> None:
    layer = make_layer()
    layer.send("c", {"n": 0})
    fast = _fast(layer)
    proc = _start_holder(layer.segment_name, 0.5)
    ticks: list[float] = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.01)

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        with pytest.raises(TimeoutError):
            fast.lock(0.05)  # a live holder: the timed lock gives up
        began = time.monotonic()
        # Waits in the kernel (GIL released) until the holder dies, then EOWNERDEAD with a
        # clean dirty word: the send still happens in C.
        assert fast.send(*_C, b"\x80", 60.0) == 0
        ended = time.monotonic()
    finally:
        stop.set()
        ticker.join(10)
        _reap(proc)
    assert any(began < t < ended for t in ticks), "another thread never ran during the lock wait"
    assert layer.receive(["c"]) == ("c", {"n": 0})
    assert layer.receive(["c"]) == ("c", {})
    assert layer.stats()["global"]["recoveries"] == 0
    assert layer.verify() == []


def test_timed_lock_takes_over_from_a_holder_that_dies_while_it_waits(make_layer: Make) -> None:
    layer = make_layer()
    fast = _fast(layer)
    assert fast.lock(1.0) is False  # free: taken at once
    fast.unlock()
    proc = _start_holder(layer.segment_name, 0.3)
    try:
        assert fast.lock(10.0) is True  # the holder died holding it
        fast.unlock()
    finally:
        _reap(proc)
    assert fast.lock(1.0) is False  # consistent again: an ordinary lock
    fast.unlock()
    layer.send("after", {})
    assert layer.receive(["after"]) == ("after", {})
    assert layer.verify() == []


def _fan_out(layer: shmlayer.ShmChannelLayer, message: dict[str, Any], in_c: bool) -> None:
    if not in_c:
        layer.send_group("room", message)
        return
    result = _fast(layer).send_group(
        b"room", name_hash(b"room"), layer.encode_message(message), layer.expiry, layer.group_expiry
    )
    assert result == 0 or result.__class__ is list, f"the C path handed the fan-out back: {result}"


def test_send_group_skips_full_members_in_c_like_the_python_path(make_layer: Make) -> None:
    fast = make_layer(capacity=1)
    python = make_layer(capacity=1)
    use_python_path(python)
    for layer in (fast, python):
        for member in ("p!a", "p!b", "p!c"):
            layer.group_add("room", member)
        layer.send("p!a", {"first": "a"})  # p!a and p!c are full (capacity 1)
        layer.send("p!c", {"first": "c"})
    for layer in (fast, python):
        _fan_out(layer, {"n": 1}, layer is fast)  # one copy, for p!b
    assert _image(fast) == _image(python)
    for layer in (fast, python):
        _fan_out(layer, {"n": 2}, layer is fast)  # every member full: the payload is freed
    assert _image(fast) == _image(python)
    for layer in (fast, python):
        stats = layer.stats()["global"]
        assert stats["n_group_skipped"] == 5 and stats["n_full"] == 5 and stats["n_group_sends"] == 2
        assert layer.verify() == []
        got = sorted(layer.receive(["p!"]) for _ in range(3))
        assert got == [("p!a", {"first": "a"}), ("p!b", {"n": 1}), ("p!c", {"first": "c"})]
        assert layer.receive(["p!"]) == (None, None)
    assert _image(fast) == _image(python)


def _send_from_inherited(layer: shmlayer.ShmChannelLayer, crash_point: int) -> None:
    if crash_point:
        _fast(layer).crash_at(crash_point)
    layer.send("c", {"from": "child"})  # the layer object the parent made, used after fork


@pytest.mark.parametrize("crash_point", [0, 4])
def test_a_forked_child_uses_the_inherited_layer_under_its_own_pid(make_layer: Make, crash_point: int) -> None:
    layer = make_layer()
    layer.send("c", {"from": "parent"})  # mapped, entry made, C path warmed up before the fork
    proc = ctx.Process(target=_send_from_inherited, args=(layer, crash_point), daemon=True)
    proc.start()
    proc.join(10)
    if crash_point:
        assert proc.exitcode == -signal.SIGKILL, "the crash point was never reached"
        # Killed between two stores of the C send: the dirty word names the child, not
        # the parent whose FastPath it inherited (set_pid at fork).
        assert layer._current().segment.u32[_OWNER_W] == proc.pid
    else:
        assert proc.exitcode == 0
    assert layer.receive(["c"]) == ("c", {"from": "parent"})
    # The message was linked before point 4: recovery keeps it.
    assert layer.receive(["c"]) == ("c", {"from": "child"})
    assert layer.stats()["global"]["recoveries"] == (1 if crash_point else 0)
    assert layer.verify() == []

"""Real processes over one segment: delivery, fan-out, create races, waiting, wake-ups."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
import time
from typing import Any, Callable

import shmlayer

Make = Callable[..., shmlayer.ShmChannelLayer]
ctx = multiprocessing.get_context("fork")


def _join_all(procs: list[Any], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.join(max(0.1, deadline - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    assert all(proc.exitcode == 0 for proc in procs), [proc.exitcode for proc in procs]


def _writer(name: str, writer: int, count: int) -> None:
    layer = shmlayer.ShmChannelLayer(name=name)
    for seq in range(count):
        while True:
            try:
                layer.send("jobs", {"w": writer, "s": seq})
                break
            except shmlayer.ChannelFull:
                time.sleep(0.001)
    layer.close()


def _reader(name: str, results: Any) -> None:
    layer = shmlayer.ShmChannelLayer(name=name)
    got = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        channel, message = layer.receive(["jobs"], block=True)
        if message is None:
            continue
        if message.get("stop"):
            break
        got.append((message["w"], message["s"]))
    results.put(got)
    layer.close()


def test_writers_times_readers_each_message_exactly_once(make_layer: Make) -> None:
    layer = make_layer(capacity=50)
    writers, readers, count = 3, 3, 400
    results = ctx.Queue()
    rprocs = [ctx.Process(target=_reader, args=(layer.segment_name, results), daemon=True) for _ in range(readers)]
    wprocs = [ctx.Process(target=_writer, args=(layer.segment_name, w, count), daemon=True) for w in range(writers)]
    for proc in rprocs + wprocs:
        proc.start()
    try:
        _run_writers_readers(layer, rprocs, wprocs, results, writers, readers, count)
    finally:
        for proc in rprocs + wprocs:
            if proc.is_alive():
                proc.kill()


def _run_writers_readers(layer: Any, rprocs: Any, wprocs: Any, results: Any, writers: int, readers: int,
                         count: int) -> None:
    _join_all(wprocs)
    for _ in range(readers):
        while True:
            try:
                layer.send("jobs", {"stop": True})
                break
            except shmlayer.ChannelFull:
                time.sleep(0.01)
    received = [item for _ in range(readers) for item in results.get(timeout=30)]
    _join_all(rprocs)
    assert len(received) == len(set(received)) == writers * count
    for w in range(writers):  # FIFO per writer as each reader sees it
        assert sorted(s for ww, s in received if ww == w) == list(range(count))
    assert layer.verify() == []


def _member(name: str, channel: str, ready: Any, results: Any) -> None:
    layer = shmlayer.ShmChannelLayer(name=name)
    layer.group_add("room", channel)
    ready.put(channel)
    got = []
    deadline = time.monotonic() + 20
    while len(got) < 20 and time.monotonic() < deadline:
        _, message = layer.receive([channel.split("!")[0] + "!"], block=True)
        if message is not None:
            got.append(message["n"])
    results.put((channel, got))
    layer.close()


def test_group_fan_out_across_processes(make_layer: Make) -> None:
    layer = make_layer()
    ready, results = ctx.Queue(), ctx.Queue()
    names = [f"iface{k}!c" for k in range(4)]
    procs = [ctx.Process(target=_member, args=(layer.segment_name, n, ready, results), daemon=True) for n in names]
    for proc in procs:
        proc.start()
    for _ in names:
        ready.get(timeout=20)
    for n in range(20):
        layer.send_group("room", {"n": n})
    got = dict(results.get(timeout=30) for _ in names)
    _join_all(procs)
    assert got == {n: list(range(20)) for n in names}


def _attach(name: str, barrier: Any, results: Any) -> None:
    barrier.wait(10)
    layer = shmlayer.ShmChannelLayer(name=name, size=4 << 20)
    results.put((layer.epoch, layer._seg.created if layer._seg else None))
    layer.send("hello", {"pid": os.getpid()})
    layer.close()


def test_many_processes_create_and_attach_at_once() -> None:
    from .conftest import unique_name

    name = unique_name("race")
    try:
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_attach, args=(name, barrier, results), daemon=True) for _ in range(6)]
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=30) for _ in procs]
        _join_all(procs)
        assert len({epoch for epoch, _ in outcomes}) == 1
        assert sum(1 for _, created in outcomes if created) == 1
        layer = shmlayer.ShmChannelLayer(name=name)
        assert layer.channel_statistics("hello")["messages_pending"] == 6
        assert layer.verify() == []
        layer.close()
    finally:
        os.unlink(f"/dev/shm/{name}")


def test_idle_blocking_receive_uses_no_cpu(layer: shmlayer.ShmChannelLayer) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic()
    assert layer.receive(["idle.channel"], block=True) == (None, None)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert time.monotonic() - wall >= 0.9
    assert cpu < 0.1, f"blocking receive burned {cpu:.3f} s of CPU in 1 s"


def _send_later(name: str, channel: str, delay: float) -> None:
    layer = shmlayer.ShmChannelLayer(name=name)
    time.sleep(delay)
    layer.send(channel, {"sent_at": time.monotonic()})
    layer.close()


def test_blocking_receive_wakes_on_send_from_another_process(layer: shmlayer.ShmChannelLayer) -> None:
    proc = ctx.Process(target=_send_later, args=(layer.segment_name, "wake.me", 0.3), daemon=True)
    proc.start()
    try:
        channel, message = layer.receive(["other", "wake.me"], block=True)
        woke = time.monotonic()
    finally:
        _join_all([proc])
    assert channel == "wake.me" and message is not None
    assert woke - message["sent_at"] < 0.5


def test_receive_async_wakes_on_send_from_another_process(layer: shmlayer.ShmChannelLayer) -> None:
    proc = ctx.Process(target=_send_later, args=(layer.segment_name, "iface.X!conn", 0.3), daemon=True)

    async def main() -> tuple[Any, Any, float, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        proc.start()
        channel, message = await layer.receive_async(["iface.X!"], timeout=5)
        task.cancel()
        return channel, message, time.monotonic(), ticks

    try:
        channel, message, woke, ticks = asyncio.run(main())
    finally:
        _join_all([proc])
    assert channel == "iface.X!conn" and message is not None
    assert woke - message["sent_at"] < 0.5
    assert ticks >= 10  # the event loop kept running while we waited


def test_receive_async_timeout(layer: shmlayer.ShmChannelLayer) -> None:
    start = time.monotonic()
    assert asyncio.run(layer.receive_async(["nothing"], timeout=0.2)) == (None, None)
    assert 0.15 < time.monotonic() - start < 2
    assert layer.verify() == []


def test_threads_share_one_layer(layer: shmlayer.ShmChannelLayer) -> None:
    import threading

    got: list[int] = []
    lock = threading.Lock()

    def consume() -> None:
        while True:
            _, message = layer.receive(["t"], block=True)
            if message is None or message.get("stop"):
                return
            with lock:
                got.append(message["i"])

    threads = [threading.Thread(target=consume) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(60):
        layer.send("t", {"i": i})
    for _ in threads:
        layer.send("t", {"stop": True})
    for t in threads:
        t.join(10)
    assert sorted(got) == list(range(60))


def test_creator_that_died_before_the_magic_is_taken_over() -> None:
    from .conftest import unique_name

    name = unique_name("orphan")
    path = f"/dev/shm/{name}"
    with open(path, "wb") as f:  # what a creator killed mid-initialisation leaves
        f.truncate(4 << 20)
    try:
        start = time.monotonic()
        layer = shmlayer.ShmChannelLayer(name=name, size=4 << 20)
        assert 1.5 < time.monotonic() - start < 5  # waited for the creator, then took over
        layer.send("c", {"ok": True})
        assert layer.receive(["c"]) == ("c", {"ok": True})
        assert layer.verify() == []
        layer.close()
    finally:
        os.unlink(path)


def _use_inherited(layer: shmlayer.ShmChannelLayer) -> None:
    # The parent's fd, lock and waiter sockets must not be used here (register_at_fork).
    channel, message = layer.receive(["to.child"], block=True)
    layer.send("to.parent", {"echo": message, "pid": os.getpid()})


def test_forked_child_uses_the_inherited_layer(layer: shmlayer.ShmChannelLayer) -> None:
    assert layer.receive(["warm.up"], block=True) == (None, None)  # parent now owns a waiter
    with layer._hold_lock_for_test():
        proc = ctx.Process(target=_use_inherited, args=(layer,), daemon=True)
        proc.start()  # forked while we hold the lock: the child must not inherit it
    try:
        layer.send("to.child", {"n": 1})
        channel, message = layer.receive(["to.parent"], block=True)
        if channel is None:
            channel, message = layer.receive(["to.parent"], block=True)
    finally:
        _join_all([proc])
    assert channel == "to.parent" and message == {"echo": {"n": 1}, "pid": proc.pid}
    assert layer.verify() == []

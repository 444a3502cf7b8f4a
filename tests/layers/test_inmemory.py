"""What only the in-memory layer promises: thread safety, Condition wake-ups, no spinning.

The contract itself is checked for every layer in ``test_conformance.py``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from channels.layers import inmemory
from channels.layers.inmemory import InMemoryChannelLayer

DEADLINE = 30.0


def run_threads(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish"


def test_threads_send_and_receive_exactly_once() -> None:
    layer = InMemoryChannelLayer(capacity=5)  # small: producers hit ChannelFull and retry
    producers, per_producer = 4, 300
    total = producers * per_producer
    received: list[tuple[int, int]] = []
    received_lock = threading.Lock()
    errors: list[BaseException] = []

    def produce(pid: int) -> None:
        try:
            for n in range(per_producer):
                deadline = time.monotonic() + DEADLINE
                while True:
                    try:
                        layer.send("ts.work", {"p": pid, "n": n})
                        break
                    except layer.ChannelFull:
                        assert time.monotonic() < deadline, "consumers stopped draining"
                        time.sleep(0.0005)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def consume() -> None:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            with received_lock:
                if len(received) >= total:
                    return
            channel, message = layer.receive(["ts.work"], block=True)
            if channel is not None:
                with received_lock:
                    received.append((message["p"], message["n"]))

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    threads += [threading.Thread(target=consume) for _ in range(3)]
    run_threads(threads)
    assert not errors, errors
    assert sorted(received) == sorted((p, n) for p in range(producers) for n in range(per_producer))
    # FIFO per channel: each producer's messages were taken in the order sent.
    for pid in range(producers):
        mine = [n for p, n in received if p == pid]
        assert sorted(mine) == list(range(per_producer))
    assert layer.receive(["ts.work"]) == (None, None)
    assert layer.global_statistics()["channel_full_count"] > 0


def test_threads_group_operations_are_consistent() -> None:
    layer = InMemoryChannelLayer(capacity=1000)
    members = [f"tg.proc!m{index}" for index in range(40)]
    errors: list[BaseException] = []

    def churn(offset: int) -> None:
        try:
            for round_ in range(50):
                for member in members[offset::4]:
                    layer.group_add("tg.group", member)
                    if round_ % 2:
                        layer.group_discard("tg.group", member)
                        layer.group_add("tg.group", member)
                layer.send_group("tg.group", {"r": round_})
        except BaseException as exc:
            errors.append(exc)

    run_threads([threading.Thread(target=churn, args=(offset,)) for offset in range(4)])
    assert not errors, errors
    assert sorted(layer.group_channels("tg.group")) == sorted(members)
    got = 0
    while layer.receive(["tg.proc!"])[0] is not None:
        got += 1
    assert got == layer.global_statistics()["messages_count"]
    assert got >= 50 * 10  # every send_group reached at least the members already added


def test_blocking_receive_wakes_on_send_from_another_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # With a 60 s block timeout, only a wake-up from the send returns within the deadline.
    monkeypatch.setattr(inmemory, "BLOCK_TIMEOUT", 60.0)
    layer = InMemoryChannelLayer()
    timer = threading.Timer(0.2, layer.send, args=("wake.test", {"n": 1}))
    timer.start()
    try:
        started = time.monotonic()
        assert layer.receive(["wake.test"], block=True) == ("wake.test", {"n": 1})
        assert time.monotonic() - started < 10, "receive was not woken by the send"
    finally:
        timer.join(5)


def test_blocking_receive_wakes_on_send_group_from_another_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inmemory, "BLOCK_TIMEOUT", 60.0)
    layer = InMemoryChannelLayer()
    layer.group_add("wake.group", "wake.proc!c")
    timer = threading.Timer(0.2, layer.send_group, args=("wake.group", {"n": 2}))
    timer.start()
    try:
        started = time.monotonic()
        assert layer.receive(["wake.proc!"], block=True) == ("wake.proc!c", {"n": 2})
        assert time.monotonic() - started < 10, "receive was not woken by send_group"
    finally:
        timer.join(5)


def test_blocking_receive_gives_up_after_block_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inmemory, "BLOCK_TIMEOUT", 0.3)
    layer = InMemoryChannelLayer()
    started = time.monotonic()
    assert layer.receive(["idle.test"], block=True) == (None, None)
    assert time.monotonic() - started >= 0.3


def test_blocking_receive_does_not_spin() -> None:
    layer = InMemoryChannelLayer()
    cpu_before = time.thread_time()
    assert layer.receive(["spin.test"], block=True) == (None, None)  # waits ~BLOCK_TIMEOUT
    assert time.thread_time() - cpu_before < 0.1


def test_receive_async_does_not_spin() -> None:
    layer = InMemoryChannelLayer()
    cpu_before = time.process_time()
    assert asyncio.run(layer.receive_async(["spin.async"], timeout=0.8)) == (None, None)
    assert time.process_time() - cpu_before < 0.15


def test_many_async_waiters_without_threads() -> None:
    layer = InMemoryChannelLayer()
    count = 30

    async def main() -> list[Any]:
        waiters = [asyncio.ensure_future(layer.receive_async(["many.async"], timeout=60)) for _ in range(count)]
        await asyncio.sleep(0.05)
        threads_while_waiting = threading.active_count()
        sender = threading.Thread(target=lambda: [layer.send("many.async", {"n": n}) for n in range(count)])
        sender.start()
        results = await asyncio.wait_for(asyncio.gather(*waiters), 10)
        sender.join(5)
        return [threads_while_waiting, results]

    threads_before = threading.active_count()
    threads_while_waiting, results = asyncio.run(main())
    assert threads_while_waiting == threads_before
    assert sorted(message["n"] for _, message in results) == list(range(count))
    assert layer._async_waiters == {}  # every waiter unregistered itself


def test_receive_async_rejects_bad_timeout() -> None:
    layer = InMemoryChannelLayer()
    for timeout in (-1, "1", True):
        with pytest.raises(TypeError):
            asyncio.run(layer.receive_async(["t.test"], timeout=timeout))


def test_expired_unread_channel_leaves_groups_without_a_receive() -> None:
    layer = InMemoryChannelLayer(expiry=1)
    layer.group_add("eager.group", "eager.slow")
    layer.group_add("eager.group", "eager.ok")
    layer.send("eager.slow", {"n": 1})
    time.sleep(1.05)
    assert layer.group_channels("eager.group") == ["eager.ok"]


def test_statistics() -> None:
    layer = InMemoryChannelLayer(capacity=2)
    layer.send("st.a", {})
    layer.send("st.a", {})
    with pytest.raises(layer.ChannelFull):
        layer.send("st.a", {})
    layer.group_add("st.group", "st.a")
    layer.send_group("st.group", {})  # skipped: full
    layer.send("st.proc!x", {})
    layer.send("st.proc!y", {})
    stats = layer.channel_statistics("st.a")
    assert stats["messages_count"] == 2
    assert stats["messages_pending"] == 2
    assert stats["channel_full_count"] == 2
    assert stats["messages_max_age"] >= 0
    assert layer.channel_statistics("st.proc!x")["messages_pending"] == 1
    assert layer.channel_statistics("st.proc!")["messages_pending"] == 2
    assert layer.channel_statistics("st.proc!")["messages_count"] == 2
    overall = layer.global_statistics()
    assert overall["messages_count"] == 4
    assert overall["messages_pending"] == 4
    assert overall["channel_full_count"] == 2
    layer.receive(["st.a"])
    assert layer.channel_statistics("st.a")["messages_pending"] == 1
    with pytest.raises(TypeError):
        layer.channel_statistics("bad name")


def test_statistics_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inmemory, "STATISTICS_CHANNELS", 50)
    layer = InMemoryChannelLayer()
    for index in range(200):
        name = layer.new_channel("st.reply?")
        layer.send(name, {"i": index})
        layer.receive([name])
    assert len(layer._stats) <= 50


def test_expiry_heap_stays_bounded() -> None:
    layer = InMemoryChannelLayer()
    for index in range(5000):
        layer.send("heap.test", {"i": index})
        layer.receive(["heap.test"])
    assert len(layer._heap) <= 2 * len(layer._queues) + 1025


def test_epoch_is_per_store_and_constant() -> None:
    first, second = InMemoryChannelLayer(), InMemoryChannelLayer()
    assert first.epoch != second.epoch
    assert first.check_epoch() == first.epoch > 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"capacity": 0},
        {"capacity": "10"},
        {"expiry": 0},
        {"group_expiry": -1},
        {"max_message_size": 0},
        {"max_message_size": 1.5},
        {"channel_capacity": {"a*": 0}},
        {"channel_capacity": {1: 5}},
    ],
)
def test_bad_settings_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        InMemoryChannelLayer(**kwargs)


@pytest.mark.parametrize("prefix", ["", None, 5])
def test_discard_prefix_rejects_bad_prefix(prefix: Any) -> None:
    with pytest.raises(TypeError):
        InMemoryChannelLayer().discard_prefix(prefix)


def test_discard_prefix_inside_a_process_queue() -> None:
    layer = InMemoryChannelLayer()
    layer.send("iq.proc!conn1", {"n": 1})
    layer.send("iq.proc!conn2", {"n": 2})
    layer.discard_prefix("iq.proc!conn1")
    assert layer.receive(["iq.proc!"]) == ("iq.proc!conn2", {"n": 2})
    assert layer.receive(["iq.proc!"]) == (None, None)
    assert layer.channel_statistics("iq.proc!conn1")["messages_pending"] == 0


def test_import_does_not_load_django() -> None:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = "import sys, channels.layers.inmemory; assert 'django' not in sys.modules, 'django imported'"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr

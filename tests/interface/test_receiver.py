"""The reply receiver (interface/_receiver.py) on a real shared-memory layer: replies in
order whether it sleeps or polls, kicks that never lose a message or a stop, lingering
that adapts to the traffic, and layers without ``receive_batch``."""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any, Callable, Iterator

import pytest

from channels.layers.inmemory import InMemoryChannelLayer
from interface import _receiver
from interface._receiver import ReplyReceiver
from shmlayer import ShmChannelLayer

CHANNEL = "interface.rcvtest!"
_names = itertools.count()


@pytest.fixture
def layer() -> Iterator[ShmChannelLayer]:
    shm = ShmChannelLayer(name=f"rcvtest{os.getpid()}x{next(_names)}", size=4 * 1024 * 1024, capacity=1000)
    try:
        yield shm
    finally:
        shm.unlink()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert done and task.cancelled()


def test_replies_arrive_in_order_sleeping_or_polling(layer):
    async def main() -> None:
        got: list[tuple[str, int]] = []
        receiver = ReplyReceiver(layer, CHANNEL, lambda channel, message: got.append((channel, message["n"])))
        task = receiver.start(asyncio.get_running_loop())
        await until(lambda: receiver._sleeping)
        layer.send(CHANNEL + "1", {"n": 0})  # wakes the sleeper through its waiter
        await until(lambda: len(got) == 1)
        receiver.expect()  # kicks the sleeper into polling
        assert receiver._kicked
        await until(lambda: not receiver._kicked)
        for n in range(1, 300):
            layer.send(CHANNEL + ("1" if n % 2 else "2.x"), {"n": n})
        await until(lambda: len(got) == 300)
        assert [n for _, n in got] == list(range(300))
        assert got[1][0] == CHANNEL + "1" and got[2][0] == CHANNEL + "2.x"
        await until(lambda: receiver._sleeping)  # back to sleep once nothing is due
        await stop(task)

    asyncio.run(main())


def test_a_kick_never_loses_a_message_nor_swallows_a_stop(layer):
    async def main() -> None:
        got: list[int] = []
        receiver = ReplyReceiver(layer, CHANNEL, lambda channel, message: got.append(message["n"]))
        task = receiver.start(asyncio.get_running_loop())
        for n in range(50):
            await until(lambda: receiver._sleeping)
            layer.send(CHANNEL + "1", {"n": n})  # its waiter is woken...
            receiver.expect()  # ...and the same wait is cancelled by the kick
            await until(lambda: len(got) == n + 1)
        assert got == list(range(50))
        await until(lambda: receiver._sleeping)
        receiver.expect()
        await stop(task)  # the stop lands on top of a pending kick and still stops

    asyncio.run(main())


def test_lingering_grows_with_a_conversation_and_fades_with_sparse_traffic(layer, monkeypatch):
    now = [1000.0]
    preemptions = [0]
    monkeypatch.setattr(_receiver, "_monotonic", lambda: now[0])
    monkeypatch.setattr(_receiver, "_preemptions", lambda: preemptions[0])
    got: list[Any] = []
    receiver = ReplyReceiver(layer, CHANNEL, lambda channel, message: got.append(message), linger=400e-6)

    def turn(gap: float) -> float:
        """The client's next message comes ``gap`` after the last answer; return the linger."""
        now[0] += gap
        receiver.expect()
        layer.send(CHANNEL + "1", {"n": 1})
        now[0] += 50e-6
        assert receiver._take(layer.receive_batch)
        return receiver._poll_until - now[0] if receiver._poll_until else 0.0

    first = turn(1.0)
    assert first == pytest.approx(200e-6)  # halved: the first message came after a long pause
    lingers = [turn(1.0) for _ in range(4)]
    assert lingers[-1] == 0.0 and lingers == sorted(lingers, reverse=True)  # sparse traffic: no lingering at all after answers
    lingers = [turn(150e-6) for _ in range(10)]
    assert lingers[-1] == pytest.approx(400e-6)  # a conversation: back up to the maximum
    assert lingers == sorted(lingers)
    preemptions[0] += 1  # another process wanted this core during the last turn
    assert turn(150e-6) == pytest.approx(200e-6)
    assert turn(150e-6) == pytest.approx(400e-6)
    assert len(got) == 17


def test_poll_window_shrinks_for_messages_nobody_answers_and_grows_back(layer):
    async def main() -> None:
        got: list[int] = []
        receiver = ReplyReceiver(layer, CHANNEL, lambda channel, message: got.append(message["n"]),
                                 reply_wait=200e-6)
        task = receiver.start(asyncio.get_running_loop())
        windows = []
        for _ in range(4):  # a one-way stream: the application answers none of it
            await until(lambda: receiver._sleeping)
            receiver.expect()
            await asyncio.sleep(0.002)  # the window passes while the task polls
            windows.append(receiver._wait)
        assert windows == pytest.approx([100e-6, 50e-6, _receiver._MIN_WAIT, _receiver._MIN_WAIT])
        for n in range(3):  # answers again: each one heard while polling doubles the window
            await until(lambda: receiver._sleeping)
            receiver.expect()
            layer.send(CHANNEL + "1", {"n": n})
            await until(lambda: len(got) == n + 1)
        assert receiver._wait == pytest.approx(200e-6)
        await stop(task)

    asyncio.run(main())


def test_a_shrunk_poll_window_grows_back_when_answers_come_soon_after_it(layer):
    async def main() -> None:
        got: list[int] = []
        receiver = ReplyReceiver(layer, CHANNEL, lambda channel, message: got.append(message["n"]),
                                 reply_wait=0.2)
        task = receiver.start(asyncio.get_running_loop())
        for window in (0.1, 0.05):  # polled 200 ms, then 100 ms, for nothing
            await until(lambda: receiver._sleeping)
            receiver.expect()
            await until(lambda: not receiver._kicked and receiver._sleeping)
            assert receiver._wait == pytest.approx(window)
        assert receiver._wait == pytest.approx(0.05)
        layer.send(CHANNEL + "1", {"n": 0})  # the answer, ~100 ms after its message: woken, not polled
        await until(lambda: got == [0])
        assert receiver._wait == pytest.approx(0.1)  # within reply_wait: the window doubles
        await stop(task)

    asyncio.run(main())


def test_layers_without_receive_batch_only_sleep_and_drain():
    layer = InMemoryChannelLayer(capacity=100)

    async def main() -> None:
        got: list[int] = []
        receiver = ReplyReceiver(layer, CHANNEL, lambda channel, message: got.append(message["n"]))
        task = receiver.start(asyncio.get_running_loop())
        receiver.expect()  # nothing to poll with: a no-op
        for n in range(100):
            layer.send(CHANNEL + "1", {"n": n})
        await until(lambda: len(got) == 100)
        assert got == list(range(100))
        await stop(task)

    asyncio.run(main())

"""channels._retry.retry_while_full: the back-off shared by replies and held sends."""

from __future__ import annotations

import time

from channels._retry import retry_while_full
from shmlayer.contract import ChannelFull


def test_sends_at_once_when_there_is_room() -> None:
    sent: list[int] = []
    assert retry_while_full(lambda: sent.append(1), ChannelFull, time.monotonic() + 1, 0.001, 0.01)
    assert sent == [1]


def test_waits_out_a_full_channel() -> None:
    attempts = []

    def attempt() -> None:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise ChannelFull("full")

    assert retry_while_full(attempt, ChannelFull, time.monotonic() + 5, 0.001, 0.01)
    assert len(attempts) == 3


def test_gives_up_at_the_deadline() -> None:
    def attempt() -> None:
        raise ChannelFull("full")

    start = time.monotonic()
    assert not retry_while_full(attempt, ChannelFull, start + 0.05, 0.001, 0.01)
    assert time.monotonic() - start < 2  # bounded, not a hang


def test_other_errors_propagate() -> None:
    def attempt() -> None:
        raise ValueError("not a full channel")

    try:
        retry_while_full(attempt, ChannelFull, time.monotonic() + 1, 0.001, 0.01)
    except ValueError:
        pass
    else:
        raise AssertionError("ValueError was swallowed")

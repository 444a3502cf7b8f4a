"""The scoreboard: slots shared with forked children."""

from __future__ import annotations

import os
import time

from supervisor._scoreboard import BOOTED, EMPTY, STARTING, Scoreboard


def test_allocate_release_and_full():
    board = Scoreboard(slots=2)
    first, second = board.allocate(), board.allocate()
    assert {first, second} == {0, 1}
    assert board.allocate() is None
    assert board.state(first) == STARTING
    assert board.last_heartbeat(first) <= time.monotonic()
    board.release(first)
    assert board.state(first) == EMPTY
    assert board.allocate() == first


def test_a_forked_child_writes_its_slot_and_the_parent_sees_it():
    board = Scoreboard(slots=4)
    slot = board.allocate()
    spawned = board.last_heartbeat(slot)
    pid = os.fork()
    if pid == 0:
        try:
            time.sleep(0.01)
            board.beat(slot)
            board.mark_booted(slot, "interface.AbC123!")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert board.state(slot) == BOOTED
    assert board.prefix(slot) == "interface.AbC123!"
    assert board.last_heartbeat(slot) > spawned
    board.close()


def test_prefix_absent_for_workers():
    board = Scoreboard(slots=1)
    slot = board.allocate()
    board.mark_booted(slot)
    assert board.prefix(slot) is None

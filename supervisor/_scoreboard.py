"""The scoreboard: one slot per child in an anonymous shared mapping.

The master creates the mapping before it forks anything, so every child shares it
(MAP_SHARED | MAP_ANONYMOUS survives fork, needs no name and vanishes with the last
process). It works with any channel layer, including Redis.

Slot layout (little-endian, 96 bytes, slot ``i`` at offset ``i * 96``)::

    offset size field      written by
    0      8    pid        master (at spawn)
    8      4    state      master (STARTING at spawn) / child (BOOTED)
    12     4    (padding)
    16     8    heartbeat  master (spawn time) / child (every heartbeat)   CLOCK_MONOTONIC s, double
    24     72   prefix     child, before state=BOOTED (interface process-channel prefix, ASCII, NUL padded)

Invariants: a slot belongs to one live child between spawn and reap; the master frees
it only after waitpid. A child writes only its own slot. The child writes ``prefix``
before ``state`` so a master that sees BOOTED also sees the prefix. The heartbeat is an
aligned 8-byte store; a torn read is impossible on the architectures we run on, and
would only delay a timeout by one pass anyway. CLOCK_MONOTONIC is system-wide, so
the master can compare a child's heartbeat with its own clock.
"""

from __future__ import annotations

import mmap
import struct
import time

__all__ = ["BOOTED", "EMPTY", "STARTING", "Scoreboard"]

EMPTY = 0
STARTING = 1
BOOTED = 2

_SLOT_SIZE = 96
_PID = struct.Struct("<q")
_STATE = struct.Struct("<i")
_HEARTBEAT = struct.Struct("<d")
_PREFIX_SIZE = 72
_OFF_PID, _OFF_STATE, _OFF_HEARTBEAT, _OFF_PREFIX = 0, 8, 16, 24


class Scoreboard:
    """Shared per-child slots: pid, state, last heartbeat, process-channel prefix.

    Args:
        slots: how many children can exist at once (old and new generations during a
            reload count together).
    """

    def __init__(self, slots: int = 256) -> None:
        self.slots = slots
        self._map = mmap.mmap(-1, slots * _SLOT_SIZE, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self._free = list(range(slots - 1, -1, -1))

    # master side -----------------------------------------------------------------------
    def allocate(self) -> int | None:
        """Take a free slot, reset to STARTING with a fresh heartbeat; None when full."""
        if not self._free:
            return None
        slot = self._free.pop()
        base = slot * _SLOT_SIZE
        self._map[base:base + _SLOT_SIZE] = bytes(_SLOT_SIZE)
        _STATE.pack_into(self._map, base + _OFF_STATE, STARTING)
        _HEARTBEAT.pack_into(self._map, base + _OFF_HEARTBEAT, time.monotonic())
        return slot

    def set_pid(self, slot: int, pid: int) -> None:
        """Record the pid of the child owning ``slot``."""
        _PID.pack_into(self._map, slot * _SLOT_SIZE + _OFF_PID, pid)

    def release(self, slot: int) -> None:
        """Give a reaped child's slot back."""
        base = slot * _SLOT_SIZE
        self._map[base:base + _SLOT_SIZE] = bytes(_SLOT_SIZE)
        self._free.append(slot)

    def state(self, slot: int) -> int:
        """EMPTY, STARTING or BOOTED."""
        return int(_STATE.unpack_from(self._map, slot * _SLOT_SIZE + _OFF_STATE)[0])

    def last_heartbeat(self, slot: int) -> float:
        """CLOCK_MONOTONIC time of the last heartbeat (or of the spawn)."""
        return float(_HEARTBEAT.unpack_from(self._map, slot * _SLOT_SIZE + _OFF_HEARTBEAT)[0])

    def prefix(self, slot: int) -> str | None:
        """The process-channel prefix the child reported at boot, or None."""
        base = slot * _SLOT_SIZE + _OFF_PREFIX
        raw = bytes(self._map[base:base + _PREFIX_SIZE]).rstrip(b"\0")
        return raw.decode("ascii") if raw else None

    # child side ------------------------------------------------------------------------
    def mark_booted(self, slot: int, prefix: str | None = None) -> None:
        """Called once by the child when it serves; stores the prefix first (see invariants)."""
        base = slot * _SLOT_SIZE
        if prefix:
            data = prefix.encode("ascii")[:_PREFIX_SIZE]
            self._map[base + _OFF_PREFIX:base + _OFF_PREFIX + _PREFIX_SIZE] = data.ljust(_PREFIX_SIZE, b"\0")
        _HEARTBEAT.pack_into(self._map, base + _OFF_HEARTBEAT, time.monotonic())
        _STATE.pack_into(self._map, base + _OFF_STATE, BOOTED)

    def beat(self, slot: int) -> None:
        """Record a heartbeat now (cheap: one 8-byte store)."""
        _HEARTBEAT.pack_into(self._map, slot * _SLOT_SIZE + _OFF_HEARTBEAT, time.monotonic())

    def close(self) -> None:
        """Unmap (the master at exit)."""
        self._map.close()

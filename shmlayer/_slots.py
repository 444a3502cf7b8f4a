"""Waiter slots in the segment (a mixin of ``_store.Store``): claim, arm, disarm, collect.

See ``_waiters`` for the process-side sockets and the no-lost-wake-up argument.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _layout as L
from ._fields import (
    H_WBUMP, H_WILD, STATE_ARMED, STATE_FREE, STATE_IDLE, WW, W_BUCKETS, W_NB, W_PID, W_STATE,
)


class WaiterSlots:
    """Waiter-slot operations; expects the attributes ``_store.Store`` sets up."""

    if TYPE_CHECKING:
        # Declared for the type checker only: ``_store.Store`` sets these up.
        geometry: L.Geometry
        u32: memoryview
        ww: int
        bww: int
        wake: list[int]

    def _collect_waiters(self, bucket: int) -> None:
        """Disarm every armed waiter interested in ``bucket``; remember it for waking."""
        u32 = self.u32
        ww = self.ww
        for s in range(u32[H_WBUMP]):
            w = ww + s * WW
            if u32[w + W_STATE] != STATE_ARMED:
                continue
            nb = u32[w + W_NB]
            if nb == L.WILDCARD or bucket in self.u32[w + W_BUCKETS : w + W_BUCKETS + nb]:
                self.disarm(s)
                self.wake.append(s)

    def claim_waiter(self, pid: int, alive: Any) -> int:
        """Take a free waiter slot for ``pid`` (reclaiming slots of dead processes); -1 if none."""
        u32 = self.u32
        n = self.geometry.n_waiters
        bump = u32[H_WBUMP]
        for s in range(n):
            w = self.ww + s * WW
            if s >= bump:
                u32[H_WBUMP] = s + 1
            elif u32[w + W_PID] and alive(u32[w + W_PID]):
                continue
            self.disarm(s)
            u32[w + W_PID] = pid
            u32[w + W_STATE] = STATE_IDLE
            u32[w + W_NB] = 0
            return s
        return -1

    def release_waiter(self, s: int) -> None:
        self.disarm(s)
        w = self.ww + s * WW
        self.u32[w + W_STATE] = STATE_FREE
        self.u32[w + W_PID] = 0

    def arm(self, s: int, buckets: list[int] | None) -> None:
        """Mark slot ``s`` as sleeping on ``buckets`` (None: every channel)."""
        u32 = self.u32
        w = self.ww + s * WW
        if u32[w + W_STATE] == STATE_ARMED:
            self.disarm(s)
        if buckets is None or len(buckets) > L.MAX_WAIT_BUCKETS:
            u32[w + W_NB] = L.WILDCARD
            u32[H_WILD] += 1
        else:
            u32[w + W_NB] = len(buckets)
            for k, b in enumerate(buckets):
                u32[w + W_BUCKETS + k] = b
                u32[self.bww + b] += 1
        u32[w + W_STATE] = STATE_ARMED

    def disarm(self, s: int) -> None:
        u32 = self.u32
        w = self.ww + s * WW
        if u32[w + W_STATE] != STATE_ARMED:
            return
        u32[w + W_STATE] = STATE_IDLE
        nb = u32[w + W_NB]
        if nb == L.WILDCARD:
            if u32[H_WILD]:
                u32[H_WILD] -= 1
            return
        for k in range(nb):
            b = u32[w + W_BUCKETS + k]
            if u32[self.bww + b]:
                u32[self.bww + b] -= 1

    def waiter_armed(self, s: int) -> bool:
        return self.u32[self.ww + s * WW + W_STATE] == STATE_ARMED

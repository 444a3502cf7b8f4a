"""Process-side half of waiting: one abstract AF_UNIX datagram socket per waiter slot.

A blocked ``receive`` owns a waiter slot in the segment (``_store.Store.arm``) and a
socket bound to ``\\0shmch-<segment crc>-<epoch>-<slot>`` (abstract namespace: no file
to clean up, gone when the process dies). A sender that finds the slot armed for the
channel's bucket disarms it under the lock and, after releasing the lock, sends it one
byte. The sleeper waits with ``select`` (blocking receive) or ``loop.add_reader``
(``receive_async``), so waiting costs no CPU and no thread.

No wake-up is lost: the receiver arms *in the same critical section* in which it found
every channel empty, and a sender links its message and looks for armed waiters in one
critical section too. A byte left over from an earlier wake is drained before arming;
one that arrives late only causes a spurious (harmless) re-check.
"""

from __future__ import annotations

import socket
import zlib


def waiter_address(segment_name: str, epoch: int, slot: int) -> bytes:
    """Abstract-namespace address of waiter ``slot`` of one segment instance."""
    crc = zlib.crc32(segment_name.encode("ascii"))
    return b"\0shmch-%08x-%016x-%d" % (crc, epoch, slot)


class Waiter:
    """A claimed waiter slot and its bound, non-blocking datagram socket."""

    __slots__ = ("slot", "sock", "fd", "epoch")

    def __init__(self, slot: int, segment_name: str, epoch: int) -> None:
        self.slot = slot
        self.epoch = epoch
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.bind(waiter_address(segment_name, epoch, slot))
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self.fd = self.sock.fileno()

    def drain(self) -> None:
        """Discard wake bytes left from earlier arming."""
        recv = self.sock.recv
        try:
            while True:
                recv(64)
        except (BlockingIOError, InterruptedError):
            pass

    def close(self) -> None:
        self.sock.close()


class WakeSender:
    """Sends the one-byte wake-ups (one unbound socket per layer instance)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self._addresses: dict[int, bytes] = {}

    def wake(self, segment_name: str, epoch: int, slots: list[int]) -> None:
        addresses = self._addresses
        for slot in slots:
            address = addresses.get(slot)
            if address is None:
                address = addresses[slot] = waiter_address(segment_name, epoch, slot)
            try:
                self.sock.sendto(b"\1", address)
            except (BlockingIOError, ConnectionRefusedError, FileNotFoundError, InterruptedError):
                # Full queue: already woken. Refused: the owner died; the next claimant
                # of that slot reclaims it.
                pass

    def reset(self) -> None:
        self._addresses.clear()

    def close(self) -> None:
        self.sock.close()

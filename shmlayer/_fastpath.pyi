"""Type stub of the C extension ``shmlayer._fastpath`` (``_fastpath*.c``: the segment lock and common-case send/receive)."""

import mmap
from typing import overload

LAYOUT: dict[str, int]
PLAIN_MAX_DEPTH: int

def plain(obj: object, /) -> bool: ...

class FastPath:
    def __init__(
        self,
        mapping: mmap.mmap,
        chan_off: int,
        chan_bucket_off: int,
        n_chan_buckets: int,
        bucket_waiters_off: int,
        node_off: int,
        n_nodes: int,
        n_channels: int,
        waiter_off: int,
        n_waiters: int,
        heap_off: int,
        heap_size: int,
        heap_max_order: int,
        group_off: int,
        group_bucket_off: int,
        n_group_buckets: int,
        n_groups: int,
        member_off: int,
        n_members: int,
        pid: int,
        /,
    ) -> None: ...
    def init_lock(self) -> None: ...
    def lock(self, timeout: float | None = None, /) -> bool: ...
    def unlock(self) -> None: ...
    @overload
    def send(self, name: bytes, hash: int, data: bytes, expiry: float, /) -> int | list[int]: ...
    @overload
    def send(self, name: bytes, hash: int, data: bytes, expiry: float, cap: int, prefix_len: int,
             prefix_hash: int, /) -> int | list[int]: ...
    def send_group(self, name: bytes, hash: int, data: bytes, expiry: float, group_expiry: float, /) -> int | list[int]: ...
    def receive(self, targets: list[tuple[bytes, int]], start: int, slot: int = -1, /) -> tuple[bytes, bytes] | int | None: ...
    def disarm(self, slot: int, /) -> bool: ...
    def pending(self, targets: list[tuple[bytes, int]], /) -> bool: ...
    def release(self) -> None: ...
    def set_pid(self, pid: int, /) -> None: ...
    def crash_at(self, point: int, hits: int = 1, /) -> None: ...

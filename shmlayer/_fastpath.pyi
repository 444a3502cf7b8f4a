"""Type stub of the C extension ``_fastpath.c`` (the segment lock and common-case send/receive)."""

import mmap

LAYOUT: dict[str, int]

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
        pid: int,
        /,
    ) -> None: ...
    def init_lock(self) -> None: ...
    def lock(self) -> bool: ...
    def unlock(self) -> None: ...
    def send(self, name: bytes, hash: int, data: bytes, expiry: float, /) -> int | list[int]: ...
    def receive(self, targets: list[tuple[bytes, int]], start: int, /) -> tuple[bytes, bytes] | int | None: ...
    def pending(self, targets: list[tuple[bytes, int]], /) -> bool: ...
    def release(self) -> None: ...
    def set_pid(self, pid: int, /) -> None: ...
    def crash_at(self, point: int, /) -> None: ...

"""The payload heap: a binary buddy allocator over the segment's heap region.

Blocks are 2**order bytes (order MIN_ORDER .. heap_max_order) with a 16-byte header
(``_layout`` "Heap block header"). Free blocks of each order form a doubly linked list
whose head is ``heap_free[order]`` in the header. Allocation and free are O(orders),
at most ~20 steps, whatever the number of blocks.

The heap region is carved greedily from its start: one block of ``heap_max_order``, then
the remainder as blocks of decreasing order. A block's buddy is at ``rel ^ size`` (``rel``
= offset from the heap start); it exists only if it lies wholly inside the heap, and it
is merged only when its header says FREE with the same order. Since every block boundary
is a header, that test never reads payload bytes as a header.

Invariant kept by every holder of the lock: a USED block's ``refs`` equals the number of
queued nodes whose ``payload`` is that block (0 only transiently inside ``send_group``).
Recovery recomputes refs from the queues and rebuilds the free lists (:meth:`Heap.rebuild`).
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Iterable

from . import _layout as L

if TYPE_CHECKING:
    from ._segment import Segment

_USED = L.BLOCK_USED << 8
_FREE = L.BLOCK_FREE << 8
_FREE_W = L.H["heap_free"] >> 2
_USED_Q = L.H["heap_used"] >> 3
_LAZY_MAX_ORDER = 12


class Heap:
    """Allocator operations on one mapped segment (call only under the segment lock)."""

    __slots__ = ("u32", "u64", "mv", "base", "size", "max_order", "end")

    def __init__(self, segment: "Segment") -> None:
        self.u32 = segment.u32
        self.u64 = segment.u64
        self.mv = segment.mv
        geometry = segment.geometry
        self.base = geometry.heap_off
        self.size = geometry.heap_size
        self.max_order = geometry.heap_max_order
        self.end = self.base + self.size

    # --------------------------------------------------------------- free-list ops

    def _push(self, block: int, order: int) -> None:
        u32 = self.u32
        w = block >> 2
        head = u32[_FREE_W + order]
        u32[w] = _FREE | order
        u32[w + 1] = 0
        u32[w + 2] = head
        if head:
            u32[(head >> 2) + 1] = block
        u32[_FREE_W + order] = block

    def _unlink(self, block: int, order: int) -> None:
        u32 = self.u32
        w = block >> 2
        prev = u32[w + 1]
        nxt = u32[w + 2]
        if prev:
            u32[(prev >> 2) + 2] = nxt
        else:
            u32[_FREE_W + order] = nxt
        if nxt:
            u32[(nxt >> 2) + 1] = prev

    # ------------------------------------------------------------------ public ops

    def alloc(self, nbytes: int) -> int:
        """Allocate a USED block for ``nbytes`` of payload (refs 0); 0 if none is free."""
        need = nbytes + L.BLOCK_SIZE
        order = (need - 1).bit_length()
        if order < L.MIN_ORDER:
            order = L.MIN_ORDER
        u32 = self.u32
        k = order
        max_order = self.max_order
        while k <= max_order and not u32[_FREE_W + k]:
            k += 1
        if k > max_order:
            if not self._coalesce():
                return 0
            return self.alloc(nbytes)
        block = u32[_FREE_W + k]
        self._unlink(block, k)
        while k > order:
            k -= 1
            self._push(block + (1 << k), k)
        w = block >> 2
        u32[w] = _USED | order
        u32[w + 1] = 0
        u32[w + 2] = nbytes
        self.u64[_USED_Q] += 1 << order
        return block

    def free(self, block: int) -> None:
        """Return a USED block to the heap, merging it with free buddies."""
        u32 = self.u32
        order = u32[block >> 2] & 0xFF
        self.u64[_USED_Q] -= 1 << order
        if order <= _LAZY_MAX_ORDER:
            # Keep up to two small blocks per order unmerged: a steady stream of
            # one-message-at-a-time would otherwise merge up to the top on every free and
            # split all the way down on the next alloc. ``alloc`` merges them when it runs short.
            head = u32[_FREE_W + order]
            if not head or not u32[(head >> 2) + 2]:
                self._push(block, order)
                return
        self._merge_free(block, order)

    def _merge_free(self, block: int, order: int) -> None:
        u32 = self.u32
        base, size, max_order = self.base, self.size, self.max_order
        while order < max_order:
            rel = (block - base) ^ (1 << order)
            if rel + (1 << order) > size:
                break
            buddy = base + rel
            if u32[buddy >> 2] != _FREE | order:
                break
            self._unlink(buddy, order)
            if buddy < block:
                block = buddy
            order += 1
        self._push(block, order)

    def _coalesce(self) -> bool:
        """Merge the small free blocks ``free`` kept unmerged; True if any merged."""
        u32 = self.u32
        merged = False
        for order in range(L.MIN_ORDER, _LAZY_MAX_ORDER + 1):
            blocks = []
            block = u32[_FREE_W + order]
            while block:
                blocks.append(block)
                block = u32[(block >> 2) + 2]
            for block in blocks:
                if u32[block >> 2] != _FREE | order:
                    continue  # already merged into a bigger block by an earlier one
                rel = (block - self.base) ^ (1 << order)
                buddy = self.base + rel
                if rel + (1 << order) <= self.size and u32[buddy >> 2] == _FREE | order:
                    self._unlink(block, order)
                    self._merge_free(block, order)
                    merged = True
        return merged

    def decref(self, block: int) -> None:
        """Drop one reference; free the block when none is left."""
        w = (block >> 2) + 1
        refs = self.u32[w] - 1
        if refs <= 0:
            self.free(block)
        else:
            self.u32[w] = refs

    def payload(self, block: int) -> bytes:
        """A copy of the block's payload (taken under the lock, decoded after it)."""
        start = block + L.BLOCK_SIZE
        return bytes(self.mv[start : start + self.u32[(block >> 2) + 2]])

    def write(self, block: int, data: bytes) -> None:
        start = block + L.BLOCK_SIZE
        self.mv[start : start + len(data)] = data

    # ------------------------------------------------------------- whole-heap ops

    def _pieces(self) -> list[tuple[int, int]]:
        """The top-level blocks the heap region is carved into: (rel offset, order)."""
        pieces = []
        rel = 0
        for order in range(self.max_order, L.MIN_ORDER - 1, -1):
            if self.size - rel >= 1 << order:
                pieces.append((rel, order))
                rel += 1 << order
        return pieces

    def reset(self) -> None:
        """Make the whole heap free (new segment, flush)."""
        u32 = self.u32
        for order in range(32):
            u32[_FREE_W + order] = 0
        for rel, order in reversed(self._pieces()):
            self._push(self.base + rel, order)
        self.u64[_USED_Q] = 0

    def valid_block(self, block: int) -> bool:
        """True if ``block`` looks like a USED block header at a legal buddy position."""
        if not self.base <= block < self.end or block & 3:
            return False
        tag = self.u32[block >> 2]
        order = tag & 0xFF
        if tag >> 8 != L.BLOCK_USED or not L.MIN_ORDER <= order <= self.max_order:
            return False
        rel = block - self.base
        if rel & ((1 << order) - 1) or rel + (1 << order) > self.size:
            return False
        return self.u32[(block >> 2) + 2] + L.BLOCK_SIZE <= 1 << order

    def rebuild(self, live: dict[int, int]) -> set[int]:
        """Recovery: keep exactly the blocks in ``live`` ({block: refs}), free the rest.

        Returns the blocks dropped because they overlapped another live block (their
        nodes must be dropped by the caller).
        """
        blocks = sorted(live)
        kept: list[tuple[int, int]] = []
        dropped: set[int] = set()
        last_end = 0
        for block in blocks:
            order = self.u32[block >> 2] & 0xFF
            if block < last_end:
                dropped.add(block)
                continue
            kept.append((block - self.base, order))
            last_end = block + (1 << order)
        starts = [rel for rel, _ in kept]
        orders = dict(kept)
        u32 = self.u32
        for order in range(32):
            u32[_FREE_W + order] = 0
        used = 0

        exact: set[int] = set()

        def carve(rel: int, order: int) -> None:
            nonlocal used
            if order < L.MIN_ORDER:
                return  # only reached through a block with an impossible order: dropped
            i = bisect.bisect_left(starts, rel)
            inside = i < len(starts) and starts[i] < rel + (1 << order)
            if not inside:
                self._push(self.base + rel, order)
            elif starts[i] == rel and orders[rel] == order:
                used += 1 << order
                exact.add(self.base + rel)
            else:
                carve(rel, order - 1)
                carve(rel + (1 << (order - 1)), order - 1)

        for rel, order in self._pieces():
            carve(rel, order)
        for block in exact:
            u32[(block >> 2) + 1] = live[block]
        self.u64[_USED_Q] = used
        return set(live) - exact

    def free_blocks(self) -> Iterable[tuple[int, int]]:
        """Every (block, order) on the free lists (for verification and stats)."""
        u32 = self.u32
        for order in range(L.MIN_ORDER, self.max_order + 1):
            block = u32[_FREE_W + order]
            seen = 0
            while block and seen <= self.size >> L.MIN_ORDER:
                yield block, order
                block = u32[(block >> 2) + 2]
                seen += 1

"""Unit tests of the buddy heap (shmlayer/_heap.py) on a real mapped segment."""

from __future__ import annotations

import random
from typing import Iterator

import pytest

from shmlayer import _layout as L
from shmlayer._heap import Heap
from shmlayer._segment import Segment

from .conftest import unique_name


@pytest.fixture
def heap() -> Iterator[Heap]:
    segment = Segment(unique_name("heap"), L.MIN_SEGMENT_SIZE)
    try:
        yield Heap(segment)
    finally:
        segment.unlink()
        segment.close()


def _tiles(heap: Heap, used: dict[int, int]) -> bool:
    spans = sorted([(b, 1 << o) for b, o in heap.free_blocks()] + [(b, 1 << (heap.u32[b >> 2] & 0xFF)) for b in used])
    cursor = heap.base
    for block, size in spans:
        if block != cursor:
            return False
        cursor += size
    return cursor == heap.base + sum(1 << o for _, o in heap._pieces())


def test_fresh_heap_is_one_free_tiling(heap: Heap) -> None:
    assert _tiles(heap, {})
    assert heap.u64[L.H["heap_used"] >> 3] == 0


def test_alloc_rounds_to_power_of_two_and_frees_back(heap: Heap) -> None:
    block = heap.alloc(100)
    assert block and heap.valid_block(block)
    assert heap.u32[block >> 2] & 0xFF == 7  # 100 + 16 header -> 128
    heap.write(block, b"x" * 100)
    assert heap.payload(block) == b"x" * 100
    assert heap.u64[L.H["heap_used"] >> 3] == 128
    heap.free(block)
    assert _tiles(heap, {}) and heap.u64[L.H["heap_used"] >> 3] == 0
    # everything merged back: the largest block is available again
    biggest = heap.alloc((1 << heap.max_order) - L.BLOCK_SIZE)
    assert biggest


def test_too_big_and_exhaustion_return_zero(heap: Heap) -> None:
    assert heap.alloc(1 << heap.max_order) == 0
    blocks = []
    while True:
        block = heap.alloc(4000)
        if not block:
            break
        blocks.append(block)
    assert len(blocks) == heap.size // 4096
    assert len(set(blocks)) == len(blocks)
    for block in blocks:
        heap.free(block)
    assert _tiles(heap, {})


def test_random_alloc_free_keeps_the_tiling(heap: Heap) -> None:
    rng = random.Random(7)
    used: dict[int, int] = {}
    for _ in range(3000):
        if used and rng.random() < 0.45:
            block = rng.choice(list(used))
            assert heap.payload(block) == bytes([used[block] & 0xFF]) * heap.u32[(block >> 2) + 2]
            del used[block]
            heap.decref(block)
        else:
            n = rng.choice([10, 60, 500, 3000, 20000])
            block = heap.alloc(n)
            if block:
                heap.u32[(block >> 2) + 1] = 1
                heap.write(block, bytes([len(used) & 0xFF]) * n)
                used[block] = len(used)
                assert block not in {b for b, _ in heap.free_blocks()}
    assert _tiles(heap, used)


def test_refcount_frees_on_last_reference(heap: Heap) -> None:
    block = heap.alloc(10)
    heap.u32[(block >> 2) + 1] = 3
    heap.decref(block)
    heap.decref(block)
    assert heap.valid_block(block)
    heap.decref(block)
    assert not heap.valid_block(block)


def test_rebuild_keeps_live_blocks_and_frees_the_rest(heap: Heap) -> None:
    keep = [heap.alloc(n) for n in (50, 900, 7000)]
    lost = [heap.alloc(n) for n in (50, 300)]
    for block in keep:
        heap.write(block, b"k" * heap.u32[(block >> 2) + 2])
    # scribble over the free lists as a crashed holder might have left them
    for order in range(32):
        heap.u32[(L.H["heap_free"] >> 2) + order] = 0
    dropped = heap.rebuild({block: 2 for block in keep})
    assert dropped == set()
    assert _tiles(heap, {b: 1 for b in keep})
    for block in keep:
        assert heap.u32[(block >> 2) + 1] == 2
        assert heap.payload(block) == b"k" * heap.u32[(block >> 2) + 2]
    assert all(not heap.valid_block(b) or b in keep for b in lost)


def test_rebuild_drops_overlapping_blocks(heap: Heap) -> None:
    outer = heap.alloc(3000)  # order 12
    inner = outer + 2048
    heap.u32[inner >> 2] = (L.BLOCK_USED << 8) | 11
    heap.u32[(inner >> 2) + 2] = 10
    dropped = heap.rebuild({outer: 1, inner: 1})
    assert dropped == {inner}
    assert _tiles(heap, {outer: 1})


def test_small_frees_stay_cached_but_never_block_a_big_alloc(heap: Heap) -> None:
    rng = random.Random(3)
    blocks = [heap.alloc(rng.choice([20, 100, 1000])) for _ in range(200)]
    for block in blocks:
        heap.free(block)
    assert _tiles(heap, {})
    # some small blocks are kept unmerged, yet the largest block can still be had
    biggest = heap.alloc((1 << heap.max_order) - L.BLOCK_SIZE)
    assert biggest and _tiles(heap, {biggest: 1})
    heap.free(biggest)
    assert heap.u64[L.H["heap_used"] >> 3] == 0

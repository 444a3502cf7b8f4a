"""The layout table in shmlayer/_layout.py's docstring is the code's layout."""

from __future__ import annotations

import re
import struct

import pytest

from shmlayer import _layout as L

_ROW = re.compile(r"^\| (\d+) \| (\d+) \| (\w+) \| (\w+) \| ")


def _doc_tables() -> dict[str, list[tuple[str, int, int, str]]]:
    """Parse every table of the module docstring: {title: [(field, offset, size, type)]}."""
    tables: dict[str, list[tuple[str, int, int, str]]] = {}
    title = None
    lines = (L.__doc__ or "").splitlines()
    for k, line in enumerate(lines):
        if k + 1 < len(lines) and set(lines[k + 1]) == {"-"} and line.strip():
            title = line.split(" (")[0].strip()
            tables[title] = []
        match = _ROW.match(line)
        if match and title is not None:
            offset, size, code, field = match.groups()
            tables[title].append((field, int(offset), int(size), code))
    return {name: rows for name, rows in tables.items() if rows}


def test_docstring_has_every_table() -> None:
    assert set(_doc_tables()) == set(L.TABLES)


@pytest.mark.parametrize("title", sorted(L.TABLES))
def test_docstring_table_matches_code(title: str) -> None:
    assert _doc_tables()[title] == list(L.TABLES[title])


@pytest.mark.parametrize("title", sorted(L.TABLES))
def test_fields_are_contiguous_aligned_and_sized(title: str) -> None:
    fields = L.TABLES[title]
    cursor = 0
    for name, offset, size, code in fields:
        assert offset == cursor, f"{title}.{name} leaves a gap or overlaps"
        assert struct.calcsize("=" + code) == size, f"{title}.{name}: {code} is not {size} bytes"
        natural = min(size, 8) if code[-1] in "QId" else 1
        assert offset % natural == 0, f"{title}.{name} is not naturally aligned"
        cursor += size
    assert struct.Struct("=" + "".join(c for *_, c in fields)).size == cursor


def test_struct_sizes_match_the_titles() -> None:
    assert (L.HEADER_SIZE, L.CHAN_SIZE, L.GROUP_SIZE, L.MEMBER_SIZE) == (512, 320, 288, 48)
    assert (L.NODE_SIZE, L.BLOCK_SIZE, L.WAITER_SIZE) == (32, 16, 128)
    doc = L.__doc__ or ""
    for label, size in (("HEADER_SIZE", 512), ("CHAN_SIZE", 320), ("GROUP_SIZE", 288), ("MEMBER_SIZE", 48),
                        ("NODE_SIZE", 32), ("BLOCK_SIZE", 16), ("WAITER_SIZE", 128)):
        assert f"{label} = {size} bytes" in doc
    assert L.W["buckets"] // 4 + L.MAX_WAIT_BUCKETS == L.WAITER_SIZE // 4
    assert L.NAME_CAPACITY >= 250


@pytest.mark.parametrize("size", [L.MIN_SEGMENT_SIZE, 4 << 20, 64 << 20, 1 << 30])
def test_regions_are_disjoint_and_fit(size: int) -> None:
    g = L.plan_layout(size)
    regions = sorted([
        (g.chan_off, g.n_channels * L.CHAN_SIZE), (g.chan_bucket_off, g.n_chan_buckets * 4),
        (g.bucket_waiters_off, g.n_chan_buckets * 4), (g.group_off, g.n_groups * L.GROUP_SIZE),
        (g.group_bucket_off, g.n_group_buckets * 4), (g.member_off, g.n_members * L.MEMBER_SIZE),
        (g.member_bucket_off, g.n_member_buckets * 4), (g.node_off, g.n_nodes * L.NODE_SIZE),
        (g.waiter_off, g.n_waiters * L.WAITER_SIZE), (g.heap_off, g.heap_size),
    ])
    cursor = L.HEADER_SIZE
    for offset, nbytes in regions:
        assert offset >= cursor and offset % L.ALIGN == 0
        cursor = offset + nbytes
    assert cursor <= size
    for count in (g.n_chan_buckets, g.n_group_buckets, g.n_member_buckets):
        assert count & (count - 1) == 0
    assert (1 << g.heap_max_order) <= g.heap_size < (2 << g.heap_max_order)
    assert g.heap_size > 0.7 * size


def test_plan_layout_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError):
        L.plan_layout(L.MIN_SEGMENT_SIZE - 1)
    with pytest.raises(ValueError):
        L.plan_layout(L.MAX_SEGMENT_SIZE + 1)


def test_magic_is_native_u64_of_the_tag() -> None:
    assert L.MAGIC.to_bytes(8, "little") == b"shmchnls"

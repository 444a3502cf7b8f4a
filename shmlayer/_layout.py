"""Byte layout of the shmchannels segment (layout version 2).

One POSIX shared-memory segment (``/dev/shm/<name>``) holds the whole layer. Every
process maps it ``MAP_SHARED`` and reads/writes it only while holding the segment lock.

Theory of operation
-------------------

* **One lock.** A robust, process-shared pthread mutex in the header (``lock``), taken
  and released by ``_fastpath`` (C): uncontended, one atomic instruction each way. When
  its holder dies the kernel marks it, and the next locker gets it (EOWNERDEAD, made
  consistent at once), so a ``kill -9`` never wedges the others. It excludes threads as
  well as processes. Every structure below is guarded by that one lock. Lock order inside
  a process: the layer's waiter-pool lock, then the segment lock; nothing is taken while
  the segment lock is held. (``flock`` on the segment file is used only while creating or
  attaching, so that an attacher never sees a half-written header.)
* **Dirty word.** The holder writes its pid into ``lock_owner`` right after acquiring and
  writes 0 right before releasing. An acquirer that finds it non-zero knows the previous
  holder died (or raised) mid-operation and runs recovery (``_recovery.py``): it rebuilds
  every derived field (free lists, counts, tails, refcounts, waiter counters) from the
  primary structures (hash chains and queue links), which every operation updates with a
  single final store ("link last"), so at most the in-flight message is lost.
* **Two implementations, one set of stores.** ``_store``/``_heap``/``_slots`` (Python) do
  every operation; the C extension ``_fastpath`` (``_fastpath*.c``) does the common case of
  ``send``, ``send_group`` and ``receive`` (entries exist or ``send`` can create one
  without eviction, room, no expired message or membership on the way), arming
  and disarming waiters, with the same stores in the same order, and hands anything else
  back to Python before its first store.
* **Zero is empty.** Index 0 of every table and heap offset 0 are never used, so 0 is the
  null link (``NIL``). A freshly ``ftruncate``-d (all-zero) segment is therefore a valid
  empty layer once the header is written; tables are handed out from a bump index, so
  creating even a large segment is O(1).
* **Channels** live in a chained hash table (crc32 of the ASCII name). A channel entry
  owns a FIFO of *message references* (32-byte nodes) that point into the payload heap.
  A normal or ``?`` channel queues on its own entry. A process channel ``prefix!local``
  has its own entry (it counts capacity per full name, ``ncount``) whose ``queue`` points
  at the entry named ``prefix!``, which holds the FIFO the owning process reads.
  (Why not per-channel fixed rings: thousands of reply channels each sized to capacity
  would waste most of the segment, and a ``prefix!`` queue aggregates many full names with
  independent capacities, so it has no fixed bound. A linked FIFO of fixed-size reference
  nodes, bounded by ``capacity`` per name, gives the same O(1) push/pop.)
* **Payloads** live in a binary buddy heap (64 B .. 2**heap_max_order blocks, 16-byte
  block header). A block is refcounted: ``send_group`` serialises once, stores the payload
  once and links one node per member, each holding a reference.
* **Groups** live in a second hash table; memberships (group, channel, stamp) in a third,
  keyed by (group index, channel index), and threaded on two intrusive doubly linked lists
  (members of a group; groups of a channel) so add/discard are O(1) and an expiring channel
  leaves all its groups in O(its memberships).
* **Expiry** uses CLOCK_MONOTONIC (``time.monotonic()``: one clock for every process on
  the host). A node stores its own ``expires``; nothing ever extends it.
* **Waiters.** A process blocked in ``receive`` owns a waiter slot (pid, state, the channel
  hash-bucket numbers it waits on) and an abstract AF_UNIX datagram socket named from the
  segment, its epoch and the slot number. ``bucket_waiters[b]`` counts armed slots
  interested in bucket ``b``, so a sender pays one read when nobody waits.

Endianness: native (the segment never leaves the host). The magic is a u64, so a reader of
the other byte order fails the magic check instead of misreading. Offsets are u32 byte
offsets from the segment start, so a segment is at most 4 GiB - 1.

Writers: "creator" = the process that created the segment (once, before ``magic``);
"holder" = any process holding the lock.

Header (HEADER_SIZE = 512 bytes)
--------------------------------

| offset | size | type | field | writer | meaning |
| --- | --- | --- | --- | --- | --- |
| 0 | 8 | Q | magic | creator | MAGIC, written last at creation |
| 8 | 4 | I | version | creator | LAYOUT_VERSION |
| 12 | 4 | I | header_size | creator | HEADER_SIZE |
| 16 | 8 | Q | epoch | creator | random non-zero id of this segment instance |
| 24 | 8 | Q | segment_size | creator | total bytes |
| 32 | 4 | I | lock_owner | holder | pid holding the lock; non-zero at acquire = recover |
| 36 | 4 | I | recoveries | holder | recovery runs so far |
| 40 | 4 | I | n_channels | creator | channel table slots (index 0 unused) |
| 44 | 4 | I | n_chan_buckets | creator | channel hash buckets (power of two) |
| 48 | 4 | I | n_groups | creator | group table slots |
| 52 | 4 | I | n_group_buckets | creator | group hash buckets (power of two) |
| 56 | 4 | I | n_members | creator | membership table slots |
| 60 | 4 | I | n_member_buckets | creator | membership hash buckets (power of two) |
| 64 | 4 | I | n_nodes | creator | message reference nodes |
| 68 | 4 | I | n_waiters | creator | waiter slots |
| 72 | 4 | I | chan_off | creator | channel table offset |
| 76 | 4 | I | chan_bucket_off | creator | channel bucket array (u32 heads) |
| 80 | 4 | I | group_off | creator | group table offset |
| 84 | 4 | I | group_bucket_off | creator | group bucket array |
| 88 | 4 | I | member_off | creator | membership table offset |
| 92 | 4 | I | member_bucket_off | creator | membership bucket array |
| 96 | 4 | I | node_off | creator | node table offset |
| 100 | 4 | I | waiter_off | creator | waiter slot table offset |
| 104 | 4 | I | bucket_waiters_off | creator | u32 per channel bucket: armed waiters |
| 108 | 4 | I | heap_off | creator | payload heap offset (64-aligned) |
| 112 | 4 | I | heap_size | creator | payload heap bytes |
| 116 | 4 | I | heap_max_order | creator | largest buddy block is 2**order bytes |
| 120 | 4 | I | chan_free | holder | free list of channel entries (via hnext) |
| 124 | 4 | I | chan_bump | holder | first never-used channel index |
| 128 | 4 | I | group_free | holder | free list of group entries |
| 132 | 4 | I | group_bump | holder | first never-used group index |
| 136 | 4 | I | member_free | holder | free list of memberships |
| 140 | 4 | I | member_bump | holder | first never-used membership index |
| 144 | 4 | I | node_free | holder | free list of nodes (via next) |
| 148 | 4 | I | node_bump | holder | first never-used node index |
| 152 | 4 | I | sweep_cursor | holder | next channel index the expiry sweep visits |
| 156 | 4 | I | wild_waiters | holder | armed waiters interested in every channel |
| 160 | 128 | 32I | heap_free | holder | free-list head per buddy order (block offset) |
| 288 | 8 | Q | n_sent | holder | messages queued (a group copy counts once per member) |
| 296 | 8 | Q | n_received | holder | messages delivered |
| 304 | 8 | Q | n_full | holder | sends refused or group copies skipped: channel full |
| 312 | 8 | Q | n_expired | holder | messages dropped unread at expiry |
| 320 | 8 | Q | n_group_skipped | holder | group copies skipped because the member was full |
| 328 | 8 | Q | n_segment_full | holder | sends refused: heap or a table exhausted |
| 336 | 8 | Q | heap_used | holder | bytes in allocated heap blocks |
| 344 | 8 | d | created_at | creator | wall-clock creation time |
| 352 | 8 | Q | n_group_sends | holder | send_group calls |
| 360 | 8 | Q | n_members_expired | holder | memberships dropped (group_expiry or message expiry) |
| 368 | 8 | Q | n_discarded | holder | messages dropped by flush/discard_prefix |
| 376 | 4 | I | waiter_bump | holder | waiter slots ever handed out (senders scan below it) |
| 380 | 4 | I | pad | - | zero |
| 384 | 64 | 64s | lock | creator | robust process-shared pthread_mutex_t (the segment lock) |
| 448 | 64 | 64x | reserved | - | zero |

Channel entry (CHAN_SIZE = 320 bytes, table at chan_off, index 1..n_channels-1)
-------------------------------------------------------------------------------

| offset | size | type | field | writer | meaning |
| --- | --- | --- | --- | --- | --- |
| 0 | 4 | I | hnext | holder | next entry in the hash chain / free list |
| 4 | 4 | I | hash | holder | crc32 of the name |
| 8 | 4 | I | flags | holder | 1 in use, + kind << 1 (0 normal, 1 prefix, 2 local), + 8 kept when empty |
| 12 | 4 | I | name_len | holder | bytes of name used |
| 16 | 4 | I | head | holder | first queued node (queues: normal, prefix) |
| 20 | 4 | I | tail | holder | last queued node |
| 24 | 4 | I | qcount | holder | nodes in this entry's queue |
| 28 | 4 | I | ncount | holder | queued messages addressed to this exact name |
| 32 | 4 | I | queue | holder | entry whose queue holds this name's messages |
| 36 | 4 | I | refs | holder | local entries whose queue is this entry |
| 40 | 4 | I | mhead | holder | first membership of this channel |
| 44 | 4 | I | gen | holder | bumped on every free: guards per-process caches |
| 48 | 4 | I | cap | holder | capacity, from the creating process's config |
| 52 | 4 | I | n_full | holder | sends refused / group copies skipped: full |
| 56 | 4 | I | n_expired | holder | messages expired unread |
| 60 | 4 | I | n_sent | holder | messages queued |
| 64 | 256 | 256s | name | holder | ASCII name |

Group entry (GROUP_SIZE = 288 bytes)
------------------------------------

| offset | size | type | field | writer | meaning |
| --- | --- | --- | --- | --- | --- |
| 0 | 4 | I | hnext | holder | hash chain / free list |
| 4 | 4 | I | hash | holder | crc32 of the name |
| 8 | 4 | I | flags | holder | 1 in use |
| 12 | 4 | I | name_len | holder | bytes of name used |
| 16 | 4 | I | mhead | holder | first membership of this group |
| 20 | 4 | I | mcount | holder | memberships |
| 24 | 4 | I | gen | holder | bumped on free |
| 28 | 4 | I | n_sent | holder | send_group calls |
| 32 | 256 | 256s | name | holder | ASCII name |

Membership (MEMBER_SIZE = 48 bytes)
-----------------------------------

| offset | size | type | field | writer | meaning |
| --- | --- | --- | --- | --- | --- |
| 0 | 4 | I | hnext | holder | hash chain / free list |
| 4 | 4 | I | hash | holder | mix of (group, chan) |
| 8 | 4 | I | flags | holder | 1 in use |
| 12 | 4 | I | group | holder | group entry index |
| 16 | 4 | I | chan | holder | channel entry index |
| 20 | 4 | I | gprev | holder | previous membership of the group |
| 24 | 4 | I | gnext | holder | next membership of the group |
| 28 | 4 | I | cprev | holder | previous membership of the channel |
| 32 | 4 | I | cnext | holder | next membership of the channel |
| 36 | 4 | I | pad | - | zero |
| 40 | 8 | d | stamp | holder | monotonic time of the last group_add |

Message reference node (NODE_SIZE = 32 bytes)
---------------------------------------------

| offset | size | type | field | writer | meaning |
| --- | --- | --- | --- | --- | --- |
| 0 | 4 | I | next | holder | next node in the queue / free list |
| 4 | 4 | I | chan | holder | entry of the exact name the message was sent to |
| 8 | 4 | I | payload | holder | heap block offset |
| 12 | 4 | I | flags | holder | 1 in use |
| 16 | 8 | d | sent | holder | monotonic send time |
| 24 | 8 | d | expires | holder | monotonic expiry time (sent + sender's expiry) |

Heap block header (BLOCK_SIZE = 16 bytes, payload follows)
----------------------------------------------------------

| offset | size | type | field | writer | meaning |
| --- | --- | --- | --- | --- | --- |
| 0 | 4 | I | tag | holder | state << 8 + order (state USED or FREE) |
| 4 | 4 | I | refs | holder | USED: references; FREE: previous free block |
| 8 | 4 | I | length | holder | USED: payload bytes; FREE: next free block |
| 12 | 4 | I | pad | - | zero |

Waiter slot (WAITER_SIZE = 128 bytes)
-------------------------------------

| offset | size | type | field | writer | meaning |
| --- | --- | --- | --- | --- | --- |
| 0 | 4 | I | pid | holder | owning process, 0 = free |
| 4 | 4 | I | state | holder | 0 free, 1 owned idle, 2 armed |
| 8 | 4 | I | nbuckets | holder | buckets listed below; WILDCARD = every channel |
| 12 | 4 | I | pad | - | zero |
| 16 | 112 | 28I | buckets | holder | channel hash buckets this waiter sleeps on |

Regions follow the header in this order, each 64-byte aligned: channel table, channel
buckets, bucket_waiters, group table, group buckets, membership table, membership buckets,
node table, waiter slots, heap. Their sizes scale with the segment size (see
:func:`plan_layout`); the header records them so an attacher never recomputes them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

#: ``b"shmchnls"`` read as a native u64.
MAGIC = int.from_bytes(b"shmchnls", "little")
LAYOUT_VERSION = 2
NIL = 0
MAX_SEGMENT_SIZE = 2**32 - 1
MIN_SEGMENT_SIZE = 1 << 20
NAME_CAPACITY = 256
MIN_ORDER = 6
BLOCK_USED = 0xA1
BLOCK_FREE = 0xF7
WILDCARD = 0xFFFF
MAX_WAIT_BUCKETS = 28
ALIGN = 64

KIND_NORMAL = 0
KIND_PREFIX = 1
KIND_LOCAL = 2
IN_USE = 1
#: Channel flag: a named channel (``http.request``, ``prefix!``) keeps its entry when empty,
#: so a steady stream does not create and free it per message; one-shot ``?`` and
#: ``prefix!local`` names are freed at once. Kept entries are freed when the table runs short.
RETAIN = 8

# (field, offset, size, struct code) in table order; the tables in the docstring above
# say the same and tests/shmlayer/test_layout.py checks that they do.
HEADER_FIELDS: tuple[tuple[str, int, int, str], ...] = (
    ("magic", 0, 8, "Q"),
    ("version", 8, 4, "I"),
    ("header_size", 12, 4, "I"),
    ("epoch", 16, 8, "Q"),
    ("segment_size", 24, 8, "Q"),
    ("lock_owner", 32, 4, "I"),
    ("recoveries", 36, 4, "I"),
    ("n_channels", 40, 4, "I"),
    ("n_chan_buckets", 44, 4, "I"),
    ("n_groups", 48, 4, "I"),
    ("n_group_buckets", 52, 4, "I"),
    ("n_members", 56, 4, "I"),
    ("n_member_buckets", 60, 4, "I"),
    ("n_nodes", 64, 4, "I"),
    ("n_waiters", 68, 4, "I"),
    ("chan_off", 72, 4, "I"),
    ("chan_bucket_off", 76, 4, "I"),
    ("group_off", 80, 4, "I"),
    ("group_bucket_off", 84, 4, "I"),
    ("member_off", 88, 4, "I"),
    ("member_bucket_off", 92, 4, "I"),
    ("node_off", 96, 4, "I"),
    ("waiter_off", 100, 4, "I"),
    ("bucket_waiters_off", 104, 4, "I"),
    ("heap_off", 108, 4, "I"),
    ("heap_size", 112, 4, "I"),
    ("heap_max_order", 116, 4, "I"),
    ("chan_free", 120, 4, "I"),
    ("chan_bump", 124, 4, "I"),
    ("group_free", 128, 4, "I"),
    ("group_bump", 132, 4, "I"),
    ("member_free", 136, 4, "I"),
    ("member_bump", 140, 4, "I"),
    ("node_free", 144, 4, "I"),
    ("node_bump", 148, 4, "I"),
    ("sweep_cursor", 152, 4, "I"),
    ("wild_waiters", 156, 4, "I"),
    ("heap_free", 160, 128, "32I"),
    ("n_sent", 288, 8, "Q"),
    ("n_received", 296, 8, "Q"),
    ("n_full", 304, 8, "Q"),
    ("n_expired", 312, 8, "Q"),
    ("n_group_skipped", 320, 8, "Q"),
    ("n_segment_full", 328, 8, "Q"),
    ("heap_used", 336, 8, "Q"),
    ("created_at", 344, 8, "d"),
    ("n_group_sends", 352, 8, "Q"),
    ("n_members_expired", 360, 8, "Q"),
    ("n_discarded", 368, 8, "Q"),
    ("waiter_bump", 376, 4, "I"),
    ("pad", 380, 4, "I"),
    ("lock", 384, 64, "64s"),
    ("reserved", 448, 64, "64x"),
)
CHAN_FIELDS: tuple[tuple[str, int, int, str], ...] = (
    ("hnext", 0, 4, "I"),
    ("hash", 4, 4, "I"),
    ("flags", 8, 4, "I"),
    ("name_len", 12, 4, "I"),
    ("head", 16, 4, "I"),
    ("tail", 20, 4, "I"),
    ("qcount", 24, 4, "I"),
    ("ncount", 28, 4, "I"),
    ("queue", 32, 4, "I"),
    ("refs", 36, 4, "I"),
    ("mhead", 40, 4, "I"),
    ("gen", 44, 4, "I"),
    ("cap", 48, 4, "I"),
    ("n_full", 52, 4, "I"),
    ("n_expired", 56, 4, "I"),
    ("n_sent", 60, 4, "I"),
    ("name", 64, 256, "256s"),
)
GROUP_FIELDS: tuple[tuple[str, int, int, str], ...] = (
    ("hnext", 0, 4, "I"),
    ("hash", 4, 4, "I"),
    ("flags", 8, 4, "I"),
    ("name_len", 12, 4, "I"),
    ("mhead", 16, 4, "I"),
    ("mcount", 20, 4, "I"),
    ("gen", 24, 4, "I"),
    ("n_sent", 28, 4, "I"),
    ("name", 32, 256, "256s"),
)
MEMBER_FIELDS: tuple[tuple[str, int, int, str], ...] = (
    ("hnext", 0, 4, "I"),
    ("hash", 4, 4, "I"),
    ("flags", 8, 4, "I"),
    ("group", 12, 4, "I"),
    ("chan", 16, 4, "I"),
    ("gprev", 20, 4, "I"),
    ("gnext", 24, 4, "I"),
    ("cprev", 28, 4, "I"),
    ("cnext", 32, 4, "I"),
    ("pad", 36, 4, "I"),
    ("stamp", 40, 8, "d"),
)
NODE_FIELDS: tuple[tuple[str, int, int, str], ...] = (
    ("next", 0, 4, "I"),
    ("chan", 4, 4, "I"),
    ("payload", 8, 4, "I"),
    ("flags", 12, 4, "I"),
    ("sent", 16, 8, "d"),
    ("expires", 24, 8, "d"),
)
BLOCK_FIELDS: tuple[tuple[str, int, int, str], ...] = (
    ("tag", 0, 4, "I"),
    ("refs", 4, 4, "I"),
    ("length", 8, 4, "I"),
    ("pad", 12, 4, "I"),
)
WAITER_FIELDS: tuple[tuple[str, int, int, str], ...] = (
    ("pid", 0, 4, "I"),
    ("state", 4, 4, "I"),
    ("nbuckets", 8, 4, "I"),
    ("pad", 12, 4, "I"),
    ("buckets", 16, 112, "28I"),
)

TABLES: dict[str, tuple[tuple[str, int, int, str], ...]] = {
    "Header": HEADER_FIELDS,
    "Channel entry": CHAN_FIELDS,
    "Group entry": GROUP_FIELDS,
    "Membership": MEMBER_FIELDS,
    "Message reference node": NODE_FIELDS,
    "Heap block header": BLOCK_FIELDS,
    "Waiter slot": WAITER_FIELDS,
}


def _struct_of(fields: tuple[tuple[str, int, int, str], ...]) -> struct.Struct:
    # Native order, no implicit padding ("="): the explicit offsets above are the layout.
    return struct.Struct("=" + "".join(code for _, _, _, code in fields))


def _offsets(fields: tuple[tuple[str, int, int, str], ...]) -> dict[str, int]:
    return {name: offset for name, offset, _, _ in fields}


HEADER = _struct_of(HEADER_FIELDS)
CHAN = _struct_of(CHAN_FIELDS)
GROUP = _struct_of(GROUP_FIELDS)
MEMBER = _struct_of(MEMBER_FIELDS)
NODE = _struct_of(NODE_FIELDS)
BLOCK = _struct_of(BLOCK_FIELDS)
WAITER = _struct_of(WAITER_FIELDS)

HEADER_SIZE = HEADER.size
CHAN_SIZE = CHAN.size
GROUP_SIZE = GROUP.size
MEMBER_SIZE = MEMBER.size
NODE_SIZE = NODE.size
BLOCK_SIZE = BLOCK.size
WAITER_SIZE = WAITER.size

H = _offsets(HEADER_FIELDS)
C = _offsets(CHAN_FIELDS)
G = _offsets(GROUP_FIELDS)
M = _offsets(MEMBER_FIELDS)
N = _offsets(NODE_FIELDS)
B = _offsets(BLOCK_FIELDS)
W = _offsets(WAITER_FIELDS)


@dataclass(frozen=True)
class Geometry:
    """Where each region of a segment lives (read from, or written to, the header)."""

    segment_size: int
    n_channels: int
    n_chan_buckets: int
    n_groups: int
    n_group_buckets: int
    n_members: int
    n_member_buckets: int
    n_nodes: int
    n_waiters: int
    chan_off: int
    chan_bucket_off: int
    group_off: int
    group_bucket_off: int
    member_off: int
    member_bucket_off: int
    node_off: int
    waiter_off: int
    bucket_waiters_off: int
    heap_off: int
    heap_size: int
    heap_max_order: int


def _align(value: int) -> int:
    return (value + ALIGN - 1) // ALIGN * ALIGN


def _pow2_at_least(value: int) -> int:
    return 1 << max(0, (value - 1).bit_length())


def plan_layout(segment_size: int) -> Geometry:
    """Decide the region sizes for a new segment of ``segment_size`` bytes.

    Tables scale with the segment (one channel per 4 KiB, one group per 16 KiB, one
    membership per 1 KiB, one message reference per 512 B); the heap takes the rest
    (about 80 %).

    Raises:
        ValueError: ``segment_size`` is outside [MIN_SEGMENT_SIZE, MAX_SEGMENT_SIZE].
    """
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise ValueError(
            f"segment size must be between {MIN_SEGMENT_SIZE} and {MAX_SEGMENT_SIZE} bytes, not {segment_size}"
        )
    n_channels = max(64, segment_size // 4096)
    n_groups = max(16, segment_size // 16384)
    n_members = max(128, segment_size // 1024)
    n_nodes = max(256, segment_size // 512)
    n_waiters = 256
    n_chan_buckets = _pow2_at_least(n_channels)
    n_group_buckets = _pow2_at_least(n_groups)
    n_member_buckets = _pow2_at_least(n_members)
    cursor = _align(HEADER_SIZE)
    offsets = {}
    for region, nbytes in (
        ("chan_off", n_channels * CHAN_SIZE),
        ("chan_bucket_off", n_chan_buckets * 4),
        ("bucket_waiters_off", n_chan_buckets * 4),
        ("group_off", n_groups * GROUP_SIZE),
        ("group_bucket_off", n_group_buckets * 4),
        ("member_off", n_members * MEMBER_SIZE),
        ("member_bucket_off", n_member_buckets * 4),
        ("node_off", n_nodes * NODE_SIZE),
        ("waiter_off", n_waiters * WAITER_SIZE),
    ):
        offsets[region] = cursor
        cursor = _align(cursor + nbytes)
    heap_size = (segment_size - cursor) // ALIGN * ALIGN
    return Geometry(
        segment_size=segment_size,
        n_channels=n_channels,
        n_chan_buckets=n_chan_buckets,
        n_groups=n_groups,
        n_group_buckets=n_group_buckets,
        n_members=n_members,
        n_member_buckets=n_member_buckets,
        n_nodes=n_nodes,
        n_waiters=n_waiters,
        heap_off=cursor,
        heap_size=heap_size,
        heap_max_order=heap_size.bit_length() - 1,
        **offsets,
    )


def max_payload(geometry: Geometry) -> int:
    """Largest payload one heap block can hold in a segment of this geometry."""
    return (1 << geometry.heap_max_order) - BLOCK_SIZE

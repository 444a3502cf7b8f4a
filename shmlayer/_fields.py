"""Word offsets of the table fields (derived from ``_layout``) and small shared helpers.

``u32[entry_word + C_HEAD]`` reads a channel's head: every module that walks the tables
(store, groups, waiters, recovery, verify, stats) uses these names instead of numbers.
"""

from __future__ import annotations

import zlib

from . import _layout as L

OK, FULL, NOSPACE = 0, 1, 2

# Word (u32) offsets of entry fields, derived from the layout tables.
_C = {k: v >> 2 for k, v in L.C.items()}
_G = {k: v >> 2 for k, v in L.G.items()}
_M = {k: v >> 2 for k, v in L.M.items()}
_N = {k: v >> 2 for k, v in L.N.items()}
_WS = {k: v >> 2 for k, v in L.W.items()}
CW, GW, MW, NW, WW = L.CHAN_SIZE >> 2, L.GROUP_SIZE >> 2, L.MEMBER_SIZE >> 2, L.NODE_SIZE >> 2, L.WAITER_SIZE >> 2

C_HNEXT, C_HASH, C_FLAGS, C_NLEN = _C["hnext"], _C["hash"], _C["flags"], _C["name_len"]
C_HEAD, C_TAIL, C_QCOUNT, C_NCOUNT = _C["head"], _C["tail"], _C["qcount"], _C["ncount"]
C_QUEUE, C_REFS, C_MHEAD, C_GEN = _C["queue"], _C["refs"], _C["mhead"], _C["gen"]
C_CAP, C_NFULL, C_NEXP, C_NSENT = _C["cap"], _C["n_full"], _C["n_expired"], _C["n_sent"]
C_NAME = L.C["name"]
G_HNEXT, G_HASH, G_FLAGS, G_NLEN = _G["hnext"], _G["hash"], _G["flags"], _G["name_len"]
G_MHEAD, G_MCOUNT, G_GEN, G_NSENT = _G["mhead"], _G["mcount"], _G["gen"], _G["n_sent"]
G_NAME = L.G["name"]
M_HNEXT, M_HASH, M_FLAGS, M_GROUP, M_CHAN = _M["hnext"], _M["hash"], _M["flags"], _M["group"], _M["chan"]
M_GPREV, M_GNEXT, M_CPREV, M_CNEXT = _M["gprev"], _M["gnext"], _M["cprev"], _M["cnext"]
M_STAMP_B = L.M["stamp"]
N_NEXT, N_CHAN, N_PAYLOAD, N_FLAGS = _N["next"], _N["chan"], _N["payload"], _N["flags"]
N_SENT_B, N_EXPIRES_B = L.N["sent"], L.N["expires"]
W_PID, W_STATE, W_NB, W_BUCKETS = _WS["pid"], _WS["state"], _WS["nbuckets"], _WS["buckets"]

_HW = {k: v >> 2 for k, v in L.H.items()}
_HQ = {k: v >> 3 for k, v in L.H.items() if v % 8 == 0}
H_CHAN_FREE, H_CHAN_BUMP = _HW["chan_free"], _HW["chan_bump"]
H_GROUP_FREE, H_GROUP_BUMP = _HW["group_free"], _HW["group_bump"]
H_MEMBER_FREE, H_MEMBER_BUMP = _HW["member_free"], _HW["member_bump"]
H_NODE_FREE, H_NODE_BUMP = _HW["node_free"], _HW["node_bump"]
H_SWEEP, H_WILD, H_WBUMP = _HW["sweep_cursor"], _HW["wild_waiters"], _HW["waiter_bump"]
Q_SENT, Q_RECEIVED, Q_FULL, Q_EXPIRED = _HQ["n_sent"], _HQ["n_received"], _HQ["n_full"], _HQ["n_expired"]
Q_GSKIP, Q_SEGFULL, Q_GSENDS = _HQ["n_group_skipped"], _HQ["n_segment_full"], _HQ["n_group_sends"]
Q_MEXPIRED, Q_DISCARDED = _HQ["n_members_expired"], _HQ["n_discarded"]

STATE_FREE, STATE_IDLE, STATE_ARMED = 0, 1, 2
MASK32 = _MASK32 = 0xFFFFFFFF


def name_hash(name: bytes) -> int:
    """The channel/group hash every process computes the same way (crc32)."""
    return zlib.crc32(name)


def member_hash(group: int, chan: int) -> int:
    return ((group * 0x9E3779B1) ^ (chan * 0x85EBCA77)) & _MASK32


def kind_of(name: bytes) -> int:
    """KIND_PREFIX for ``x!``, KIND_LOCAL for ``x!y``, else KIND_NORMAL."""
    bang = name.find(b"!")
    if bang < 0:
        return L.KIND_NORMAL
    return L.KIND_PREFIX if bang == len(name) - 1 else L.KIND_LOCAL

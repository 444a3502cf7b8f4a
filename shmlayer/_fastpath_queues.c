/* shmlayer._fastpath: channel and group entries, message queues and nodes, and waiter
 * slots (_store.py, _groups.py and _slots.py are the reference). */
#include "_fastpath.h"

/* ------------------------------------------------------------------- channels */

/* The in-use entry called ``name`` (hash ``h``), or 0. A chain that leaves the table
 * or never ends hides what lies past it: a miss there is no answer (send would create
 * the entry), so with ``locked`` it is damage and recovery cuts the chain first. The
 * lock-free pending() passes 0: its reads may be stale and it must not mark anything. */
uint32_t lookup_chan(FastPath *s, const char *name, Py_ssize_t n, uint32_t h, int locked) {
    if (n > C_NAME_SIZE) /* no entry can hold it */
        return 0;
    uint32_t i = *U32(s, s->chan_bucket_off + 4ull * (h & s->cmask));
    for (uint32_t guard = s->n_channels; i; guard--) {
        if (!guard || i >= s->n_channels) {
            s->damaged |= locked;
            return 0;
        }
        uint64_t e = CH(s, i);
        if (*U32(s, e + C_HASH) == h && *U32(s, e + C_NLEN) == (uint32_t)n &&
            memcmp((const void *)(s->base + e + C_NAME), name, (size_t)n) == 0)
            return i;
        i = *U32(s, e + C_HNEXT);
    }
    return 0;
}

/* Reads only: the entry create_chan would take (the free list's head, else the bump
 * index), or 0 when the Python path must create it: the table is full (it frees kept
 * entries first), or the entry is not a free one below the bump index (damaged:
 * recovery rebuilds the free list). */
uint32_t chan_available(FastPath *s) {
    uint32_t bump = *U32(s, H_CHAN_BUMP);
    uint32_t i = *U32(s, H_CHAN_FREE);
    if (!i) {
        if (!bump || bump >= s->n_channels)
            return 0;
        i = bump; /* never used yet: its in-use bit must be clear too */
    } else if (i >= bump) {
        s->damaged = 1;
        return 0;
    }
    if (i >= s->n_channels || (*U32(s, CH(s, i) + C_FLAGS) & 1u)) {
        s->damaged = 1;
        return 0;
    }
    return i;
}

/* _store.Store._create_chan for entry ``i`` from chan_available(): a normal entry
 * (``queue`` 0: its own queue) or a local one queuing on the prefix entry ``queue``.
 * Same stores in the same order; the bucket link last. */
void create_chan(FastPath *s, uint32_t i, const char *name, Py_ssize_t n, uint32_t h, uint32_t queue, uint32_t cap) {
    uint64_t e = CH(s, i);
    if (*U32(s, H_CHAN_FREE) == i)
        *U32(s, H_CHAN_FREE) = *U32(s, e + C_HNEXT);
    else
        *U32(s, H_CHAN_BUMP) = i + 1;
    CRASH_POINT(s, 12); /* taken, not yet reachable: recovery gives it back */
    uint32_t gen = *U32(s, e + C_GEN) + 1u;
    for (uint32_t w = 0; w < C_NAME; w += 4)
        *U32(s, e + w) = 0;
    memcpy((void *)(s->base + e + C_NAME), name, (size_t)n);
    *U32(s, e + C_HASH) = h;
    *U32(s, e + C_NLEN) = (uint32_t)n;
    /* Kept when empty: normal names without '?' (few, long-lived); never a local name. */
    uint32_t flags = queue ? 1u | (KIND_LOCAL << 1) : 1u | (memchr(name, '?', (size_t)n) ? 0u : RETAIN);
    *U32(s, e + C_FLAGS) = flags;
    *U32(s, e + C_QUEUE) = queue ? queue : i;
    *U32(s, e + C_CAP) = cap;
    *U32(s, e + C_GEN) = gen;
    volatile uint32_t *bucket = U32(s, s->chan_bucket_off + 4ull * (h & s->cmask));
    *U32(s, e + C_HNEXT) = *bucket;
    BARRIER();
    CRASH_POINT(s, 10);
    *bucket = i; /* link last */
}

static void unchain_chan(FastPath *s, uint64_t bucket, uint32_t i) {
    volatile uint32_t *head = U32(s, bucket);
    uint32_t after = *U32(s, CH(s, i) + C_HNEXT);
    uint32_t cur = *head;
    if (cur == i) {
        *head = after;
        return;
    }
    uint32_t guard = s->n_channels;
    while (cur && guard--) {
        if (!chan_ok(s, cur))
            return;
        volatile uint32_t *link = U32(s, CH(s, cur) + C_HNEXT);
        if (*link == i) {
            *link = after;
            return;
        }
        cur = *link;
    }
}

/* _store.Store._free_chan_if_unused with force=False. */
void free_chan_if_unused(FastPath *s, uint32_t i) {
    for (int depth = 0; depth < 2 && i && i < s->n_channels; depth++) {
        uint64_t e = CH(s, i);
        uint32_t flags = *U32(s, e + C_FLAGS);
        if (!(flags & 1u) || (flags & RETAIN))
            return;
        if (*U32(s, e + C_QCOUNT) || *U32(s, e + C_NCOUNT) || *U32(s, e + C_MHEAD) || *U32(s, e + C_REFS))
            return;
        unchain_chan(s, s->chan_bucket_off + 4ull * (*U32(s, e + C_HASH) & s->cmask), i);
        BARRIER();
        CRASH_POINT(s, 8);
        *U32(s, e + C_FLAGS) = 0;
        *U32(s, e + C_GEN) = *U32(s, e + C_GEN) + 1;
        *U32(s, e + C_HNEXT) = *U32(s, H_CHAN_FREE);
        *U32(s, H_CHAN_FREE) = i;
        CRASH_POINT(s, 9);
        uint32_t q = *U32(s, e + C_QUEUE);
        if (q == i || q >= s->n_channels)
            return;
        volatile uint32_t *refs = U32(s, CH(s, q) + C_REFS);
        if (*refs)
            *refs = *refs - 1;
        i = q;
    }
}

/* True if ``budget`` entries from the sweep cursor hold no expired head; the cursor
 * advances only then (otherwise the Python sweep starts from the same place). */
int sweep_is_clean(FastPath *s, double now, int budget) {
    uint32_t bump = *U32(s, H_CHAN_BUMP);
    if (bump > s->n_channels) {
        s->damaged = 1; /* recovery clamps it; the Python sweep would index past the table */
        return 0;
    }
    uint32_t cursor = *U32(s, H_SWEEP);
    for (int k = 0; k < budget; k++) {
        cursor++;
        if (cursor >= bump) {
            cursor = 1;
            if (bump <= 1)
                break;
        }
        if (cursor >= s->n_channels)
            return 0;
        uint64_t e = CH(s, cursor);
        if ((*U32(s, e + C_FLAGS) & 1u) && *U32(s, e + C_QCOUNT)) {
            uint32_t n = *U32(s, e + C_HEAD);
            if (n && n < s->n_nodes && *F64(s, ND(s, n) + N_EXPIRES) <= now)
                return 0;
        }
    }
    *U32(s, H_SWEEP) = cursor;
    return 1;
}

/* ---------------------------------------------------------------------- waiters */

void disarm(FastPath *s, uint64_t w) {
    if (*U32(s, w + W_STATE) != STATE_ARMED)
        return;
    *U32(s, w + W_STATE) = STATE_IDLE;
    uint32_t nb = *U32(s, w + W_NB);
    if (nb == WILDCARD) {
        if (*U32(s, H_WILD))
            *U32(s, H_WILD) = *U32(s, H_WILD) - 1;
        return;
    }
    for (uint32_t k = 0; k < nb && k < MAX_WAIT_BUCKETS; k++) {
        uint32_t b = *U32(s, w + W_BUCKETS + 4ull * k);
        volatile uint32_t *count = U32(s, s->bucket_waiters_off + 4ull * (b & s->cmask));
        if (*count)
            *count = *count - 1;
    }
}

/* _slots.WaiterSlots._collect_waiters: disarm every armed waiter of ``bucket`` and
 * append its slot to ``wake``. Returns -1 on a Python error. */
static int collect_waiters(FastPath *s, uint32_t bucket, PyObject *wake) {
    uint32_t bump = *U32(s, H_WBUMP);
    if (bump > s->n_waiters)
        bump = s->n_waiters;
    for (uint32_t slot = 0; slot < bump; slot++) {
        uint64_t w = (uint64_t)s->waiter_off + (uint64_t)slot * WAITER_SIZE;
        if (*U32(s, w + W_STATE) != STATE_ARMED)
            continue;
        uint32_t nb = *U32(s, w + W_NB);
        int match = nb == WILDCARD;
        for (uint32_t k = 0; !match && k < nb && k < MAX_WAIT_BUCKETS; k++)
            match = *U32(s, w + W_BUCKETS + 4ull * k) == bucket;
        if (!match)
            continue;
        /* Listed before disarmed: on a MemoryError the waiter stays armed (a later send
         * wakes it) instead of disarmed and never woken. */
        PyObject *n = PyLong_FromUnsignedLong(slot);
        if (n == NULL || PyList_Append(wake, n) < 0) {
            Py_XDECREF(n);
            return -1;
        }
        Py_DECREF(n);
        disarm(s, w);
    }
    return 0;
}

/* Reads only: can ``_enqueue`` link a node on entry ``i``'s queue without meeting a
 * bad link? (Node availability is checked separately, for all copies at once.) A bad
 * queue index or tail is damage: recovery re-derives both before Python redoes it. */
int can_enqueue(FastPath *s, uint32_t i) {
    uint32_t q = *U32(s, CH(s, i) + C_QUEUE);
    if (q && q < s->n_channels && *U32(s, CH(s, q) + C_TAIL) < s->n_nodes)
        return 1;
    s->damaged = 1;
    return 0;
}

/* Reads only: ``needed`` nodes can be taken from the free list and the bump index. */
int nodes_available(FastPath *s, uint32_t needed) {
    /* enqueue takes free-list nodes first: each one it will take must be in range. */
    uint32_t have = 0;
    uint32_t n = *U32(s, H_NODE_FREE);
    while (have < needed && n) {
        if (n >= s->n_nodes) {
            s->damaged = 1; /* leave the dirty word: recovery rebuilds the free list */
            return 0;
        }
        have++;
        n = *U32(s, ND(s, n) + N_NEXT);
    }
    uint32_t bump = *U32(s, H_NODE_BUMP);
    return (uint64_t)have + (bump < s->n_nodes ? s->n_nodes - bump : 0) >= needed;
}

/* _store.Store._enqueue: link a node for ``block`` at the tail of entry ``i``'s queue
 * (a node is available and can_enqueue(i) held). -1 on a Python error (wake list). */
int enqueue(FastPath *s, uint32_t i, uint32_t block, double now, double expires, PyObject *wake) {
    uint32_t node = *U32(s, H_NODE_FREE);
    if (node)
        *U32(s, H_NODE_FREE) = *U32(s, ND(s, node) + N_NEXT);
    else
        *U32(s, H_NODE_BUMP) = (node = *U32(s, H_NODE_BUMP)) + 1;
    CRASH_POINT(s, 2);
    uint64_t nw = ND(s, node);
    *U32(s, nw + N_NEXT) = 0;
    *U32(s, nw + N_CHAN) = i;
    *U32(s, nw + N_PAYLOAD) = block;
    *U32(s, nw + N_FLAGS) = 1;
    *F64(s, nw + N_SENT) = now;
    *F64(s, nw + N_EXPIRES) = expires;
    CRASH_POINT(s, 3);
    uint64_t e = CH(s, i);
    uint64_t eq = CH(s, *U32(s, e + C_QUEUE));
    uint32_t tail = *U32(s, eq + C_TAIL);
    BARRIER();
    if (tail)
        *U32(s, ND(s, tail) + N_NEXT) = node; /* link last */
    else
        *U32(s, eq + C_HEAD) = node; /* link last */
    BARRIER();
    CRASH_POINT(s, 4);
    *U32(s, eq + C_TAIL) = node;
    *U32(s, eq + C_QCOUNT) = *U32(s, eq + C_QCOUNT) + 1;
    *U32(s, e + C_NCOUNT) = *U32(s, e + C_NCOUNT) + 1;
    *U32(s, e + C_NSENT) = *U32(s, e + C_NSENT) + 1;
    *U32(s, block + B_REFS) = *U32(s, block + B_REFS) + 1;
    *U64(s, H_N_SENT) = *U64(s, H_N_SENT) + 1;
    uint32_t bucket = *U32(s, eq + C_HASH) & s->cmask;
    if (*U32(s, s->bucket_waiters_off + 4ull * bucket) || *U32(s, H_WILD))
        return collect_waiters(s, bucket, wake);
    return 0;
}

/* Reads only: does the queue entry ``i`` sends into hold an expired message? (Then
 * ``_has_room`` would reclaim it: the Python path's job.) */
int queue_has_expired(FastPath *s, uint32_t i, double now) {
    uint32_t q = *U32(s, CH(s, i) + C_QUEUE);
    if (!q || q >= s->n_channels)
        return 1;
    uint32_t n = *U32(s, CH(s, q) + C_HEAD);
    for (uint32_t guard = s->n_nodes; n && guard; guard--) {
        if (n >= s->n_nodes || *F64(s, ND(s, n) + N_EXPIRES) <= now)
            return 1;
        n = *U32(s, ND(s, n) + N_NEXT);
    }
    return 0;
}

/* As lookup_chan (under the lock): a broken chain is damage, not "no such group". */
uint32_t lookup_group(FastPath *s, const char *name, Py_ssize_t n, uint32_t h) {
    if (n > 256)
        return 0;
    uint32_t g = *U32(s, s->group_bucket_off + 4ull * (h & s->gmask));
    for (uint32_t guard = s->n_groups; g; guard--) {
        if (!guard || g >= s->n_groups) {
            s->damaged = 1;
            return 0;
        }
        uint64_t e = (uint64_t)s->group_off + (uint64_t)g * GROUP_SIZE;
        if (*U32(s, e + G_HASH) == h && *U32(s, e + G_NLEN) == (uint32_t)n &&
            memcmp((const void *)(s->base + e + G_NAME), name, (size_t)n) == 0)
            return g;
        g = *U32(s, e + G_HNEXT);
    }
    return 0;
}

/* _slots.WaiterSlots.arm: slot ``slot`` sleeps on the buckets of ``targets``. */
void arm(FastPath *s, uint32_t slot, PyObject *targets /* tuple */) {
    uint64_t w = (uint64_t)s->waiter_off + (uint64_t)slot * WAITER_SIZE;
    if (*U32(s, w + W_STATE) == STATE_ARMED)
        disarm(s, w);
    Py_ssize_t count = PyTuple_GET_SIZE(targets);
    if (count > MAX_WAIT_BUCKETS) {
        *U32(s, w + W_NB) = WILDCARD;
        *U32(s, H_WILD) = *U32(s, H_WILD) + 1;
    } else {
        *U32(s, w + W_NB) = (uint32_t)count;
        for (Py_ssize_t k = 0; k < count; k++) {
            uint32_t h = (uint32_t)PyLong_AsUnsignedLongMask(PyTuple_GET_ITEM(PyTuple_GET_ITEM(targets, k), 1));
            uint32_t b = h & s->cmask;
            *U32(s, w + W_BUCKETS + 4ull * (uint64_t)k) = b;
            volatile uint32_t *armed = U32(s, s->bucket_waiters_off + 4ull * b);
            *armed = *armed + 1;
        }
    }
    *U32(s, w + W_STATE) = STATE_ARMED;
}

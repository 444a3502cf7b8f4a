/* shmlayer._fastpath: the methods of the common case, send/send_group/receive, and the
 * pending() hint and disarm(): every decision first (reads only), then the stores in
 * the Python path's order, or SLOW/SWEEP before the first store (see _fastpath.h). */
#include "_fastpath.h"

/* The arguments send and send_group share: (name: bytes, hash: int, data: bytes,
 * expiry: float[, ...]); ``nargs`` must be ``want``. 0, or -1 with the exception set. */
typedef struct {
    const char *name, *data;
    Py_ssize_t nlen, dlen;
    uint32_t hash;
    double expiry;
} SendArgs;

static int parse_send(FastPath *s, PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, const char *usage,
                      SendArgs *a) {
    if (nargs != want || !PyBytes_Check(args[0]) || !PyBytes_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    if (check_bound(s) < 0)
        return -1;
    a->name = PyBytes_AS_STRING(args[0]);
    a->nlen = PyBytes_GET_SIZE(args[0]);
    a->hash = (uint32_t)PyLong_AsUnsignedLongMask(args[1]);
    a->data = PyBytes_AS_STRING(args[2]);
    a->dlen = PyBytes_GET_SIZE(args[2]);
    a->expiry = PyFloat_AsDouble(args[3]);
    return PyErr_Occurred() ? -1 : 0;
}

/* The start both sends share: a wake list, the lock and the clock. Returns the wake list
 * with the lock held and the dirty word clear; or NULL with ``*early`` set to what the
 * caller returns: SLOW (too big for the fast path, or dirty) or NULL (an error). */
static PyObject *start_send(FastPath *s, Py_ssize_t dlen, double *now, PyObject **early) {
    *early = NULL;
    if (dlen > 0xFFFFFFF0) {
        *early = PyLong_FromLong(R_SLOW);
        return NULL;
    }
    PyObject *wake = PyList_New(0);
    if (wake == NULL)
        return NULL;
    int entered = enter(s);
    if (entered) {
        Py_DECREF(wake);
        if (entered > 0)
            *early = PyLong_FromLong(R_SLOW);
        return NULL;
    }
    *now = monotonic_now();
    return wake;
}

/* The end both sends share: unlock, then the wake list if a message went out and found
 * armed waiters, else the result code. */
static PyObject *end_send(FastPath *s, long result, PyObject *wake) {
    leave(s);
    if (PyErr_Occurred()) {
        Py_DECREF(wake);
        return NULL;
    }
    if (result == 0 && PyList_GET_SIZE(wake))
        return wake;
    Py_DECREF(wake);
    return PyLong_FromLong(result);
}

/* send(name, hash, data, expiry[, cap, prefix_len, prefix_hash]) -> 0 | [slots to wake] | SLOW | SWEEP
 * With the last three, a channel without an entry gets one here as well (_store.Store.chan_for):
 * a normal name (prefix_len 0) with capacity ``cap``, or a local name "x!y" (prefix_len is
 * len("x!"), prefix_hash its hash) whose prefix entry exists; -1 leaves it to Python. */
PyObject *fp_send(FastPath *s, PyObject *const *args, Py_ssize_t nargs) {
    static const char usage[] = "send(name: bytes, hash: int, data: bytes, expiry: float"
                                "[, cap: int, prefix_len: int, prefix_hash: int])";
    SendArgs a;
    if (parse_send(s, args, nargs, nargs == 7 ? 7 : 4, usage, &a) < 0)
        return NULL;
    long cap = 0, prefix_len = -1;
    uint32_t prefix_hash = 0;
    if (nargs == 7) {
        cap = PyLong_AsLong(args[4]);
        prefix_len = PyLong_AsLong(args[5]);
        prefix_hash = (uint32_t)PyLong_AsUnsignedLongMask(args[6]);
        if (PyErr_Occurred())
            return NULL;
    }
    PyObject *early;
    double now;
    PyObject *wake = start_send(s, a.dlen, &now, &early);
    if (wake == NULL)
        return early;
    long result = R_SLOW;
    /* Every decision first, reads only. */
    if (!(++s->ops & 3u) && !sweep_is_clean(s, now, 8)) {
        result = R_SWEEP;
        goto out;
    }
    uint32_t i = lookup_chan(s, a.name, a.nlen, a.hash, 1);
    if (s->damaged)
        goto out; /* a broken chain: no store on top of it, recovery first */
    uint32_t queue = 0; /* for a new local entry: the prefix entry it queues on */
    int fresh = !i;
    if (!fresh) {
        uint64_t e = CH(s, i);
        if (*U32(s, e + C_NCOUNT) >= *U32(s, e + C_CAP))
            goto out; /* full, or room only after reclaiming expired messages */
        if (!can_enqueue(s, i))
            goto out;
    } else {
        /* A new entry has room (count 0 < cap); Python creates it when the prefix entry is
         * missing too, when no entry is free without evicting kept ones, or when asked to. */
        if (cap < 1 || cap > (long)UINT32_MAX || prefix_len < 0 || prefix_len >= a.nlen || a.nlen > C_NAME_SIZE)
            goto out;
        if (prefix_len) {
            queue = lookup_chan(s, a.name, prefix_len, prefix_hash, 1);
            if (!queue)
                goto out;
            /* enqueue links behind the prefix entry's own tail: it must queue on itself. */
            if (*U32(s, CH(s, queue) + C_QUEUE) != queue) {
                s->damaged = 1;
                goto out;
            }
            if (!can_enqueue(s, queue))
                goto out;
        }
        i = chan_available(s);
        if (!i)
            goto out;
    }
    if (!nodes_available(s, 1))
        goto out;
    uint32_t order = order_for(a.dlen), k = 0;
    uint32_t block = heap_find(s, order, &k);
    if (!block)
        goto out;

    /* Stores, in _store.Store.send's order: the entry (chan_for), the payload, the node. */
    if (fresh) {
        if (queue) {
            *U32(s, CH(s, queue) + C_REFS) = *U32(s, CH(s, queue) + C_REFS) + 1; /* pin the prefix first */
            CRASH_POINT(s, 11); /* refs is derived: recovery recounts it */
        }
        create_chan(s, i, a.name, a.nlen, a.hash, queue, (uint32_t)cap);
    }
    heap_take(s, block, k, order, a.dlen);
    CRASH_POINT(s, 1);
    memcpy((void *)(s->base + block + BLOCK_SIZE), a.data, (size_t)a.dlen);
    result = 0;
    /* A MemoryError while listing waiters leaves the message queued; end_send raises it. */
    enqueue(s, i, block, now, now + a.expiry, wake);
out:
    return end_send(s, result, wake);
}

/* send_group(name, hash, data, expiry, group_expiry) -> 0 | [slots to wake] | SLOW | SWEEP
 * _groups.GroupTable.send_group when no membership has expired and no full member could
 * be freed by reclaiming expired messages: one payload, one node per member with room. */
PyObject *fp_send_group(FastPath *s, PyObject *const *args, Py_ssize_t nargs) {
    SendArgs a;
    if (parse_send(s, args, nargs, 5,
                   "send_group(name: bytes, hash: int, data: bytes, expiry: float, group_expiry: float)", &a) < 0)
        return NULL;
    double group_expiry = PyFloat_AsDouble(args[4]);
    if (group_expiry == -1.0 && PyErr_Occurred())
        return NULL;
    PyObject *early;
    double now;
    PyObject *wake = start_send(s, a.dlen, &now, &early);
    if (wake == NULL)
        return early;
    long result = R_SLOW;
    if (!sweep_is_clean(s, now, 2))
        goto out; /* the Python path sweeps first anyway */
    uint32_t g = lookup_group(s, a.name, a.nlen, a.hash);
    if (!g) {
        if (!s->damaged)
            result = 0; /* no such group: nothing to do (as the Python path) */
        goto out;
    }
    uint64_t ge = (uint64_t)s->group_off + (uint64_t)g * GROUP_SIZE;
    /* Every decision first, reads only. */
    uint32_t needed = 0;
    uint32_t m = *U32(s, ge + G_MHEAD);
    for (uint32_t guard = s->n_members; m; guard--) {
        if (!guard || m >= s->n_members) {
            s->damaged = 1; /* as every bad link here: recovery rebuilds the lists first */
            goto out;
        }
        uint64_t mw = (uint64_t)s->member_off + (uint64_t)m * MEMBER_SIZE;
        if (*F64(s, mw + M_STAMP) + group_expiry <= now)
            goto out; /* an expired membership: the Python path drops it */
        uint32_t c = *U32(s, mw + M_CHAN);
        if (!c || c >= s->n_channels) {
            s->damaged = 1;
            goto out;
        }
        if (!can_enqueue(s, c))
            goto out;
        uint64_t e = CH(s, c);
        if (*U32(s, e + C_NCOUNT) < *U32(s, e + C_CAP))
            needed++;
        else if (queue_has_expired(s, c, now))
            goto out; /* room after reclaiming: the Python path reclaims */
        m = *U32(s, mw + M_GNEXT);
    }
    if (!nodes_available(s, needed))
        goto out;
    uint32_t order = order_for(a.dlen), k = 0;
    uint32_t block = heap_find(s, order, &k);
    if (!block)
        goto out;

    /* Stores, in send_group's order. */
    *U32(s, ge + G_NSENT) = *U32(s, ge + G_NSENT) + 1;
    *U64(s, H_N_GROUP_SENDS) = *U64(s, H_N_GROUP_SENDS) + 1;
    heap_take(s, block, k, order, a.dlen);
    memcpy((void *)(s->base + block + BLOCK_SIZE), a.data, (size_t)a.dlen);
    result = 0;
    for (m = *U32(s, ge + G_MHEAD); m; m = *U32(s, (uint64_t)s->member_off + (uint64_t)m * MEMBER_SIZE + M_GNEXT)) {
        uint32_t c = *U32(s, (uint64_t)s->member_off + (uint64_t)m * MEMBER_SIZE + M_CHAN);
        uint64_t e = CH(s, c);
        if (*U32(s, e + C_NCOUNT) >= *U32(s, e + C_CAP)) {
            *U32(s, e + C_NFULL) = *U32(s, e + C_NFULL) + 1;
            *U64(s, H_N_FULL) = *U64(s, H_N_FULL) + 1;
            *U64(s, H_N_GROUP_SKIPPED) = *U64(s, H_N_GROUP_SKIPPED) + 1;
        } else if (enqueue(s, c, block, now, now + a.expiry, wake) < 0) {
            break; /* MemoryError for the wake list: the copies so far are queued */
        }
    }
    if (!*U32(s, block + B_REFS))
        heap_free(s, block);
out:
    return end_send(s, result, wake);
}

/* The locked part of fp_receive, over ``targets``, a tuple of validated (bytes, int). */
static PyObject *receive_locked(FastPath *s, PyObject *targets, Py_ssize_t count, Py_ssize_t start, long slot) {
    int entered = enter(s);
    if (entered)
        return entered < 0 ? NULL : PyLong_FromLong(R_SLOW);
    PyObject *result = NULL;
    long code = R_SLOW;
    double now = monotonic_now();
    if (!(start & 7) && !sweep_is_clean(s, now, 8)) {
        code = R_SWEEP;
        goto out;
    }
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *t = PyTuple_GET_ITEM(targets, (start + k) % count);
        PyObject *name = PyTuple_GET_ITEM(t, 0);
        uint32_t h = (uint32_t)PyLong_AsUnsignedLongMask(PyTuple_GET_ITEM(t, 1));
        uint32_t q = lookup_chan(s, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name), h, 1);
        if (s->damaged)
            goto out; /* a broken chain is no "empty": the Python path after recovery */
        if (!q)
            continue;
        uint64_t eq = CH(s, q);
        uint32_t node = *U32(s, eq + C_HEAD);
        if (!node)
            continue;
        if (node >= s->n_nodes) {
            s->damaged = 1; /* recovery cuts the queue here before the Python path runs */
            goto out;
        }
        uint64_t nw = ND(s, node);
        if (*F64(s, nw + N_EXPIRES) <= now) {
            code = R_SWEEP; /* Python drops it, counts it, and takes the channel out of its groups */
            goto out;
        }
        uint32_t chan = *U32(s, nw + N_CHAN);
        uint32_t block = *U32(s, nw + N_PAYLOAD);
        if (!chan || chan >= s->n_channels || block < s->heap_off ||
            (uint64_t)block + BLOCK_SIZE > (uint64_t)s->heap_off + s->heap_size) {
            s->damaged = 1;
            goto out;
        }
        uint32_t length = *U32(s, block + B_LENGTH);
        uint32_t tag = *U32(s, block + B_TAG), border = tag & 0xFFu;
        /* As _heap.Heap.valid_block: heap_free must never push a block with a wild order. */
        if ((tag >> 8) != BLOCK_USED || border < MIN_ORDER || border > s->heap_max_order ||
            ((block - s->heap_off) & ((1u << border) - 1u)) ||
            (uint64_t)block + (1ull << border) > (uint64_t)s->heap_off + s->heap_size ||
            (uint64_t)length + BLOCK_SIZE > (1ull << border)) {
            s->damaged = 1;
            goto out;
        }
        /* Both Python objects before the first store: a MemoryError changes nothing. */
        PyObject *payload = PyBytes_FromStringAndSize((const char *)(s->base + block + BLOCK_SIZE), length);
        if (payload == NULL) {
            leave(s);
            return NULL;
        }
        PyObject *full_name;
        if (chan == q) {
            full_name = name;
            Py_INCREF(full_name);
        } else {
            uint64_t ec = CH(s, chan);
            uint32_t clen = *U32(s, ec + C_NLEN);
            full_name = PyBytes_FromStringAndSize((const char *)(s->base + ec + C_NAME), clen > 256 ? 256 : clen);
        }
        result = full_name ? PyTuple_Pack(2, full_name, payload) : NULL;
        Py_XDECREF(full_name);
        Py_DECREF(payload);
        if (result == NULL) {
            leave(s);
            return NULL;
        }
        /* Stores, in _store.Store.receive's order: the head store takes it off the queue. */
        uint32_t next = *U32(s, nw + N_NEXT);
        *U32(s, eq + C_HEAD) = next;
        BARRIER();
        CRASH_POINT(s, 5);
        if (!next)
            *U32(s, eq + C_TAIL) = 0;
        *U32(s, eq + C_QCOUNT) = *U32(s, eq + C_QCOUNT) - 1;
        volatile uint32_t *ncount = U32(s, CH(s, chan) + C_NCOUNT);
        *ncount = *ncount - 1;
        CRASH_POINT(s, 6);
        heap_decref(s, block);
        CRASH_POINT(s, 7);
        *U32(s, nw + N_FLAGS) = 0;
        *U32(s, nw + N_NEXT) = *U32(s, H_NODE_FREE);
        *U32(s, H_NODE_FREE) = node;
        if (!*ncount)
            free_chan_if_unused(s, chan);
        *U64(s, H_N_RECEIVED) = *U64(s, H_N_RECEIVED) + 1;
        leave(s);
        return result;
    }
    if (slot >= 0)
        arm(s, (uint32_t)slot, targets);
    leave(s);
    Py_RETURN_NONE;
out:
    leave(s);
    return PyLong_FromLong(code);
}

/* receive(targets, start, slot=-1) -> (name, payload) | None | SLOW | SWEEP
 * ``targets`` is a list of (name: bytes, hash: int), visited from ``start`` round-robin.
 * With a waiter ``slot``, finding nothing arms it on the targets (under the same lock, so
 * no send can slip between the check and the arming). */
PyObject *fp_receive(FastPath *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 2 || nargs > 3 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "receive(targets: list[tuple[bytes, int]], start: int, slot: int = -1)");
        return NULL;
    }
    if (check_bound(s) < 0)
        return NULL;
    PyObject *targets = args[0];
    Py_ssize_t count = PyList_GET_SIZE(targets);
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    long slot = nargs == 3 ? PyLong_AsLong(args[2]) : -1;
    if (slot == -1 && PyErr_Occurred())
        return NULL;
    if (start < 0) {
        PyErr_SetString(PyExc_ValueError, "receive() start must be >= 0");
        return NULL;
    }
    if (slot >= (long)s->n_waiters) {
        PyErr_SetString(PyExc_ValueError, "waiter slot out of range");
        return NULL;
    }
    if (count == 0)
        Py_RETURN_NONE;
    /* A snapshot: the lock wait releases the GIL and allocations under the lock can run
     * Python code, either of which could change the caller's list. */
    PyObject *snap = PyList_AsTuple(targets);
    if (snap == NULL)
        return NULL;
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *t = PyTuple_GET_ITEM(snap, k);
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 2 || !PyBytes_Check(PyTuple_GET_ITEM(t, 0)) ||
            !PyLong_Check(PyTuple_GET_ITEM(t, 1))) {
            Py_DECREF(snap);
            PyErr_SetString(PyExc_TypeError, "receive() targets must be (bytes, int) tuples");
            return NULL;
        }
    }
    PyObject *result = receive_locked(s, snap, count, start, slot);
    Py_DECREF(snap);
    return result;
}


/* pending(targets) -> bool: True unless every target's queue looks empty. Reads without
 * the lock (bounded walks, bounds-checked indices), so it is only a hint, possibly stale
 * either way: callers use it to skip a lock round, never to decide to sleep. */
PyObject *fp_pending(FastPath *s, PyObject *targets) {
    if (!PyList_Check(targets)) {
        PyErr_SetString(PyExc_TypeError, "pending(targets: list[tuple[bytes, int]])");
        return NULL;
    }
    if (check_bound(s) < 0)
        return NULL;
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(targets); k++) {
        PyObject *t = PyList_GET_ITEM(targets, k);
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 2 || !PyBytes_Check(PyTuple_GET_ITEM(t, 0)) ||
            !PyLong_Check(PyTuple_GET_ITEM(t, 1))) {
            PyErr_SetString(PyExc_TypeError, "pending() targets must be (bytes, int) tuples");
            return NULL;
        }
        PyObject *name = PyTuple_GET_ITEM(t, 0);
        uint32_t h = (uint32_t)PyLong_AsUnsignedLongMask(PyTuple_GET_ITEM(t, 1));
        uint32_t q = lookup_chan(s, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name), h, 0);
        if (q && *U32(s, CH(s, q) + C_HEAD))
            Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

/* disarm(slot) -> bool: False if the dirty word is set (the Python path then repairs
 * the segment and disarms). */
PyObject *fp_disarm(FastPath *s, PyObject *arg) {
    long slot = PyLong_AsLong(arg);
    if (slot == -1 && PyErr_Occurred())
        return NULL;
    if (slot < 0 || slot >= (long)s->n_waiters) {
        PyErr_SetString(PyExc_ValueError, "waiter slot out of range");
        return NULL;
    }
    if (check_bound(s) < 0)
        return NULL;
    int entered = enter(s);
    if (entered)
        return entered < 0 ? NULL : PyBool_FromLong(0);
    disarm(s, (uint64_t)s->waiter_off + (uint64_t)slot * WAITER_SIZE);
    leave(s);
    Py_RETURN_TRUE;
}

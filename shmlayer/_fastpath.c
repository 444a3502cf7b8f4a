/* shmlayer._fastpath: the segment lock and the common case of send/send_group/receive in C.
 *
 * The Python code in _store.py / _heap.py / _slots.py is the reference implementation of
 * every operation. This module does two things:
 *
 * 1. The segment lock: a robust, process-shared pthread mutex in the header (``lock``
 *    field). Uncontended it is one atomic instruction each way, where flock cost two
 *    system calls; when its holder dies the kernel marks it (EOWNERDEAD) and the next
 *    locker takes it over. The dirty word (``lock_owner``) still decides recovery.
 * 2. ``send``/``send_group``/``receive`` for the plain case: the channel (group) exists,
 *    has room, the heap and node table have space, and no message or membership met on
 *    the way has expired. Anything else (creating an entry, a full channel, an expired
 *    message or membership, a dirty word) is decided *before the first store* and
 *    answered with SLOW or SWEEP, and the caller redoes the operation in Python. So this
 *    file never needs membership upkeep, recovery or eviction logic, and it makes
 *    exactly the stores the Python code makes, in the same
 *    order ("link last", see _store.py); a compiler barrier sits before each linking
 *    store so that a process killed at any instruction leaves what recovery expects.
 *
 * Offsets below are the layout tables of _layout.py; tests/shmlayer/test_fastpath.py
 * checks LAYOUT against them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* Header byte offsets. */
#define H_LOCK_OWNER 32
#define H_CHAN_FREE 120
#define H_NODE_FREE 144
#define H_NODE_BUMP 148
#define H_SWEEP 152
#define H_WILD 156
#define H_HEAP_FREE 160
#define H_N_SENT 288
#define H_N_RECEIVED 296
#define H_HEAP_USED 336
#define H_WBUMP 376
#define H_LOCK 384
#define LOCK_SPACE 64
#define H_CHAN_BUMP 124

/* Channel entry (320 bytes). */
#define CHAN_SIZE 320
#define C_HNEXT 0
#define C_HASH 4
#define C_FLAGS 8
#define C_NLEN 12
#define C_HEAD 16
#define C_TAIL 20
#define C_QCOUNT 24
#define C_NCOUNT 28
#define C_QUEUE 32
#define C_REFS 36
#define C_MHEAD 40
#define C_GEN 44
#define C_CAP 48
#define C_NFULL 52
#define C_NSENT 60
#define C_NAME 64

/* Message reference node (32 bytes). */
#define NODE_SIZE 32
#define N_NEXT 0
#define N_CHAN 4
#define N_PAYLOAD 8
#define N_FLAGS 12
#define N_SENT 16
#define N_EXPIRES 24

/* Group entry (288 bytes) and membership (48 bytes). */
#define GROUP_SIZE 288
#define G_HNEXT 0
#define G_HASH 4
#define G_FLAGS 8
#define G_NLEN 12
#define G_MHEAD 16
#define G_NSENT 28
#define G_NAME 32
#define MEMBER_SIZE 48
#define M_CHAN 16
#define M_GNEXT 24
#define M_STAMP 40
#define H_N_FULL 304
#define H_N_GROUP_SKIPPED 320
#define H_N_GROUP_SENDS 352

/* Heap block header (16 bytes). */
#define BLOCK_SIZE 16
#define B_TAG 0
#define B_REFS 4
#define B_LENGTH 8
#define BLOCK_USED 0xA1u
#define BLOCK_FREE 0xF7u
#define MIN_ORDER 6
#define LAZY_MAX_ORDER 12

/* Waiter slot (128 bytes). */
#define WAITER_SIZE 128
#define W_STATE 4
#define W_NB 8
#define W_BUCKETS 16
#define STATE_IDLE 1u
#define STATE_ARMED 2u
#define WILDCARD 0xFFFFu
#define MAX_WAIT_BUCKETS 28

#define RETAIN 8u

/* Results besides a message or a wake list. */
#define R_SLOW -1  /* redo the whole operation in Python */
#define R_SWEEP -2 /* an expired message is due: redo in Python with a sweep first */

#define BARRIER() __asm__ __volatile__("" ::: "memory")
#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#else
#define CPU_RELAX() BARRIER()
#endif

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    int bound;
    volatile unsigned char *base;
    uint32_t chan_off, chan_bucket_off, cmask, bucket_waiters_off;
    uint32_t node_off, n_nodes, n_channels, waiter_off, n_waiters;
    uint32_t heap_off, heap_size, heap_max_order;
    uint32_t group_off, group_bucket_off, gmask, n_groups, member_off, n_members;
    uint32_t pid;
    uint32_t ops;
    int crash_at;    /* fault injection for tests: SIGKILL ourselves at this point (0: never)... */
    long crash_hits; /* ...the crash_hits-th time it is reached */
    int damaged;  /* an out-of-range link was met mid-operation: leave the dirty word set */
    int waiting;  /* threads inside a GIL-released lock wait: release() defers to the last */
    int closing;  /* release() was called while some were, or while... */
    int held;     /* ...a thread of ours held the lock through lock()/unlock() (Python path) */
} FastPath;

/* The points between stores where a SIGKILL leaves a state recovery must repair;
 * tests/shmlayer/test_crash.py kills a process at each of them. */
#define CRASH_POINT(s, k)                 \
    do {                                  \
        if ((s)->crash_at == (k) &&       \
            --(s)->crash_hits <= 0)       \
            kill(getpid(), SIGKILL);      \
    } while (0)
#define N_CRASH_POINTS 9

/* ------------------------------------------------------------------ raw access */

static inline volatile uint32_t *U32(FastPath *s, uint64_t off) { return (volatile uint32_t *)(s->base + off); }
static inline volatile uint64_t *U64(FastPath *s, uint64_t off) { return (volatile uint64_t *)(s->base + off); }
static inline volatile double *F64(FastPath *s, uint64_t off) { return (volatile double *)(s->base + off); }
static inline uint64_t CH(FastPath *s, uint32_t i) { return (uint64_t)s->chan_off + (uint64_t)i * CHAN_SIZE; }
static inline uint64_t ND(FastPath *s, uint32_t n) { return (uint64_t)s->node_off + (uint64_t)n * NODE_SIZE; }
static inline pthread_mutex_t *LOCK(FastPath *s) { return (pthread_mutex_t *)(s->base + H_LOCK); }

static inline double monotonic_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int check_bound(FastPath *s) {
    if (!s->bound || s->closing) {
        PyErr_SetString(PyExc_ValueError, "segment mapping is closed");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ lock */

static void let_go(FastPath *s) {
    if (s->bound) {
        s->bound = 0;
        s->base = NULL;
        PyBuffer_Release(&s->view);
    }
}

/* Called with the GIL again after a wait without it, holding the mutex when ``locked``:
 * if another thread closed the segment meanwhile, undo and fail (the mapping is still
 * there: our buffer export kept it). */
static int closed_while_waiting(FastPath *s, int locked) {
    s->waiting--;
    if (!s->closing)
        return 0;
    if (locked)
        pthread_mutex_unlock(LOCK(s));
    if (!s->waiting)
        let_go(s);
    PyErr_SetString(PyExc_ValueError, "segment mapping is closed");
    return 1;
}

/* Take the mutex; 1 if its previous holder died holding it, 0 otherwise, -1 on error.
 * Spins briefly without the GIL (critical sections last a microsecond or two), then
 * sleeps in the kernel. */
static int lock_segment(FastPath *s) {
    pthread_mutex_t *m = LOCK(s);
    int r = pthread_mutex_trylock(m);
    if (r == EBUSY) {
        s->waiting++;
        Py_BEGIN_ALLOW_THREADS
        for (int i = 0; i < 400 && r == EBUSY; i++) {
            if (i < 200) {
                CPU_RELAX();
            } else {
                sched_yield();
            }
            r = pthread_mutex_trylock(m);
        }
        if (r == EBUSY)
            r = pthread_mutex_lock(m);
        Py_END_ALLOW_THREADS
        int died = 0;
        if (r == EOWNERDEAD) { /* consistent before any unlock, or the mutex is lost for good */
            pthread_mutex_consistent(m);
            died = 1;
            r = 0;
        }
        if (closed_while_waiting(s, r == 0))
            return -1;
        if (r == 0)
            return died;
    }
    if (r == 0)
        return 0;
    if (r == EOWNERDEAD) {
        pthread_mutex_consistent(m);
        return 1;
    }
    errno = r;
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
}

static void unlock_segment(FastPath *s) { pthread_mutex_unlock(LOCK(s)); }

/* Lock for a fast operation; 0 = locked and clean, 1 = not taken (dirty: go slow), -1 error. */
static int enter(FastPath *s) {
    if (lock_segment(s) < 0)
        return -1;
    if (*U32(s, H_LOCK_OWNER)) {
        unlock_segment(s);
        return 1;
    }
    *U32(s, H_LOCK_OWNER) = s->pid;
    s->held = 1; /* an allocation under the lock can run a finalizer that closes us: release() defers */
    BARRIER();
    return 0;
}

static void leave(FastPath *s) {
    BARRIER();
    if (s->damaged)
        s->damaged = 0; /* dirty word stays: the next locker runs recovery (_recovery.py) */
    else
        *U32(s, H_LOCK_OWNER) = 0;
    unlock_segment(s);
    s->held = 0;
    if (s->closing && !s->waiting)
        let_go(s);
}

/* A link read from the segment that points outside its table is never followed: the
 * operation skips that store and leaves the segment to recovery. Only a bug or a stray
 * write could cause it, but a C extension must not turn it into a wild write. */
static inline int chan_ok(FastPath *s, uint32_t i) {
    if (i < s->n_channels)
        return 1;
    s->damaged = 1;
    return 0;
}

static inline int block_ok(FastPath *s, uint32_t block) {
    if (block >= s->heap_off && (uint64_t)block + BLOCK_SIZE <= (uint64_t)s->heap_off + s->heap_size)
        return 1;
    s->damaged = 1;
    return 0;
}

/* ------------------------------------------------------------------- channels */

static uint32_t lookup_chan(FastPath *s, const char *name, Py_ssize_t n, uint32_t h) {
    if (n > 256) /* the name field's size: no entry can hold it */
        return 0;
    uint32_t i = *U32(s, s->chan_bucket_off + 4ull * (h & s->cmask));
    uint32_t guard = s->n_channels;
    while (i && guard--) {
        if (i >= s->n_channels)
            return 0;
        uint64_t e = CH(s, i);
        if (*U32(s, e + C_HASH) == h && *U32(s, e + C_NLEN) == (uint32_t)n &&
            memcmp((const void *)(s->base + e + C_NAME), name, (size_t)n) == 0)
            return i;
        i = *U32(s, e + C_HNEXT);
    }
    return 0;
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
static void free_chan_if_unused(FastPath *s, uint32_t i) {
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
static int sweep_is_clean(FastPath *s, double now, int budget) {
    uint32_t bump = *U32(s, H_CHAN_BUMP);
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

/* ----------------------------------------------------------------------- heap */

static inline uint64_t free_head(uint32_t order) { return H_HEAP_FREE + 4ull * order; }

static void heap_push(FastPath *s, uint32_t block, uint32_t order) {
    uint32_t head = *U32(s, free_head(order));
    *U32(s, block + B_TAG) = (BLOCK_FREE << 8) | order;
    *U32(s, block + B_REFS) = 0;
    *U32(s, block + B_LENGTH) = head;
    if (head && block_ok(s, head))
        *U32(s, head + B_REFS) = block;
    *U32(s, free_head(order)) = block;
}

static void heap_unlink(FastPath *s, uint32_t block, uint32_t order) {
    uint32_t prev = *U32(s, block + B_REFS);
    uint32_t next = *U32(s, block + B_LENGTH);
    if (!prev)
        *U32(s, free_head(order)) = next;
    else if (block_ok(s, prev))
        *U32(s, prev + B_LENGTH) = next;
    if (next && block_ok(s, next))
        *U32(s, next + B_REFS) = prev;
}

static uint32_t order_for(Py_ssize_t nbytes) {
    uint64_t need = (uint64_t)nbytes + BLOCK_SIZE;
    uint32_t order = 64 - (uint32_t)__builtin_clzll(need - 1);
    return order < MIN_ORDER ? MIN_ORDER : order;
}

/* The free block ``heap_alloc`` would split, or 0 (the Python path then coalesces or
 * sweeps). Reads only. */
static uint32_t heap_find(FastPath *s, uint32_t order, uint32_t *found_order) {
    for (uint32_t k = order; k <= s->heap_max_order && k < 32; k++) {
        uint32_t block = *U32(s, free_head(k));
        if (block) {
            if (block < s->heap_off || (uint64_t)block + (1ull << k) > (uint64_t)s->heap_off + s->heap_size)
                return 0;
            *found_order = k;
            return block;
        }
    }
    return 0;
}

static void heap_take(FastPath *s, uint32_t block, uint32_t k, uint32_t order, Py_ssize_t nbytes) {
    heap_unlink(s, block, k);
    while (k > order) {
        k--;
        heap_push(s, block + (1u << k), k);
    }
    *U32(s, block + B_TAG) = (BLOCK_USED << 8) | order;
    *U32(s, block + B_REFS) = 0;
    *U32(s, block + B_LENGTH) = (uint32_t)nbytes;
    *U64(s, H_HEAP_USED) = *U64(s, H_HEAP_USED) + (1ull << order);
}

static void heap_free(FastPath *s, uint32_t block) {
    uint32_t order = *U32(s, block + B_TAG) & 0xFFu;
    *U64(s, H_HEAP_USED) = *U64(s, H_HEAP_USED) - (1ull << order);
    if (order <= LAZY_MAX_ORDER) {
        /* Same policy as _heap.Heap.free: up to two small blocks per order stay unmerged. */
        uint32_t head = *U32(s, free_head(order));
        if (!head || !*U32(s, head + B_LENGTH)) {
            heap_push(s, block, order);
            return;
        }
    }
    while (order < s->heap_max_order) {
        uint64_t rel = ((uint64_t)block - s->heap_off) ^ (1ull << order);
        if (rel + (1ull << order) > s->heap_size)
            break;
        uint32_t buddy = (uint32_t)(s->heap_off + rel);
        if (*U32(s, buddy + B_TAG) != ((BLOCK_FREE << 8) | order))
            break;
        heap_unlink(s, buddy, order);
        if (buddy < block)
            block = buddy;
        order++;
    }
    heap_push(s, block, order);
}

static void heap_decref(FastPath *s, uint32_t block) {
    volatile uint32_t *refs = U32(s, block + B_REFS);
    uint32_t r = *refs;
    if (r <= 1)
        heap_free(s, block);
    else
        *refs = r - 1;
}

/* ---------------------------------------------------------------------- waiters */

static void disarm(FastPath *s, uint64_t w) {
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
 * bad link? (Node availability is checked separately, for all copies at once.) */
static int can_enqueue(FastPath *s, uint32_t i) {
    uint32_t q = *U32(s, CH(s, i) + C_QUEUE);
    return q && q < s->n_channels && *U32(s, CH(s, q) + C_TAIL) < s->n_nodes;
}

/* Reads only: ``needed`` nodes can be taken from the free list and the bump index. */
static int nodes_available(FastPath *s, uint32_t needed) {
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
static int enqueue(FastPath *s, uint32_t i, uint32_t block, double now, double expires, PyObject *wake) {
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
static int queue_has_expired(FastPath *s, uint32_t i, double now) {
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

static uint32_t lookup_group(FastPath *s, const char *name, Py_ssize_t n, uint32_t h) {
    if (n > 256)
        return 0;
    uint32_t g = *U32(s, s->group_bucket_off + 4ull * (h & s->gmask));
    for (uint32_t guard = s->n_groups; g && guard; guard--) {
        if (g >= s->n_groups)
            return 0;
        uint64_t e = (uint64_t)s->group_off + (uint64_t)g * GROUP_SIZE;
        if (*U32(s, e + G_HASH) == h && *U32(s, e + G_NLEN) == (uint32_t)n &&
            memcmp((const void *)(s->base + e + G_NAME), name, (size_t)n) == 0)
            return g;
        g = *U32(s, e + G_HNEXT);
    }
    return 0;
}

/* _slots.WaiterSlots.arm: slot ``slot`` sleeps on the buckets of ``targets``. */
static void arm(FastPath *s, uint32_t slot, PyObject *targets /* tuple */) {
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

/* --------------------------------------------------------------------- methods */

static PyObject *fp_init_lock(FastPath *s, PyObject *noargs) {
    if (check_bound(s) < 0)
        return NULL;
    pthread_mutexattr_t attr;
    int r = pthread_mutexattr_init(&attr);
    if (!r) r = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (!r) r = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (!r) r = pthread_mutex_init(LOCK(s), &attr);
    pthread_mutexattr_destroy(&attr);
    if (r) {
        errno = r;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

/* lock(timeout=None) -> bool (True: the last holder died holding it). With a timeout in
 * seconds, TimeoutError once it passes (a holder that is stopped or stuck). */
static PyObject *fp_lock(FastPath *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "lock(timeout: float | None = None)");
        return NULL;
    }
    if (check_bound(s) < 0)
        return NULL;
    if (nargs == 0 || args[0] == Py_None) {
        int r = lock_segment(s);
        if (r < 0)
            return NULL;
        s->held = 1;
        return PyBool_FromLong(r);
    }
    double timeout = PyFloat_AsDouble(args[0]);
    if (timeout == -1.0 && PyErr_Occurred())
        return NULL;
    if (!(timeout >= 0.0 && timeout < 1e9)) { /* NaN, negative, inf, or beyond time_t sums */
        PyErr_SetString(PyExc_ValueError, "lock timeout must be a finite number of seconds >= 0");
        return NULL;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    double whole = (double)(long)timeout;
    deadline.tv_sec += (time_t)whole;
    deadline.tv_nsec += (long)((timeout - whole) * 1e9);
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec += 1;
        deadline.tv_nsec -= 1000000000L;
    }
    int r = pthread_mutex_trylock(LOCK(s));
    if (r == EBUSY) {
        s->waiting++;
        Py_BEGIN_ALLOW_THREADS
        r = pthread_mutex_timedlock(LOCK(s), &deadline);
        Py_END_ALLOW_THREADS
        if (r == EOWNERDEAD) {
            pthread_mutex_consistent(LOCK(s));
            if (closed_while_waiting(s, 1))
                return NULL;
            s->held = 1;
            Py_RETURN_TRUE;
        }
        if (closed_while_waiting(s, r == 0))
            return NULL;
    }
    if (r == 0) {
        s->held = 1;
        Py_RETURN_FALSE;
    }
    if (r == EOWNERDEAD) {
        pthread_mutex_consistent(LOCK(s));
        s->held = 1;
        Py_RETURN_TRUE;
    }
    if (r == ETIMEDOUT) {
        PyErr_SetString(PyExc_TimeoutError, "the segment lock is still held");
        return NULL;
    }
    errno = r;
    return PyErr_SetFromErrno(PyExc_OSError);
}

/* unlock(): allowed after release() as long as lock() came first, so a thread still in
 * a Python-path operation when another closed the segment lets the mutex go. */
static PyObject *fp_unlock(FastPath *s, PyObject *noargs) {
    if (!s->held) {
        if (check_bound(s) < 0)
            return NULL;
        PyErr_SetString(PyExc_RuntimeError, "unlock() without lock()");
        return NULL;
    }
    s->held = 0;
    int r = pthread_mutex_unlock(LOCK(s));
    if (s->closing && !s->waiting)
        let_go(s);
    if (r) {
        errno = r;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

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

/* The start both sends share: a wake list and the lock. 1: entered (the lock held, the
 * dirty word clear); 0: go the Python way (too big for the fast path, or dirty); -1 error. */
static int start_send(FastPath *s, Py_ssize_t dlen, PyObject **wake) {
    if (dlen > 0xFFFFFFF0)
        return 0;
    *wake = PyList_New(0);
    if (*wake == NULL)
        return -1;
    int entered = enter(s);
    if (entered) {
        Py_CLEAR(*wake);
        return entered < 0 ? -1 : 0;
    }
    return 1;
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

/* send(name, hash, data, expiry) -> 0 | [slots to wake] | SLOW | SWEEP */
static PyObject *fp_send(FastPath *s, PyObject *const *args, Py_ssize_t nargs) {
    SendArgs a;
    if (parse_send(s, args, nargs, 4, "send(name: bytes, hash: int, data: bytes, expiry: float)", &a) < 0)
        return NULL;
    const char *name = a.name, *data = a.data;
    Py_ssize_t nlen = a.nlen, dlen = a.dlen;
    uint32_t h = a.hash;
    double expiry = a.expiry;
    PyObject *wake = NULL;
    int started = start_send(s, dlen, &wake);
    if (started <= 0)
        return started < 0 ? NULL : PyLong_FromLong(R_SLOW);
    long result = R_SLOW;
    double now = monotonic_now();
    /* Every decision first, reads only. */
    if (!(++s->ops & 3u) && !sweep_is_clean(s, now, 8)) {
        result = R_SWEEP;
        goto out;
    }
    uint32_t i = lookup_chan(s, name, nlen, h);
    if (!i)
        goto out; /* new entry: Python creates it */
    uint64_t e = CH(s, i);
    if (*U32(s, e + C_NCOUNT) >= *U32(s, e + C_CAP))
        goto out; /* full, or room only after reclaiming expired messages */
    if (!can_enqueue(s, i) || !nodes_available(s, 1))
        goto out;
    uint32_t order = order_for(dlen), k = 0;
    uint32_t block = heap_find(s, order, &k);
    if (!block)
        goto out;

    /* Stores, in _store.Store.send's order. */
    heap_take(s, block, k, order, dlen);
    CRASH_POINT(s, 1);
    memcpy((void *)(s->base + block + BLOCK_SIZE), data, (size_t)dlen);
    result = 0;
    /* A MemoryError while listing waiters leaves the message queued; end_send raises it. */
    enqueue(s, i, block, now, now + expiry, wake);
out:
    return end_send(s, result, wake);
}

/* send_group(name, hash, data, expiry, group_expiry) -> 0 | [slots to wake] | SLOW | SWEEP
 * _groups.GroupTable.send_group when no membership has expired and no full member could
 * be freed by reclaiming expired messages: one payload, one node per member with room. */
static PyObject *fp_send_group(FastPath *s, PyObject *const *args, Py_ssize_t nargs) {
    SendArgs a;
    if (parse_send(s, args, nargs, 5,
                   "send_group(name: bytes, hash: int, data: bytes, expiry: float, group_expiry: float)", &a) < 0)
        return NULL;
    double group_expiry = PyFloat_AsDouble(args[4]);
    if (group_expiry == -1.0 && PyErr_Occurred())
        return NULL;
    const char *data = a.data;
    Py_ssize_t dlen = a.dlen;
    uint32_t h = a.hash;
    double expiry = a.expiry;
    PyObject *wake = NULL;
    int started = start_send(s, dlen, &wake);
    if (started <= 0)
        return started < 0 ? NULL : PyLong_FromLong(R_SLOW);
    long result = R_SLOW;
    double now = monotonic_now();
    if (!sweep_is_clean(s, now, 2))
        goto out; /* the Python path sweeps first anyway */
    uint32_t g = lookup_group(s, a.name, a.nlen, h);
    if (!g) {
        result = 0; /* no such group: nothing to do (as the Python path) */
        goto out;
    }
    uint64_t ge = (uint64_t)s->group_off + (uint64_t)g * GROUP_SIZE;
    /* Every decision first, reads only. */
    uint32_t needed = 0;
    uint32_t m = *U32(s, ge + G_MHEAD);
    for (uint32_t guard = s->n_members; m; guard--) {
        if (!guard || m >= s->n_members)
            goto out;
        uint64_t mw = (uint64_t)s->member_off + (uint64_t)m * MEMBER_SIZE;
        if (*F64(s, mw + M_STAMP) + group_expiry <= now)
            goto out; /* an expired membership: the Python path drops it */
        uint32_t c = *U32(s, mw + M_CHAN);
        if (!c || c >= s->n_channels || !can_enqueue(s, c))
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
    uint32_t order = order_for(dlen), k = 0;
    uint32_t block = heap_find(s, order, &k);
    if (!block)
        goto out;

    /* Stores, in send_group's order. */
    *U32(s, ge + G_NSENT) = *U32(s, ge + G_NSENT) + 1;
    *U64(s, H_N_GROUP_SENDS) = *U64(s, H_N_GROUP_SENDS) + 1;
    heap_take(s, block, k, order, dlen);
    memcpy((void *)(s->base + block + BLOCK_SIZE), data, (size_t)dlen);
    result = 0;
    for (m = *U32(s, ge + G_MHEAD); m; m = *U32(s, (uint64_t)s->member_off + (uint64_t)m * MEMBER_SIZE + M_GNEXT)) {
        uint32_t c = *U32(s, (uint64_t)s->member_off + (uint64_t)m * MEMBER_SIZE + M_CHAN);
        uint64_t e = CH(s, c);
        if (*U32(s, e + C_NCOUNT) >= *U32(s, e + C_CAP)) {
            *U32(s, e + C_NFULL) = *U32(s, e + C_NFULL) + 1;
            *U64(s, H_N_FULL) = *U64(s, H_N_FULL) + 1;
            *U64(s, H_N_GROUP_SKIPPED) = *U64(s, H_N_GROUP_SKIPPED) + 1;
        } else if (enqueue(s, c, block, now, now + expiry, wake) < 0) {
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
        uint32_t q = lookup_chan(s, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name), h);
        if (!q)
            continue;
        uint64_t eq = CH(s, q);
        uint32_t node = *U32(s, eq + C_HEAD);
        if (!node)
            continue;
        if (node >= s->n_nodes)
            goto out;
        uint64_t nw = ND(s, node);
        if (*F64(s, nw + N_EXPIRES) <= now) {
            code = R_SWEEP; /* Python drops it, counts it, and takes the channel out of its groups */
            goto out;
        }
        uint32_t chan = *U32(s, nw + N_CHAN);
        uint32_t block = *U32(s, nw + N_PAYLOAD);
        if (!chan || chan >= s->n_channels || block < s->heap_off ||
            (uint64_t)block + BLOCK_SIZE > (uint64_t)s->heap_off + s->heap_size)
            goto out;
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
static PyObject *fp_receive(FastPath *s, PyObject *const *args, Py_ssize_t nargs) {
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
static PyObject *fp_pending(FastPath *s, PyObject *targets) {
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
        uint32_t q = lookup_chan(s, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name), h);
        if (q && *U32(s, CH(s, q) + C_HEAD))
            Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

/* disarm(slot) -> bool: False if the dirty word is set (the Python path then repairs
 * the segment and disarms). */
static PyObject *fp_disarm(FastPath *s, PyObject *arg) {
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

static PyObject *fp_release(FastPath *s, PyObject *noargs) {
    s->closing = 1;
    if (!s->waiting && !s->held)
        let_go(s);
    Py_RETURN_NONE;
}

static PyObject *fp_crash_at(FastPath *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "crash_at(point: int, hits: int = 1)");
        return NULL;
    }
    long point = PyLong_AsLong(args[0]);
    if (point == -1 && PyErr_Occurred())
        return NULL;
    long hits = nargs == 2 ? PyLong_AsLong(args[1]) : 1;
    if (hits == -1 && PyErr_Occurred())
        return NULL;
    if (point < 0 || point > N_CRASH_POINTS || hits < 1) {
        PyErr_Format(PyExc_ValueError, "crash point must be 0..%d and hits at least 1", N_CRASH_POINTS);
        return NULL;
    }
    s->crash_at = (int)point;
    s->crash_hits = hits;
    Py_RETURN_NONE;
}

static PyObject *fp_set_pid(FastPath *s, PyObject *arg) {
    unsigned long pid = PyLong_AsUnsignedLong(arg);
    if (PyErr_Occurred())
        return NULL;
    s->pid = (uint32_t)pid;
    s->held = s->waiting = 0; /* in a forked child: the parent's threads are not ours */
    Py_RETURN_NONE;
}

/* FastPath(mapping, chan_off, chan_bucket_off, n_chan_buckets, bucket_waiters_off,
 *          node_off, n_nodes, n_channels, waiter_off, n_waiters, heap_off, heap_size,
 *          heap_max_order, group_off, group_bucket_off, n_group_buckets, n_groups,
 *          member_off, n_members, pid) */
static int fp_init(FastPath *s, PyObject *args, PyObject *kwds) {
    PyObject *mapping;
    unsigned int n_chan_buckets, n_group_buckets;
    if (!PyArg_ParseTuple(args, "OIIIIIIIIIIIIIIIIIII", &mapping, &s->chan_off, &s->chan_bucket_off, &n_chan_buckets,
                          &s->bucket_waiters_off, &s->node_off, &s->n_nodes, &s->n_channels, &s->waiter_off,
                          &s->n_waiters, &s->heap_off, &s->heap_size, &s->heap_max_order, &s->group_off,
                          &s->group_bucket_off, &n_group_buckets, &s->n_groups, &s->member_off, &s->n_members,
                          &s->pid))
        return -1;
    if (n_chan_buckets == 0 || (n_chan_buckets & (n_chan_buckets - 1)) || n_group_buckets == 0 ||
        (n_group_buckets & (n_group_buckets - 1))) {
        PyErr_SetString(PyExc_ValueError, "bucket counts must be powers of two");
        return -1;
    }
    if (s->bound) {
        PyBuffer_Release(&s->view);
        s->bound = 0;
    }
    if (PyObject_GetBuffer(mapping, &s->view, PyBUF_WRITABLE) < 0)
        return -1;
    uint64_t end_nodes = (uint64_t)s->node_off + (uint64_t)s->n_nodes * NODE_SIZE;
    uint64_t end_chans = (uint64_t)s->chan_off + (uint64_t)s->n_channels * CHAN_SIZE;
    uint64_t end_heap = (uint64_t)s->heap_off + s->heap_size;
    uint64_t end_waiters = (uint64_t)s->waiter_off + (uint64_t)s->n_waiters * WAITER_SIZE;
    uint64_t end_groups = (uint64_t)s->group_off + (uint64_t)s->n_groups * GROUP_SIZE;
    uint64_t end_members = (uint64_t)s->member_off + (uint64_t)s->n_members * MEMBER_SIZE;
    uint64_t size = (uint64_t)s->view.len;
    if (size < 512 || end_nodes > size || end_chans > size || end_heap > size || end_waiters > size ||
        end_groups > size || end_members > size || (uint64_t)s->group_bucket_off + 4ull * n_group_buckets > size ||
        (uint64_t)s->bucket_waiters_off + 4ull * n_chan_buckets > size ||
        (uint64_t)s->chan_bucket_off + 4ull * n_chan_buckets > size || s->heap_max_order >= 32) {
        PyBuffer_Release(&s->view);
        PyErr_SetString(PyExc_ValueError, "geometry does not fit the mapping");
        return -1;
    }
    s->base = (volatile unsigned char *)s->view.buf;
    s->cmask = n_chan_buckets - 1;
    s->gmask = n_group_buckets - 1;
    s->ops = 0;
    s->crash_at = 0;
    s->damaged = 0;
    s->waiting = 0;
    s->closing = 0;
    s->held = 0;
    s->bound = 1;
    return 0;
}

static void fp_dealloc(FastPath *s) {
    if (s->bound)
        PyBuffer_Release(&s->view);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyMethodDef fp_methods[] = {
    {"init_lock", (PyCFunction)fp_init_lock, METH_NOARGS, "Initialise the robust process-shared mutex (creator only)."},
    {"lock", (PyCFunction)(void (*)(void))fp_lock, METH_FASTCALL,
     "Take the segment lock (TimeoutError after timeout s); True if its last holder died holding it."},
    {"unlock", (PyCFunction)fp_unlock, METH_NOARGS, "Release the segment lock."},
    {"send", (PyCFunction)(void (*)(void))fp_send, METH_FASTCALL, "Queue a message in the common case."},
    {"send_group", (PyCFunction)(void (*)(void))fp_send_group, METH_FASTCALL, "Fan a message out in the common case."},
    {"receive", (PyCFunction)(void (*)(void))fp_receive, METH_FASTCALL, "Take a message in the common case."},
    {"disarm", (PyCFunction)fp_disarm, METH_O, "Disarm a waiter slot under the lock."},
    {"pending", (PyCFunction)fp_pending, METH_O, "Lock-free hint: might any target hold a message?"},
    {"release", (PyCFunction)fp_release, METH_NOARGS, "Let go of the mapping (before it is closed)."},
    {"set_pid", (PyCFunction)fp_set_pid, METH_O, "The pid written to the dirty word (after fork)."},
    {"crash_at", (PyCFunction)(void (*)(void))fp_crash_at, METH_FASTCALL,
     "Tests only: SIGKILL this process the hits-th time it reaches fault-injection point N (0: off)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FastPathType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmlayer._fastpath.FastPath",
    .tp_basicsize = sizeof(FastPath),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Lock and common-case send/receive on one mapped segment.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)fp_init,
    .tp_dealloc = (destructor)fp_dealloc,
    .tp_methods = fp_methods,
};

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT, "shmlayer._fastpath", "Segment lock and common-case send/receive in C.", -1, NULL,
};

static int add_int(PyObject *dict, const char *key, long value) {
    PyObject *v = PyLong_FromLong(value);
    int r = v ? PyDict_SetItemString(dict, key, v) : -1;
    Py_XDECREF(v);
    return r;
}

PyMODINIT_FUNC PyInit__fastpath(void) {
    if (PyType_Ready(&FastPathType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastpath_module);
    if (m == NULL)
        return NULL;
    PyObject *layout = PyDict_New();
    if (layout == NULL ||
        add_int(layout, "H.lock_owner", H_LOCK_OWNER) || add_int(layout, "H.chan_free", H_CHAN_FREE) ||
        add_int(layout, "H.chan_bump", H_CHAN_BUMP) || add_int(layout, "H.node_free", H_NODE_FREE) ||
        add_int(layout, "H.node_bump", H_NODE_BUMP) || add_int(layout, "H.sweep_cursor", H_SWEEP) ||
        add_int(layout, "H.wild_waiters", H_WILD) || add_int(layout, "H.heap_free", H_HEAP_FREE) ||
        add_int(layout, "H.n_sent", H_N_SENT) || add_int(layout, "H.n_received", H_N_RECEIVED) ||
        add_int(layout, "H.heap_used", H_HEAP_USED) || add_int(layout, "H.waiter_bump", H_WBUMP) ||
        add_int(layout, "H.lock", H_LOCK) || add_int(layout, "LOCK_SPACE", LOCK_SPACE) ||
        add_int(layout, "MUTEX_SIZE", (long)sizeof(pthread_mutex_t)) ||
        add_int(layout, "CHAN_SIZE", CHAN_SIZE) || add_int(layout, "GROUP_SIZE", GROUP_SIZE) ||
        add_int(layout, "MEMBER_SIZE", MEMBER_SIZE) || add_int(layout, "G.hnext", G_HNEXT) ||
        add_int(layout, "G.hash", G_HASH) || add_int(layout, "G.flags", G_FLAGS) ||
        add_int(layout, "G.name_len", G_NLEN) || add_int(layout, "G.mhead", G_MHEAD) ||
        add_int(layout, "G.n_sent", G_NSENT) || add_int(layout, "G.name", G_NAME) ||
        add_int(layout, "M.chan", M_CHAN) || add_int(layout, "M.gnext", M_GNEXT) ||
        add_int(layout, "M.stamp", M_STAMP) || add_int(layout, "C.n_full", C_NFULL) ||
        add_int(layout, "H.n_full", H_N_FULL) || add_int(layout, "H.n_group_skipped", H_N_GROUP_SKIPPED) ||
        add_int(layout, "H.n_group_sends", H_N_GROUP_SENDS) || add_int(layout, "C.hnext", C_HNEXT) ||
        add_int(layout, "C.hash", C_HASH) || add_int(layout, "C.flags", C_FLAGS) ||
        add_int(layout, "C.name_len", C_NLEN) || add_int(layout, "C.head", C_HEAD) ||
        add_int(layout, "C.tail", C_TAIL) || add_int(layout, "C.qcount", C_QCOUNT) ||
        add_int(layout, "C.ncount", C_NCOUNT) || add_int(layout, "C.queue", C_QUEUE) ||
        add_int(layout, "C.refs", C_REFS) || add_int(layout, "C.mhead", C_MHEAD) ||
        add_int(layout, "C.gen", C_GEN) || add_int(layout, "C.cap", C_CAP) ||
        add_int(layout, "C.n_sent", C_NSENT) || add_int(layout, "C.name", C_NAME) ||
        add_int(layout, "NODE_SIZE", NODE_SIZE) || add_int(layout, "N.next", N_NEXT) ||
        add_int(layout, "N.chan", N_CHAN) || add_int(layout, "N.payload", N_PAYLOAD) ||
        add_int(layout, "N.flags", N_FLAGS) || add_int(layout, "N.sent", N_SENT) ||
        add_int(layout, "N.expires", N_EXPIRES) || add_int(layout, "BLOCK_SIZE", BLOCK_SIZE) ||
        add_int(layout, "B.tag", B_TAG) || add_int(layout, "B.refs", B_REFS) ||
        add_int(layout, "B.length", B_LENGTH) || add_int(layout, "BLOCK_USED", BLOCK_USED) ||
        add_int(layout, "BLOCK_FREE", BLOCK_FREE) || add_int(layout, "MIN_ORDER", MIN_ORDER) ||
        add_int(layout, "WAITER_SIZE", WAITER_SIZE) || add_int(layout, "W.state", W_STATE) ||
        add_int(layout, "W.nbuckets", W_NB) || add_int(layout, "W.buckets", W_BUCKETS) ||
        add_int(layout, "WILDCARD", WILDCARD) || add_int(layout, "MAX_WAIT_BUCKETS", MAX_WAIT_BUCKETS) ||
        add_int(layout, "LAZY_MAX_ORDER", LAZY_MAX_ORDER) || add_int(layout, "STATE_IDLE", STATE_IDLE) ||
        add_int(layout, "STATE_ARMED", STATE_ARMED) || add_int(layout, "RETAIN", RETAIN) ||
        add_int(layout, "CRASH_POINTS", N_CRASH_POINTS) || add_int(layout, "SLOW", R_SLOW) || add_int(layout, "SWEEP", R_SWEEP) ||
        PyModule_AddObject(m, "LAYOUT", layout) < 0) {
        Py_XDECREF(layout);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&FastPathType);
    if (PyModule_AddObject(m, "FastPath", (PyObject *)&FastPathType) < 0) {
        Py_DECREF(&FastPathType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

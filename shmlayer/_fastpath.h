/* shmlayer._fastpath: what the C files of the one extension module share.
 *
 * The Python code in _store.py / _heap.py / _slots.py is the reference implementation of
 * every operation. This module does two things:
 *
 * 1. The segment lock: a robust, process-shared pthread mutex in the header (``lock``
 *    field). Uncontended it is one atomic instruction each way, where flock cost two
 *    system calls; when its holder dies the kernel marks it (EOWNERDEAD) and the next
 *    locker takes it over. The dirty word (``lock_owner``) still decides recovery.
 * 2. ``send``/``send_group``/``receive`` for the plain case: the channel (group) exists,
 *    or for ``send`` can be created without eviction (a normal name, or "x!y" whose "x!"
 *    entry exists), has room, the heap and node table have space, and no message or
 *    membership met on the way has expired. Anything else (creating a prefix entry or
 *    evicting kept ones, a full channel, an expired message or membership, a dirty word,
 *    a link out of range) is decided *before the first store* and
 *    answered with SLOW or SWEEP, and the caller redoes the operation in Python. So this
 *    module never needs membership upkeep, recovery or eviction logic, and it makes
 *    exactly the stores the Python code makes, in the same
 *    order ("link last", see _store.py); a compiler barrier sits before each linking
 *    store so that a process killed at any instruction leaves what recovery expects.
 *
 * Offsets below are the layout tables of _layout.py; tests/shmlayer/test_fastpath.py
 * checks LAYOUT against them.
 *
 * The module is built from several files, one job each (setup.py lists them):
 *   _fastpath.c         the FastPath type, its method table, module init and LAYOUT;
 *   _fastpath_lock.c    the robust mutex: lock/unlock, enter/leave around a fast
 *                       operation, a release() while threads wait or hold the lock;
 *   _fastpath_queues.c  channel and group lookup, queues, nodes, waiter arming/waking;
 *   _fastpath_heap.c    the buddy heap the payloads live in;
 *   _fastpath_ops.c     the send/send_group/receive/pending/disarm methods;
 *   _fastpath_plain.c   plain(): the fast check of contract.validate_message.
 * Functions one file calls in another are declared at the end of this header; they
 * are hidden from the shared object's symbol table (FP_INTERNAL).
 */
#ifndef SHMLAYER_FASTPATH_H
#define SHMLAYER_FASTPATH_H

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
#define C_NAME_SIZE (CHAN_SIZE - C_NAME) /* bytes of the name field */

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
#define KIND_LOCAL 2u /* _layout.KIND_LOCAL: "x!y", queuing on the entry of "x!" */

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
#define N_CRASH_POINTS 12

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

static inline int check_bound(FastPath *s) {
    if (!s->bound || s->closing) {
        PyErr_SetString(PyExc_ValueError, "segment mapping is closed");
        return -1;
    }
    return 0;
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

/* ------------------------------------------------------- across the module's files */

/* Not exported from the .so: only the files of this module call these. */
#define FP_INTERNAL __attribute__((visibility("hidden")))

/* _fastpath_lock.c */
FP_INTERNAL int enter(FastPath *s);
FP_INTERNAL void leave(FastPath *s);
FP_INTERNAL PyObject *fp_init_lock(FastPath *s, PyObject *noargs);
FP_INTERNAL PyObject *fp_lock(FastPath *s, PyObject *const *args, Py_ssize_t nargs);
FP_INTERNAL PyObject *fp_unlock(FastPath *s, PyObject *noargs);
FP_INTERNAL PyObject *fp_release(FastPath *s, PyObject *noargs);

/* _fastpath_heap.c */
FP_INTERNAL uint32_t order_for(Py_ssize_t nbytes);
FP_INTERNAL uint32_t heap_find(FastPath *s, uint32_t order, uint32_t *found_order);
FP_INTERNAL void heap_take(FastPath *s, uint32_t block, uint32_t k, uint32_t order, Py_ssize_t nbytes);
FP_INTERNAL void heap_free(FastPath *s, uint32_t block);
FP_INTERNAL void heap_decref(FastPath *s, uint32_t block);

/* _fastpath_queues.c */
FP_INTERNAL uint32_t lookup_chan(FastPath *s, const char *name, Py_ssize_t n, uint32_t h, int locked);
FP_INTERNAL void free_chan_if_unused(FastPath *s, uint32_t i);
FP_INTERNAL uint32_t chan_available(FastPath *s);
FP_INTERNAL void create_chan(FastPath *s, uint32_t i, const char *name, Py_ssize_t n, uint32_t h, uint32_t queue,
                             uint32_t cap);
FP_INTERNAL int sweep_is_clean(FastPath *s, double now, int budget);
FP_INTERNAL void disarm(FastPath *s, uint64_t w);
FP_INTERNAL int can_enqueue(FastPath *s, uint32_t i);
FP_INTERNAL int nodes_available(FastPath *s, uint32_t needed);
FP_INTERNAL int enqueue(FastPath *s, uint32_t i, uint32_t block, double now, double expires, PyObject *wake);
FP_INTERNAL int queue_has_expired(FastPath *s, uint32_t i, double now);
FP_INTERNAL uint32_t lookup_group(FastPath *s, const char *name, Py_ssize_t n, uint32_t h);
FP_INTERNAL void arm(FastPath *s, uint32_t slot, PyObject *targets /* tuple */);

/* _fastpath_ops.c */
FP_INTERNAL PyObject *fp_send(FastPath *s, PyObject *const *args, Py_ssize_t nargs);
FP_INTERNAL PyObject *fp_send_group(FastPath *s, PyObject *const *args, Py_ssize_t nargs);
FP_INTERNAL PyObject *fp_receive(FastPath *s, PyObject *const *args, Py_ssize_t nargs);
FP_INTERNAL PyObject *fp_pending(FastPath *s, PyObject *targets);
FP_INTERNAL PyObject *fp_disarm(FastPath *s, PyObject *arg);

/* _fastpath_plain.c: containers nested deeper than this are left to the Python check. */
#define PLAIN_MAX_DEPTH 64
FP_INTERNAL PyObject *fp_plain(PyObject *module, PyObject *obj);

#endif /* SHMLAYER_FASTPATH_H */

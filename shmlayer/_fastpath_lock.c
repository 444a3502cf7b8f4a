/* shmlayer._fastpath: the segment lock, a robust process-shared pthread mutex in the
 * header (``lock`` field), and the enter/leave pair every fast operation runs inside.
 * The dirty word (``lock_owner``) still decides recovery; see _fastpath.h. */
#include "_fastpath.h"

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
int enter(FastPath *s) {
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

void leave(FastPath *s) {
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

/* --------------------------------------------------------------------- methods */

PyObject *fp_init_lock(FastPath *s, PyObject *noargs) {
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
PyObject *fp_lock(FastPath *s, PyObject *const *args, Py_ssize_t nargs) {
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
PyObject *fp_unlock(FastPath *s, PyObject *noargs) {
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

PyObject *fp_release(FastPath *s, PyObject *noargs) {
    s->closing = 1;
    if (!s->waiting && !s->held)
        let_go(s);
    Py_RETURN_NONE;
}

/* shmlayer._fastpath: the FastPath type, its method table, module init and the LAYOUT
 * dict that tests/shmlayer/test_fastpath.py checks against _layout.py. What the
 * module does and how its files divide the work: _fastpath.h. */
#include "_fastpath.h"

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

static PyMethodDef module_methods[] = {
    {"plain", fp_plain, METH_O,
     "True if obj is built only of exact dict (str keys), list, tuple, str, bytes, float, bool, None and "
     "64-bit int, at most PLAIN_MAX_DEPTH containers deep; False otherwise (never raises)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT, "shmlayer._fastpath", "Segment lock, common-case send/receive and the message check in C.",
    -1, module_methods,
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
    if (PyModule_AddIntConstant(m, "PLAIN_MAX_DEPTH", PLAIN_MAX_DEPTH) < 0) {
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

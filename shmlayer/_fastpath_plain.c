/* shmlayer._fastpath: plain(obj), the fast check of contract.validate_message.
 *
 * contract._plain (Python) is the reference: True when a message is built only of exact
 * dict (str keys), list, tuple, str, bytes, float, bool, None and int in signed 64-bit
 * range; False sends the message to contract._check_value, which accepts it or raises
 * with the path of the bad value. This file gives the same answers without a Python
 * frame per container.
 *
 * Exact type checks only: a subclass can override iteration or comparison, and the slow
 * path is the one that decides about it. No Python code runs here (no __eq__, __hash__
 * or __iter__ is called), so a container cannot change under the walk.
 *
 * Beyond PLAIN_MAX_DEPTH nested containers the answer is False instead of a deeper C
 * recursion: the slow path then walks the message, and a message that contains itself
 * gets its clear TypeError from there ("nested too deeply") rather than a crash here.
 */
#include "_fastpath.h"

static int plain_at(PyObject *obj, int depth);

/* A value inside a container: the scalar types answer at once, containers recurse. */
static inline int plain_item(PyObject *item, int depth) {
    if (PyUnicode_CheckExact(item) || PyBytes_CheckExact(item) || PyFloat_CheckExact(item) || PyBool_Check(item) ||
        item == Py_None)
        return 1;
    return plain_at(item, depth);
}

/* 1: plain, 0: not (or too deep). ``depth`` counts the containers above ``obj``. */
static int plain_at(PyObject *obj, int depth) {
    if (PyLong_CheckExact(obj)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
        if (v == -1 && PyErr_Occurred()) { /* not expected for an exact int: leave it to the slow path */
            PyErr_Clear();
            return 0;
        }
        return overflow == 0;
    }
    if (PyUnicode_CheckExact(obj) || PyBytes_CheckExact(obj) || PyFloat_CheckExact(obj) || PyBool_Check(obj) ||
        obj == Py_None)
        return 1;
    if (depth >= PLAIN_MAX_DEPTH)
        return 0;
    if (PyDict_CheckExact(obj)) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(obj, &pos, &key, &value)) {
            if (!PyUnicode_CheckExact(key) || !plain_item(value, depth + 1))
                return 0;
        }
        return 1;
    }
    if (PyList_CheckExact(obj)) {
        for (Py_ssize_t k = 0; k < PyList_GET_SIZE(obj); k++) {
            if (!plain_item(PyList_GET_ITEM(obj, k), depth + 1))
                return 0;
        }
        return 1;
    }
    if (PyTuple_CheckExact(obj)) {
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(obj); k++) {
            if (!plain_item(PyTuple_GET_ITEM(obj, k), depth + 1))
                return 0;
        }
        return 1;
    }
    return 0;
}

/* plain(obj) -> bool; never raises. */
PyObject *fp_plain(PyObject *module, PyObject *obj) { return PyBool_FromLong(plain_at(obj, 0)); }

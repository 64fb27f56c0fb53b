/* wanfedtx.gateway._splicerelay: the CPython type around the relay engine (relay.h).
 *
 * Relay(epfd, pipe_size, idle_timeout=0.0, hold=0.05) wraps one Engine; relaynative.py is its
 * Python user. ``poll`` runs engine_wait with the GIL released (the engine touches no Python
 * object) and then builds the lists Python reads: events for descriptors it still owns, and
 * the records of pairs that ended.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>

#include "relay.h"

typedef struct {
    PyObject_HEAD
    Engine e;
    int ready;
    int busy; /* poll is waiting with the GIL released: no other method may touch the engine */
} Relay;

static int Relay_init(Relay *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"epfd", "pipe_size", "idle_timeout", "hold", NULL};
    int epfd, pipe_size;
    double idle = 0.0, hold = 0.05;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "ii|dd", kwlist, &epfd, &pipe_size, &idle, &hold))
        return -1;
    if (self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "Relay is already initialised");
        return -1;
    }
    if (epfd < 0 || pipe_size <= 0 || !(idle >= 0) || !(hold >= 0)) { /* NaN too */
        PyErr_SetString(PyExc_ValueError, "bad Relay settings");
        return -1;
    }
    if (idle > 1e9) /* a timeout past 30 years is none; keeps nanoseconds inside int64 */
        idle = 0;
    if (hold > 1e9)
        hold = 1e9;
    if (engine_init(&self->e, epfd, pipe_size, (int64_t)(idle * 1e9), (int64_t)(hold * 1e9)) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    self->ready = 1;
    return 0;
}

static int check_ready(Relay *self) {
    if (!self->ready) {
        PyErr_SetString(PyExc_ValueError, "uninitialised Relay");
        return 0;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Relay used by another thread while it polls");
        return 0;
    }
    return 1;
}

static PyObject *Relay_add(Relay *self, PyObject *args) {
    long long token;
    int down_fd, up_fd;
    unsigned int mask_down, mask_up;
    Py_buffer first;
    if (!check_ready(self))
        return NULL;
    if (!PyArg_ParseTuple(args, "LiiIIy*", &token, &down_fd, &up_fd, &mask_down, &mask_up,
                          &first))
        return NULL;
    int rc = engine_add(&self->e, token, down_fd, up_fd, mask_down, mask_up, first.buf,
                        (size_t)first.len);
    int err = errno;
    PyBuffer_Release(&first);
    if (rc < 0) {
        if (err == ENOMEM)
            return PyErr_NoMemory();
        if (err == EEXIST) {
            PyErr_SetString(PyExc_RuntimeError, "a descriptor handed over twice");
            return NULL;
        }
        PyErr_SetString(PyExc_ValueError, "bad descriptors");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *take_done(Engine *e) {
    PyObject *out = PyList_New((Py_ssize_t)e->done_n);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < e->done_n; i++) {
        Done *d = &e->done[i];
        PyObject *t = Py_BuildValue("(LKKiii)", d->token, d->up, d->down, d->down_eof,
                                    d->up_eof, d->reason);
        if (t == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, t);
    }
    e->done_n = 0;
    return out;
}

static PyObject *Relay_poll(Relay *self, PyObject *args) {
    double timeout;
    if (!check_ready(self) || !PyArg_ParseTuple(args, "d", &timeout))
        return NULL;
    if (!(timeout >= 0)) /* negative or NaN */
        timeout = 0;
    if (timeout > 86400) /* keeps the deadline inside int64 nanoseconds */
        timeout = 86400;
    int fds[MAX_EVENTS];
    uint32_t masks[MAX_EVENTS];
    int n = 0, err;
    int64_t deadline = engine_now() + (int64_t)(timeout * 1e9);
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    err = engine_wait(&self->e, deadline, fds, masks, &n);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (err && err != EINTR) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *events = PyList_New(n);
    if (events == NULL)
        return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *t = Py_BuildValue("(iI)", fds[i], masks[i]);
        if (t == NULL) {
            Py_DECREF(events);
            return NULL;
        }
        PyList_SET_ITEM(events, i, t);
    }
    PyObject *done = take_done(&self->e);
    if (done == NULL) {
        Py_DECREF(events);
        return NULL;
    }
    PyObject *result = PyTuple_Pack(2, events, done);
    Py_DECREF(events);
    Py_DECREF(done);
    return result;
}

static PyObject *Relay_take_moved(Relay *self, PyObject *Py_UNUSED(ignored)) {
    if (!check_ready(self))
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Pair *p = self->e.head; p != NULL; p = p->next) {
        if (!p->to_up.moved && !p->to_down.moved)
            continue;
        PyObject *t = Py_BuildValue("(LKK)", p->token, p->to_up.moved, p->to_down.moved);
        if (t == NULL || PyList_Append(out, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(out);
            return NULL; /* nothing reset: the counts are taken next time */
        }
        Py_DECREF(t);
    }
    for (Pair *p = self->e.head; p != NULL; p = p->next)
        p->to_up.moved = p->to_down.moved = 0;
    return out;
}

static PyObject *Relay_close_all(Relay *self, PyObject *Py_UNUSED(ignored)) {
    if (!self->ready)
        return PyList_New(0);
    if (!check_ready(self))
        return NULL;
    engine_close_all(&self->e);
    return take_done(&self->e);
}

static PyObject *Relay_get_active(Relay *self, void *Py_UNUSED(closure)) {
    return PyLong_FromLong(self->ready ? self->e.active : 0); /* one word: safe while polling */
}

static void Relay_dealloc(Relay *self) {
    if (self->ready)
        engine_free(&self->e);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Relay_methods[] = {
    {"add", (PyCFunction)Relay_add, METH_VARARGS,
     "add(token, down_fd, up_fd, mask_down, mask_up, first): take over a relaying pair's two "
     "sockets (their descriptors now belong to the Relay) and send first upstream"},
    {"poll", (PyCFunction)Relay_poll, METH_VARARGS,
     "poll(timeout) -> (events, done): wait and relay; events are (fd, mask) for descriptors "
     "not handed over, done are (token, to_up, to_down, down_eof, up_eof, reason)"},
    {"take_moved", (PyCFunction)Relay_take_moved, METH_NOARGS,
     "take_moved() -> [(token, to_up, to_down)]: bytes relayed since the last call, per pair"},
    {"close_all", (PyCFunction)Relay_close_all, METH_NOARGS,
     "close_all() -> done: close every pair and idle pipe"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Relay_getset[] = {
    {"active", (getter)Relay_get_active, NULL, "pairs relaying now", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RelayType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wanfedtx.gateway._splicerelay.Relay",
    .tp_doc = "Relay(epfd, pipe_size, idle_timeout=0.0, hold=0.05): splice pumps for handed-over "
              "socket pairs, driven by poll() in the loop thread",
    .tp_basicsize = sizeof(Relay),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Relay_init,
    .tp_dealloc = (destructor)Relay_dealloc,
    .tp_methods = Relay_methods,
    .tp_getset = Relay_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "wanfedtx.gateway._splicerelay",
    .m_doc = "The loop data path's relay phase in C (see relaynative.py and csrc/relay.h).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__splicerelay(void) {
    if (PyType_Ready(&RelayType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&RelayType);
    if (PyModule_AddObject(m, "Relay", (PyObject *)&RelayType) < 0 ||
        PyModule_AddIntConstant(m, "DONE_CLEAN", DONE_CLEAN) < 0 ||
        PyModule_AddIntConstant(m, "DONE_ERROR", DONE_ERROR) < 0 ||
        PyModule_AddIntConstant(m, "DONE_HANGUP", DONE_HANGUP) < 0 ||
        PyModule_AddIntConstant(m, "DONE_IDLE", DONE_IDLE) < 0 ||
        PyModule_AddIntConstant(m, "DONE_STOP", DONE_STOP) < 0) {
        Py_DECREF(&RelayType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

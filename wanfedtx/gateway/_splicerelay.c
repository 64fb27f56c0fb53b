/* The relay phase of the gateway's loop data path, compiled: splice(2) pumps run without the
 * interpreter.
 *
 * The Python loop (wanfedtx/gateway/loop.py) accepts, reads the ClientHello, routes and
 * connects; once a connection relays, it hands both sockets to a Relay object here
 * (``add``). From then on the Relay moves the bytes socket -> pipe -> socket with splice(2),
 * forwards each FIN as shutdown(SHUT_WR) once its pipe is drained, closes the pair when both
 * directions have ended (or on a socket error, a hang-up without data, or the idle timeout),
 * and keeps a record of each finished pair for the Python side (``poll``'s second value).
 *
 * ``poll`` replaces ``epoll.poll`` in the loop thread: it waits on the loop's own epoll set with
 * the GIL released, handles the events of handed-over sockets itself, and returns as soon as an
 * event for a descriptor it does not own arrives (the listener, the wake pipe, a connection in
 * its hello), the timeout passes, or a finished record has waited ``hold`` seconds. The
 * semantics of a pump are those of pump.py's ``Direction.pump`` (8 rounds per call for fairness,
 * no read after a short one, EPOLLOUT while a pipe holds bytes), and the epoll masks and close
 * rules those of loop.py's ``_relay_event``, so both relays behave the same to a peer.
 *
 * One thread only: every method runs in the loop thread that owns the epoll set.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 8                 /* pump rounds per call, for fairness between pairs */
#define SHORT_READ (64 * 1024)   /* a read below this most likely drained the socket */
#define READ_MAX (1 << 20)       /* bytes asked of one splice from a socket */
#define MAX_EVENTS 256           /* epoll events per wait */
#define POOL_KEEP 32             /* idle pipes kept for reuse */
#define IDLE_SCAN_NS 1000000000LL
#define SPLICE_FLAGS (SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
#define PARKED 0xFFFFFFFFu       /* a socket's mask while it is out of the epoll set */

enum { DONE_CLEAN, DONE_ERROR, DONE_HANGUP, DONE_IDLE, DONE_STOP };

typedef struct {
    int src, dst;
    int pipe_r, pipe_w;
    size_t in_pipe;
    char *pending;          /* bytes to write before anything spliced (the hello) */
    size_t pending_len, pending_off;
    int eof, finished, want_out, broken;
    unsigned long long moved; /* delivered to dst, not yet reported */
} Direction;

typedef struct Pair {
    long long token;
    int down_fd, up_fd;
    uint32_t mask_down, mask_up;
    Direction to_up, to_down;
    int64_t idle_since;
    struct Pair *prev, *next;
} Pair;

typedef struct {
    long long token;
    unsigned long long up, down;
    int down_eof, up_eof, reason;
} Done;

typedef struct {
    PyObject_HEAD
    int epfd;
    int pipe_size;
    int64_t idle_ns; /* 0: no idle timeout */
    int64_t hold_ns;
    Pair **byfd;
    int byfd_cap;
    Pair *head;
    Py_ssize_t active;
    int pool[POOL_KEEP][2];
    int pool_n;
    Done *done;
    size_t done_n, done_cap;
    int64_t oldest_done;
    int64_t last_idle_scan;
    int closed[2 * MAX_EVENTS + 2]; /* sockets closed while handling the current batch */
    int closed_n;
    int in_batch;
    int oom;
} Relay;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int is_again(int e) { return e == EAGAIN || e == EWOULDBLOCK; }

/* -- pipes ---------------------------------------------------------------------------------- */

static int pipe_get(Relay *r, int *rd, int *wr) {
    if (r->pool_n > 0) {
        r->pool_n--;
        *rd = r->pool[r->pool_n][0];
        *wr = r->pool[r->pool_n][1];
        return 0;
    }
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -1;
    (void)fcntl(fds[1], F_SETPIPE_SZ, r->pipe_size); /* best effort, as pump.py */
    *rd = fds[0];
    *wr = fds[1];
    return 0;
}

static void pipe_release(Relay *r, Direction *d) {
    if (d->pipe_r < 0)
        return;
    if (!d->broken && d->in_pipe == 0 && r->pool_n < POOL_KEEP) {
        r->pool[r->pool_n][0] = d->pipe_r;
        r->pool[r->pool_n][1] = d->pipe_w;
        r->pool_n++;
    } else {
        close(d->pipe_r);
        close(d->pipe_w);
    }
    d->pipe_r = d->pipe_w = -1;
}

/* -- pairs ---------------------------------------------------------------------------------- */

static int record_done(Relay *r, Pair *p, int reason) {
    if (r->done_n == r->done_cap) {
        size_t cap = r->done_cap ? r->done_cap * 2 : 64;
        Done *d = realloc(r->done, cap * sizeof(Done));
        if (d == NULL) {
            r->oom = 1;
            return -1;
        }
        r->done = d;
        r->done_cap = cap;
    }
    if (r->done_n == 0)
        r->oldest_done = now_ns();
    Done *d = &r->done[r->done_n++];
    d->token = p->token;
    d->up = p->to_up.moved;
    d->down = p->to_down.moved;
    d->down_eof = p->to_up.finished;
    d->up_eof = p->to_down.finished;
    d->reason = reason;
    return 0;
}

static void close_pair(Relay *r, Pair *p, int reason) {
    (void)record_done(r, p, reason);
    if (p->prev)
        p->prev->next = p->next;
    else
        r->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    r->active--;
    r->byfd[p->down_fd] = NULL;
    r->byfd[p->up_fd] = NULL;
    if (r->in_batch) {
        r->closed[r->closed_n++] = p->down_fd;
        r->closed[r->closed_n++] = p->up_fd;
    }
    /* closing a socket's only descriptor takes it out of the epoll set; the close also sends
     * the last FIN of a pair whose directions both ended */
    close(p->up_fd);
    close(p->down_fd);
    pipe_release(r, &p->to_up);
    pipe_release(r, &p->to_down);
    free(p->to_up.pending);
    free(p);
}

/* The direction's source has ended and its pipe is empty: forward the FIN. Once both
 * directions are over the pair is closed next, and the close sends this FIN (every byte either
 * way has been read: no reset). */
static void finish(Direction *d, Direction *other) {
    d->finished = 1;
    if (!other->finished)
        (void)shutdown(d->dst, SHUT_WR);
}

/* Move what can move now without blocking. Returns 1 if a byte moved, 0 if not, -1 on a socket
 * error (the direction is then broken: its pipe's content is unknown). */
static int pump(Direction *d, Direction *other) {
    int progress = 0, is_short = 0;
    for (int round = 0; round < ROUNDS; round++) {
        if (d->pending_off < d->pending_len) {
            ssize_t n = send(d->dst, d->pending + d->pending_off,
                             d->pending_len - d->pending_off, MSG_NOSIGNAL);
            if (n < 0) {
                if (is_again(errno)) {
                    d->want_out = 1;
                    return progress;
                }
                d->broken = 1;
                return -1;
            }
            d->pending_off += (size_t)n; /* counted by the Python side already */
            progress = 1;
            if (d->pending_off < d->pending_len) {
                d->want_out = 1;
                return progress;
            }
        }
        if (d->in_pipe) {
            ssize_t n = splice(d->pipe_r, NULL, d->dst, NULL, d->in_pipe, SPLICE_FLAGS);
            if (n < 0) {
                if (is_again(errno)) {
                    d->want_out = 1;
                    return progress;
                }
                d->broken = 1;
                return -1;
            }
            d->in_pipe -= (size_t)n;
            d->moved += (unsigned long long)n;
            progress = 1;
            if (d->in_pipe) {
                d->want_out = 1;
                return progress;
            }
        }
        d->want_out = 0;
        if (d->eof) {
            if (!d->finished)
                finish(d, other);
            return progress;
        }
        if (is_short)
            return progress; /* level-triggered epoll reports the rest */
        ssize_t n = splice(d->src, NULL, d->pipe_w, NULL, READ_MAX, SPLICE_FLAGS);
        if (n < 0) {
            if (is_again(errno))
                return progress;
            d->broken = 1;
            return -1;
        }
        if (n == 0) {
            d->eof = 1;
            continue;
        }
        d->in_pipe += (size_t)n;
        is_short = n < SHORT_READ;
        progress = 1;
    }
    /* the fairness bound ended the loop: ask for EPOLLOUT to flush what the pipe holds, or,
     * if the last round read the end of the stream (the pipe is empty then), forward it now */
    if (d->in_pipe || d->pending_off < d->pending_len)
        d->want_out = 1;
    else if (d->eof && !d->finished)
        finish(d, other);
    return progress;
}

/* Give ``fd`` the epoll mask ``want``; a parked socket (out of the set) comes back only when it
 * needs an event. -1 on failure. */
static int apply_mask(Relay *r, int fd, uint32_t *cur, uint32_t want) {
    if (want == *cur || (*cur == PARKED && want == 0))
        return 0;
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = want;
    ev.data.fd = fd;
    if (epoll_ctl(r->epfd, *cur == PARKED ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) < 0)
        return -1;
    *cur = want;
    return 0;
}

/* The masks both sockets need now; epoll_ctl only for one that changed. -1 on failure. */
static int set_masks(Relay *r, Pair *p) {
    Direction *up = &p->to_up, *down = &p->to_down;
    uint32_t m = ((up->eof || up->want_out) ? 0 : EPOLLIN) | (down->want_out ? EPOLLOUT : 0);
    if (apply_mask(r, p->down_fd, &p->mask_down, m) < 0)
        return -1;
    m = ((down->eof || down->want_out) ? 0 : EPOLLIN) | (up->want_out ? EPOLLOUT : 0);
    return apply_mask(r, p->up_fd, &p->mask_up, m);
}

/* Take a hung-up socket out of the epoll set: epoll reports EPOLLHUP whatever the mask, and its
 * direction has to wait for the other socket's EPOLLOUT first. -1 on failure. */
static int park(Relay *r, int fd, uint32_t *cur) {
    if (*cur == PARKED)
        return 0;
    if (epoll_ctl(r->epfd, EPOLL_CTL_DEL, fd, NULL) < 0)
        return -1;
    *cur = PARKED;
    return 0;
}

/* One event on a handed-over socket (loop.py's _relay_event). */
static void relay_event(Relay *r, Pair *p, int fd, uint32_t ev, int64_t now) {
    if (ev & EPOLLERR) {
        close_pair(r, p, DONE_ERROR);
        return;
    }
    Direction *reading, *writing;
    if (fd == p->down_fd) {
        reading = &p->to_up;
        writing = &p->to_down;
    } else {
        reading = &p->to_down;
        writing = &p->to_up;
    }
    int moved;
    if (ev & EPOLLOUT) {
        moved = pump(writing, reading);
        if (moved >= 0 && (ev & (EPOLLIN | EPOLLHUP))) {
            int more = pump(reading, writing);
            moved = more < 0 ? -1 : (more || moved);
        }
    } else {
        moved = pump(reading, writing);
    }
    if (moved < 0) {
        close_pair(r, p, DONE_ERROR);
        return;
    }
    if (moved)
        p->idle_since = now;
    if (p->to_up.finished && p->to_down.finished) {
        close_pair(r, p, DONE_CLEAN);
        return;
    }
    if (!moved && (ev & EPOLLHUP)) {
        if (!reading->want_out) {
            close_pair(r, p, DONE_HANGUP); /* nothing can move: never spin on it */
            return;
        }
        /* the peer's FIN and ours are both in, but bytes read from this socket still wait for
         * the other one to take them: keep them, and stop hearing this socket until then */
        if (park(r, fd, fd == p->down_fd ? &p->mask_down : &p->mask_up) < 0) {
            close_pair(r, p, DONE_ERROR);
            return;
        }
    }
    if (set_masks(r, p) < 0)
        close_pair(r, p, DONE_ERROR);
}

static void idle_scan(Relay *r, int64_t now) {
    r->last_idle_scan = now;
    Pair *p = r->head;
    while (p != NULL) {
        Pair *next = p->next;
        if (now - p->idle_since >= r->idle_ns)
            close_pair(r, p, DONE_IDLE);
        p = next;
    }
}

static int was_closed(Relay *r, int fd) {
    for (int i = 0; i < r->closed_n; i++)
        if (r->closed[i] == fd)
            return 1;
    return 0;
}

/* -- Python methods ------------------------------------------------------------------------- */

static int Relay_init(Relay *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"epfd", "pipe_size", "idle_timeout", "hold", NULL};
    int epfd, pipe_size;
    double idle = 0.0, hold = 0.05;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "ii|dd", kwlist, &epfd, &pipe_size, &idle, &hold))
        return -1;
    if (self->byfd != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Relay is already initialised");
        return -1;
    }
    if (epfd < 0 || pipe_size <= 0 || idle < 0 || hold < 0) {
        PyErr_SetString(PyExc_ValueError, "bad Relay settings");
        return -1;
    }
    self->epfd = epfd;
    self->pipe_size = pipe_size;
    self->idle_ns = (int64_t)(idle * 1e9);
    self->hold_ns = (int64_t)(hold * 1e9);
    self->byfd_cap = 1024;
    self->byfd = calloc((size_t)self->byfd_cap, sizeof(Pair *));
    if (self->byfd == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->last_idle_scan = now_ns();
    return 0;
}

static int grow_byfd(Relay *r, int fd) {
    if (fd < r->byfd_cap)
        return 0;
    int cap = r->byfd_cap;
    while (cap <= fd)
        cap *= 2;
    Pair **b = realloc(r->byfd, (size_t)cap * sizeof(Pair *));
    if (b == NULL)
        return -1;
    memset(b + r->byfd_cap, 0, (size_t)(cap - r->byfd_cap) * sizeof(Pair *));
    r->byfd = b;
    r->byfd_cap = cap;
    return 0;
}

static PyObject *Relay_add(Relay *self, PyObject *args) {
    long long token;
    int down_fd, up_fd;
    unsigned int mask_down, mask_up;
    Py_buffer first;
    if (!PyArg_ParseTuple(args, "LiiIIy*", &token, &down_fd, &up_fd, &mask_down, &mask_up,
                          &first))
        return NULL;
    if (self->byfd == NULL || down_fd < 0 || up_fd < 0 || down_fd == up_fd) {
        PyBuffer_Release(&first);
        PyErr_SetString(PyExc_ValueError, "bad descriptors (or an uninitialised Relay)");
        return NULL;
    }
    if (grow_byfd(self, down_fd > up_fd ? down_fd : up_fd) < 0) {
        PyBuffer_Release(&first);
        return PyErr_NoMemory();
    }
    if (self->byfd[down_fd] != NULL || self->byfd[up_fd] != NULL) {
        PyBuffer_Release(&first);
        PyErr_SetString(PyExc_ValueError, "descriptor handed over twice");
        return NULL;
    }
    Pair *p = calloc(1, sizeof(Pair));
    char *pending = NULL;
    if (p != NULL && first.len > 0) {
        pending = malloc((size_t)first.len);
        if (pending != NULL)
            memcpy(pending, first.buf, (size_t)first.len);
    }
    if (p == NULL || (first.len > 0 && pending == NULL)) {
        PyBuffer_Release(&first);
        free(p);
        return PyErr_NoMemory();
    }
    p->token = token;
    p->down_fd = down_fd;
    p->up_fd = up_fd;
    p->mask_down = mask_down;
    p->mask_up = mask_up;
    p->to_up.src = down_fd;
    p->to_up.dst = up_fd;
    p->to_up.pending = pending;
    p->to_up.pending_len = (size_t)first.len;
    p->to_down.src = up_fd;
    p->to_down.dst = down_fd;
    p->to_up.pipe_r = p->to_up.pipe_w = p->to_down.pipe_r = p->to_down.pipe_w = -1;
    p->idle_since = now_ns();
    PyBuffer_Release(&first);
    /* from here on the pair owns both sockets: every failure closes it with a record */
    p->next = self->head;
    if (self->head)
        self->head->prev = p;
    self->head = p;
    self->active++;
    self->byfd[down_fd] = p;
    self->byfd[up_fd] = p;
    if (pipe_get(self, &p->to_up.pipe_r, &p->to_up.pipe_w) < 0 ||
        pipe_get(self, &p->to_down.pipe_r, &p->to_down.pipe_w) < 0) {
        close_pair(self, p, DONE_ERROR);
        Py_RETURN_NONE;
    }
    /* send the hello now; reading either side waits for epoll (the client waits for the
     * server's answer) */
    Direction *d = &p->to_up;
    if (d->pending_len) {
        ssize_t n = send(d->dst, d->pending, d->pending_len, MSG_NOSIGNAL);
        if (n < 0 && !is_again(errno)) {
            d->broken = 1;
            close_pair(self, p, DONE_ERROR);
            Py_RETURN_NONE;
        }
        if (n > 0)
            d->pending_off = (size_t)n;
        d->want_out = d->pending_off < d->pending_len;
    }
    if (set_masks(self, p) < 0)
        close_pair(self, p, DONE_ERROR);
    Py_RETURN_NONE;
}

static PyObject *take_done(Relay *r) {
    PyObject *out = PyList_New((Py_ssize_t)r->done_n);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < r->done_n; i++) {
        Done *d = &r->done[i];
        PyObject *t = Py_BuildValue("(LKKiii)", d->token, d->up, d->down, d->down_eof,
                                    d->up_eof, d->reason);
        if (t == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, t);
    }
    r->done_n = 0;
    return out;
}

static PyObject *Relay_poll(Relay *self, PyObject *args) {
    double timeout;
    if (!PyArg_ParseTuple(args, "d", &timeout))
        return NULL;
    if (self->byfd == NULL) {
        PyErr_SetString(PyExc_ValueError, "uninitialised Relay");
        return NULL;
    }
    if (timeout < 0)
        timeout = 0;
    struct epoll_event evs[MAX_EVENTS];
    /* events for descriptors Python owns, kept as plain pairs until the GIL is back */
    int fds[MAX_EVENTS];
    uint32_t masks[MAX_EVENTS];
    int n_py = 0;
    int err = 0;
    int64_t start = now_ns();
    int64_t deadline = start + (int64_t)(timeout * 1e9);
    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        int64_t now = now_ns();
        int64_t until = deadline;
        if (self->done_n && self->oldest_done + self->hold_ns < until)
            until = self->oldest_done + self->hold_ns;
        if (self->idle_ns && self->head && self->last_idle_scan + IDLE_SCAN_NS < until)
            until = self->last_idle_scan + IDLE_SCAN_NS;
        int wait_ms = until <= now ? 0 : (int)((until - now + 999999) / 1000000);
        int n = epoll_wait(self->epfd, evs, MAX_EVENTS, wait_ms);
        if (n < 0) {
            if (errno == EINTR)
                break; /* let Python run its signal handlers */
            err = errno;
            break;
        }
        now = now_ns();
        self->in_batch = 1;
        self->closed_n = 0;
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            Pair *p = (fd >= 0 && fd < self->byfd_cap) ? self->byfd[fd] : NULL;
            if (p != NULL)
                relay_event(self, p, fd, evs[i].events, now);
            else if (!was_closed(self, fd)) {
                fds[n_py] = fd;
                masks[n_py] = evs[i].events;
                n_py++;
            }
        }
        self->in_batch = 0;
        self->closed_n = 0;
        if (self->idle_ns && now - self->last_idle_scan >= IDLE_SCAN_NS)
            idle_scan(self, now);
        if (n_py || now >= deadline || self->oom)
            break;
        if (self->done_n && now - self->oldest_done >= self->hold_ns)
            break;
    }
    Py_END_ALLOW_THREADS
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (self->oom) {
        self->oom = 0;
        return PyErr_NoMemory();
    }
    PyObject *events = PyList_New(n_py);
    if (events == NULL)
        return NULL;
    for (int i = 0; i < n_py; i++) {
        PyObject *t = Py_BuildValue("(iI)", fds[i], masks[i]);
        if (t == NULL) {
            Py_DECREF(events);
            return NULL;
        }
        PyList_SET_ITEM(events, i, t);
    }
    PyObject *done = take_done(self);
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
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Pair *p = self->head; p != NULL; p = p->next) {
        if (!p->to_up.moved && !p->to_down.moved)
            continue;
        PyObject *t = Py_BuildValue("(LKK)", p->token, p->to_up.moved, p->to_down.moved);
        if (t == NULL || PyList_Append(out, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(t);
        p->to_up.moved = p->to_down.moved = 0;
    }
    return out;
}

static void close_everything(Relay *r) {
    while (r->head != NULL)
        close_pair(r, r->head, DONE_STOP);
    while (r->pool_n > 0) {
        r->pool_n--;
        close(r->pool[r->pool_n][0]);
        close(r->pool[r->pool_n][1]);
    }
}

static PyObject *Relay_close_all(Relay *self, PyObject *Py_UNUSED(ignored)) {
    if (self->byfd == NULL)
        return PyList_New(0);
    close_everything(self);
    return take_done(self);
}

static PyObject *Relay_get_active(Relay *self, void *Py_UNUSED(closure)) {
    return PyLong_FromSsize_t(self->active);
}

static void Relay_dealloc(Relay *self) {
    if (self->byfd != NULL)
        close_everything(self);
    free(self->byfd);
    free(self->done);
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
    .m_doc = "The loop data path's relay phase in C (see relaynative.py).",
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

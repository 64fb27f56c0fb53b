/* The gateway's compiled relay engine (see relay.h). */
#define _GNU_SOURCE
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 8                 /* pump rounds per call, for fairness between pairs */
#define SHORT_READ (64 * 1024)   /* a read below this most likely drained the socket */
#define READ_MAX (1 << 20)       /* bytes asked of one splice from a socket */
#define IDLE_SCAN_NS 1000000000LL
#define SPLICE_FLAGS (SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
#define PARKED 0xFFFFFFFFu       /* a socket's mask while it is out of the epoll set */

typedef Engine Relay;

int64_t engine_now(void) {
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

/* Room for one record per live pair is reserved when the pair is added (reserve_done), so
 * recording an end never fails and no pair can end unreported. */
static void record_done(Relay *r, Pair *p, int reason) {
    if (r->done_n == 0)
        r->oldest_done = engine_now();
    Done *d = &r->done[r->done_n++];
    d->token = p->token;
    d->up = p->to_up.moved;
    d->down = p->to_down.moved;
    d->down_eof = p->to_up.finished;
    d->up_eof = p->to_down.finished;
    d->reason = reason;
}

static int reserve_done(Relay *r) {
    size_t need = r->done_n + (size_t)r->active + 1;
    if (need <= r->done_cap)
        return 0;
    size_t cap = r->done_cap ? r->done_cap : 64;
    while (cap < need)
        cap *= 2;
    Done *d = realloc(r->done, cap * sizeof(Done));
    if (d == NULL)
        return -1;
    r->done = d;
    r->done_cap = cap;
    return 0;
}

static void close_pair(Relay *r, Pair *p, int reason) {
    record_done(r, p, reason);
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

/* A write toward the direction's destination failed: EAGAIN waits for EPOLLOUT (0); anything
 * else breaks the direction (-1). */
static int write_failed(Direction *d) {
    if (is_again(errno)) {
        d->want_out = 1;
        return 0;
    }
    d->broken = 1;
    return -1;
}

/* Move what can move now without blocking. Returns 1 if a byte moved, 0 if not, -1 on a socket
 * error (the direction is then broken: its pipe's content is unknown). */
static int pump(Direction *d, Direction *other) {
    int progress = 0, is_short = 0;
    for (int round = 0; round < ROUNDS; round++) {
        if (d->pending_off < d->pending_len) {
            ssize_t n = send(d->dst, d->pending + d->pending_off,
                             d->pending_len - d->pending_off, MSG_NOSIGNAL);
            if (n < 0)
                return write_failed(d) < 0 ? -1 : progress;
            d->pending_off += (size_t)n; /* counted by the Python side already */
            progress = 1;
            if (d->pending_off < d->pending_len) {
                d->want_out = 1;
                return progress;
            }
        }
        if (d->in_pipe) {
            ssize_t n = splice(d->pipe_r, NULL, d->dst, NULL, d->in_pipe, SPLICE_FLAGS);
            if (n < 0)
                return write_failed(d) < 0 ? -1 : progress;
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

int engine_init(Engine *e, int epfd, int pipe_size, int64_t idle_ns, int64_t hold_ns) {
    memset(e, 0, sizeof *e);
    e->epfd = epfd;
    e->pipe_size = pipe_size;
    e->idle_ns = idle_ns;
    e->hold_ns = hold_ns;
    e->byfd_cap = 1024;
    e->byfd = calloc((size_t)e->byfd_cap, sizeof(Pair *));
    if (e->byfd == NULL)
        return -1;
    e->last_idle_scan = engine_now();
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

int engine_add(Engine *e, long long token, int down_fd, int up_fd, uint32_t mask_down,
               uint32_t mask_up, const char *first, size_t first_len) {
    if (down_fd < 0 || up_fd < 0 || down_fd == up_fd) {
        errno = EINVAL;
        return -1;
    }
    if (grow_byfd(e, down_fd > up_fd ? down_fd : up_fd) < 0) {
        errno = ENOMEM;
        return -1;
    }
    if (e->byfd[down_fd] != NULL || e->byfd[up_fd] != NULL) {
        errno = EEXIST; /* handed over twice: one of them is the engine's */
        return -1;
    }
    if (reserve_done(e) < 0) {
        errno = ENOMEM;
        return -1;
    }
    Pair *p = calloc(1, sizeof(Pair));
    char *pending = NULL;
    if (p != NULL && first_len > 0) {
        pending = malloc(first_len);
        if (pending != NULL)
            memcpy(pending, first, first_len);
    }
    if (p == NULL || (first_len > 0 && pending == NULL)) {
        free(p);
        errno = ENOMEM;
        return -1;
    }
    p->token = token;
    p->down_fd = down_fd;
    p->up_fd = up_fd;
    p->mask_down = mask_down;
    p->mask_up = mask_up;
    p->to_up.src = down_fd;
    p->to_up.dst = up_fd;
    p->to_up.pending = pending;
    p->to_up.pending_len = first_len;
    p->to_down.src = up_fd;
    p->to_down.dst = down_fd;
    p->to_up.pipe_r = p->to_up.pipe_w = p->to_down.pipe_r = p->to_down.pipe_w = -1;
    p->idle_since = engine_now();
    /* from here on the pair owns both sockets: every failure closes it with a record */
    p->next = e->head;
    if (e->head)
        e->head->prev = p;
    e->head = p;
    e->active++;
    e->byfd[down_fd] = p;
    e->byfd[up_fd] = p;
    if (pipe_get(e, &p->to_up.pipe_r, &p->to_up.pipe_w) < 0 ||
        pipe_get(e, &p->to_down.pipe_r, &p->to_down.pipe_w) < 0) {
        close_pair(e, p, DONE_ERROR);
        return 0;
    }
    /* send the hello now; reading either side waits for epoll (the client waits for the
     * server's answer) */
    Direction *d = &p->to_up;
    if (d->pending_len) {
        ssize_t n = send(d->dst, d->pending, d->pending_len, MSG_NOSIGNAL);
        if (n < 0 && !is_again(errno)) {
            d->broken = 1;
            close_pair(e, p, DONE_ERROR);
            return 0;
        }
        if (n > 0)
            d->pending_off = (size_t)n;
        d->want_out = d->pending_off < d->pending_len;
    }
    if (set_masks(e, p) < 0)
        close_pair(e, p, DONE_ERROR);
    return 0;
}

int engine_wait(Engine *e, int64_t deadline, int *fds, uint32_t *masks, int *n_out) {
    struct epoll_event evs[MAX_EVENTS];
    int n_py = 0, err = 0;
    for (;;) {
        int64_t now = engine_now();
        int64_t until = deadline;
        if (e->done_n && e->oldest_done + e->hold_ns < until)
            until = e->oldest_done + e->hold_ns;
        if (e->idle_ns && e->head && e->last_idle_scan + IDLE_SCAN_NS < until)
            until = e->last_idle_scan + IDLE_SCAN_NS;
        int wait_ms = until <= now ? 0 : (int)((until - now + 999999) / 1000000);
        int n = epoll_wait(e->epfd, evs, MAX_EVENTS, wait_ms);
        if (n < 0) {
            err = errno;
            break;
        }
        now = engine_now();
        e->in_batch = 1;
        e->closed_n = 0;
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            Pair *p = (fd >= 0 && fd < e->byfd_cap) ? e->byfd[fd] : NULL;
            if (p != NULL)
                relay_event(e, p, fd, evs[i].events, now);
            else if (!was_closed(e, fd)) {
                fds[n_py] = fd;
                masks[n_py] = evs[i].events;
                n_py++;
            }
        }
        e->in_batch = 0;
        e->closed_n = 0;
        if (e->idle_ns && now - e->last_idle_scan >= IDLE_SCAN_NS)
            idle_scan(e, now);
        if (n_py || now >= deadline)
            break;
        if (e->done_n && now - e->oldest_done >= e->hold_ns)
            break;
    }
    *n_out = n_py;
    return err;
}

void engine_close_all(Engine *e) {
    while (e->head != NULL)
        close_pair(e, e->head, DONE_STOP);
    while (e->pool_n > 0) {
        e->pool_n--;
        close(e->pool[e->pool_n][0]);
        close(e->pool[e->pool_n][1]);
    }
}

void engine_free(Engine *e) {
    if (e->byfd != NULL)
        engine_close_all(e);
    free(e->byfd);
    free(e->done);
    e->byfd = NULL;
    e->done = NULL;
    e->done_n = e->done_cap = 0;
}

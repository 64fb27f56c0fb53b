/* The gateway's compiled relay engine: socket pairs handed over by the loop data path, relayed
 * with splice(2) without the interpreter. No Python here: the CPython type in module.c drives it.
 *
 * The Python loop (wanfedtx/gateway/loop.py) accepts, reads the ClientHello, routes and connects;
 * once a connection relays, both sockets become a Pair here (engine_add). From then on the
 * engine moves the bytes socket -> pipe -> socket, forwards each FIN as shutdown(SHUT_WR) once
 * its pipe is drained, closes the pair when both directions have ended (or on a socket error, a
 * hang-up with nothing to move, or the idle timeout), and keeps a Done record of each finished
 * pair for the Python side.
 *
 * engine_wait replaces epoll_wait for the loop thread: it waits on the loop's own epoll set,
 * handles the events of handed-over sockets itself, and returns as soon as an event for a
 * descriptor it does not own arrives (the listener, the wake pipe, a connection in its hello),
 * the deadline passes, or a Done record has waited the hold time. A pump has the semantics of
 * pump.py's Direction.pump (8 rounds per call for fairness, no read after a short one, EPOLLOUT
 * while a pipe holds bytes), and the epoll masks and close rules are those of loop.py's
 * _relay_event, so both relays behave the same to a peer.
 *
 * One thread only: every function runs in the loop thread that owns the epoll set.
 */
#ifndef WANFED_RELAY_H
#define WANFED_RELAY_H

#include <stddef.h>
#include <stdint.h>

#define MAX_EVENTS 256           /* epoll events per wait */
#define POOL_KEEP 32             /* idle pipes kept for reuse */

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
    int epfd;
    int pipe_size;
    int64_t idle_ns; /* 0: no idle timeout */
    int64_t hold_ns;
    Pair **byfd;
    int byfd_cap;
    Pair *head;
    long active;
    int pool[POOL_KEEP][2];
    int pool_n;
    Done *done;
    size_t done_n, done_cap;
    int64_t oldest_done;
    int64_t last_idle_scan;
    int closed[2 * MAX_EVENTS + 2]; /* sockets closed while handling the current batch */
    int closed_n;
    int in_batch;
} Engine;

int64_t engine_now(void);
/* 0, or -1 (out of memory). */
int engine_init(Engine *e, int epfd, int pipe_size, int64_t idle_ns, int64_t hold_ns);
/* Take over a relaying pair and send ``first`` upstream: 0 (the pair owns both sockets now and
 * any later failure closes it with a record), or -1 with errno EINVAL (bad descriptors) or
 * ENOMEM, the descriptors then still the caller's, or EEXIST (one of them is already a pair's:
 * a caller's bug). */
int engine_add(Engine *e, long long token, int down_fd, int up_fd, uint32_t mask_down,
               uint32_t mask_up, const char *first, size_t first_len);
/* Wait and relay until ``deadline`` (engine_now's clock), an event for a descriptor the engine
 * does not own (stored in fds/masks, at most MAX_EVENTS), or a record older than the hold.
 * Returns 0 or an errno (EINTR: return early so that Python runs its signal handlers). */
int engine_wait(Engine *e, int64_t deadline, int *fds, uint32_t *masks, int *n_out);
/* Close every pair (records with DONE_STOP) and the idle pipes. */
void engine_close_all(Engine *e);
void engine_free(Engine *e);

#endif

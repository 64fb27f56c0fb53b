"""The compiled relay (``_splicerelay.Relay``) on its own, on real loopback TCP pairs.

Each pair is client <-> downstream gateway socket and upstream gateway socket <-> server; the two
gateway sockets are registered in an epoll set and handed to the Relay, which then owns them.
Covered: bytes both ways byte for byte (the ``first`` bytes ahead of the client's, a 4 MiB
transfer through a one-page pipe with backpressure, a ``first`` bigger than the socket buffers),
``take_moved``; half-closes each way and the clean end; resets; the idle timeout; ``close_all``
and dropping the Relay; events of descriptors not handed over; the ``hold`` of a finished
record; refused arguments (the descriptors then stay the caller's); descriptors above the first
table size. Driven by ``poll`` with short timeouts until a condition or a deadline.

Skipped where the module was not built, except in CI (``CI=true``), where it must be.
"""

from __future__ import annotations

import fcntl
import os
import resource
import select
import socket
import struct
import termios
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from loop_support import tcp_pair

from wanfedtx.gateway import relaynative

IN_CI = os.environ.get("CI") == "true"
if not relaynative.available() and not IN_CI:
    pytest.skip("the compiled relay is not built (no C compiler at install time)",
                allow_module_level=True)

# None in CI without the module: every test then fails
sr: Any = relaynative._splicerelay  # type: ignore[attr-defined]
EPOLLIN = select.EPOLLIN
MiB = 1 << 20


def pattern(n: int, seed: int = 0) -> bytes:
    """``n`` bytes whose period (251, a prime) shows a lost, doubled or shifted chunk."""
    block = bytes((i * 7 + seed) % 251 for i in range(251))
    return (block * (n // 251 + 1))[:n]


def readable_bytes(s: socket.socket) -> int:
    buf = fcntl.ioctl(s.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return int(struct.unpack("i", buf)[0])


def set_buffers(s: socket.socket, snd: int | None = None, rcv: int | None = None) -> None:
    """Fix a socket's buffer sizes (which also stops their autotuning)."""
    if snd is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, snd)
    if rcv is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcv)


def reset(s: socket.socket) -> None:
    """Close with a RST (SO_LINGER 0)."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


class End:
    """A test-side socket (client or server): sends what it is given, reads while ``reading``."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.out = bytearray()
        self.off = 0
        self.got = bytearray()
        self.eof = False
        self.reset = False
        self.reading = True
        self.blocked = False  # the last send attempt found the socket full

    def send(self, data: bytes) -> None:
        self.out += data

    @property
    def sent_all(self) -> bool:
        return self.off == len(self.out)

    def step(self) -> bool:
        """Send and read what can move now without blocking; True if something moved."""
        moved = False
        self.blocked = False
        view = memoryview(self.out)
        while self.off < len(self.out):
            try:
                n = self.sock.send(view[self.off:self.off + MiB])
            except BlockingIOError:
                self.blocked = True
                break
            except (BrokenPipeError, ConnectionResetError):
                self.eof = self.reset = True
                self.off = len(self.out)
                break
            self.off += n
            moved = True
        view.release()
        while self.reading and not self.eof:
            try:
                data = self.sock.recv(MiB)
            except BlockingIOError:
                break
            except ConnectionResetError:
                self.eof = self.reset = True
                break
            if not data:
                self.eof = True
                break
            self.got += data
            moved = True
        return moved


@dataclass
class Link:
    """One handed-over pair: the test's two ends and the Relay's two descriptors."""

    token: int
    client: End
    server: End
    down_fd: int
    up_fd: int
    inodes: tuple[int, int]

    def gateway_fds_closed(self) -> bool:
        """Whether both gateway descriptors are gone (a number reused since is another file)."""
        for fd, ino in zip((self.down_fd, self.up_fd), self.inodes, strict=True):
            try:
                if os.fstat(fd).st_ino == ino:
                    return False
            except OSError:
                pass
        return True


class Rig:
    """An epoll set, a Relay on it, and the pairs and sockets of one test."""

    def __init__(self, pipe_size: int = 65536, idle_timeout: float = 0.0,
                 hold: float = 0.0) -> None:
        self.ep = select.epoll()
        self.relay = sr.Relay(self.ep.fileno(), pipe_size, idle_timeout, hold)
        self.links: list[Link] = []
        self.socks: list[socket.socket] = []
        self.done: list[tuple[int, ...]] = []
        self.events: list[tuple[int, int]] = []

    def sockets(self) -> tuple[socket.socket, socket.socket, socket.socket, socket.socket]:
        """client, downstream gateway, upstream gateway, server (the test closes the ends)."""
        client, down = tcp_pair()
        up, server = tcp_pair()
        self.socks += [client, server]
        return client, down, up, server

    def hand_over(self, token: int, client: socket.socket, down: socket.socket,
                  up: socket.socket, server: socket.socket, first: bytes = b"") -> Link:
        for s in (down, up):
            self.ep.register(s.fileno(), EPOLLIN)
        inodes = (os.fstat(down.fileno()).st_ino, os.fstat(up.fileno()).st_ino)
        down_fd, up_fd = down.detach(), up.detach()
        self.relay.add(token, down_fd, up_fd, EPOLLIN, EPOLLIN, first)
        link = Link(token, End(client), End(server), down_fd, up_fd, inodes)
        self.links.append(link)
        return link

    def pair(self, token: int, first: bytes = b"") -> Link:
        return self.hand_over(token, *self.sockets(), first=first)

    def poll(self, timeout: float = 0.01) -> None:
        events, done = self.relay.poll(timeout)
        self.events += events
        self.done += done

    def step(self, timeout: float = 0.01) -> None:
        self.poll(timeout)
        for link in self.links:
            link.client.step()
            link.server.step()

    def drive(self, until: Callable[[], bool], within: float = 2.0,
              timeout: float = 0.01) -> None:
        deadline = time.monotonic() + within
        for link in self.links:
            link.client.step()
            link.server.step()
        while not until():
            assert time.monotonic() < deadline, "the relay did not get there in time"
            self.step(timeout)

    def record(self, token: int) -> tuple[int, ...] | None:
        for d in self.done:
            if d[0] == token:
                return d
        return None

    def close(self) -> None:
        if self.relay is not None:
            self.relay.close_all()
        self.ep.close()
        for s in self.socks:
            s.close()


@pytest.fixture
def make_rig() -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(**kw: Any) -> Rig:
        rig = Rig(**kw)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    return make_rig()


def test_the_compiled_relay_is_built_where_ci_runs() -> None:
    if not IN_CI:
        pytest.skip("only CI must have the compiled relay")
    assert relaynative.available(), "CI builds wanfedtx/gateway/csrc (./dev setup)"


# -- bytes -------------------------------------------------------------------------------------


def test_bytes_cross_both_ways_after_the_first_bytes(rig: Rig) -> None:
    first = b"\x16\x03\x01 the hello the loop read "
    link = rig.pair(7, first)
    assert rig.relay.active == 1
    up, down = pattern(100_000, 1), pattern(50_000, 2)
    link.client.send(up)
    link.server.send(down)
    rig.drive(lambda: len(link.server.got) >= len(first) + len(up)
              and len(link.client.got) >= len(down))
    assert bytes(link.server.got) == first + up
    assert bytes(link.client.got) == down
    # the first bytes were counted by the Python side already
    assert rig.relay.take_moved() == [(7, len(up), len(down))]
    assert rig.relay.take_moved() == []
    link.client.send(b"more")
    rig.drive(lambda: link.server.got.endswith(b"more"))
    assert rig.relay.take_moved() == [(7, 4, 0)]
    assert rig.done == []
    assert rig.relay.active == 1


@pytest.mark.parametrize("way", ["upstream", "downstream"])
def test_four_mib_through_a_one_page_pipe_with_backpressure(make_rig: Callable[..., Rig],
                                                            way: str) -> None:
    rig = make_rig(pipe_size=4096)
    client, down, up, server = rig.sockets()
    for s in (client, down, up, server):
        set_buffers(s, snd=64 * 1024, rcv=64 * 1024)
    link = rig.hand_over(3, client, down, up, server)
    sender, reader = (link.client, link.server) if way == "upstream" else (link.server,
                                                                         link.client)
    payload = pattern(4 * MiB, 3)
    sender.send(payload)
    reader.reading = False
    moved = 0

    def count() -> None:
        nonlocal moved
        for token, to_up, to_down in rig.relay.take_moved():
            assert token == 3
            moved += to_up + to_down

    # the reader does not read: every buffer and the pipe fill, then nothing moves
    deadline = time.monotonic() + 3
    quiet = 0
    while quiet < 3:
        assert time.monotonic() < deadline, "the relay never stalled"
        sender.step()
        before = moved
        rig.poll(0.01)
        count()
        quiet = quiet + 1 if sender.blocked and moved == before else 0
    assert not sender.sent_all  # backpressure held the rest back at the sender
    assert 0 < moved < len(payload)
    assert readable_bytes(reader.sock) > 0
    # the reader drains: the rest flows (EPOLLOUT on the full side)
    reader.reading = True
    deadline = time.monotonic() + 5
    while len(reader.got) < len(payload):
        assert time.monotonic() < deadline, f"{len(reader.got)} of {len(payload)} bytes"
        rig.step(0.002)
        count()
    count()
    assert bytes(reader.got) == payload
    assert moved == len(payload)
    assert rig.done == []


def test_a_first_payload_bigger_than_the_socket_buffers_arrives_whole(rig: Rig) -> None:
    client, down, up, server = rig.sockets()
    set_buffers(up, snd=256 * 1024)
    set_buffers(server, rcv=256 * 1024)
    first = pattern(8 * MiB, 4)
    started = time.monotonic()
    link = rig.hand_over(9, client, down, up, server, first)
    assert time.monotonic() - started < 0.5  # add does not wait for the server
    link.server.reading = False
    link.client.send(b"after the first")
    for _ in range(5):
        rig.step()
    assert 0 < readable_bytes(server) < len(first)  # the server has only part of it
    assert rig.done == []
    link.server.reading = True
    rig.drive(lambda: len(link.server.got) >= len(first) + 15, within=5, timeout=0.002)
    assert bytes(link.server.got) == first + b"after the first"
    assert rig.relay.take_moved() == [(9, 15, 0)]
    assert rig.relay.active == 1


# -- ends --------------------------------------------------------------------------------------


@pytest.mark.parametrize("first_to_end", ["client", "server"])
def test_half_close_each_way_then_a_clean_end(rig: Rig, first_to_end: str) -> None:
    link = rig.pair(5)
    ender, other = ((link.client, link.server) if first_to_end == "client"
                    else (link.server, link.client))
    ender.send(b"request")
    rig.drive(lambda: ender.sent_all)
    ender.sock.shutdown(socket.SHUT_WR)
    rig.drive(lambda: other.eof)
    assert bytes(other.got) == b"request"
    assert not other.reset
    # the other way is still open
    assert rig.relay.active == 1
    assert rig.done == []
    other.send(b"the answer")
    rig.drive(lambda: bytes(ender.got) == b"the answer")
    assert not ender.eof
    other.sock.shutdown(socket.SHUT_WR)
    rig.drive(lambda: rig.record(5) is not None and ender.eof)
    to_up, to_down = (7, 10) if first_to_end == "client" else (10, 7)
    assert rig.done == [(5, to_up, to_down, 1, 1, sr.DONE_CLEAN)]
    assert bytes(ender.got) == b"the answer"
    assert not ender.reset
    assert link.gateway_fds_closed()
    assert rig.relay.active == 0
    assert rig.relay.take_moved() == []


def test_both_fins_at_once_end_cleanly(rig: Rig) -> None:
    link = rig.pair(6, b"hi")
    link.client.send(b"up")
    link.server.send(b"down")
    link.client.step()
    link.server.step()
    link.client.sock.shutdown(socket.SHUT_WR)
    link.server.sock.shutdown(socket.SHUT_WR)
    rig.drive(lambda: link.client.eof and link.server.eof and rig.record(6) is not None)
    assert bytes(link.server.got) == b"hiup"
    assert bytes(link.client.got) == b"down"
    assert rig.done == [(6, 2, 4, 1, 1, sr.DONE_CLEAN)]
    assert link.gateway_fds_closed()


@pytest.mark.parametrize("side", ["client", "server"])
def test_a_reset_ends_the_pair_with_an_error_record(rig: Rig, side: str) -> None:
    link = rig.pair(11, b"hello")
    link.client.send(b"x" * 1000)
    link.server.send(b"y" * 1000)
    rig.drive(lambda: len(link.server.got) == 1005 and len(link.client.got) == 1000)
    gone, other = (link.client, link.server) if side == "client" else (link.server,
                                                                      link.client)
    gone.send(b"unread")
    gone.step()
    rig.socks.remove(gone.sock)
    reset(gone.sock)
    other.send(b"z" * 1000)  # it may write into a socket the relay is closing
    deadline = time.monotonic() + 2
    while rig.record(11) is None or not other.eof:
        assert time.monotonic() < deadline, "no record, or the other side was never told"
        rig.poll(0.01)
        other.step()
    rec = rig.record(11)
    assert rec is not None
    assert rec[5] in (sr.DONE_ERROR, sr.DONE_HANGUP)
    assert link.gateway_fds_closed()
    assert rig.relay.active == 0
    assert len(rig.done) == 1
    rig.links.clear()  # one end is closed already


def test_an_upstream_gone_before_the_hand_over_ends_with_an_error_record(rig: Rig) -> None:
    client, down, up, server = rig.sockets()
    rig.socks.remove(server)
    reset(server)
    select.select([up], [], [], 1.0)  # the RST has arrived
    link = rig.hand_over(12, client, down, up, server, b"hello")
    rig.links.clear()  # the server end is closed already: nothing to step
    rig.drive(lambda: rig.record(12) is not None)
    assert rig.done == [(12, 0, 0, 0, 0, sr.DONE_ERROR)]
    assert link.gateway_fds_closed()
    assert rig.relay.active == 0
    link.client.step()
    assert link.client.eof


def test_an_idle_pair_times_out_and_a_busy_one_does_not(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(idle_timeout=0.2, hold=0.0)
    idle = rig.pair(1)
    busy = rig.pair(2)
    ticks = 0

    def until() -> bool:
        nonlocal ticks
        ticks += 1
        busy.client.send(b".")
        return rig.record(1) is not None and idle.client.eof and idle.server.eof

    started = time.monotonic()
    rig.drive(until, within=2.5)
    assert time.monotonic() - started < 2.5  # the C side scans once a second
    assert rig.done == [(1, 0, 0, 0, 0, sr.DONE_IDLE)]
    assert idle.gateway_fds_closed()
    assert rig.relay.active == 1
    rig.drive(lambda: len(busy.server.got) == ticks)
    assert rig.record(2) is None


# -- stopping ----------------------------------------------------------------------------------


def test_close_all_stops_every_live_pair(rig: Rig) -> None:
    a = rig.pair(21)
    b = rig.pair(22, b"first")
    a.client.send(b"abc")
    rig.drive(lambda: a.server.got == b"abc" and b.server.got == b"first")
    done = rig.relay.close_all()
    assert sorted(done) == [(21, 3, 0, 0, 0, sr.DONE_STOP), (22, 0, 0, 0, 0, sr.DONE_STOP)]
    assert rig.relay.active == 0
    assert a.gateway_fds_closed() and b.gateway_fds_closed()
    rig.drive(lambda: all(e.eof for e in (a.client, a.server, b.client, b.server)))
    assert rig.relay.close_all() == []
    assert rig.relay.poll(0) == ([], [])


def test_dropping_the_relay_closes_its_pairs(rig: Rig) -> None:
    link = rig.pair(31)
    rig.relay = None  # the only reference: dealloc closes every pair
    deadline = time.monotonic() + 2
    while not (link.client.eof and link.server.eof):
        assert time.monotonic() < deadline
        select.select([link.client.sock, link.server.sock], [], [], 0.05)
        link.client.step()
        link.server.step()
    assert link.gateway_fds_closed()


def test_a_finished_pair_ends_a_long_poll_after_its_hold(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(hold=0.05)
    link = rig.pair(41)
    link.client.sock.shutdown(socket.SHUT_WR)
    link.server.sock.shutdown(socket.SHUT_WR)
    started = time.monotonic()
    events, done = rig.relay.poll(5.0)
    assert 0.04 <= time.monotonic() - started < 1.0
    assert events == []
    assert done == [(41, 0, 0, 1, 1, sr.DONE_CLEAN)]


# -- the loop's own descriptors ----------------------------------------------------------------


def test_events_of_descriptors_not_handed_over_come_back(rig: Rig) -> None:
    link = rig.pair(51)
    mine, peer = tcp_pair()
    rig.socks += [mine, peer]
    rig.ep.register(mine.fileno(), EPOLLIN)
    # nothing for Python: the poll lasts its timeout
    started = time.monotonic()
    assert rig.relay.poll(0.1) == ([], [])
    assert time.monotonic() - started >= 0.09
    # relayed bytes do not wake Python either
    link.client.send(b"relayed")
    link.client.step()
    started = time.monotonic()
    assert rig.relay.poll(0.1) == ([], [])
    assert time.monotonic() - started >= 0.09
    link.server.step()
    assert link.server.got == b"relayed"
    # an event for Python's socket does, at once, beside relayed traffic
    link.client.send(b" again")
    link.client.step()
    peer.send(b"wake")
    started = time.monotonic()
    events, done = rig.relay.poll(5.0)
    assert time.monotonic() - started < 1.0
    assert events == [(mine.fileno(), EPOLLIN)]
    assert done == []
    rig.drive(lambda: link.server.got == b"relayed again")
    assert all(fd == mine.fileno() for fd, _ in rig.events)
    assert mine.recv(16) == b"wake"


# -- refused arguments -------------------------------------------------------------------------


def test_bad_descriptors_are_refused_and_stay_the_callers(rig: Rig) -> None:
    live = rig.pair(61)
    _, down, up, _ = rig.sockets()
    rig.socks += [down, up]  # never handed over: the test closes them
    for s in (down, up):
        rig.ep.register(s.fileno(), EPOLLIN)
    d, u = down.fileno(), up.fileno()
    open_before = len(os.listdir("/proc/self/fd"))
    for down_fd, up_fd in [(d, d), (-1, u), (d, -1), (-5, -6)]:
        with pytest.raises(ValueError):
            rig.relay.add(62, down_fd, up_fd, EPOLLIN, EPOLLIN, b"first")
    # one of them already a live pair's: the caller's bug, not a bad argument to refuse
    for down_fd, up_fd in [(d, live.up_fd), (live.down_fd, u)]:
        with pytest.raises(RuntimeError, match="handed over twice"):
            rig.relay.add(62, down_fd, up_fd, EPOLLIN, EPOLLIN, b"first")
    assert rig.relay.active == 1
    assert len(os.listdir("/proc/self/fd")) == open_before  # no pipe, nothing closed
    for fd in (d, u):
        os.fstat(fd)  # still open: the caller closes them
    # the live pair is untouched
    live.client.send(b"still")
    rig.drive(lambda: live.server.got == b"still")
    assert rig.done == []


@pytest.mark.parametrize(
    "args",
    [
        {"pipe_size": 0},
        {"pipe_size": -4096},
        {"idle_timeout": -1.0},
        {"hold": -0.1},
        {"epfd": -1},
    ],
)
def test_bad_settings_are_refused(args: dict[str, Any]) -> None:
    with select.epoll() as ep:
        kw: dict[str, Any] = {"epfd": ep.fileno(), "pipe_size": 4096, **args}
        with pytest.raises(ValueError):
            sr.Relay(**kw)


def test_a_relay_is_initialised_once(rig: Rig) -> None:
    with pytest.raises(RuntimeError):
        rig.relay.__init__(rig.ep.fileno(), 4096)


def test_no_other_thread_touches_the_relay_while_it_polls(rig: Rig) -> None:
    """``poll`` waits with the GIL released; a call from another thread meanwhile is refused
    instead of walking pairs the wait may be closing."""
    polling = threading.Thread(target=rig.relay.poll, args=(0.2,))
    polling.start()
    refused = None
    deadline = time.monotonic() + 5
    try:
        while refused is None and polling.is_alive() and time.monotonic() < deadline:
            try:
                rig.relay.take_moved()
            except RuntimeError as e:
                refused = e
    finally:
        polling.join()
    assert refused is not None and "another thread" in str(refused)
    assert rig.relay.take_moved() == []  # fine again once the poll returned


def test_descriptors_above_the_first_table_size_relay(rig: Rig) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2100:
        pytest.skip(f"RLIMIT_NOFILE {soft} is below the descriptor numbers used")
    client, down, up, server = rig.sockets()
    high = []
    for s, want in ((down, 1500), (up, 2049)):
        fd = want
        while True:
            try:
                os.fstat(fd)
                fd += 1
            except OSError:
                break
        os.dup2(s.fileno(), fd)
        s.close()  # the high number is the socket's only descriptor
        high.append(socket.socket(fileno=fd))
    link = rig.hand_over(71, client, high[0], high[1], server, b"hi ")
    assert link.down_fd >= 1500 and link.up_fd >= 2049
    link.client.send(b"there")
    link.server.send(b"back")
    rig.drive(lambda: link.server.got == b"hi there" and link.client.got == b"back")
    link.client.sock.shutdown(socket.SHUT_WR)
    link.server.sock.shutdown(socket.SHUT_WR)
    rig.drive(lambda: rig.record(71) is not None)
    assert rig.done == [(71, 5, 4, 1, 1, sr.DONE_CLEAN)]
    assert link.gateway_fds_closed()


# -- faults these tests found (fixed in the compiled and the Python relay) --------------------


def test_a_slow_reader_gets_every_byte_after_both_fins(make_rig: Callable[..., Rig]) -> None:
    """Both FINs are in, so epoll reports a hang-up on the upstream socket whatever its mask,
    while its last bytes still wait for the slow client: they are delivered, not dropped as a
    hang-up."""
    rig = make_rig(pipe_size=4096)
    client, down, up, server = rig.sockets()
    set_buffers(client, rcv=65536)
    set_buffers(down, snd=65536)
    set_buffers(up, rcv=4 * MiB)
    set_buffers(server, snd=4 * MiB)
    link = rig.hand_over(81, client, down, up, server)
    # the client sends its request and half-closes; the server has it all
    link.client.send(b"request")
    link.client.step()
    link.client.sock.shutdown(socket.SHUT_WR)
    rig.drive(lambda: link.server.eof)
    # the server answers more than the client's buffers hold, and closes; the client is slow
    answer = pattern(MiB, 8)
    link.server.send(answer)
    link.client.reading = False
    rig.drive(lambda: link.server.sent_all)
    link.server.sock.shutdown(socket.SHUT_WR)
    for _ in range(20):
        rig.step()
    link.client.reading = True
    rig.drive(lambda: link.client.eof, within=5, timeout=0.001)
    assert len(link.client.got) == len(answer)
    assert bytes(link.client.got) == answer
    assert rig.done == [(81, 7, len(answer), 1, 1, sr.DONE_CLEAN)]


def test_a_fin_after_seven_full_reads_is_forwarded(make_rig: Callable[..., Rig]) -> None:
    """The end of the stream read in the pump's last round (the fairness bound) is forwarded
    at once, not left waiting for an event that never comes."""
    rig = make_rig(pipe_size=65536)
    client, down, up, server = rig.sockets()
    for s in (client, down, up, server):
        set_buffers(s, snd=8 * MiB, rcv=8 * MiB)
    # 7 full pipes and the FIN wait in the gateway socket before the relay's first turn
    body = pattern(7 * 65536, 9)
    client.setblocking(True)
    client.sendall(body)
    client.shutdown(socket.SHUT_WR)
    client.setblocking(False)
    link = rig.hand_over(91, client, down, up, server)
    rig.drive(lambda: link.server.eof, within=0.5)
    assert bytes(link.server.got) == body

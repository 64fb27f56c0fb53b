"""WakePipe: wake-ups after close are no-ops and never write to a reused descriptor."""

from __future__ import annotations

import os
import select
import threading

from wanfedtx.gateway.loopthread import WakePipe


def test_wake_after_close_writes_nothing_to_a_reused_descriptor() -> None:
    ep = select.epoll()
    try:
        pipe = WakePipe(ep)
        write_end = pipe._w
        pipe.close()
        # a new pipe is likely to reuse the numbers just freed
        r, w = os.pipe2(os.O_NONBLOCK)
        try:
            pipe.wake(b"x")  # before the fix: EBADF, or a stray byte in the new pipe
            reused = write_end in (r, w)
            try:
                data = os.read(r, 10)
            except BlockingIOError:
                data = b""
            assert data == b"", f"stray wake byte (descriptor reused: {reused})"
        finally:
            os.close(r)
            os.close(w)
        pipe.close()  # closing twice is harmless
    finally:
        ep.close()


def test_wake_and_close_race_from_two_threads() -> None:
    for _ in range(2000):
        ep = select.epoll()
        pipe = WakePipe(ep)
        errors: list[BaseException] = []

        def waker(p: WakePipe = pipe, errors: list[BaseException] = errors) -> None:
            try:
                for _ in range(50):
                    p.wake(b"w")
            except BaseException as e:
                errors.append(e)

        t = threading.Thread(target=waker)
        t.start()
        pipe.close()
        t.join()
        ep.close()
        assert errors == []


def test_wake_is_drained_by_the_loop() -> None:
    ep = select.epoll()
    pipe = WakePipe(ep)
    try:
        for _ in range(100_000):  # more than a pipe holds: a full pipe is not an error
            pipe.wake(b"w")
        assert ep.poll(0)
        pipe.drain()
        assert ep.poll(0) == []
    finally:
        pipe.close()
        ep.close()

# -*- test-case-name: tests.integration.test_writenow -*-
"""Sending a small message at once instead of on the reactor's next turn.

Twisted's TCP ``write`` only buffers: the bytes go out when the reactor next finds the socket
writable, which costs an ``epoll_ctl`` to watch for writability, one more loop turn (an
``epoll_wait`` and the calls due) and an ``epoll_ctl`` to stop watching. Raft's messages
(AppendEntries and its answer) are on the path of every replicated write, one turn each; the
raft transport sends them with :func:`write_now`. (Not the HTTP answers: under load, sending
each at once lets clients come back sooner and the server handles fewer requests per turn,
12-20 % fewer GETs/s in docs/benchmarks.md.)

:func:`write_now` sends directly when nothing is queued on the connection (so the order of the
bytes is kept) and hands whatever the kernel did not take, or any error, to the transport's own
``write``, which then behaves exactly as before (buffering, flow control, a lost connection).
Anything that is not a plain Twisted TCP connection (TLS, a test transport), a connection that is
closing or aborted, or one with a pull producer gets ``write``.

:func:`push_out` sends what a connection already holds for this turn: the writes Twisted's TLS
layer is joining into one record (``BufferingTLSTransport`` flushes them only at the end of the
reactor turn), then whatever the TCP connection below has queued. The pooled RPC connection uses
it so that a long turn's calls do not all wait for its end (``wanfedtx.rpc.protocol``).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp


def write_now(transport: Any, data: bytes) -> None:
    """Write ``data`` to ``transport``, sending it immediately if nothing is queued ahead."""
    if _idle_tcp(transport):
        sent = transport.writeSomeData(data)  # at most SEND_LIMIT; 0 when the socket is full
        if isinstance(sent, int) and sent >= 0:
            if sent == len(data):
                return
            data = data[sent:]
        # else the connection is lost: write() buffers and doWrite reports the loss, as usual
    transport.write(data)


def push_out(transport: Any) -> None:
    """Send now what ``transport`` (a TCP connection, or Twisted's TLS over one) holds."""
    aggregator = getattr(transport, "_aggregator", None)  # twisted's BufferingTLSTransport
    if aggregator is not None:
        aggregator.flush()  # one TLS record, written to the TCP connection below
        transport = getattr(transport, "transport", None)
    if _open_tcp(transport) and (
        transport._tempDataLen or transport.offset != len(transport.dataBuffer)
    ):
        # what the reactor would do once the socket is writable; an error it returns is met
        # again by the reactor's own doWrite (the connection stays watched for writing)
        transport.doWrite()


def _open_tcp(transport: Any) -> bool:
    """A plain Twisted TCP connection, open for writing, without a pull producer."""
    if not isinstance(transport, tcp.Connection):
        return False
    producer_ok = transport.producer is None or bool(transport.streamingProducer)
    return bool(
        transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not getattr(transport, "_aborting", False)  # abortConnection(): write() drops it
        and not getattr(transport, "TLS", True)  # startTLS(): write() encrypts
        and producer_ok
    )


def _idle_tcp(transport: Any) -> bool:
    """True for a plain Twisted TCP connection that is open for writing, has nothing queued,
    and whose write() would only buffer (no TLS started on it, no pull producer that only
    ``doWrite`` would ask for more)."""
    return (
        _open_tcp(transport)
        and not transport._tempDataLen
        and transport.offset == len(transport.dataBuffer)
    )

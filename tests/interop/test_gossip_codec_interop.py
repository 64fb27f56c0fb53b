"""Our wire codec against real Go memberlist traffic (no core involved): push/pull join, probes,
acks, UDP and TCP user messages both ways, leave; plain and encrypted."""

from __future__ import annotations

import base64
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from gossip_gopeers import GoPeer

from wanfedtx.gossip import lzw, wire
from wanfedtx.gossip.security import decrypt_payload, encrypt_payload
from wanfedtx.gossip.stream import StreamReader, encode_stream

pytestmark = pytest.mark.interop
LOCAL = b"\x7f\x00\x00\x01"
KEY = bytes(range(16))


def test_lzw_byte_identical_with_go(mlpeer_bin: Path) -> None:
    import random
    import subprocess

    rng = random.Random(7)
    inputs = [
        b"",
        b"a",
        b"abracadabra" * 50,
        bytes(rng.randrange(256) for _ in range(5000)),
        bytes(rng.randrange(3) for _ in range(60000)),
        b"y" * 100000,
    ]
    for data in inputs:
        go = subprocess.run(
            [str(mlpeer_bin), "-lzw", "compress"], input=data, capture_output=True, check=True
        ).stdout
        assert lzw.compress(data) == go
        assert lzw.decompress(go) == data
        back = subprocess.run(
            [str(mlpeer_bin), "-lzw", "decompress"],
            input=lzw.compress(data),
            capture_output=True,
            check=True,
        ).stdout
        assert back == data


def recv_stream(conn: socket.socket, reader: StreamReader) -> object:
    while True:
        data = conn.recv(65536)
        assert data, "peer closed the stream before a whole message arrived"
        msg = reader.feed(data)
        if msg is not None:
            return msg


def _listen_tcp_and_udp() -> tuple[socket.socket, socket.socket]:
    """A listening TCP socket on a port the kernel picks and a UDP socket bound to the same
    port (memberlist's one port for both); retried when that UDP port is taken."""
    for _ in range(50):
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.bind(("127.0.0.1", 0))
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind(("127.0.0.1", lsock.getsockname()[1]))
        except OSError:
            udp.close()
            lsock.close()
            continue
        lsock.listen(4)
        lsock.settimeout(5)
        udp.settimeout(5)
        return lsock, udp
    raise AssertionError("no port free for both TCP and UDP on 127.0.0.1")


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_codec_against_go_memberlist(
    mlpeer_bin: Path, go_peers: Callable[..., GoPeer], encrypted: bool
) -> None:
    keys = [KEY] if encrypted else None
    lsock, udp = _listen_tcp_and_udp()
    port_py = lsock.getsockname()[1]
    args = ["-name", "a", "-port", "0", "-meta", "meta-a", "-state", "state-a"]
    if encrypted:
        args += ["-key", base64.b64encode(KEY).decode()]
    a = go_peers(mlpeer_bin, *args)
    port_a = a.wait_blocking(lambda e: e["event"] == "ready")["port"]

    def seal(packet: bytes) -> bytes:
        return encrypt_payload(1, KEY, packet) if keys else packet

    def open_packet(data: bytes) -> wire.Unpacked:
        if keys:
            data = decrypt_payload(keys, data)
        return wire.unpack_packet(wire.strip_crc(data))

    try:
        # 1. Join: our push/pull; Go's reply parsed incrementally (Go keeps the socket open).
        me = wire.PushNodeState("py", LOCAL, port_py, b"meta-py", 1, 0, wire.make_vsn())
        with socket.create_connection(("127.0.0.1", port_a), timeout=5) as c:
            c.sendall(
                encode_stream(
                    wire.PushPull(True, (me,), b"state-py").encode(), compress=True, keys=keys
                )
            )
            reply = recv_stream(c, StreamReader(keys=keys, require_encryption=encrypted))
        assert isinstance(reply, wire.PushPull)
        assert reply.join is True
        assert reply.user_state == b"state-a"
        by_name = {n.name: n for n in reply.nodes}
        assert by_name["a"].meta == b"meta-a"
        assert by_name["a"].port == port_a
        assert wire.vsn_tuple(by_name["a"].vsn)[:3] == (1, 5, 2)
        a.wait_blocking(lambda e: e["event"] == "join" and e["node"] == "py")
        assert a.find(lambda e: e["event"] == "join" and e["node"] == "py")["meta"] == "meta-py"  # type: ignore[index]
        a.wait_blocking(lambda e: e["event"] == "remote_state" and e["data"] == "state-py")

        # 2. Go probes us over UDP: ping with target name and Source* fields; we ack.
        seen: set[str] = set()
        pinged = False
        for _ in range(40):
            data, _src = udp.recvfrom(65536)
            got = open_packet(data)
            assert got.problems == []
            for m in got.messages:
                seen.add(type(m).__name__)
                if isinstance(m, wire.Ping):
                    assert m.node == "py"
                    assert m.source_node == "a"
                    assert m.source_port == port_a
                    ack = wire.AckResp(m.seq_no).encode()
                    udp.sendto(seal(ack), ("127.0.0.1", m.source_port))
                    pinged = True
            if pinged:
                break
        assert pinged, f"no ping from Go; saw {seen}"

        # 3. User messages to Go: UDP (with CRC, compressed) and TCP.
        udp.sendto(
            seal(wire.add_crc(wire.compress_message(b"\x08hello-udp"))), ("127.0.0.1", port_a)
        )
        with socket.create_connection(("127.0.0.1", port_a), timeout=5) as c:
            body = wire.UserMsgHeader(user_msg_len=9).encode() + b"hello-tcp"
            c.sendall(encode_stream(body, compress=False, keys=keys))
        a.wait_blocking(lambda e: e["event"] == "user_msg" and e["data"] == "hello-udp")
        a.wait_blocking(lambda e: e["event"] == "user_msg" and e["data"] == "hello-tcp")

        # 4. User messages from Go: TCP stream (compressed by Go) and UDP packet.
        a.send(cmd="send", node="py", data="from-go-tcp", tcp=True)
        conn, _ = lsock.accept()
        with conn:
            conn.settimeout(5)
            msg = recv_stream(conn, StreamReader(keys=keys, require_encryption=encrypted))
        assert msg == wire.UserMsg(b"from-go-tcp")
        a.send(cmd="send", node="py", data="from-go-udp", tcp=False)
        found = False
        for _ in range(40):
            data, _src = udp.recvfrom(65536)
            for m in open_packet(data).messages:
                if isinstance(m, wire.Ping):
                    udp.sendto(seal(wire.AckResp(m.seq_no).encode()), ("127.0.0.1", port_a))
                if m == wire.UserMsg(b"from-go-udp"):
                    found = True
            if found:
                break
        assert found

        # 5. Leave: dead about ourselves with From == Node.
        udp.sendto(seal(wire.Dead(1, "py", "py").encode()), ("127.0.0.1", port_a))
        a.wait_blocking(lambda e: e["event"] == "leave" and e["node"] == "py")
    finally:
        udp.close()
        lsock.close()

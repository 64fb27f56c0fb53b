"""Real ClientHellos from OpenSSL (pyOpenSSL memory BIO), and record re-framing helpers."""

from __future__ import annotations

from OpenSSL import SSL


def real_client_hello(
    sni: str | None = "pri.server.primary.consul", alpn: list[bytes] | None = None
) -> bytes:
    """The first flight OpenSSL sends for a client with this SNI and ALPN list."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    if sni is not None:
        conn.set_tlsext_host_name(sni.encode("ascii"))
    if alpn:
        conn.set_alpn_protos(alpn)
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        pass
    return conn.bio_read(65536)


def reframe(hello: bytes, fragment: int) -> bytes:
    """Split the handshake payload of a one-record hello into records of ``fragment`` bytes."""
    assert hello[0] == 22
    length = int.from_bytes(hello[3:5], "big")
    payload = hello[5 : 5 + length]
    out = bytearray()
    for i in range(0, len(payload), fragment):
        chunk = payload[i : i + fragment]
        out += bytes([22, 3, 1]) + len(chunk).to_bytes(2, "big") + chunk
    return bytes(out) + hello[5 + length :]

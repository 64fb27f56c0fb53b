# -*- test-case-name: tests.unit.gateway.test_gateway_clienthello -*-
"""Sans-IO TLS ClientHello reader: bytes in, SNI and ALPN (or a rejection reason) out.

Feed it whatever arrives on a fresh connection with :meth:`ClientHelloReader.receive_data`. It walks
TLS records (type 22, version 3.x, length 1..2**14), reassembles the handshake message across
records and segments, and once the whole ClientHello is present parses its extensions for
``server_name`` (RFC 6066) and ``application_layer_protocol_negotiation`` (RFC 7301). All bytes
received are kept in :attr:`ClientHelloReader.buffered` so a relay can replay them upstream
unchanged. Nothing here does I/O or reads a clock; the read deadline is the adapter's job.

Anything that is not a well-formed ClientHello gives a :class:`Rejected` with one of the reasons in
:data:`REJECT_REASONS`; the reader never raises on peer input.
"""

from __future__ import annotations

import struct
from typing import Final

import attrs

RECORD_HANDSHAKE: Final = 22
HANDSHAKE_CLIENT_HELLO: Final = 1
EXT_SERVER_NAME: Final = 0
EXT_ALPN: Final = 16
MAX_RECORD_LENGTH: Final = 2**14
#: Default cap on the ClientHello handshake message (header included). A current OpenSSL hello is
#: about 1.6 KB (2 KB with a post-quantum key share); Envoy's inspector also caps at 16 KiB-ish.
DEFAULT_MAX_HELLO_SIZE: Final = 16 * 1024

NOT_TLS: Final = "not_tls"
MALFORMED: Final = "malformed"
TOO_LARGE: Final = "too_large"
TIMEOUT: Final = "timeout"
CLOSED: Final = "closed"
REJECT_REASONS: Final = (NOT_TLS, MALFORMED, TOO_LARGE, TIMEOUT, CLOSED)


@attrs.frozen
class ClientHello:
    """What the gateway needs from a ClientHello."""

    server_name: str | None
    """The host_name from the SNI extension, lower-cased; None when absent."""
    alpn: tuple[str, ...]
    """The ALPN protocol names offered, in order (empty when the extension is absent)."""
    legacy_version: int
    """The ClientHello's legacy_version field (0x0303 for TLS 1.2 and 1.3)."""


@attrs.frozen
class Rejected:
    """The bytes are not an acceptable ClientHello; the connection must be closed."""

    reason: str
    """One of :data:`REJECT_REASONS`."""
    detail: str
    """What exactly was wrong, for the log line."""


class _Malformed(Exception):
    """Internal: raised by the body parser, turned into a Rejected."""


class ClientHelloReader:
    """Incremental reader of the first TLS flight of a connection."""

    def __init__(self, max_size: int = DEFAULT_MAX_HELLO_SIZE) -> None:
        if max_size < 64:
            raise ValueError(f"max_size {max_size} is too small for any ClientHello; use >= 64")
        self.max_size = max_size
        self._buf = bytearray()
        self._pos = 0  # offset of the next record header in _buf
        self._hs = bytearray()  # reassembled handshake bytes
        self._result: ClientHello | Rejected | None = None

    @property
    def buffered(self) -> bytes:
        """Every byte received so far, to be replayed to the upstream."""
        return bytes(self._buf)

    @property
    def result(self) -> ClientHello | Rejected | None:
        """The outcome so far: None while more bytes are needed."""
        return self._result

    def receive_data(self, data: bytes) -> ClientHello | Rejected | None:
        """Add bytes; return the hello, a rejection, or None if more bytes are needed.

        Once a result is returned, later calls keep returning it and only extend ``buffered``.
        """
        if self._result is None and not self._buf:
            whole = whole_hello(data, self.max_size)
            if whole is not None:
                self._buf += data
                self._result = whole
                return whole
        self._buf += data
        if self._result is None:
            self._result = self._advance()
        return self._result

    def _reject(self, reason: str, detail: str) -> Rejected:
        return Rejected(reason, detail)

    def _advance(self) -> ClientHello | Rejected | None:
        buf = self._buf
        if self._pos == 0:
            # Fail fast on the first bytes: a TLS connection starts with 0x16 0x03.
            if len(buf) >= 1 and buf[0] != RECORD_HANDSHAKE:
                return self._reject(NOT_TLS, f"first byte 0x{buf[0]:02x} is not a TLS handshake")
            if len(buf) >= 2 and buf[1] != 3:
                return self._reject(NOT_TLS, f"record version major {buf[1]} is not 3")
        while len(buf) - self._pos >= 5:
            p = self._pos
            rtype, major = buf[p], buf[p + 1]
            length = (buf[p + 3] << 8) | buf[p + 4]
            if rtype != RECORD_HANDSHAKE:
                return self._reject(MALFORMED, f"record type {rtype} inside the ClientHello")
            if major != 3:
                return self._reject(MALFORMED, f"record version major {major} is not 3")
            if length == 0 or length > MAX_RECORD_LENGTH:
                return self._reject(MALFORMED, f"record length {length} out of range")
            if len(buf) - p - 5 < length:
                return None  # buffering is bounded: one record <= 2**14 bytes at a time
            self._hs += buf[p + 5 : p + 5 + length]
            self._pos = p + 5 + length
            outcome = self._check_handshake()
            if outcome is not None:
                return outcome
        return None

    def _check_size(self) -> Rejected | None:
        hs_len = (self._hs[1] << 16) | (self._hs[2] << 8) | self._hs[3]
        if hs_len + 4 > self.max_size:
            return self._reject(
                TOO_LARGE, f"ClientHello of {hs_len + 4} bytes exceeds the cap of {self.max_size}"
            )
        return None

    def _check_handshake(self) -> ClientHello | Rejected | None:
        hs = self._hs
        if len(hs) < 4:
            return None
        if hs[0] != HANDSHAKE_CLIENT_HELLO:
            return self._reject(MALFORMED, f"handshake type {hs[0]} is not ClientHello")
        too_large = self._check_size()
        if too_large is not None:
            return too_large
        hs_len = (hs[1] << 16) | (hs[2] << 8) | hs[3]
        if len(hs) < 4 + hs_len:
            return None
        try:
            return parse_client_hello_body(bytes(hs[4 : 4 + hs_len]))
        except _Malformed as e:
            return self._reject(MALFORMED, str(e))


_HOST_NAME_BYTES: Final = bytes(range(0x21, 0x7F))  # printable ASCII without space
_EXT_HEADER: Final = struct.Struct("!HH").unpack_from  # extension type, length


def whole_hello(data: bytes, max_size: int) -> ClientHello | Rejected | None:
    """The usual first read: one handshake record holding the whole ClientHello, parsed in
    place (a Rejected if its body is malformed); None for anything else, which the reader's
    general path then takes (it gives the same answer for a whole hello, only slower)."""
    if len(data) < 9 or data[0] != RECORD_HANDSHAKE or data[1] != 3 or data[5] != 1:
        return None
    length = (data[3] << 8) | data[4]
    hs_len = (data[6] << 16) | (data[7] << 8) | data[8]
    if length > MAX_RECORD_LENGTH or len(data) < 5 + length or hs_len + 4 > length:
        return None
    if hs_len + 4 > max_size:
        return None
    try:
        return parse_client_hello_body(data[9 : 9 + hs_len])
    except _Malformed as e:
        return Rejected(MALFORMED, str(e))


def parse_client_hello_body(body: bytes) -> ClientHello:
    """Parse a ClientHello handshake body (without its 4-byte header); raise _Malformed.

    Written for the gateway's per-connection budget: bounds are checked inline (no helper call
    per field), and only the two extensions the gateway reads are copied out of the body.
    """
    n = len(body)
    if n < 35:
        raise _Malformed("ClientHello truncated in version/random")
    version = (body[0] << 8) | body[1]
    sid_len = body[34]
    if sid_len > 32:
        raise _Malformed(f"session id length {sid_len} > 32")
    pos = 35 + sid_len
    if pos + 2 > n:
        raise _Malformed("ClientHello truncated in session id")
    cs_len = (body[pos] << 8) | body[pos + 1]
    if cs_len < 2 or cs_len % 2:
        raise _Malformed(f"cipher suites length {cs_len} is invalid")
    pos += 2 + cs_len
    if pos + 1 > n:
        raise _Malformed("ClientHello truncated in cipher suites")
    comp_len = body[pos]
    if comp_len < 1:
        raise _Malformed("no compression methods")
    pos += 1 + comp_len
    if pos > n:
        raise _Malformed("ClientHello truncated in compression methods")
    if pos == n:
        return ClientHello(None, (), version)
    if pos + 2 > n:
        raise _Malformed("ClientHello truncated in extensions length")
    ext_total = (body[pos] << 8) | body[pos + 1]
    pos += 2
    if pos + ext_total != n:
        raise _Malformed("extensions length does not match the ClientHello length")
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    seen: set[int] = set()
    while pos < n:
        if pos + 4 > n:
            raise _Malformed("ClientHello truncated in extension header")
        etype, elen = _EXT_HEADER(body, pos)
        end = pos + 4 + elen
        if end > n:
            raise _Malformed(f"ClientHello truncated in extension {etype}")
        if etype in seen:
            raise _Malformed(f"extension {etype} appears twice")
        seen.add(etype)
        if etype == EXT_SERVER_NAME:
            server_name = _parse_sni(body[pos + 4 : end])
        elif etype == EXT_ALPN:
            alpn = _parse_alpn(body[pos + 4 : end])
        pos = end
    return ClientHello(server_name, alpn, version)


def _parse_sni(data: bytes) -> str | None:
    if len(data) == 0:
        return None  # a server's empty acknowledgement; tolerate it from clients too
    if len(data) < 2 or ((data[0] << 8) | data[1]) != len(data) - 2:
        raise _Malformed("server_name list length mismatch")
    pos = 2
    found: str | None = None
    while pos < len(data):
        if pos + 3 > len(data):
            raise _Malformed("server_name entry truncated")
        ntype = data[pos]
        nlen = (data[pos + 1] << 8) | data[pos + 2]
        pos += 3
        if pos + nlen > len(data):
            raise _Malformed("server_name entry truncated")
        name = data[pos : pos + nlen]
        pos += nlen
        if ntype != 0:
            continue
        if found is not None:
            raise _Malformed("more than one host_name in server_name")
        if nlen == 0 or nlen > 255:
            raise _Malformed(f"host_name length {nlen} is invalid")
        if name.translate(None, _HOST_NAME_BYTES):  # something left: not printable ASCII
            raise _Malformed("host_name holds bytes that are not printable ASCII")
        found = name.decode("ascii").lower().rstrip(".")
        if not found:
            raise _Malformed("host_name is only a dot")
    return found


def _parse_alpn(data: bytes) -> tuple[str, ...]:
    if len(data) < 2 or ((data[0] << 8) | data[1]) != len(data) - 2:
        raise _Malformed("ALPN list length mismatch")
    names: list[str] = []
    pos = 2
    if pos == len(data):
        raise _Malformed("empty ALPN list")
    while pos < len(data):
        plen = data[pos]
        pos += 1
        if plen == 0 or pos + plen > len(data):
            raise _Malformed("ALPN protocol name truncated or empty")
        names.append(data[pos : pos + plen].decode("latin-1"))
        pos += plen
    return tuple(names)

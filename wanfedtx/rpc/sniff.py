# -*- test-case-name: tests.unit.rpc.test_rpc_sniff -*-
"""Sans-IO first-byte sniffer of the :8300 port (the reference's ``PeekForTLS`` + type switch).

Feed it bytes with ``receive_data``; once it has seen the first byte it returns a decision and
keeps every byte it was given (nothing is consumed, so the peeked bytes are replayed intact):

* ``NativeTLS``: the first byte is above ``RPC_MAX_TYPE_VALUE`` and the server is mutual-TLS
  capable; ``data`` is the whole ClientHello prefix read so far.
* ``LegacyTLS``: type 3 (RPCTLS) or 7 (RPCTLSInsecure); ``data`` is what follows the type byte.
* ``Legacy``: any other type byte 0-7; ``data`` is what follows the type byte.
* ``Reject``: the connection must be closed; ``message`` is the reference's log message.

Inside legacy TLS (``inside_tls=True``) the sniffer reads the inner type byte: no native TLS, no
``verify_incoming`` check, and no nested TLS.
"""

from __future__ import annotations

import attrs

from wanfedtx.rpc.constants import RPC_MAX_TYPE_VALUE, RPCType

MSG_UNRECOGNIZED = "unrecognized RPC byte"
MSG_NON_TLS_VERIFY_INCOMING = "Non-TLS connection attempted with VerifyIncoming set"
MSG_NESTED_TLS = "TLS connection attempting to establish inner TLS connection"


@attrs.frozen
class NativeTLS:
    data: bytes


@attrs.frozen
class LegacyTLS:
    rpc_type: int
    data: bytes


@attrs.frozen
class Legacy:
    rpc_type: int
    data: bytes


@attrs.frozen
class Reject:
    message: str
    first_byte: int


Decision = NativeTLS | LegacyTLS | Legacy | Reject


def is_tls(first_byte: int) -> bool:
    """The reference's peek rule: a first byte above 7 starts a TLS record."""
    return first_byte > RPC_MAX_TYPE_VALUE


class Sniffer:
    """Decides what an accepted connection is from its first byte."""

    def __init__(
        self, *, mutual_tls_capable: bool, verify_incoming: bool, inside_tls: bool = False
    ) -> None:
        self._mutual_tls_capable = mutual_tls_capable
        self._verify_incoming = verify_incoming
        self._inside_tls = inside_tls
        self._decision: Decision | None = None

    @property
    def decision(self) -> Decision | None:
        return self._decision

    def receive_data(self, data: bytes) -> Decision | None:
        """Take bytes read from the connection; return the decision once the first byte is in.

        Call it only until it returns a decision; after that the connection belongs to whoever
        acts on the decision."""
        if self._decision is not None:
            raise RuntimeError("sniffer already decided; route later bytes to the handler")
        if not data:
            return None
        self._decision = self._decide(data)
        return self._decision

    def _decide(self, data: bytes) -> Decision:
        # Order as in the reference: native-TLS peek first (outer conn, capable server only),
        # then the VerifyIncoming check on the type byte, then the type switch.
        first = data[0]
        if is_tls(first) and self._mutual_tls_capable and not self._inside_tls:
            return NativeTLS(data)
        legacy_tls = first in (RPCType.TLS, RPCType.TLS_INSECURE)
        if self._verify_incoming and not self._inside_tls and not legacy_tls:
            return Reject(MSG_NON_TLS_VERIFY_INCOMING, first)
        if is_tls(first):
            return Reject(MSG_UNRECOGNIZED, first)
        rest = data[1:]
        if legacy_tls:
            if self._inside_tls:
                return Reject(MSG_NESTED_TLS, first)
            return LegacyTLS(first, rest)
        return Legacy(first, rest)

"""Sans-IO sniffer: the reference's peek rules and type switch."""

from __future__ import annotations

import pytest

from wanfedtx.rpc import sniff


def make(**kw: bool) -> sniff.Sniffer:
    args = {"mutual_tls_capable": True, "verify_incoming": False}
    args.update(kw)
    return sniff.Sniffer(**args)


@pytest.mark.parametrize("t", range(8))
def test_type_bytes_are_not_tls_and_bytes_are_kept(t: int) -> None:
    data = bytes([t]) + b"hello"
    assert not sniff.is_tls(data[0])
    d = make().receive_data(data)
    if t in (3, 7):
        assert d == sniff.LegacyTLS(t, b"hello")
    else:
        assert d == sniff.Legacy(t, b"hello")
    # every byte is accounted for: the type byte and the rest, intact
    assert bytes([d.rpc_type]) + d.data == data  # type: ignore[union-attr]


def test_tls_record_start_is_native_tls_when_capable() -> None:
    hello = b"\x16\x03\x01\x02\x00\x01"
    assert make().receive_data(hello) == sniff.NativeTLS(hello)


@pytest.mark.parametrize("first", [8, 0x16, 0xFF])
def test_above_seven_without_mutual_tls_is_unrecognized(first: int) -> None:
    d = make(mutual_tls_capable=False).receive_data(bytes([first]) + b"x")
    assert d == sniff.Reject(sniff.MSG_UNRECOGNIZED, first)


@pytest.mark.parametrize("t", [0, 1, 2, 4, 5, 6])
def test_verify_incoming_refuses_plaintext(t: int) -> None:
    d = make(verify_incoming=True).receive_data(bytes([t]))
    assert d == sniff.Reject(sniff.MSG_NON_TLS_VERIFY_INCOMING, t)


@pytest.mark.parametrize("t", [3, 7])
def test_verify_incoming_allows_legacy_tls(t: int) -> None:
    assert make(verify_incoming=True).receive_data(bytes([t])) == sniff.LegacyTLS(t, b"")


def test_native_tls_allowed_under_verify_incoming() -> None:
    assert make(verify_incoming=True).receive_data(b"\x16") == sniff.NativeTLS(b"\x16")


def test_inner_byte_inside_tls() -> None:
    inner = sniff.Sniffer(mutual_tls_capable=True, verify_incoming=True, inside_tls=True)
    assert inner.receive_data(b"\x04abc") == sniff.Legacy(4, b"abc")
    for t, msg in [
        (3, sniff.MSG_NESTED_TLS),
        (7, sniff.MSG_NESTED_TLS),
        (0x16, sniff.MSG_UNRECOGNIZED),
    ]:
        s = sniff.Sniffer(mutual_tls_capable=True, verify_incoming=True, inside_tls=True)
        assert s.receive_data(bytes([t])) == sniff.Reject(msg, t)


def test_empty_reads_wait_and_decision_is_final() -> None:
    s = make()
    assert s.receive_data(b"") is None
    assert s.decision is None
    assert s.receive_data(b"\x00") == sniff.Legacy(0, b"")
    with pytest.raises(RuntimeError):
        s.receive_data(b"more")

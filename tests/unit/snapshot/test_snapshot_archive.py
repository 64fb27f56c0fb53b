"""The snapshot archive: Consul's layout (gzip of a USTAR tar holding meta.json, state.bin and
SHA256SUMS, no record padding), its checks with Consul's error texts, and inspect's output."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wanfedtx.snapshot.archive import (
    ArchiveError,
    SnapshotMeta,
    format_inspect,
    gzip_stream_end,
    read_archive,
    snapshot_id,
    write_archive,
)

META = SnapshotMeta(id=snapshot_id(2, 5, 1477944140.022), index=5, term=2, size=0,
                    voters=("127.0.0.1:8300", "127.0.0.2:8300"), configuration_index=3)
STATE = b"\x82\xa6Format\xaewanfedtx-state" + bytes(range(256)) * 7


def _tar_entries(archive: bytes) -> list[tuple[str, bytes, int]]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive)), mode="r:") as tar:
        out = []
        for member in tar.getmembers():
            f = tar.extractfile(member)
            assert f is not None
            out.append((member.name, f.read(), member.mode))
        return out


def _rebuild(entries: list[tuple[str, bytes]], padding: bytes = b"") -> bytes:
    raw = io.BytesIO()
    for name, data in entries:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o600
        raw.write(info.tobuf(format=tarfile.USTAR_FORMAT))
        raw.write(data + b"\0" * ((-len(data)) % 512))
    raw.write(b"\0" * 1024 + padding)
    return gzip.compress(raw.getvalue())


def test_round_trip_and_layout() -> None:
    archive = write_archive(META, STATE, mtime=1477944140.0, rng=random.Random(1))
    meta, state = read_archive(archive)
    assert state == STATE
    assert meta.index == 5 and meta.term == 2 and meta.size == len(STATE)
    assert meta.id == "2-5-1477944140022"
    assert meta.voters == META.voters and meta.configuration_index == 3
    entries = _tar_entries(archive)
    assert [name for name, _, _ in entries] == ["meta.json", "state.bin", "SHA256SUMS"]
    assert all(mode == 0o600 for _, _, mode in entries)
    files = {name: data for name, data, _ in entries}
    doc = json.loads(files["meta.json"])
    assert files["meta.json"].endswith(b"}\n")
    assert list(doc) == ["Version", "ID", "Index", "Term", "Peers", "Configuration",
                         "ConfigurationIndex", "Size"]
    assert doc["Size"] == len(STATE) and doc["Version"] == 1
    assert doc["Configuration"]["Servers"][0] == {
        "Suffrage": 0, "ID": "127.0.0.1:8300", "Address": "127.0.0.1:8300"}
    sums = sorted(files["SHA256SUMS"].decode().splitlines())
    assert sums == sorted([f"{hashlib.sha256(files['meta.json']).hexdigest()}  meta.json",
                           f"{hashlib.sha256(STATE).hexdigest()}  state.bin"])
    # no 10 KiB record padding: the tar ends with its two zero blocks
    raw = gzip.decompress(archive)
    assert len(raw) % 512 == 0 and raw.endswith(b"\0" * 1024)
    assert len(raw) == sum(512 + len(d) + (-len(d)) % 512 for _, d, _ in entries) + 1024


def test_sums_in_either_order_verify() -> None:
    orders = {write_archive(META, STATE, rng=random.Random(seed)) for seed in range(8)}
    lines = {_tar_entries(a)[2][1].splitlines()[0] for a in orders}
    assert len(lines) == 2  # both orders were written
    for archive in orders:
        assert read_archive(archive)[1] == STATE


def test_flipped_byte_is_a_checksum_error() -> None:
    entries = [(n, d) for n, d, _ in _tar_entries(write_archive(META, STATE))]
    state = bytearray(entries[1][1])
    state[100] ^= 0xFF
    entries[1] = ("state.bin", bytes(state))
    with pytest.raises(ArchiveError) as e:
        read_archive(_rebuild(entries))
    assert str(e.value) == ('failed to read snapshot file: failed checking integrity of '
                            'snapshot: hash check failed for "state.bin"')


def test_extra_file_missing_file_and_padding() -> None:
    entries = [(n, d) for n, d, _ in _tar_entries(write_archive(META, STATE))]
    with pytest.raises(ArchiveError, match='unexpected file "foo" in snapshot'):
        read_archive(_rebuild([*entries, ("foo", b"x")]))
    with pytest.raises(ArchiveError, match=r'file missing for "state\.bin"'):
        sums = b"".join(line + b"\n" for line in entries[2][1].splitlines()
                        if line.endswith(b"meta.json"))
        read_archive(_rebuild([entries[0], entries[1], ("SHA256SUMS", sums)]))
    with pytest.raises(ArchiveError, match='list missing hash for "other"'):
        read_archive(_rebuild([*entries[:2],
                               ("SHA256SUMS", entries[2][1] + b"00  other\n")]))
    with pytest.raises(ArchiveError) as e:
        read_archive(_rebuild(entries, padding=b"\0" * 8192))
    assert str(e.value) == "8192 unread uncompressed bytes remain"


def test_meta_nested_too_deeply_is_an_archive_error() -> None:
    entries = [(n, d) for n, d, _ in _tar_entries(write_archive(META, STATE))]
    deep = b"[" * 100_000  # deeper than Python's recursion limit
    sums = hashlib.sha256(deep).hexdigest().encode() + b"  meta.json\n" + b"".join(
        line + b"\n" for line in entries[2][1].splitlines() if line.endswith(b"state.bin"))
    with pytest.raises(ArchiveError, match="failed to decode snapshot metadata: JSON nested"):
        read_archive(_rebuild([("meta.json", deep), entries[1], ("SHA256SUMS", sums)]))


def test_not_gzip() -> None:
    with pytest.raises(ArchiveError, match=r"^failed to decompress snapshot: "):
        read_archive(b"this is not a snapshot")


def test_inspect_output() -> None:
    meta = SnapshotMeta(id="2-5-1477944140022", index=5, term=2, size=667)
    assert format_inspect(meta) == (
        "ID           2-5-1477944140022\n"
        "Size         667\n"
        "Index        5\n"
        "Term         2\n"
        "Version      1\n")


def test_gzip_stream_end() -> None:
    archive = write_archive(META, STATE)
    assert gzip_stream_end(archive) == len(archive)
    assert gzip_stream_end(archive + b"trailing") == len(archive)
    assert gzip_stream_end(archive[:-1]) is None


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_truncation_or_corruption_is_one_archive_error(data: st.DataObject) -> None:
    archive = write_archive(META, STATE, rng=random.Random(0))
    cut = data.draw(st.integers(0, len(archive) - 1))
    with pytest.raises(ArchiveError):
        read_archive(archive[:cut])
    pos = data.draw(st.integers(0, len(archive) - 1))
    flipped = bytearray(archive)
    flipped[pos] ^= data.draw(st.integers(1, 255))
    try:
        read_archive(bytes(flipped))
    except ArchiveError:
        pass  # the only failure allowed (a flip in gzip header fields may go unnoticed)

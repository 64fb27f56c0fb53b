# -*- test-case-name: tests.unit.raft.test_raft_sim,tests.unit.raft.test_raft_storage -*-
"""Durable raft state in a data directory: log segments, term/vote, snapshots (msgpack only).

Layout under ``<data_dir>/raft/`` (documented in docs/raft.md):

- ``meta``                  term and vote: ``crc32(4, big endian) + msgpack [term, vote]``, replaced
                            by write-to-``meta.tmp`` + fsync + rename + directory fsync.
- ``log/<seq:08d>.seg``     append-only segments of records ``len(4) crc32(4) payload``; payload is
                            a msgpack array: ``["e", index, term, kind, data]`` (an entry),
                            ``["t", index]`` (entries >= index are discarded) or ``["s", index]``
                            (a snapshot up to index was installed; older entries are obsolete).
                            Space is preallocated ahead of the records (``posix_fallocate``, 4 MiB
                            at a time, at most to the segment size): the newest segment's records
                            are followed by zeros, which end it as the file's end does; a segment
                            is cut to its last record when the next one starts.
- ``snapshots/<index:020d>-<term:020d>.snap``  ``b"WFRSNAP1" crc32(4) len(8) msgpack [index, term,
                            voters, data]``, written to ``.tmp``, fsynced, renamed, dir fsynced.

Nothing is reported durable before ``sync()`` returned (``fdatasync`` of the segment written since
the last sync: its data and the size that makes the data readable, without the timestamps a full
``fsync`` also commits; new files and renames are made durable with an ``fsync`` of the directory).
With space preallocated ahead, most syncs write the records' blocks and no new file size.
Recovery: a bad record at the end of the newest segment (a torn write: no valid record after it)
is truncated away and logged; a bad record with valid data after it, or in an older segment, is
corruption in the middle and ``open`` raises ``StorageError`` saying what to do.

This class does blocking I/O; the Twisted shell runs ``persist`` + ``sync`` in one writer thread.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import msgpack
from twisted.logger import Logger

from wanfedtx.packing import pack
from wanfedtx.raft.core import HardState, RestoredState, Snapshot
from wanfedtx.raft.errors import StorageError
from wanfedtx.raft.messages import Entry

log = Logger(namespace="wanfedtx.raft.storage")

_HDR = struct.Struct(">II")
_SNAP_MAGIC = b"WFRSNAP1"
_SNAP_HDR = struct.Struct(">IQ")
MAX_RECORD = 64 * 1024 * 1024
PREALLOCATE_STEP = 4 * 1024 * 1024
_KINDS = (0, 1, 2)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def encode_record(payload: list[Any]) -> bytes:
    body = pack(payload)
    return _HDR.pack(len(body), zlib.crc32(body)) + body


def _parse_record(buf: bytes, off: int) -> tuple[list[Any], int] | None:
    """The record at ``off`` and the offset after it, or None if it is not a valid record."""
    if off + _HDR.size > len(buf):
        return None
    n, crc = _HDR.unpack_from(buf, off)
    end = off + _HDR.size + n
    if n == 0 or n > MAX_RECORD or end > len(buf):
        return None
    body = buf[off + _HDR.size:end]
    if zlib.crc32(body) != crc:
        return None
    try:
        rec = msgpack.unpackb(body, raw=False)
    except Exception:
        return None
    if not _valid_payload(rec):
        return None
    return rec, end


# How every record's body starts (``encode_record``): a msgpack fixarray of 5 ("e") or 2 ("t",
# "s") items whose first item is that one-letter string.
_RECORD_BODY_START = re.compile(rb"[\x92\x95]\xa1[ets]")


def _later_record(buf: bytes, start: int, stop: int) -> int | None:
    """The first offset in ``[start, stop)`` where a valid record starts, or None.

    Only offsets whose body starts as a record's does are parsed (a regular-expression scan in
    C), not every byte: a long damaged stretch took half a second per MiB in Python.
    """
    # a match is 3 bytes: the last offset, stop - 1, has its body start at stop - 1 + _HDR.size
    for m in _RECORD_BODY_START.finditer(buf, start + _HDR.size, stop + _HDR.size + 2):
        o = m.start() - _HDR.size
        if _parse_record(buf, o) is not None:
            return o
    return None


def _uint(v: Any) -> bool:
    return type(v) is int and v >= 0


def _valid_payload(rec: Any) -> bool:
    if type(rec) is not list or not rec:
        return False
    if rec[0] == "e":
        return (len(rec) == 5 and _uint(rec[1]) and rec[1] > 0 and _uint(rec[2])
                and rec[3] in _KINDS and type(rec[4]) is bytes)
    if rec[0] in ("t", "s"):
        return len(rec) == 2 and _uint(rec[1])
    return False


def encode_snapshot(snap: Snapshot) -> bytes:
    body: bytes = msgpack.packb([snap.index, snap.term, sorted(snap.voters), snap.data],
                                use_bin_type=True)
    return _SNAP_MAGIC + _SNAP_HDR.pack(zlib.crc32(body), len(body)) + body


def decode_snapshot(raw: bytes, name: str) -> Snapshot:
    head = len(_SNAP_MAGIC) + _SNAP_HDR.size
    if len(raw) < head or not raw.startswith(_SNAP_MAGIC):
        raise StorageError(f"snapshot file {name} has no valid header; remove it or restore "
                           "the data directory from a backup")
    crc, n = _SNAP_HDR.unpack_from(raw, len(_SNAP_MAGIC))
    body = raw[head:]
    if len(body) != n or zlib.crc32(body) != crc:
        raise StorageError(f"snapshot file {name} fails its checksum; remove it or restore "
                           "the data directory from a backup")
    try:
        index, term, voters, data = msgpack.unpackb(body, raw=False)
    except Exception:
        raise StorageError(f"snapshot file {name} has a malformed body") from None
    if not (_uint(index) and _uint(term) and isinstance(voters, list)
            and isinstance(data, bytes) and all(isinstance(v, str) for v in voters)):
        raise StorageError(f"snapshot file {name} has a malformed body")
    return Snapshot(index, term, frozenset(voters), data)


class RaftStorage:
    """The raft data directory. ``open`` recovers it; then ``persist``/``sync`` append to it."""

    def __init__(self, data_dir: str | os.PathLike[str], segment_size: int = 64 * 1024 * 1024,
                 keep_snapshots: int = 2) -> None:
        self.root = Path(data_dir) / "raft"
        self.log_dir = self.root / "log"
        self.snap_dir = self.root / "snapshots"
        self.segment_size = segment_size
        self.keep_snapshots = keep_snapshots
        self._seg: Any = None  # the open current segment file
        self._seg_seq = 0
        self._seg_size = 0  # bytes of records in the current segment (its zeros not counted)
        self._tail_end = 0  # where the newest segment's records end, as read by open()
        self._allocated = 0  # the current segment's file size (records and zeros after them)
        self._preallocating = True  # until the file system refuses once
        self._seg_last: dict[int, int] = {}  # segment seq -> highest entry index written in it
        self._dirty = False
        self._hs: HardState | None = None
        self._base_marker: int | None = None
        self.fsyncs = 0

    # -- recovery ---------------------------------------------------------------------------------

    def open(self) -> RestoredState:
        for d in (self.root, self.log_dir, self.snap_dir):
            d.mkdir(parents=True, exist_ok=True)
        term, vote = self._read_meta()
        self._hs = HardState(term, vote)
        snap = self._read_snapshot()
        entries = self._read_log(snap)
        # The log may end before the snapshot (a torn tail cut an "s" record whose snapshot file
        # is durable): the next write first restates where the log continues.
        self._base_marker = snap.index if snap is not None else None
        return RestoredState(term, vote, snap, tuple(entries))

    def _read_meta(self) -> tuple[int, str | None]:
        path = self.root / "meta"
        if not path.exists():
            return 0, None
        raw = path.read_bytes()
        if len(raw) < 4 or zlib.crc32(raw[4:]) != int.from_bytes(raw[:4], "big"):
            raise StorageError(f"{path} fails its checksum: the stored term and vote are "
                               "unknown; restore the data directory from a backup")
        try:
            term, vote = msgpack.unpackb(raw[4:], raw=False)
        except Exception:
            raise StorageError(f"{path} is malformed; restore the data directory") from None
        if not (_uint(term) and (vote is None or isinstance(vote, str))):
            raise StorageError(f"{path} is malformed; restore the data directory")
        return term, vote

    def _read_snapshot(self) -> Snapshot | None:
        files = sorted(p for p in self.snap_dir.iterdir() if p.name.endswith(".snap"))
        for p in self.snap_dir.iterdir():
            if p.name.endswith(".tmp"):
                p.unlink()  # an interrupted snapshot write
        if not files:
            return None
        return decode_snapshot(files[-1].read_bytes(), str(files[-1]))

    def _segments(self) -> list[tuple[int, Path]]:
        out = []
        for p in self.log_dir.iterdir():
            if p.name.endswith(".seg") and p.name[:-4].isdigit():
                out.append((int(p.name[:-4]), p))
        return sorted(out)

    def _read_log(self, snap: Snapshot | None) -> list[Entry]:
        segs = self._segments()
        entries: list[Entry] = []
        base: int | None = None  # the index the log continues after (before entries[0])
        for n, (seq, path) in enumerate(segs):
            buf = path.read_bytes()
            off = 0
            last_in_seg = 0
            while off < len(buf):
                parsed = _parse_record(buf, off)
                if parsed is None:
                    last = n == len(segs) - 1
                    # only the newest segment may end with preallocated zeros (a segment is cut
                    # to its records when the next one starts): zeros elsewhere are damage
                    if not last or buf.count(0, off) != len(buf) - off:
                        self._bad_record(path, buf, off, last=last)
                    break
                rec, end = parsed
                kind = rec[0]
                if kind == "e":
                    e = Entry(rec[1], rec[2], rec[3], rec[4])
                    expect = (entries[-1].index + 1) if entries else (
                        e.index if base is None else base + 1)
                    if (e.index != expect and snap is not None
                            and expect < e.index <= snap.index + 1):
                        # the segments holding the gap were dropped after a snapshot covered it
                        entries, base, expect = [], e.index - 1, e.index
                    if e.index != expect:
                        raise StorageError(
                            f"{path} at byte {off}: entry {e.index} where {expect} was expected; "
                            "the log is inconsistent, restore the data directory from a backup")
                    if not entries:
                        base = e.index - 1
                    entries.append(e)
                    last_in_seg = max(last_in_seg, e.index)
                elif kind == "t":  # entries >= T are void; the next entry is T
                    entries = [x for x in entries if x.index < rec[1]]
                    base = rec[1] - 1 if base is None else min(base, rec[1] - 1)
                else:  # a snapshot covers <= S; the log continues after S
                    entries = [x for x in entries if x.index > rec[1]]
                    base = rec[1] if base is None else max(base, rec[1])
                off = end
            self._seg_last[seq] = last_in_seg
            self._tail_end = off
        if snap is not None:
            entries = [e for e in entries if e.index > snap.index]
            if entries and entries[0].index != snap.index + 1:
                raise StorageError(
                    f"log starts at {entries[0].index} but the snapshot ends at {snap.index}: "
                    "entries are missing; restore the data directory from a backup")
        elif entries and entries[0].index != 1:
            raise StorageError(f"log starts at {entries[0].index} and there is no snapshot: "
                               "entries are missing; restore the data directory from a backup")
        self._seg_seq = segs[-1][0] if segs else 0
        return entries

    def _bad_record(self, path: Path, buf: bytes, off: int, last: bool) -> None:
        data_end = len(buf.rstrip(b"\0"))  # every valid record holds a nonzero byte
        later = _later_record(buf, off + 1, min(data_end, len(buf) - _HDR.size))
        if not last or later is not None:
            where = f"byte {later}" if later is not None else "a later segment"
            raise StorageError(
                f"raft log segment {path} is corrupt at byte {off} while valid records follow "
                f"(at {where}): refusing to start. Restore the data directory from a backup, "
                "or remove this server's data directory and let it rejoin the cluster")
        log.warn("raft: truncated torn tail of log segment {path} at byte {offset} "
                 "({lost} bytes of an unfinished write)",
                 path=str(path), offset=off, lost=len(buf) - off)
        with open(path, "r+b") as f:
            f.truncate(off)
            f.flush()
            os.fsync(f.fileno())

    # -- writing ----------------------------------------------------------------------------------

    def _open_segment(self) -> None:
        if self._seg is not None:
            # a finished segment ends with its last record (its preallocated zeros go), before
            # the next segment exists: a reader accepts zeros after the records of the newest
            # segment only
            self._seg.truncate(self._seg_size)
            os.fsync(self._seg.fileno())
            self._seg.close()
        if self._seg_seq == 0 or self._seg_size >= self.segment_size or self._seg is not None:
            self._seg_seq += 1
        path = self.log_dir / f"{self._seg_seq:08d}.seg"
        reopened = path.exists()
        self._seg = open(path, "r+b" if reopened else "w+b")  # kept open across calls
        self._seg_size = self._tail_end if reopened else 0
        self._seg.seek(self._seg_size)
        self._allocated = os.fstat(self._seg.fileno()).st_size
        self._seg_last.setdefault(self._seg_seq, 0)
        _fsync_dir(self.log_dir)

    def _reserve(self, size: int) -> None:
        """Before ``size`` more bytes of records are written: make sure the file already
        extends past them, preallocating ``PREALLOCATE_STEP`` ahead (at most to the segment
        size), so that the syncs after most appends need not commit a new file size (etcd's
        WAL preallocates its segments for the same reason). Where the file system cannot, the
        segment grows with its writes."""
        end = self._seg_size + size
        if end <= self._allocated or not self._preallocating:
            return
        target = max(end, min(end + PREALLOCATE_STEP, self.segment_size))
        try:
            os.posix_fallocate(self._seg.fileno(), 0, target)
        except OSError as e:
            self._preallocating = False
            log.warn("raft: could not preallocate log segment {path}: {error}; the log grows "
                     "with its writes", path=self._seg.name, error=str(e))
            return
        self._allocated = target

    def _append(self, payload: list[Any]) -> None:
        if self._seg is None or self._seg_size >= self.segment_size:
            self._open_segment()
        rec = encode_record(payload)
        self._reserve(len(rec))
        self._seg.write(rec)
        self._seg_size += len(rec)
        self._dirty = True

    def persist(self, hard_state: HardState | None, snapshot: Snapshot | None,
                truncate_from: int | None, entries: list[Entry]) -> None:
        """Write one Ready's state (not yet durable: call ``sync``)."""
        if hard_state is not None and hard_state != self._hs:
            body: bytes = msgpack.packb([hard_state.term, hard_state.vote], use_bin_type=True)
            _atomic_write(self.root / "meta", zlib.crc32(body).to_bytes(4, "big") + body)
            self._hs = hard_state
            self.fsyncs += 1
        if snapshot is not None:
            self.save_snapshot(snapshot)
            self._append(["s", snapshot.index])
            self._base_marker = None
        elif self._base_marker is not None and (entries or truncate_from is not None):
            self._append(["s", self._base_marker])
            self._base_marker = None
        if truncate_from is not None:
            self._append(["t", truncate_from])
        if entries:
            self._append_entries(entries)

    def _append_entries(self, entries: list[Entry]) -> None:
        """The entries' records, byte for byte those of ``_append``, written with one ``write``
        per segment (a segment is rolled at the same record boundary as ``_append`` rolls it)."""
        hdr, crc32 = _HDR.pack, zlib.crc32
        buf: list[bytes] = []
        size = 0
        last = 0
        for e in entries:
            if self._seg is None or self._seg_size + size >= self.segment_size:
                self._write_records(buf, size, last)
                buf, size = [], 0
                self._open_segment()
            body = pack(["e", e.index, e.term, e.kind, e.data])
            buf.append(hdr(len(body), crc32(body)))
            buf.append(body)
            size += _HDR.size + len(body)
            last = e.index
        self._write_records(buf, size, last)

    def _write_records(self, buf: list[bytes], size: int, last: int) -> None:
        if not buf:
            return
        self._reserve(size)
        self._seg.write(b"".join(buf))
        self._seg_size += size
        self._seg_last[self._seg_seq] = last
        self._dirty = True

    def sync(self) -> None:
        """Make everything written so far durable (one ``fdatasync`` for the whole group)."""
        if self._dirty and self._seg is not None:
            self._seg.flush()
            os.fdatasync(self._seg.fileno())
            self.fsyncs += 1
        self._dirty = False

    def save_snapshot(self, snap: Snapshot) -> None:
        """Store a snapshot durably, then drop older snapshots and fully covered log segments."""
        path = self.snap_dir / f"{snap.index:020d}-{snap.term:020d}.snap"
        _atomic_write(path, encode_snapshot(snap))
        self.fsyncs += 1
        snaps = sorted(p for p in self.snap_dir.iterdir() if p.name.endswith(".snap"))
        for old in snaps[: -self.keep_snapshots]:
            old.unlink()
        # Drop a prefix of segments whose entries the snapshot covers. Only a prefix: a later
        # segment may hold the truncation record that voids an earlier segment's stale tail.
        for seq, path_ in self._segments():
            if seq == self._seg_seq or self._seg_last.get(seq, 0) > snap.index:
                break
            path_.unlink()
            self._seg_last.pop(seq, None)

    def close(self) -> None:
        if self._seg is not None:
            self.sync()
            self._seg.close()
            self._seg = None

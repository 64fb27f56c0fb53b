# -*- test-case-name: tests.unit.snapshot.test_snapshot_archive -*-
"""The snapshot archive: gzip(tar) of ``meta.json``, ``state.bin`` and ``SHA256SUMS``.

Sans-IO: :func:`write_archive` returns the archive's bytes, :func:`read_archive` checks one and
returns its metadata and state. The layout is Consul's: USTAR headers with mode 0600, the entries
in that order, the tar ended by two zero blocks and no record padding; ``meta.json`` is raft's
snapshot metadata as JSON plus a newline; ``SHA256SUMS`` has ``<hex>  <name>`` lines for the
other two files, in random order. ``state.bin`` holds this server's state-store stream
(:mod:`wanfedtx.state.snapshot`).

Errors (:class:`ArchiveError`) use Consul's wording: ``failed to decompress snapshot: ...``,
``unexpected file "<n>" in snapshot``, ``failed checking integrity of snapshot: hash check failed
for "<n>"`` (and ``list missing hash for``, ``file missing for``), ``<N> unread uncompressed bytes
remain``. Decompression stops at ``max_size`` bytes, so a gzip bomb costs no more than that.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import random
import tarfile
import zlib
from collections.abc import Sequence
from typing import Any

import attrs
import msgpack

from wanfedtx import jsondecode

META = "meta.json"
STATE = "state.bin"
SUMS = "SHA256SUMS"
BLOCK = 512
# Largest decompressed archive read (a restore must fit in one raft entry anyway).
DEFAULT_MAX_SIZE = 256 * 1024 * 1024
SUFFRAGE_VOTER = 0


class ArchiveError(Exception):
    """The archive cannot be used; the message is the one line to show."""


@attrs.frozen
class SnapshotMeta:
    """raft's ``SnapshotMeta`` as Consul writes it into ``meta.json``."""

    id: str
    index: int
    term: int
    size: int
    voters: tuple[str, ...] = ()
    configuration_index: int = 0
    version: int = 1

    def to_json(self) -> dict[str, Any]:
        peers = msgpack.packb([v.encode() for v in self.voters], use_bin_type=False)
        return {
            "Version": self.version,
            "ID": self.id,
            "Index": self.index,
            "Term": self.term,
            "Peers": base64.b64encode(peers).decode("ascii"),
            "Configuration": {"Servers": [
                {"Suffrage": SUFFRAGE_VOTER, "ID": v, "Address": v} for v in self.voters]},
            "ConfigurationIndex": self.configuration_index,
            "Size": self.size,
        }

    @classmethod
    def from_json(cls, value: Any) -> SnapshotMeta:
        if not isinstance(value, dict):
            raise ArchiveError("failed to decode snapshot metadata: not a JSON object")
        try:
            servers = (value.get("Configuration") or {}).get("Servers") or []
            voters = tuple(str(s.get("Address", "")) for s in servers
                           if s.get("Suffrage", 0) == SUFFRAGE_VOTER)
            return cls(id=str(value["ID"]), index=_uint(value["Index"]),
                       term=_uint(value["Term"]), size=_uint(value.get("Size", 0)),
                       voters=voters,
                       configuration_index=_uint(value.get("ConfigurationIndex", 0)),
                       version=_uint(value.get("Version", 1)))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ArchiveError(f"failed to decode snapshot metadata: {exc}") from None


def _uint(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{v!r} is not an unsigned integer")
    return v


def snapshot_id(term: int, index: int, now: float) -> str:
    """raft's snapshot ID: ``<term>-<index>-<unix milliseconds>``."""
    return f"{term}-{index}-{int(now * 1000)}"


# -- writing -----------------------------------------------------------------------------------


def _entry(name: str, data: bytes, mtime: float) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(mtime)
    header = info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")
    pad = (-len(data)) % BLOCK
    return header + data + b"\0" * pad


def write_archive(meta: SnapshotMeta, state: bytes, *, mtime: float = 0.0,
                  rng: random.Random | None = None) -> bytes:
    """The archive of ``state`` (``meta.size`` is set from it)."""
    meta = attrs.evolve(meta, size=len(state))
    meta_bytes = (json.dumps(meta.to_json(), separators=(",", ":")) + "\n").encode()
    lines = [f"{hashlib.sha256(data).hexdigest()}  {name}\n"
             for name, data in ((META, meta_bytes), (STATE, state))]
    (rng or random.Random()).shuffle(lines)
    tar = (_entry(META, meta_bytes, mtime) + _entry(STATE, state, mtime)
           + _entry(SUMS, "".join(lines).encode(), mtime) + b"\0" * (2 * BLOCK))
    return gzip.compress(tar, mtime=int(mtime))


# -- reading -----------------------------------------------------------------------------------


def decompress(data: bytes, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """The decompressed bytes of a one-member gzip stream, at most ``max_size`` of them."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, max_size + 1)
        if len(out) > max_size:
            raise ArchiveError(
                f"failed to decompress snapshot: more than {max_size} bytes uncompressed")
        if not d.eof:
            raise ArchiveError("failed to decompress snapshot: unexpected EOF")
    except zlib.error as exc:
        raise ArchiveError(f"failed to decompress snapshot: {exc}") from None
    return out


READ = "failed to read snapshot file: "
INTEGRITY = READ + "failed checking integrity of snapshot: "


def _read_tar(raw: bytes) -> tuple[list[tuple[str, bytes]], int]:
    """The entries of a tar stream and how many bytes the reader consumed (Go's archive/tar:
    it stops after the two zero blocks)."""
    entries: list[tuple[str, bytes]] = []
    pos = 0
    zero = b"\0" * BLOCK
    eof = READ + "failed reading snapshot: unexpected EOF"
    while True:
        block = raw[pos : pos + BLOCK]
        if len(block) < BLOCK:
            raise ArchiveError(eof)
        if block == zero:
            if raw[pos + BLOCK : pos + 2 * BLOCK] == zero:
                return entries, pos + 2 * BLOCK
            raise ArchiveError(eof)
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise ArchiveError(f"{READ}failed reading snapshot: {exc}") from None
        start = pos + BLOCK
        end = start + info.size
        if end > len(raw):
            raise ArchiveError(eof)
        entries.append((info.name, raw[start:end]))
        pos = end + (-info.size) % BLOCK


def _verify_sums(text: bytes, files: dict[str, bytes]) -> None:
    """Consul's hash list check: every line names an expected file with its hash, and every
    expected file has a line."""
    seen: set[str] = set()
    for line in text.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) != 2:
            raise ArchiveError(f"{INTEGRITY}unexpected EOF")
        digest, name = parts
        if name not in (META, STATE):
            raise ArchiveError(f'{INTEGRITY}list missing hash for "{name}"')
        if hashlib.sha256(files.get(name, b"")).hexdigest() != digest.lower():
            raise ArchiveError(f'{INTEGRITY}hash check failed for "{name}"')
        seen.add(name)
    for name in (META, STATE):
        if name not in seen:
            raise ArchiveError(f'{INTEGRITY}file missing for "{name}"')


def read_archive(data: bytes, max_size: int = DEFAULT_MAX_SIZE) -> tuple[SnapshotMeta, bytes]:
    """Check ``data`` as Consul's ``snapshot.Verify`` does; return its metadata and state."""
    raw = decompress(data, max_size)
    entries, used = _read_tar(raw)
    files: dict[str, bytes] = {}
    sums = b""
    meta: SnapshotMeta | None = None
    for name, body in entries:
        if name == SUMS:
            sums = body
        elif name == META:
            files[name] = body
            try:
                meta = SnapshotMeta.from_json(jsondecode.loads(body))
            except ValueError as exc:
                raise ArchiveError(
                    f"{READ}failed to decode snapshot metadata: {exc}") from None
            except ArchiveError as exc:
                raise ArchiveError(f"{READ}{exc}") from None
        elif name == STATE:
            files[name] = body
        else:
            raise ArchiveError(f'{READ}unexpected file "{name}" in snapshot')
    _verify_sums(sums, files)
    if used != len(raw):
        raise ArchiveError(f"{len(raw) - used} unread uncompressed bytes remain")
    if meta is None:  # cannot happen once the sums named meta.json
        raise ArchiveError(f'{INTEGRITY}file missing for "{META}"')
    return meta, files[STATE]


def inspect_rows(meta: SnapshotMeta) -> Sequence[tuple[str, str]]:
    """The rows of ``snapshot inspect``, in Consul's order."""
    return (("ID", meta.id), ("Size", str(meta.size)), ("Index", str(meta.index)),
            ("Term", str(meta.term)), ("Version", str(meta.version)))


def format_inspect(meta: SnapshotMeta) -> str:
    """Consul 1.8's ``snapshot inspect`` text (a tabwriter with padding 6)."""
    rows = inspect_rows(meta)
    width = max(len(k) for k, _ in rows) + 6
    return "".join(f"{k.ljust(width)}{v}\n" for k, v in rows)


def gzip_stream_end(data: bytes) -> int | None:
    """Where the gzip member that starts ``data`` ends, or None if ``data`` does not hold all
    of it (no output is kept, so any size is cheap to probe)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    view = io.BytesIO(data)
    while True:
        chunk = view.read(64 * 1024)
        if not chunk:
            return None
        try:
            d.decompress(chunk, 0)
            while d.unconsumed_tail:
                d.decompress(d.unconsumed_tail, 64 * 1024)
        except zlib.error:
            return None
        if d.eof:
            return view.tell() - len(d.unused_data)

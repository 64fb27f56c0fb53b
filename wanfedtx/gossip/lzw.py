# -*- test-case-name: tests.unit.gossip.test_gossip_fuzz -*-
"""LZW compression compatible with Go's ``compress/lzw`` (order LSB, literal width 8).

memberlist wraps stream messages (always) and UDP packets (when smaller) in ``compressMsg`` whose
``Buf`` is produced by Go's LZW writer. This is our own implementation of that format:

* codes 0..255 are literals, 256 is *clear*, 257 is *end of stream*; codes start 9 bits wide
  and grow to 12 bits; bits are packed least-significant first;
* the writer starts with a clear code, ends with the EOF code, and emits a clear code and starts
  over when the next code to assign would be 4095;
* the reader requires the EOF code (a missing one is "unexpected EOF") and grows its width one code
  "late", exactly like Go's reader.
"""

from __future__ import annotations

from .errors import CompressionError

_CLEAR = 256
_EOF = 257
_MAX_WIDTH = 12
_MAX_CODE = (1 << _MAX_WIDTH) - 1
_LITERALS = tuple(bytes((i,)) for i in range(256))

#: Default cap on decompressed size: memberlist v0.6.0's ``maxDecompressedSize`` (40 MiB).
DEFAULT_MAX_OUTPUT = 40 * 1024 * 1024


def compress(data: bytes) -> bytes:
    """Compress ``data`` exactly as Go's ``lzw.NewWriter(w, lzw.LSB, 8)`` followed by Close."""
    out = bytearray()
    append = out.append
    # The first code is always a clear code at width 9 (bits are packed LSB first).
    bits = _CLEAR
    nbits = 9
    width = 9
    if not data:
        bits |= _EOF << nbits
        nbits += width
    else:
        hi = _EOF
        overflow = 1 << width
        table: dict[int, int] = {}
        get = table.get
        code = data[0]
        for lit in data[1:]:
            key = (code << 8) | lit
            found = get(key)
            if found is not None:
                code = found
                continue
            bits |= code << nbits
            nbits += width
            while nbits >= 8:
                append(bits & 0xFF)
                bits >>= 8
                nbits -= 8
            code = lit
            hi += 1
            if hi == overflow:
                width += 1
                overflow <<= 1
            if hi == _MAX_CODE:
                bits |= _CLEAR << nbits
                nbits += width
                width = 9
                hi = _EOF
                overflow = 1 << width
                table.clear()
                continue
            table[key] = hi
        bits |= code << nbits
        nbits += width
        hi += 1
        if hi == overflow:
            width += 1
            overflow <<= 1
        if hi == _MAX_CODE:
            bits |= _CLEAR << nbits
            nbits += width
            width = 9
        bits |= _EOF << nbits
        nbits += width
    while nbits >= 8:
        append(bits & 0xFF)
        bits >>= 8
        nbits -= 8
    if nbits > 0:
        append(bits & 0xFF)
    return bytes(out)


def decompress(data: bytes, max_output: int = DEFAULT_MAX_OUTPUT) -> bytes:
    """Decompress a Go LZW (LSB, 8) stream; raise ``CompressionError`` on corrupt input.

    The input must contain the EOF code (as Go's reader requires); bytes after it are ignored.
    Output beyond ``max_output`` bytes is refused, to bound decompression bombs.
    """
    table: list[bytes | None] = [bytes((i,)) for i in range(256)] + [None] * (4096 - 256)
    out = bytearray()
    width = 9
    hi = _EOF
    overflow = 1 << width
    last: bytes | None = None
    bits = 0
    nbits = 0
    pos = 0
    n = len(data)
    while True:
        while nbits < width:
            if pos >= n:
                raise CompressionError(
                    "lzw: unexpected EOF (the compressed payload has no end code; truncated?)"
                )
            bits |= data[pos] << nbits
            pos += 1
            nbits += 8
        code = bits & ((1 << width) - 1)
        bits >>= width
        nbits -= width
        if code < _CLEAR:
            cur = _LITERALS[code]
            if last is not None:
                table[hi] = last + cur[:1]
        elif code == _CLEAR:
            width = 9
            hi = _EOF
            overflow = 1 << width
            last = None
            continue
        elif code == _EOF:
            return bytes(out)
        elif code <= hi:
            if code == hi and last is not None:
                cur = last + last[:1]
            else:
                entry = table[code]
                if entry is None:
                    raise CompressionError(f"lzw: invalid code {code} (corrupt payload)")
                cur = entry
            if last is not None:
                table[hi] = last + cur[:1]
        else:
            raise CompressionError(f"lzw: invalid code {code} (corrupt payload)")
        out += cur
        if len(out) > max_output:
            raise CompressionError(f"decompressed message is larger than limit ({max_output})")
        last = cur
        hi += 1
        if hi >= overflow:
            if width == _MAX_WIDTH:
                last = None
                hi -= 1
            else:
                width += 1
                overflow <<= 1

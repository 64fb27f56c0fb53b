# -*- test-case-name: tests.unit.gossip.test_gossip_fuzz -*-
"""Sans-IO reader and writer for memberlist TCP stream messages.

A stream carries one message: push/pull (header, node states, raw user state), a user message
(header + raw bytes), a fallback ping or its ack, or an error. Optionally compressed (``09``) and/or
encrypted (``0a len32 payload`` with the 5 header bytes as AAD). The unencrypted stream has no
overall length, so ``StreamReader.feed`` parses msgpack objects incrementally and returns the
message as soon as its last byte arrives; it never waits for EOF (the peer keeps the socket open for
our reply).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from . import lzw
from .errors import WireError
from .security import decrypt_payload, encrypt_payload, encrypted_length
from .wire import (
    LZW_ALGO,
    MAX_PUSH_STATE_BYTES,
    AckResp,
    Compress,
    ErrResp,
    MsgType,
    Ping,
    PushNodeState,
    PushPull,
    PushPullHeader,
    StreamMessage,
    UserMsg,
    UserMsgHeader,
    compress_message,
)

#: Upper bound on the node count announced by a push/pull header (memberlist v0.6.0).
MAX_PUSH_NODES = 1 << 20
#: Upper bound on a push/pull's user state and a user message (memberlist v0.6.0: 20 MiB, the
#: same as the whole pushed state).
MAX_USER_BYTES = MAX_PUSH_STATE_BYTES
#: Upper bound on a decompressed stream message (memberlist v0.6.0: 40 MiB), lzw's own default.
MAX_DECOMPRESSED_BYTES = lzw.DEFAULT_MAX_OUTPUT


def encode_stream(
    msg: bytes,
    *,
    compress: bool = True,
    keys: Sequence[bytes] | None = None,
    enc_vsn: int = 1,
    random_bytes: Callable[[int], bytes] | None = None,
) -> bytes:
    """Wrap a whole stream message: compress (if enabled), then encrypt (if a key is given)."""
    if compress:
        msg = compress_message(msg)
    if keys:
        header = bytes((MsgType.ENCRYPT,)) + struct.pack(">I", encrypted_length(enc_vsn, len(msg)))
        kwargs: dict[str, Any] = {}
        if random_bytes is not None:
            kwargs["random_bytes"] = random_bytes
        return header + encrypt_payload(enc_vsn, keys[0], msg, header, **kwargs)
    return msg


class StreamReader:
    """Feed stream bytes; ``feed`` returns the message once complete, else None.

    Raises ``WireError`` (or a subclass) for anything malformed. After a message is returned,
    later bytes are ignored (a stream carries one message).
    """

    def __init__(
        self,
        keys: Sequence[bytes] | None = None,
        require_encryption: bool = False,
        max_bytes: int = MAX_PUSH_STATE_BYTES,
    ) -> None:
        self._keys = list(keys) if keys else []
        self._require_enc = require_encryption
        self._max = max_bytes
        # a reader with a smaller budget (tests, fuzzing) scales every bound down with it
        self._max_user = min(MAX_USER_BYTES, max_bytes)
        self._max_decompressed = min(MAX_DECOMPRESSED_BYTES, 2 * max_bytes)
        self._buf = bytearray()
        self._mode = "start"  # start -> enc | plain -> done
        self._unpacker: Any = None
        self._type = -1
        self._pp_header: PushPullHeader | None = None
        self._pp_nodes: list[PushNodeState] = []
        self._tail = bytearray()
        self._tail_len = -1
        self._user_len = -1
        self.done = False
        self.message: StreamMessage | None = None

    # -- public

    def feed(self, data: bytes) -> StreamMessage | None:
        if self.done or not data:
            return None
        if self._mode == "start":
            self._buf += data
            first = self._buf[0]
            if first == MsgType.ENCRYPT:
                if not self._keys:
                    raise WireError("Remote state is encrypted and encryption is not configured")
                self._mode = "enc"
            else:
                if self._require_enc:
                    raise WireError("Encryption is configured but remote state is not encrypted")
                self._mode = "plain"
                self._start_plain()
            data = bytes(self._buf)
            self._buf.clear()
        if self._mode == "enc":
            self._buf += data
            if len(self._buf) < 5:
                return None
            (length,) = struct.unpack(">I", self._buf[1:5])
            if length > self._max:
                raise WireError(f"Remote node state is larger than limit ({length})")
            if len(self._buf) < 5 + length:
                return None
            payload = bytes(self._buf[5 : 5 + length])
            plain = decrypt_payload(self._keys, payload, bytes(self._buf[:5]))
            self._buf.clear()
            self._mode = "plain"
            self._start_plain()
            return self._plain(plain)
        return self._plain(data)

    # -- internals

    def _start_plain(self, limit: int | None = None) -> None:
        self._unpacker = msgpack.Unpacker(
            raw=True,
            strict_map_key=False,
            max_buffer_size=(self._max if limit is None else limit) + 64 * 1024,
            timestamp=0,
        )

    def _next_obj(self) -> tuple[bool, Any]:
        try:
            return True, self._unpacker.unpack()
        except msgpack.OutOfData:
            return False, None
        except Exception as exc:
            raise WireError(f"bad msgpack in stream: {exc}") from None

    def _plain(self, data: bytes) -> StreamMessage | None:
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull:
            raise WireError(f"stream message larger than the limit of {self._max} bytes") from None
        while True:
            if self._type < 0:
                raw = self._unpacker.read_bytes(1)
                if not raw:
                    return None
                self._type = raw[0]
                if self._type not in (
                    MsgType.PING,
                    MsgType.ACK_RESP,
                    MsgType.PUSH_PULL,
                    MsgType.USER,
                    MsgType.ERR,
                    MsgType.COMPRESS,
                ):
                    raise WireError(f"received invalid msgType ({self._type})")
                continue
            if self._type == MsgType.COMPRESS:
                ok, obj = self._next_obj()
                if not ok:
                    return None
                c = Compress.from_obj(obj)
                if c.algo != LZW_ALGO:
                    raise WireError(f"Cannot decompress unknown algorithm {c.algo}")
                inner = lzw.decompress(c.buf, max_output=self._max_decompressed)
                # The decompressed buffer is a complete message of its own (already bounded).
                self._start_plain(len(inner))
                self._type = -1
                if inner[:1] == bytes((MsgType.COMPRESS,)):
                    raise WireError("nested compression in a stream is not supported")
                return self._plain(inner)
            return self._parse_typed()

    def _parse_typed(self) -> StreamMessage | None:
        t = self._type
        if t == MsgType.PUSH_PULL:
            if self._pp_header is None:
                ok, obj = self._next_obj()
                if not ok:
                    return None
                h = PushPullHeader.from_obj(obj)
                # checked before anything is read or allocated for them (memberlist v0.6.0)
                if not 0 <= h.nodes <= MAX_PUSH_NODES:
                    raise WireError(f"number of nodes in header ({h.nodes}) exceeds limit")
                if not 0 <= h.user_state_len <= self._max_user:
                    raise WireError(f"user state length ({h.user_state_len}) exceeds limit")
                self._pp_header = h
                self._tail_len = h.user_state_len
            while len(self._pp_nodes) < self._pp_header.nodes:
                ok, obj = self._next_obj()
                if not ok:
                    return None
                self._pp_nodes.append(PushNodeState.from_obj(obj))
            if not self._read_tail():
                return None
            return self._finish(
                PushPull(self._pp_header.join, tuple(self._pp_nodes), bytes(self._tail))
            )
        if t == MsgType.USER:
            if self._tail_len < 0:
                ok, obj = self._next_obj()
                if not ok:
                    return None
                h2 = UserMsgHeader.from_obj(obj)
                if not 0 <= h2.user_msg_len <= self._max_user:
                    raise WireError(f"user message length ({h2.user_msg_len}) exceeds limit")
                self._tail_len = h2.user_msg_len
            if not self._read_tail():
                return None
            return self._finish(UserMsg(bytes(self._tail)))
        ok, obj = self._next_obj()
        if not ok:
            return None
        if t == MsgType.PING:
            return self._finish(Ping.from_obj(obj))
        if t == MsgType.ACK_RESP:
            return self._finish(AckResp.from_obj(obj))
        return self._finish(ErrResp.from_obj(obj))

    def _read_tail(self) -> bool:
        while len(self._tail) < self._tail_len:
            chunk = self._unpacker.read_bytes(self._tail_len - len(self._tail))
            if not chunk:
                return False
            self._tail += chunk
        return True

    def _finish(self, msg: StreamMessage) -> StreamMessage:
        self.done = True
        self.message = msg
        self._unpacker = None
        return msg

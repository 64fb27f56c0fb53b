# -*- test-case-name: tests.unit.gossip.test_gossip_fuzz -*-
"""AES-GCM encryption of memberlist packets and streams, and the keyring (memberlist ``security.go``
/ ``keyring.go`` semantics, our own code).

Encrypted payload: ``[version][12-byte nonce][ciphertext + 16-byte tag]``. Version 1 (protocol
version >= 2) has no padding; version 0 pads with PKCS7 to 16 bytes first. Packets use no AAD;
streams use the 5 header bytes ``0a + u32 length`` as AAD. Every installed key is tried on decrypt;
the primary key (index 0) encrypts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import EncryptionError, KeyringError

NONCE_SIZE = 12
TAG_SIZE = 16
BLOCK_SIZE = 16
MAX_ENCRYPTION_VERSION = 1
VALID_KEY_SIZES = (16, 24, 32)


def encrypt_overhead(vsn: int) -> int:
    """Bytes added by encryption (29 for version 1, 45 worst case for version 0)."""
    if vsn == 0:
        return 1 + NONCE_SIZE + TAG_SIZE + BLOCK_SIZE
    return 1 + NONCE_SIZE + TAG_SIZE


def encrypted_length(vsn: int, plain_len: int) -> int:
    """Exact length of the encrypted payload for ``plain_len`` input bytes."""
    if vsn >= 1:
        return 1 + NONCE_SIZE + plain_len + TAG_SIZE
    padded = plain_len + (BLOCK_SIZE - plain_len % BLOCK_SIZE)
    return 1 + NONCE_SIZE + padded + TAG_SIZE


def encrypt_payload(
    vsn: int,
    key: bytes,
    msg: bytes,
    aad: bytes | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """Seal ``msg`` with ``key``; ``vsn`` 0 pads with PKCS7 first."""
    nonce = random_bytes(NONCE_SIZE)
    if vsn == 0:
        pad = BLOCK_SIZE - len(msg) % BLOCK_SIZE
        msg = msg + bytes((pad,)) * pad
    elif vsn != 1:
        raise EncryptionError(f"Unsupported encryption version {vsn}")
    sealed = AESGCM(key).encrypt(nonce, msg, aad or None)
    return bytes((vsn,)) + nonce + sealed


def decrypt_payload(keys: Sequence[bytes], payload: bytes, aad: bytes | None = None) -> bytes:
    """Open ``payload`` with the first key that works, or raise ``EncryptionError``."""
    if len(payload) < 1:
        raise EncryptionError("Cannot decrypt empty payload")
    vsn = payload[0]
    if vsn > MAX_ENCRYPTION_VERSION:
        raise EncryptionError(f"Unsupported encryption version {vsn}")
    if len(payload) < encrypted_length(vsn, 0):
        raise EncryptionError(f"Payload is too small to decrypt: {len(payload)}")
    nonce = payload[1 : 1 + NONCE_SIZE]
    sealed = payload[1 + NONCE_SIZE :]
    for key in keys:
        try:
            plain = AESGCM(key).decrypt(nonce, sealed, aad or None)
        except InvalidTag:
            continue
        if vsn == 0:
            if not plain:
                raise EncryptionError("Invalid PKCS7 padding (empty plaintext)")
            pad = plain[-1]
            if pad == 0 or pad > BLOCK_SIZE or pad > len(plain):
                raise EncryptionError("Invalid PKCS7 padding")
            plain = plain[:-pad]
        return plain
    raise EncryptionError("No installed keys could decrypt the message")


def _check_key(key: bytes) -> bytes:
    if len(key) not in VALID_KEY_SIZES:
        raise KeyringError(
            f"key size must be 16, 24 or 32 bytes (AES-128/192/256), got {len(key)} bytes"
        )
    return bytes(key)


class Keyring:
    """Installed gossip keys; index 0 is the primary key used to encrypt."""

    def __init__(self, keys: Iterable[bytes] = (), primary: bytes | None = None) -> None:
        self._keys: list[bytes] = []
        for k in keys:
            self.add_key(k)
        if primary is not None:
            self.add_key(primary)
            self.use_key(primary)
        if not self._keys:
            raise KeyringError("a keyring needs at least one key (or a primary key)")

    def add_key(self, key: bytes) -> None:
        """Install ``key`` (no-op when present); the first installed key becomes primary."""
        key = _check_key(key)
        if key not in self._keys:
            self._keys.append(key)

    def use_key(self, key: bytes) -> None:
        """Make an installed key the primary key."""
        if key not in self._keys:
            raise KeyringError("Requested key is not in the keyring; install it first")
        self._keys.remove(key)
        self._keys.insert(0, key)

    def remove_key(self, key: bytes) -> None:
        """Remove a key that is not the primary key."""
        if self._keys and key == self._keys[0]:
            raise KeyringError("Removing the primary key is not allowed; switch primary first")
        if key in self._keys:
            self._keys.remove(key)

    def keys(self) -> list[bytes]:
        """All keys, primary first."""
        return list(self._keys)

    def primary_key(self) -> bytes:
        return self._keys[0]

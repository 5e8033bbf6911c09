"""What one data directory's secret becomes: the SQLCipher key and the key that seals files.

The secret (random, 256 bits, kept by `store.keys`) never touches a file of the data directory.
Everything is derived from it with HKDF-SHA256, one purpose a key:

- `sqlcipher`: the raw 256-bit SQLCipher key of gum.sqlite3 and vectors.sqlite3 (raw, so SQLCipher
  skips its PBKDF2 on every open: the secret is random, stretching it buys nothing);
- `files`: AES-256-GCM for pending screenshot frames, their sidecars and the file observer's cache;
- `check`: a short verifier in `encryption.json`, so a wrong key is named as such before anything is opened.

A sealed file is `MAGIC || nonce (12 bytes) || ciphertext || tag (16 bytes)`. `Sealer.open` accepts
a file without the magic as it is: a data directory being encrypted (`gum-mcp encrypt`) holds both
kinds for a moment, and a crash then must leave everything readable.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence

MAGIC = b"GUMSEAL1"
NONCE_BYTES = 12
_AAD = b"gum-mcp sealed file v1"
_SALT = b"gum-mcp key derivation v1"


def derive(secret: str, purpose: str, length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869) of `secret` for one `purpose`."""
    prk = hmac.new(_SALT, secret.encode("utf-8"), hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + purpose.encode() + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def sqlcipher_key(secret: str) -> str:
    """The value of `PRAGMA key` (and `rekey`, `ATTACH ... KEY`): a raw key, hex, quoted."""
    return f"\"x'{derive(secret, 'sqlcipher').hex()}'\""


def check_value(secret: str) -> str:
    """A verifier for `encryption.json`: tells a wrong key from a damaged file, says nothing of the key."""
    return derive(secret, "check", 16).hex()


class Sealer:
    """Seals and opens small files with AES-256-GCM. The first key seals; every key may open (the
    others are the previous key of an interrupted rotation)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not secrets:
            raise ValueError("a Sealer needs at least one secret")
        self._aeads = [AESGCM(derive(secret, "files")) for secret in secrets]

    @property
    def encrypting(self) -> bool:
        return True

    def seal(self, data: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return MAGIC + nonce + self._aeads[0].encrypt(nonce, bytes(data), _AAD)

    def open(self, data: bytes) -> bytes:
        """The plaintext of a sealed file; a file that was never sealed comes back as it is.
        Raises ValueError when no key opens it (wrong key, or the file was altered)."""
        if not is_sealed(data):
            return data
        from cryptography.exceptions import InvalidTag

        nonce, body = data[len(MAGIC) : len(MAGIC) + NONCE_BYTES], data[len(MAGIC) + NONCE_BYTES :]
        for aead in self._aeads:
            try:
                return aead.decrypt(nonce, body, _AAD)
            except InvalidTag:
                continue
        raise ValueError("a sealed file does not open with this data directory's key")

    def sealed_with_current(self, data: bytes) -> bool:
        """True when `data` is sealed and opens with the current (first) key."""
        if not is_sealed(data):
            return False
        from cryptography.exceptions import InvalidTag

        nonce, body = data[len(MAGIC) : len(MAGIC) + NONCE_BYTES], data[len(MAGIC) + NONCE_BYTES :]
        try:
            self._aeads[0].decrypt(nonce, body, _AAD)
        except InvalidTag:
            return False
        return True


class PlainSealer:
    """The sealer of a plaintext data directory: files are written as they are (and a sealed file,
    which cannot be opened here, is an error)."""

    @property
    def encrypting(self) -> bool:
        return False

    def seal(self, data: bytes) -> bytes:
        return data

    def open(self, data: bytes) -> bytes:
        if is_sealed(data):
            raise ValueError("a sealed file in a plaintext data directory")
        return data

    def sealed_with_current(self, data: bytes) -> bool:
        return False


PLAIN = PlainSealer()


def is_sealed(data: bytes) -> bool:
    return data[: len(MAGIC)] == MAGIC

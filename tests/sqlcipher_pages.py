"""Read an encrypted store's files the way someone holding the key could: every page decrypted.

The raw-byte privacy tests (forgetting, redaction) search the files of the data directory for words
that must be gone. On an encrypted store the files hold no plaintext at all, so such a search would
pass even if a forget failed. `readable_bytes` therefore decrypts every page of gum.sqlite3 and of
its WAL, live and free pages alike (SQLCipher 4 layout: 4096-byte pages, each ending in a reserve of
IV (16) and HMAC (64 for HMAC-SHA512, SQLCipher's default and older stores'; 32 for HMAC-SHA256, what
the store writes now: asked of SQLCipher itself); page 1 starts with the 16-byte salt; WAL frames carry
a 24-byte header), and returns that, so a forgotten word left in a free page is still caught.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gum_mcp.config import load_settings
from gum_mcp.store.crypto import derive
from gum_mcp.store.db import connect
from gum_mcp.store.keys import find_key, store_state

PAGE = 4096
IV = 16
HMAC_BYTES = {"HMAC_SHA512": 64, "HMAC_SHA256": 32}
SALT = 16
WAL_HEADER = 32
FRAME_HEADER = 24


def store_files(data_dir: Path, name: str = "gum.sqlite3") -> list[Path]:
    return [p for p in sorted(data_dir.iterdir()) if p.name.startswith(name)]


def raw_file_bytes(data_dir: Path, name: str = "gum.sqlite3") -> bytes:
    return b"".join(p.read_bytes() for p in store_files(data_dir, name))


def readable_bytes(data_dir: Path, name: str = "gum.sqlite3") -> bytes:
    """The store's files as they are when plaintext; every page decrypted when encrypted."""
    path = data_dir / name
    if store_state(path) != "encrypted":
        return raw_file_bytes(data_dir, name)
    key = find_key(load_settings(env={}, cwd=data_dir, data_dir=data_dir))
    assert key is not None
    raw_key = derive(key.secret, "sqlcipher")
    reserve = page_reserve(path, key.sqlcipher)
    out = [decrypt_pages(path.read_bytes(), raw_key, reserve)]
    wal = Path(f"{path}-wal")
    if wal.exists():
        data = wal.read_bytes()
        frame = FRAME_HEADER + PAGE
        for start in range(WAL_HEADER, len(data) - frame + 1, frame):
            number = int.from_bytes(data[start : start + 4], "big")
            out.append(_decrypt_page(data[start + FRAME_HEADER : start + frame], raw_key, reserve, first=number == 1))
    return b"".join(out)


def every_file_bytes(data_dir: Path) -> bytes:
    """The raw bytes of every file under the data dir; on an encrypted one also every page of the store and of
    the vectors file decrypted (free pages and WAL frames included), so encryption cannot hide a forget that
    failed."""
    blob = b"".join(p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file())
    if (data_dir / "encryption.json").exists():
        blob += readable_bytes(data_dir) + readable_bytes(data_dir, "vectors.sqlite3")
    return blob


def page_reserve(path: Path, sqlcipher_key: str) -> int:
    """Bytes at the end of each page (IV and HMAC) of the encrypted file at `path`, as SQLCipher opens it."""
    conn = connect(path, sqlcipher_key, read_only=True)
    try:
        return IV + HMAC_BYTES[conn.execute("PRAGMA cipher_hmac_algorithm").fetchone()[0]]
    finally:
        conn.close()


def decrypt_pages(data: bytes, raw_key: bytes, reserve: int) -> bytes:
    return b"".join(_decrypt_page(data[start : start + PAGE], raw_key, reserve, first=start == 0)
                    for start in range(0, len(data) - PAGE + 1, PAGE))


def _decrypt_page(page: bytes, raw_key: bytes, reserve: int, *, first: bool) -> bytes:
    iv = page[PAGE - reserve : PAGE - reserve + IV]
    if iv == bytes(IV) and page == bytes(PAGE):  # a page never written
        return b""
    body = page[SALT if first else 0 : PAGE - reserve]
    decryptor = Cipher(algorithms.AES(raw_key), modes.CBC(iv)).decryptor()
    return decryptor.update(body) + decryptor.finalize()

"""The SQLite connection: files and permissions, pragmas, migrations, transactions, crash points.

One `Database` wraps one connection shared by worker threads under a lock. Writers use
`BEGIN IMMEDIATE`, so two processes adding at once wait for each other (busy timeout) instead of
failing, and nothing is acknowledged before COMMIT returns.

`connect` is the one connection factory: sqlcipher3 (SQLite 3.53 with SQLCipher 4 and FTS5), keyed
with the data directory's key (`keys.py`) when the store is encrypted, plaintext otherwise. The
layers above see the same DB-API connection either way; its exceptions are `driver().Error` and kin.
Every process that has a store open holds `store.lock` shared (see `StoreLock`).
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gum_mcp.store.keys import (
    DataKey,
    KeyProblem,
    StoreBusy,
    create_key,
    find_key,
    store_state,
    wants_encryption,
)
from gum_mcp.store.schema import MIGRATIONS

if TYPE_CHECKING:
    from gum_mcp.config import Settings

log = logging.getLogger("gum_mcp.store")

DIR_MODE = 0o700
FILE_MODE = 0o600
BUSY_TIMEOUT_MS = 15_000
CACHE_KIB = -32_000  # PRAGMA cache_size: negative = KiB

#: The page authentication of encrypted files made from now on (new stores, and the copies `gum-mcp encrypt`
#: and `key rotate` write): HMAC-SHA256 costs a third less per page written or read than SQLCipher 4's default
#: HMAC-SHA512 on CPUs with SHA extensions (bench/store.py). Files made before still open: `connect` tries
#: the older default when the first read fails.
PAGE_HMAC = "HMAC_SHA256"
LEGACY_PAGE_HMAC = "HMAC_SHA512"
_defaults_set = False
_defaults_lock = threading.Lock()

#: Environment variable naming a crash point; tests set it to SIGKILL the process right there.
CRASH_ENV = "GUM_TEST_CRASH_POINT"

#: Every crash point in the batch commit, in the order they are passed.
BATCH_CRASH_POINTS = (
    "batch:begin",
    "batch:propositions",
    "batch:evidence",
    "batch:observations",
    "batch:before_commit",
    "batch:after_commit",
)


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL when the test environment names this point."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def ensure_private_dir(path: Path) -> None:
    """Create `path` (and parents) and make sure only the owner can enter it."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != DIR_MODE:
        path.chmod(DIR_MODE)


def ensure_private_file(path: Path) -> None:
    """Create `path` if missing, owner read/write only; tighten it if it exists."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, FILE_MODE)
    os.close(fd)
    if path.stat().st_mode & 0o777 != FILE_MODE:
        path.chmod(FILE_MODE)


# -- the connection factory: the one place a connection to a store file is made


def driver() -> Any:
    """The DB-API module: sqlcipher3 (SQLite with SQLCipher, FTS5 included), or the standard library's
    sqlite3 where sqlcipher3 is not installed (then only plaintext stores open). Code above the store
    catches `driver().Error` and its kin, never the standard library's classes."""
    global _defaults_set
    try:
        from sqlcipher3 import dbapi2
    except ImportError:  # pragma: no cover - sqlcipher3 is a dependency
        return sqlite3
    if not _defaults_set:
        with _defaults_lock:
            if not _defaults_set:  # process-wide: files created or attached with a key from here on
                conn = dbapi2.connect(":memory:")
                try:
                    conn.execute(f"PRAGMA cipher_default_hmac_algorithm = {PAGE_HMAC}")
                finally:
                    conn.close()
                _defaults_set = True
    return dbapi2


def encryption_available() -> bool:
    return driver() is not sqlite3


def connect(path: Path | str, key: str | None = None, *, read_only: bool = False,
            timeout: float = BUSY_TIMEOUT_MS / 1000) -> Any:
    """A connection to the SQLite file at `path`, opened with `key` (the value of `PRAGMA key`, see
    `crypto.sqlcipher_key`) or plaintext when None: autocommit (callers BEGIN), usable from any thread
    (callers serialise), rows as `Row`, exp() available. Raises KeyProblem when the file does not open
    with this key (or is not a database)."""
    module = driver()
    if key is not None and module is sqlite3:
        raise KeyProblem("this store is encrypted, and opening it needs the sqlcipher3 package "
                         "(pip install sqlcipher3)")
    target, uri = (f"file:{Path(path).as_posix()}?mode=ro", True) if read_only else (str(path), False)
    try:
        conn = _keyed(module, target, uri, timeout, key, PAGE_HMAC)
    except module.DatabaseError as exc:
        if key is None:
            raise KeyProblem(f"{path} does not open (encrypted, or damaged): {exc}") from None
        try:  # a file made before PAGE_HMAC
            conn = _keyed(module, target, uri, timeout, key, LEGACY_PAGE_HMAC)
        except module.DatabaseError:
            raise KeyProblem(f"{path} does not open with this key (wrong key, or a damaged file): {exc}") from None
    conn.row_factory = module.Row
    try:
        conn.execute("SELECT exp(0.0)").fetchone()
    except module.OperationalError:  # a build without SQLITE_ENABLE_MATH_FUNCTIONS (sqlcipher3's)
        import math

        conn.create_function("exp", 1, math.exp, deterministic=True)
    return conn


def connect_with(path: Path | str, key: DataKey | None) -> Any:
    """`connect` with a data dir's key (None: plaintext). During an interrupted key rotation a file may still be
    under the previous key: it opens with that one."""
    try:
        return connect(path, None if key is None else key.sqlcipher)
    except KeyProblem:
        if key is None or key.previous is None:
            raise
        return connect(path, key.previous.sqlcipher)


def _keyed(module: Any, target: str, uri: bool, timeout: float, key: str | None, page_hmac: str) -> Any:
    """A connection whose first read succeeded (closed and re-raised if it failed)."""
    conn = module.connect(target, timeout=timeout, isolation_level=None, check_same_thread=False, uri=uri)
    try:
        if module is not sqlite3:  # SQLCipher's own log (stderr) would repeat our one-line errors as noise
            conn.execute("PRAGMA cipher_log_level = NONE")
        if key is not None:
            conn.execute(f"PRAGMA key = {key}")
            conn.execute(f"PRAGMA cipher_hmac_algorithm = {page_hmac}")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn


def cipher_version() -> str | None:
    """SQLCipher's version, or None without it."""
    if not encryption_available():
        return None
    conn = driver().connect(":memory:")
    try:
        row = conn.execute("PRAGMA cipher_version").fetchone()
        return row[0] if row else None
    finally:
        conn.close()


STORE_LOCK_NAME = "store.lock"
LOCK_WAIT = 60.0  # seconds an opening process waits for `gum-mcp encrypt` or `key rotate` to finish


class StoreLock:
    """Who has the data directory open: every open store holds a shared lock on `store.lock`;
    creating a store, encrypting it and rotating its key hold it exclusively. The OS frees the lock
    when its holder dies. (POSIX flock; on Windows there is no such lock and rotate/encrypt check
    only the engine lock.)"""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / STORE_LOCK_NAME
        self._fd: int | None = None
        self.mode: str | None = None

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        return self._fd

    def _try(self, exclusive: bool) -> bool:
        if _flock is None:
            return True
        import fcntl

        try:
            _flock(self._open(), (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def acquire(self, *, exclusive: bool, wait: float = LOCK_WAIT) -> bool:
        """Take the lock, waiting up to `wait` seconds; False when that was not enough."""
        deadline = time.monotonic() + wait
        delay = 0.01
        told = False
        while not self._try(exclusive):
            if time.monotonic() >= deadline:
                return False
            if not told and not exclusive and time.monotonic() > deadline - wait + 2:
                log.warning("%s is held by another process (encrypt, key rotate); waiting", self.path.parent)
                told = True
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        self.mode = "exclusive" if exclusive else "shared"
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the flock
            self._fd = None
            self.mode = None


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    _flock = None
else:
    from fcntl import flock as _flock


def exclusive_store(data_dir: Path, what: str) -> StoreLock:
    """The data directory alone, for `what` (e.g. "gum-mcp key rotate"): raises StoreBusy when another
    process has it open. Release the returned lock when done."""
    ensure_private_dir(data_dir)
    lock = StoreLock(data_dir)
    # Without flock (Windows) only a running engine is seen: lock.py's record of its owner.
    if lock.acquire(exclusive=True, wait=0) and (_flock is not None or not (data_dir / "engine.json").exists()):
        return lock
    lock.release()
    holder = ""
    try:  # lock.py's record of the engine's owner (read as data: the store does not import lock.py)
        import json

        owner = json.loads((data_dir / "engine.json").read_text())
        holder = f" (the engine runs in pid {owner['pid']}: {owner.get('command', '')})"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    raise StoreBusy(f"another gum-mcp process has {data_dir} open{holder}; stop it (and the MCP clients "
                    f"that start it) and run `{what}` again")


class Database:
    """The store's connection. With `settings`, the data directory's key is found (or, for a new
    store, made) and the file opened with it; without, the file at `path` is opened plaintext."""

    def __init__(self, path: Path, *, durability: str = "normal", settings: Settings | None = None) -> None:
        self.path = path
        ensure_private_dir(path.parent)
        self.store_lock = StoreLock(path.parent)
        if not self.store_lock.acquire(exclusive=False):
            raise StoreBusy(f"{path.parent} is still being encrypted or re-keyed by another process; try again")
        self.lock = threading.RLock()
        try:
            self.key = self._open(settings)
            for pragma in (
                "journal_mode = WAL",
                f"synchronous = {'FULL' if durability == 'full' else 'NORMAL'}",
                "foreign_keys = ON",
                f"busy_timeout = {BUSY_TIMEOUT_MS}",
                "secure_delete = ON",  # freed pages are zeroed: forgotten text leaves the file
                "temp_store = MEMORY",
                # 32 MB of pages kept (decrypted) in memory, filled only as used: an encrypted page
                # read from disk costs a decryption, and 100k propositions' pages then mostly fit
                f"cache_size = {CACHE_KIB}",
            ):
                self._conn.execute(f"PRAGMA {pragma}")
            self._migrate()
        except BaseException:
            if getattr(self, "_conn", None) is not None:
                self._conn.close()
            self.store_lock.release()
            raise
        for suffix in ("-wal", "-shm"):
            side = Path(f"{path}{suffix}")
            if side.exists() and side.stat().st_mode & 0o777 != FILE_MODE:
                side.chmod(FILE_MODE)
        if self.store_lock.mode == "exclusive":  # a new store, now created: others may open it
            self.store_lock.release()
            self.store_lock.acquire(exclusive=False)

    def _open(self, settings: Settings | None) -> DataKey | None:
        """Find (or make) the key and connect. A new store is created holding the lock exclusively,
        so two processes starting at once agree on one key."""
        path = self.path
        key: DataKey | None = None
        self._conn = None
        if settings is not None:
            state = store_state(path)
            if state == "new":
                state = self._creation_lock()
            key = find_key(settings)
            if state == "plaintext" and (settings.encrypt or settings.db_key or settings.db_key_file):
                raise KeyProblem(f"the store in {path.parent} is not encrypted yet, but GUM_ENCRYPT or GUM_DB_KEY "
                                 "asks for encryption: run `gum-mcp encrypt` (or unset them)")
            if key is None and state == "new" and wants_encryption(settings):
                if not encryption_available():
                    raise KeyProblem("encrypting the store needs the sqlcipher3 package (pip install sqlcipher3); "
                                     "or set GUM_ENCRYPT=0 for a plaintext store")
                key = create_key(settings)
        ensure_private_file(path)
        # SQLite gives the -wal and -shm files the main file's permissions.
        self._conn = connect_with(path, key)
        return key

    def _creation_lock(self) -> str:
        """Hold the lock exclusively to create the store; or, when another process is creating it,
        wait until it exists. Returns the store's state after."""
        self.store_lock.release()
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            if self.store_lock.acquire(exclusive=True, wait=0):
                return store_state(self.path)
            if store_state(self.path) != "new" or time.monotonic() > deadline:
                if not self.store_lock.acquire(exclusive=False):
                    raise StoreBusy(f"{self.path.parent} is being created by another process; try again")
                return store_state(self.path)
            time.sleep(0.02)

    @property
    def encrypted(self) -> bool:
        return self.key is not None

    # -- schema
    def _migrate(self) -> None:
        with self.lock:
            if self.version() >= len(MIGRATIONS):
                return
            with self.write() as conn:
                current = conn.execute("PRAGMA user_version").fetchone()[0]
                for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
                    for statement in _statements(script):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {number}")
                    log.info("applied schema migration %d", number)

    def version(self) -> int:
        with self.lock:
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    # -- access
    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
        with self.lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent read: one snapshot for everything inside the block."""
        with self.lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def purge_freed_text(self, *, attempts: int = 50) -> bool:
        """Make deleted text unreadable in the files: merge the FTS indexes, then fold the WAL
        back into the database and truncate it. secure_delete zeroes the freed pages.

        Returns False when another process kept the WAL busy for the whole time; the text is
        then gone from the database but may linger in the WAL until the next checkpoint.
        """
        with self.lock:
            for table in ("observations_fts", "propositions_fts"):
                self._conn.execute(f"INSERT INTO {table} ({table}) VALUES ('optimize')")
        if truncate_wal(self._conn, attempts, self.lock):
            return True
        log.warning("WAL checkpoint stayed busy; forgotten text may remain in the WAL until later")
        return False

    def close(self) -> None:
        with self.lock:
            self._conn.close()
            self.store_lock.release()


def truncate_wal(conn: Any, attempts: int, lock: threading.RLock) -> bool:
    """Fold the WAL back into the database file and truncate it, so no earlier copy of a page (deleted text, a
    deleted vector) stays in it. False when other processes kept it busy at every attempt. `lock` (the
    connection's) is held for each attempt, not across the back-off between them."""
    for attempt in range(attempts):
        with lock:
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if not busy:
            return True
        time.sleep(min(0.01 * (attempt + 1), 0.2))
    return False


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer.strip()
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement in migration: {buffer.strip()[:80]}")

"""The SQLite connection: files and permissions, pragmas, migrations, transactions, crash points.

One `Database` wraps one sqlite3 connection shared by worker threads under a lock. Writers use
`BEGIN IMMEDIATE`, so two processes adding at once wait for each other (busy timeout) instead of
failing, and nothing is acknowledged before COMMIT returns.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gum_mcp.store.schema import MIGRATIONS

log = logging.getLogger("gum_mcp.store")

DIR_MODE = 0o700
FILE_MODE = 0o600
BUSY_TIMEOUT_MS = 15_000

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


class Database:
    def __init__(self, path: Path, *, durability: str = "normal") -> None:
        self.path = path
        ensure_private_dir(path.parent)
        ensure_private_file(path)
        # SQLite gives the -wal and -shm files the main file's permissions.
        self._conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self.lock = threading.RLock()
        for pragma in (
            "journal_mode = WAL",
            f"synchronous = {'FULL' if durability == 'full' else 'NORMAL'}",
            "foreign_keys = ON",
            f"busy_timeout = {BUSY_TIMEOUT_MS}",
            "secure_delete = ON",  # freed pages are zeroed: forgotten text leaves the file
            "temp_store = MEMORY",
        ):
            self._conn.execute(f"PRAGMA {pragma}")
        self._migrate()
        for suffix in ("-wal", "-shm"):
            side = Path(f"{path}{suffix}")
            if side.exists() and side.stat().st_mode & 0o777 != FILE_MODE:
                side.chmod(FILE_MODE)

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
            for attempt in range(attempts):
                busy, _frames, _done = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    return True
                time.sleep(min(0.01 * (attempt + 1), 0.2))
            log.warning("WAL checkpoint stayed busy; forgotten text may remain in the WAL until later")
            return False

    def close(self) -> None:
        with self.lock:
            self._conn.close()


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

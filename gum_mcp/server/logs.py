"""Where a serving process logs: stderr (warnings, at the level the CLI chose) and
`<data dir>/logs/gum-mcp.log` (info and up, 0600). Never stdout: over stdio it belongs to the protocol.

The file is rotated at `GUM_LOG_MAX_BYTES`, keeping `GUM_LOG_BACKUPS` older files (`gum-mcp.log.1`
is the newest of them). Every process of a data directory (Claude Desktop's server, an IDE's, `gum-mcp
observe`) writes the same file, so rotation is agreed on through the file itself: the size that counts
is the file's on disk, a process whose file was rotated by another reopens the new one, and the
renames happen under a lock, once.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
from collections.abc import Iterator
from pathlib import Path

from gum_mcp.config import Settings

LOG_NAME = "gum-mcp.log"
LOCK_NAME = ".rotate.lock"


def log_to_file(settings: Settings) -> None:
    from gum_mcp.store.db import ensure_private_dir

    ensure_private_dir(settings.log_dir)
    handler = SharedRotatingFileHandler(settings.log_dir / LOG_NAME, max_bytes=settings.log_max_bytes,
                                        backups=settings.log_backups)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger("gum_mcp")
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.INFO, logging.INFO))
    for handler in root.handlers:  # stderr stays at the level the CLI chose
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)


class SharedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A size-rotated log file that several processes write (see the module docstring); files are 0600."""

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True)
        self.lock_path = Path(path).with_name(LOCK_NAME)

    def _open(self):  # type: ignore[no-untyped-def]  # owner-only, whoever creates it
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        if self.stream is not None and not self._same_file():
            self._reopen()  # another process rotated it: write to the new file
        try:
            size = os.stat(self.baseFilename).st_size
        except FileNotFoundError:
            return False
        return size + len(self.format(record)) + 1 >= self.maxBytes

    def doRollover(self) -> None:
        with _locked(self.lock_path):
            try:
                size = os.path.getsize(self.baseFilename)
            except FileNotFoundError:
                size = 0
            # another process may have rotated while we waited for the lock
            if self._same_file() and size >= self.maxBytes // 2:
                super().doRollover()
            else:
                self._reopen()

    def _same_file(self) -> bool:
        """Whether our stream still writes the file at our path."""
        if self.stream is None:
            return True
        try:
            return os.path.samestat(os.fstat(self.stream.fileno()), os.stat(self.baseFilename))
        except (FileNotFoundError, ValueError, OSError):
            return False

    def _reopen(self) -> None:
        if self.stream is not None:
            with contextlib.suppress(OSError):
                self.stream.close()
        self.stream = self._open()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` across processes (POSIX); without fcntl (Windows), no lock."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock

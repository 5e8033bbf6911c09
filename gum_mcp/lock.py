"""One engine per data directory: an exclusive, advisory OS lock on `<data dir>/engine.lock`.

The holder runs the engine, the observers and every write to the vector index. The OS drops the
lock when the holder exits, however it exits (SIGKILL included), so another live process can take
over by trying again. Who holds it is written to `<data dir>/engine.json` for status displays.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from gum_mcp.store.db import FILE_MODE, ensure_private_dir

LOCK_NAME = "engine.lock"
OWNER_NAME = "engine.json"


@dataclass(frozen=True)
class Owner:
    pid: int
    host: str
    started_at: float
    command: str

    def describe(self) -> dict[str, object]:
        """For status displays."""
        return {"pid": self.pid, "host": self.host, "command": self.command}

    @property
    def alive(self) -> bool:
        """Whether the owning process still exists (only knowable on this host)."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class EngineLock:
    def __init__(self, data_dir: Path) -> None:
        ensure_private_dir(data_dir)
        self.path = data_dir / LOCK_NAME
        self.owner_path = data_dir / OWNER_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it. Never blocks. True when this process holds it."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        if not _lock(fd):
            os.close(fd)
            return False
        self._fd = fd
        info = Owner(pid=os.getpid(), host=socket.gethostname(), started_at=time.time(),
                     command=" ".join(sys.argv[:3]))
        tmp = self.owner_path.with_suffix(".tmp")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE), "w") as out:
            json.dump(info.__dict__, out)
        os.replace(tmp, self.owner_path)
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if self.owner() is not None and self.owner().pid == os.getpid():
                self.owner_path.unlink(missing_ok=True)
        finally:
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None

    def owner(self) -> Owner | None:
        """Who holds the lock, as last recorded; None when nobody does."""
        try:
            data = json.loads(self.owner_path.read_text())
            owner = Owner(**data)
        except (OSError, ValueError, TypeError):
            return None
        if not self.held and not owner.alive:
            return None
        return owner

    def __enter__(self) -> EngineLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

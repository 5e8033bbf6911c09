"""Private files beside the store: written atomically, owner read/write only (0600).

A write goes to a temporary file named for this process and thread (so concurrent writers, in one
process or several, never share one), is synced, then renamed over the target; with `sync_dir` the
folder is synced too, so the rename itself survives a power loss.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

FILE_MODE = 0o600


def write_private(path: Path, data: bytes, *, sync: bool = True, sync_dir: bool = False) -> None:
    """Write `data` to `path` atomically, 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync_dir and hasattr(os, "O_DIRECTORY"):
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

"""Every file of the data directory is private: folders 0700, files 0600.

The store and the vector index create their own files that way (db.py: `ensure_private_file`; SQLite
gives the -wal and -shm files the main file's mode). Other writers (a log handler, a library) use the
process umask (0644 / 0755 by default), so the CLI sets a umask of 0o077 for everything it starts,
`gum-mcp doctor` reports what is still readable by others (`loose_paths`), and `secure_tree` fixes a tree.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
PRIVATE_UMASK = 0o077


def secure_tree(root: Path) -> int:
    """Make `root` and everything under it private (folders 0700, files 0600; symlinks are left alone).
    Returns how many modes it changed. Files that vanish meanwhile are skipped."""
    changed = 0
    if not root.exists():
        return 0
    for path in [root, *root.rglob("*")]:
        with contextlib.suppress(FileNotFoundError):
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                continue
            want = DIR_MODE if stat.S_ISDIR(info.st_mode) else FILE_MODE
            if stat.S_IMODE(info.st_mode) != want:
                os.chmod(path, want)
                changed += 1
    return changed


def loose_paths(root: Path) -> list[Path]:
    """Folders and files under `root` (itself included) that others may read, write or enter."""
    loose: list[Path] = []
    if not root.exists():
        return loose
    for path in [root, *root.rglob("*")]:
        with contextlib.suppress(FileNotFoundError):
            info = path.lstat()
            if not stat.S_ISLNK(info.st_mode) and stat.S_IMODE(info.st_mode) & 0o077:
                loose.append(path)
    return loose


def private_umask() -> int:
    """Set the process umask to 0o077 (new files 0600, new folders 0700); return the previous one."""
    return os.umask(PRIVATE_UMASK)

"""Reading a config file, backing it up, and replacing it atomically with its permissions kept."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from datetime import datetime
from pathlib import Path

from gum_mcp.install.errors import InstallError


def read_config(path: Path) -> bytes | None:
    """The file's bytes; None when it does not exist. Raises InstallError when it cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise InstallError(f"{path} is a directory, not a config file.") from None
    except OSError as exc:
        raise InstallError(f"cannot read {path}: {exc.strerror}") from None


def backup_path(path: Path, now: datetime) -> Path:
    """`<file>.bak-<timestamp>`, with `-2`, `-3`... when that name is taken."""
    stamp = now.strftime("%Y%m%d-%H%M%S")
    candidate = path.with_name(f"{path.name}.bak-{stamp}")
    n = 2
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.bak-{stamp}-{n}")
        n += 1
    return candidate


def write_atomic(path: Path, data: bytes, *, mode: int, like: os.stat_result | None = None) -> None:
    """Replace `path` with `data` in one step (a temp file in the same folder, fsync, rename); `mode`
    for the new file; the owner of `like` kept when running as root."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if like is not None and hasattr(os, "geteuid") and os.geteuid() == 0:
            os.chown(tmp, like.st_uid, like.st_gid)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):
        with contextlib.suppress(OSError):
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def replace_with_backup(target: Path, raw: bytes | None, data: bytes, *, now: datetime | None,
                        writer: str) -> Path | None:
    """Write `data` to `target`, whose content was `raw` (None: it did not exist), and return the backup.

    An existing file is copied to a backup first and its permissions are kept; a new file (and its
    folder) is created with mode 0600. Raises InstallError, leaving `target` as it is, when it no longer
    holds `raw` (`writer` names who may be writing it). `now` stamps the backup (default: now).
    """
    backup = None
    st = None
    if raw is None:
        target.parent.mkdir(parents=True, exist_ok=True)
        mode = 0o600  # it may hold other servers' secrets later
    else:
        st = target.stat()
        mode = stat.S_IMODE(st.st_mode)
        backup = backup_path(target, now or datetime.now())
        shutil.copy2(target, backup)
    if read_config(target) != raw:
        raise InstallError(f"{target} changed while gum-mcp was editing it (is {writer} writing it?). "
                           "Nothing was changed; run the command again.")
    write_atomic(target, data, mode=mode, like=st)
    return backup

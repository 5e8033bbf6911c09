"""One engine per data directory: the lock is exclusive across processes and freed by death."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import textwrap
from pathlib import Path

from gum_mcp.lock import EngineLock
from tests.conftest import PYTHON, REPO, wait_until

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from gum_mcp.lock import EngineLock
    lock = EngineLock(Path(sys.argv[1]))
    print("held" if lock.try_acquire() else "busy", flush=True)
    time.sleep(600)
    """
)


def test_second_holder_is_refused_until_the_first_dies(tmp_path: Path) -> None:
    holder = subprocess.Popen([PYTHON, "-c", HOLDER, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = EngineLock(tmp_path)
        assert not lock.try_acquire()
        owner = lock.owner()
        assert owner is not None and owner.pid == holder.pid and owner.alive
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        assert wait_until(lock.try_acquire, timeout=10)
        assert lock.owner().pid == os.getpid()
        lock.release()
        assert lock.owner() is None
    finally:
        holder.kill()
        holder.wait()


def test_lock_files_are_private_and_reacquire_is_idempotent(tmp_path: Path) -> None:
    with EngineLock(tmp_path) as lock:
        assert lock.try_acquire() and lock.try_acquire() and lock.held
        assert oct((tmp_path / "engine.lock").stat().st_mode & 0o777) == "0o600"
        assert oct((tmp_path / "engine.json").stat().st_mode & 0o777) == "0o600"
    assert not (tmp_path / "engine.json").exists()


def test_a_stale_owner_record_is_not_reported(tmp_path: Path) -> None:
    dead = {"pid": 2**22 + 12345, "host": socket.gethostname(), "started_at": 0, "command": "x"}
    (tmp_path / "engine.json").write_text(json.dumps(dead))
    assert EngineLock(tmp_path).owner() is None

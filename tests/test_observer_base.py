"""Observer base: the shared pause (also across processes), thread lifecycle, health, ObserverSet."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gum_mcp.config import Settings
from gum_mcp.domain import InvalidInput, utcnow
from gum_mcp.observers import (
    INDEFINITELY,
    ManualClock,
    Observer,
    ObserverSet,
    PauseState,
    pause_observing,
    paused_until,
    resume_observing,
)
from gum_mcp.observers.pause import pause_path
from gum_mcp.store import Store
from tests.conftest import PYTHON, REPO, gum_env, wait_until

pytestmark = pytest.mark.timeout(60)


def test_pause_until_and_resume(settings: Settings) -> None:
    assert paused_until(settings) is None
    until = utcnow() + timedelta(minutes=30)
    pause_observing(settings, until)
    assert paused_until(settings) == until.replace(microsecond=until.microsecond)
    path = pause_path(settings)
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["until"] == until.isoformat()
    assert resume_observing(settings) is True
    assert paused_until(settings) is None and not path.exists()
    assert resume_observing(settings) is False


def test_pause_indefinitely_and_expiry(settings: Settings) -> None:
    pause_observing(settings, None)
    assert paused_until(settings) == INDEFINITELY
    soon = utcnow() + timedelta(seconds=5)
    pause_observing(settings, soon)
    assert paused_until(settings) == soon
    assert paused_until(settings, now=soon + timedelta(seconds=1)) is None  # expired pauses end by themselves


def test_pause_rejects_bad_times(settings: Settings) -> None:
    with pytest.raises(InvalidInput, match="time zone"):
        pause_observing(settings, datetime(2030, 1, 1))
    with pytest.raises(InvalidInput, match="future"):
        pause_observing(settings, utcnow() - timedelta(seconds=1))


def test_broken_pause_file_errs_on_privacy(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    pause_path(settings).write_text("{not json")
    assert paused_until(settings) == INDEFINITELY
    assert resume_observing(settings) is True
    assert paused_until(settings) is None


def test_pause_state_rereads_only_on_change(settings: Settings) -> None:
    state = PauseState(settings)
    assert state.get() is None
    until = utcnow() + timedelta(hours=1)
    pause_observing(settings, until)
    assert state.get() == until
    pause_observing(settings, None)
    assert state.get() == INDEFINITELY
    resume_observing(settings)
    assert state.get() is None
    pause_observing(settings, until)
    assert state.get(now=until + timedelta(seconds=1)) is None


class Looper(Observer):
    """Counts loops, paused or not; crashes on its first run when told to."""

    name = "looper"

    def __init__(self, *args: object, crash_first: bool = False, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.crash_first = crash_first
        self.runs = 0

    def run(self) -> None:
        self.runs += 1
        if self.crash_first and self.runs == 1:
            raise RuntimeError("boom")
        while not self.stopping:
            self.count("paused_loops" if self.paused() is not None else "loops")
            if self.sleep(0.01):
                return


def test_pause_is_seen_across_processes(settings: Settings, store: Store) -> None:
    observer = Looper(settings, store)
    observer.start()
    try:
        wait_until(lambda: observer.counts().get("loops", 0) > 0)
        code = (
            "from datetime import timedelta; from gum_mcp.config import load_settings;"
            "from gum_mcp.domain import utcnow; from gum_mcp.observers import pause_observing;"
            "pause_observing(load_settings(), utcnow() + timedelta(minutes=5))"
        )
        subprocess.run([PYTHON, "-c", code], env=gum_env(settings.data_dir), cwd=REPO, check=True, timeout=60)
        wait_until(lambda: observer.health()["state"] == "paused")
        health = observer.health()
        assert health["paused_until"] is not None and health["paused_until"] > utcnow().isoformat()
        seen = observer.counts().get("paused_loops", 0)
        wait_until(lambda: observer.counts().get("paused_loops", 0) > seen)
        subprocess.run(
            [PYTHON, "-c", "from gum_mcp.config import load_settings; from gum_mcp.observers import "
             "resume_observing; resume_observing(load_settings())"],
            env=gum_env(settings.data_dir), cwd=REPO, check=True, timeout=60,
        )
        wait_until(lambda: observer.health()["state"] == "running")
    finally:
        assert observer.stop(5)
    assert observer.health()["state"] == "stopped"


def test_local_pause_and_crash_restart(settings: Settings, store: Store) -> None:
    clock = ManualClock()
    observer = Looper(settings, store, clock=clock, crash_first=True)
    observer.start()
    try:
        wait_until(lambda: observer.health()["last_error"] == "crashed: RuntimeError: boom")
        assert observer.health()["state"] == "error"
        clock.advance(2.0)  # the restart delay
        wait_until(lambda: observer.counts().get("loops", 0) > 0)
        observer.pause(utcnow() + timedelta(minutes=1))
        assert observer.paused() is not None
        assert paused_until(settings) is None  # an observer's own pause is not shared
        observer.resume()
        assert observer.paused() is None
    finally:
        assert observer.stop(5)


def test_observer_set(tmp_path: Path) -> None:
    from tests.conftest import make_settings

    watched = tmp_path / "watched"
    watched.mkdir()
    settings = make_settings(tmp_path / "data", observe="files", watch_dirs=str(watched))
    with Store.open(settings) as store:
        observers = ObserverSet(settings, store)
        assert [o.name for o in observers] == ["files"]
        with observers:
            wait_until(lambda: observers.health()[0]["state"] == "running")
            observers.pause(utcnow() + timedelta(minutes=10))
            status = observers.status()
            assert status["paused_until"] is not None
            wait_until(lambda: observers.health()[0]["state"] == "paused")
            assert observers.resume() is True
        assert observers.health()[0]["state"] == "stopped"
        assert ObserverSet(settings, store, []).health() == []
        with pytest.raises(ValueError, match="unknown observer"):
            ObserverSet(settings, store, ["microphone"])


def test_manual_clock() -> None:
    import threading

    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    clock = ManualClock(start)
    assert clock.now() == start
    event = threading.Event()
    waiter = threading.Thread(target=clock.wait, args=(event, 5.0))
    waiter.start()
    clock.advance(2.0)
    assert waiter.is_alive()
    clock.advance(3.0)
    waiter.join(5)
    assert not waiter.is_alive()
    assert clock.now() == start + timedelta(seconds=5)
    event.set()
    assert clock.wait(event, 100.0) is True

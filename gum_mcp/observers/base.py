"""The observer base: one thread per observer, start / stop / pause / resume, health; the shared pause.

Pausing is visible across processes: `pause_observing` writes `<data dir>/pause.json` (0600,
atomically) and every observer re-reads it each loop when its mtime changes (`PauseState`), so
`gum-mcp pause` in one process pauses the observers running in another. A pause with an end
(`until`) ends by itself; `resume_observing` deletes the file.

Every observer keeps a health record (state, last event, last error, warnings, counts) that
`health()` returns as a plain dict for status output.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal

from gum_mcp.config import Settings
from gum_mcp.domain import InvalidInput, utcnow
from gum_mcp.store.db import FILE_MODE, ensure_private_dir

if TYPE_CHECKING:
    from gum_mcp.store import Store

log = logging.getLogger("gum_mcp.observers")

PAUSE_FILE = "pause.json"
INDEFINITELY: Final = "indefinitely"
Paused = datetime | Literal["indefinitely"] | None

# A crashed run() is restarted after this many seconds, doubling up to the cap.
RESTART_DELAY = 2.0
RESTART_DELAY_MAX = 60.0


# ------------------------------------------------------------------------------------------ clock


class Clock:
    """Time for observers: `monotonic()` for intervals, `now()` for timestamps, `wait()` to sleep.

    Tests and benchmarks pass a `ManualClock` and step it; everything else uses `SystemClock`.
    """

    def monotonic(self) -> float:
        raise NotImplementedError

    def now(self) -> datetime:
        raise NotImplementedError

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Sleep up to `seconds` of this clock's time, or until `event` is set. True if it was set."""
        raise NotImplementedError


class SystemClock(Clock):
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return utcnow()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(0.0, seconds))


class ManualClock(Clock):
    """A clock that moves only when told to (`advance`, `set`). Thread-safe.

    `wait()` returns once the clock has been advanced past the target, or the event is set. It
    polls the event in short real-time slices, so a stop is never missed.
    """

    def __init__(self, start: datetime | None = None, monotonic: float = 1000.0) -> None:
        self._cond = threading.Condition()
        self._mono = monotonic
        self._start_mono = monotonic
        self._start = start or utcnow().replace(microsecond=0)

    def monotonic(self) -> float:
        with self._cond:
            return self._mono

    def now(self) -> datetime:
        with self._cond:
            return self._start + timedelta(seconds=self._mono - self._start_mono)

    def advance(self, seconds: float) -> None:
        with self._cond:
            self._mono += seconds
            self._cond.notify_all()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        with self._cond:
            target = self._mono + max(0.0, seconds)
            while not event.is_set() and self._mono < target:
                self._cond.wait(0.02)
            return event.is_set()


# ------------------------------------------------------------------------------------------ pause


def pause_path(settings: Settings) -> Path:
    return settings.data_dir / PAUSE_FILE


def pause_observing(settings: Settings, until: datetime | None = None) -> None:
    """Pause every observer on this data dir until `until` (UTC-aware), or indefinitely (None)."""
    now = utcnow()
    if until is not None:
        if until.tzinfo is None:
            raise InvalidInput("until must include a time zone")
        if until <= now:
            raise InvalidInput("until must be in the future")
    payload = {
        "until": until.astimezone(UTC).isoformat() if until is not None else None,
        "since": now.isoformat(),
    }
    ensure_private_dir(settings.data_dir)
    _write_private(pause_path(settings), json.dumps(payload).encode())
    log.info("observing paused %s", f"until {payload['until']}" if until else "indefinitely")


def resume_observing(settings: Settings) -> bool:
    """End a pause. Returns whether observing was paused."""
    was = paused_until(settings) is not None
    with contextlib.suppress(FileNotFoundError):
        pause_path(settings).unlink()
    if was:
        log.info("observing resumed")
    return was


def paused_until(settings: Settings, now: datetime | None = None) -> Paused:
    """Until when observing is paused: a UTC datetime, "indefinitely", or None (not paused)."""
    return _read_pause(pause_path(settings), now or utcnow())


def _read_pause(path: Path, now: datetime) -> Paused:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read %s (%s); treating observing as paused", path, exc.strerror)
        return INDEFINITELY
    try:
        data = json.loads(raw)
        until = data.get("until")
        if until is None:
            return INDEFINITELY
        when = datetime.fromisoformat(until)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    except (ValueError, TypeError, AttributeError):
        # Written atomically by us: a broken file was edited by hand. Err on the side of privacy.
        log.warning("%s is not valid; treating observing as paused until it is removed (gum-mcp resume)", path)
        return INDEFINITELY
    return when if when > now else None


class PauseState:
    """The shared pause, re-read only when the file changes (one stat per call)."""

    def __init__(self, settings: Settings) -> None:
        self.path = pause_path(settings)
        self._key: tuple[int, int, int] | None = None
        self._raw: Paused = None
        self._lock = threading.Lock()

    def get(self, now: datetime | None = None) -> Paused:
        now = now or utcnow()
        try:
            st = self.path.stat()
            key: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            key = None
        with self._lock:
            if key != self._key:
                self._key = key
                # Read "far in the past" so an expired pause is kept as a datetime; expiry below.
                self._raw = None if key is None else _read_pause(self.path, datetime.min.replace(tzinfo=UTC))
            raw = self._raw
        if isinstance(raw, datetime) and raw <= now:
            return None
        return raw


def later_pause(a: Paused, b: Paused) -> Paused:
    if a == INDEFINITELY or b == INDEFINITELY:
        return INDEFINITELY
    if a is None:
        return b
    if b is None:
        return a
    assert isinstance(a, datetime) and isinstance(b, datetime)
    return max(a, b)


def show_pause(value: Paused) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, FILE_MODE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------- observer


State = Literal["stopped", "starting", "running", "paused", "error", "stopping"]


class Observer:
    """One observer thread. Subclasses implement `run()` (loop until `stopping`) and may override
    `close()` (release resources; called in the thread when run() ends).

    Health: `record_event`, `count`, `record_error` / `clear_error`, `warn` / `unwarn`.
    """

    name: ClassVar[str] = "observer"

    def __init__(self, settings: Settings, store: Store, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pause = PauseState(settings)
        self._local_pause: Paused = None
        self._health_lock = threading.Lock()
        self._state: State = "stopped"
        self._counts: Counter[str] = Counter()
        self._started_at: datetime | None = None
        self._last_event_at: datetime | None = None
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None
        self._error_part = "main"
        self._warnings: dict[str, str] = {}

    # -- lifecycle

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._set_state("starting")
        self._started_at = utcnow()
        self._thread = threading.Thread(target=self._main, name=f"gum-observer-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> bool:
        """Ask the thread to stop and wait for it. Returns True when it has ended."""
        self._stop.set()
        self.wake()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("observer %s did not stop within %.0f s", self.name, timeout)
                return False
        self._set_state("stopped")
        return True

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        """Interrupt a sleep early (subclasses with their own wait override this)."""

    def sleep(self, seconds: float) -> bool:
        """Sleep on the observer's clock; True when stopping."""
        return self.clock.wait(self._stop, seconds)

    def run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release resources held by the thread."""

    def _main(self) -> None:
        delay = RESTART_DELAY
        try:
            while not self.stopping:
                try:
                    self._set_state("running")
                    self.run()
                    break
                except Exception as exc:
                    log.exception("observer %s crashed; restarting in %.0f s", self.name, delay)
                    self.record_error(f"crashed: {type(exc).__name__}: {exc}")
                    self._set_state("error")
                    if self.sleep(delay):
                        break
                    delay = min(RESTART_DELAY_MAX, delay * 2)
        finally:
            try:
                self.close()
            except Exception:
                log.exception("observer %s: error while closing", self.name)
            self._set_state("stopped")

    # -- pause

    def pause(self, until: datetime | None = None) -> None:
        """Pause this observer only, in this process (the shared pause is `pause_observing`)."""
        self._local_pause = until if until is not None else INDEFINITELY

    def resume(self) -> None:
        self._local_pause = None

    def paused(self) -> Paused:
        now = utcnow()
        local = self._local_pause
        if isinstance(local, datetime) and local <= now:
            self._local_pause = local = None
        value = later_pause(local, self._pause.get(now))
        with self._health_lock:
            if self._state in ("running", "paused"):
                self._state = "paused" if value is not None else "running"
        return value

    # -- health

    def _set_state(self, state: State) -> None:
        with self._health_lock:
            self._state = state

    def record_event(self, counter: str, n: int = 1) -> None:
        with self._health_lock:
            self._counts[counter] += n
            self._last_event_at = utcnow()

    def count(self, counter: str, n: int = 1) -> None:
        with self._health_lock:
            self._counts[counter] += n

    def set_count(self, counter: str, value: int) -> None:
        with self._health_lock:
            self._counts[counter] = value

    def counts(self) -> dict[str, int]:
        with self._health_lock:
            return dict(self._counts)

    def record_error(self, message: str, *, part: str = "main") -> None:
        """Report a problem; `part` names which part of the observer (capture, transcription, ...)."""
        with self._health_lock:
            if message != self._last_error:
                log.warning("observer %s: %s", self.name, message)
            self._last_error = message
            self._last_error_at = utcnow()
            self._error_part = part

    def clear_error(self, *, part: str = "main") -> None:
        """The problem `part` reported is over (another part's error stays)."""
        with self._health_lock:
            if self._error_part == part:
                self._last_error = None

    def warn(self, key: str, message: str) -> None:
        with self._health_lock:
            if self._warnings.get(key) != message:
                log.warning("observer %s: %s", self.name, message)
            self._warnings[key] = message

    def unwarn(self, key: str) -> None:
        with self._health_lock:
            self._warnings.pop(key, None)

    def health(self) -> dict[str, Any]:
        """State, last event and error, warnings and counts, JSON-ready.

        {"name", "state", "paused_until", "started_at", "last_event_at", "last_error",
         "last_error_at", "warnings": [str], "counts": {str: int}}
        """
        paused = self.paused() if self.alive else None
        with self._health_lock:
            return {
                "name": self.name,
                "state": self._state,
                "paused_until": show_pause(paused),
                "started_at": _iso(self._started_at),
                "last_event_at": _iso(self._last_event_at),
                "last_error": self._last_error,
                "last_error_at": _iso(self._last_error_at),
                "warnings": list(self._warnings.values()),
                "counts": dict(self._counts),
            }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# ----------------------------------------------------------------------------------- observer set


OBSERVER_NAMES = ("screen", "files")


def make_observer(name: str, settings: Settings, store: Store, **kwargs: Any) -> Observer:
    if name == "screen":
        from gum_mcp.observers.screen import ScreenObserver

        return ScreenObserver(settings, store, **kwargs)
    if name == "files":
        from gum_mcp.observers.files import FileObserver

        return FileObserver(settings, store, **kwargs)
    raise ValueError(f"unknown observer {name!r}; one of {', '.join(OBSERVER_NAMES)}")


class ObserverSet:
    """The observers `names` (default: `settings.observe`), started and stopped together.

    `options` maps an observer name to extra keyword arguments for its constructor (tests and
    benchmarks pass a clock or a display there).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        names: Sequence[str] | None = None,
        *,
        clock: Clock | None = None,
        options: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        wanted = list(dict.fromkeys(settings.observe if names is None else names))
        options = options or {}
        self.observers: list[Observer] = [
            make_observer(name, settings, store, clock=clock, **options.get(name, {})) for name in wanted
        ]

    def __iter__(self) -> Iterator[Observer]:
        return iter(self.observers)

    def get(self, name: str) -> Observer | None:
        return next((o for o in self.observers if o.name == name), None)

    def start(self) -> None:
        for observer in self.observers:
            observer.start()

    def stop(self, timeout: float = 15.0) -> bool:
        """Stop every observer (in parallel: each flushes what it holds). True when all ended."""
        for observer in self.observers:
            observer._stop.set()
            observer.wake()
        return all([observer.stop(timeout) for observer in self.observers])

    def pause(self, until: datetime | None = None) -> None:
        pause_observing(self.settings, until)

    def resume(self) -> bool:
        return resume_observing(self.settings)

    def health(self) -> list[dict[str, Any]]:
        return [observer.health() for observer in self.observers]

    def status(self) -> dict[str, Any]:
        """{"paused_until": iso | "indefinitely" | None, "observers": [health, ...]}"""
        return {"paused_until": show_pause(paused_until(self.settings)), "observers": self.health()}

    def __enter__(self) -> ObserverSet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


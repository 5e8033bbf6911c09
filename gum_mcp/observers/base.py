"""The observer base: one thread per observer, start / stop / pause / resume, health, restarts.

Every observer keeps a health record (state, last event, last error, warnings, counts) that
`health()` returns as a plain dict for status output. A crashed `run()` is restarted after
RESTART_DELAY seconds, doubling up to RESTART_DELAY_MAX. The shared pause is in
`gum_mcp.observers.pause`, the clocks in `gum_mcp.observers.clock`, the set of observers the runtime
starts in `gum_mcp.observers.observer_set`.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from gum_mcp.config import Settings
from gum_mcp.domain import utcnow
from gum_mcp.observers.clock import Clock, SystemClock
from gum_mcp.observers.pause import INDEFINITELY, Paused, PauseState, later_pause, show_pause

if TYPE_CHECKING:
    from gum_mcp.store import Store

log = logging.getLogger("gum_mcp.observers")

# A crashed run() is restarted after this many seconds, doubling up to the cap.
RESTART_DELAY = 2.0
RESTART_DELAY_MAX = 60.0


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

"""Time for observers: the `Clock` interface, `SystemClock`, and `ManualClock` for tests and benchmarks."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from gum_mcp.domain import utcnow


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

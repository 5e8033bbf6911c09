"""The observers the runtime runs (`ObserverSet`), made by name (`make_observer`).

The observer modules are imported only when an observer of theirs is made, so importing this module
(or `gum_mcp.observers`) stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gum_mcp.config import Settings
from gum_mcp.observers.base import Observer
from gum_mcp.observers.clock import Clock
from gum_mcp.observers.pause import pause_observing, paused_until, resume_observing, show_pause

if TYPE_CHECKING:
    from gum_mcp.store import Store


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

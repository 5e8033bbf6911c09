"""Observers: threads that watch how the person works and append observations to the inbox.

An observer never calls the engine: it turns raw events (screen frames, file activity) into text
observations and adds them to the store's inbox, which the engine lock owner processes.

Public API (what the runtime, the CLI and the MCP server use):

- `ObserverSet(settings, store, names=None)`: start / stop / health / status of the observers that
  `settings.observe` names (`screen`, `files`).
- `pause_observing(settings, until)`, `resume_observing(settings)`, `paused_until(settings)`: a
  pause shared by every process through `<data dir>/pause.json`; `show_pause(value)` for output.
- `forget_screenshots(settings, since, until)` and `screenshots_forget_hook(settings)`: forget
  removes pending and kept screenshots too. `forget_file_cache(settings)` drops the local copies
  the file observer keeps for diffs.
"""

from __future__ import annotations

from gum_mcp.config import Settings
from gum_mcp.observers.base import Observer
from gum_mcp.observers.clock import Clock, ManualClock, SystemClock
from gum_mcp.observers.frames import forget_screenshots, screenshots_forget_hook
from gum_mcp.observers.observer_set import ObserverSet
from gum_mcp.observers.pause import (
    INDEFINITELY,
    PauseState,
    pause_observing,
    paused_until,
    resume_observing,
    show_pause,
)

__all__ = [
    "INDEFINITELY",
    "Clock",
    "ManualClock",
    "Observer",
    "ObserverSet",
    "PauseState",
    "SystemClock",
    "forget_file_cache",
    "forget_screenshots",
    "pause_observing",
    "paused_until",
    "resume_observing",
    "screenshots_forget_hook",
    "show_pause",
]


def forget_file_cache(settings: Settings) -> int:
    """Delete the file observer's cached copies (for `forget --all`). Returns how many were removed."""
    from gum_mcp.observers.files import forget_file_cache as _forget

    return _forget(settings)

"""The shared pause: `<data dir>/pause.json`, seen by every process.

`pause_observing` writes the file (0600, atomically) and every observer re-reads it each loop when its
mtime changes (`PauseState`), so `gum-mcp pause` in one process pauses the observers running in
another. A pause with an end (`until`) ends by itself; `resume_observing` deletes the file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

from gum_mcp.config import Settings
from gum_mcp.domain import InvalidInput, utcnow
from gum_mcp.store.db import ensure_private_dir
from gum_mcp.store.private_files import write_private

log = logging.getLogger("gum_mcp.observers")

PAUSE_FILE = "pause.json"
INDEFINITELY: Final = "indefinitely"
Paused = datetime | Literal["indefinitely"] | None


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
    write_private(pause_path(settings), json.dumps(payload).encode())
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

"""Controls: pause and resume observing, the screen mode and exclusions, retention.

Every change goes where the CLI's goes, so running processes follow it as they follow the CLI:
- pausing is `observers.pause_observing` / `resume_observing`: `<data dir>/pause.json`, which every observer
  re-reads on its next loop (`gum-mcp pause`, `resume` and the MCP tools write the same file);
- the screen mode, the exclusions and the retention period are GUM_SCREEN_MODE, GUM_SCREEN_EXCLUDE and
  GUM_RETENTION_DAYS in `<data dir>/.env` (`config.write_env_values`: other lines kept, written atomically);
  the screen observer re-reads that file on its next sample and retention on its next run
  (`config.LiveSettings`). A value set in the process environment wins over the file, as at start, and the page
  says so.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from gum_mcp.config import LIVE_SETTINGS, LiveSettings, Settings, write_env_values
from gum_mcp.domain import InvalidInput, utcnow
from gum_mcp.observers import pause_observing, paused_until, resume_observing
from gum_mcp.observers.exclusions import DEFAULT_APPS, DEFAULT_TITLES
from gum_mcp.ui.routes import blocking, changes, field, go, is_htmx, render, ui
from gum_mcp.ui.state import UIState

DURATIONS = {"15m": ("15 minutes", timedelta(minutes=15)), "1h": ("1 hour", timedelta(hours=1)),
             "4h": ("4 hours", timedelta(hours=4)), "8h": ("8 hours", timedelta(hours=8)),
             "1d": ("1 day", timedelta(days=1)), "": ("until I resume", None)}
MODES = {
    "text": ("Text", "The redacted text read from the screen on this computer goes to your model provider. "
                     "The screenshot is never written to disk."),
    "vision": ("Vision", "The screenshot, with every secret-looking region and excluded window painted over, goes "
                         "to your model provider. More tokens; it sees layout and charts."),
    "local": ("Local", "Nothing leaves at capture: the redacted text read on this computer is the observation."),
}
MAX_EXCLUSIONS = 100


def _pause_words(paused: Any) -> str | None:
    if paused is None:
        return None
    if isinstance(paused, datetime):
        return f"until {paused.astimezone().strftime('%a %d %b, %H:%M')}"
    return "until you resume"


def controls_data(state: UIState) -> dict[str, Any]:
    from gum_mcp.lock import EngineLock

    live = LiveSettings(state.settings)
    current = live.current()
    status = state.status() if state.status is not None else None
    observing = (status or {}).get("observing") or {}
    owner = EngineLock(state.settings.data_dir).owner()
    retention = state.store.last_retention()
    return {
        "paused": _pause_words(paused_until(state.settings)), "durations": DURATIONS,
        "observers": observing.get("observers") or [], "observing_note": observing.get("note"),
        "role": (status or {}).get("role"), "owner": owner.describe() if owner else None,
        "mode": current.screen_mode, "modes": MODES, "exclude": current.screen_exclude,
        "builtin": {"applications": DEFAULT_APPS, "window titles": DEFAULT_TITLES},
        "retention_days": current.retention_days, "retention": retention,
        "retention_interval": state.settings.retention_interval, "live_problem": live.problem,
        "fixed": {key: os.environ[key] for key in LIVE_SETTINGS if os.environ.get(key)},
        "observe": state.settings.observe,
    }


async def controls(request: Request, **context: Any) -> Response:
    data = await blocking(controls_data, ui(request))
    return render(request, "controls.html", partial=False, **{"said": {}, "errors": {}, **data, **context})


async def _section(request: Request, section: str, *, said: str | None = None, error: str | None = None,
                   keep: dict[str, Any] | None = None) -> Response:
    """The changed section for htmx; the page with a message otherwise. `keep`: what the person typed, shown
    again with the error so that they can fix it."""
    if not is_htmx(request):
        if error is not None:
            return await controls(request, errors={section: error}, **(keep or {}))
        return go(request, f"/controls#{section}", said or "Saved.")
    data = {**await blocking(controls_data, ui(request)), **(keep or {})}
    return render(request, f"_controls_{section}.html", partial=True, said={section: said} if said else {},
                  errors={section: error} if error else {}, **data)


# ---------------------------------------------------------------------------------------- observing
@changes
async def pause(request: Request) -> Response:
    state = ui(request)
    choice = field(request, "for")
    if choice not in DURATIONS:
        return await _section(request, "observing", error="Choose how long to pause.")
    words, span = DURATIONS[choice]
    until = utcnow() + span if span is not None else None
    try:
        await blocking(pause_observing, state.settings, until)
    except InvalidInput as exc:
        return await _section(request, "observing", error=str(exc))
    return await _section(request, "observing", said=f"Observing paused {words if span is None else 'for ' + words}."
                          " Every observer stops at its next check, in every gum-mcp process.")


@changes
async def resume(request: Request) -> Response:
    was = await blocking(resume_observing, ui(request).settings)
    return await _section(request, "observing", said="Observing resumed." if was else "Observing was not paused.")


# ---------------------------------------------------------------------------------------- screen, retention
def _check(values: dict[str, str]) -> str | None:
    """Why these values cannot be saved (the setting's own rules), or None."""
    try:
        Settings.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = next((f.alias for n, f in Settings.model_fields.items() if error["loc"] and n == error["loc"][0]),
                    "value")
        return f"{name}: {error['msg'].removeprefix('Value error, ')}"
    return None


def _save(state: UIState, values: dict[str, str]) -> None:
    write_env_values(state.settings.data_dir / ".env", values)


@changes
async def screen(request: Request) -> Response:
    state = ui(request)
    mode = field(request, "mode")
    lines = [line.strip() for line in field(request, "exclude").splitlines() if line.strip()]
    keep = {"mode": mode, "exclude": lines}
    if mode not in MODES:
        return await _section(request, "screen", error="Choose text, vision or local.", keep=keep)
    if len(lines) > MAX_EXCLUSIONS:
        return await _section(request, "screen", error=f"At most {MAX_EXCLUSIONS} exclusions.", keep=keep)
    for number, line in enumerate(lines, start=1):
        try:
            re.compile(line)
        except re.error as exc:
            return await _section(request, "screen", error=f"Line {number}, “{line}”, is not a valid pattern: {exc}. "
                                  "Nothing was saved.", keep=keep)
    values = {"GUM_SCREEN_MODE": mode, "GUM_SCREEN_EXCLUDE": json.dumps(lines)}
    problem = _check(values)
    if problem:
        return await _section(request, "screen", error=problem + ". Nothing was saved.", keep=keep)
    await blocking(_save, state, values)
    return await _section(request, "screen", said=f"Saved: screen mode {mode}, {len(lines)} exclusion"
                          f"{'s' if len(lines) != 1 else ''} of your own. The screen observer uses them from its "
                          "next sample.")


@changes
async def retention(request: Request) -> Response:
    state = ui(request)
    text = field(request, "days")
    try:
        days = int(text)
    except ValueError:
        return await _section(request, "retention", error="Give a whole number of days (0 keeps text forever).")
    problem = _check({"GUM_RETENTION_DAYS": str(days)})
    if problem:
        return await _section(request, "retention", error=problem + ". Nothing was saved.",
                              keep={"retention_days": days})
    await blocking(_save, state, {"GUM_RETENTION_DAYS": str(days)})
    said = ("Saved: observation text is kept forever." if days == 0 else
            f"Saved: observation text is kept {days} day{'s' if days != 1 else ''} once processed.")
    return await _section(request, "retention", said=said + " It applies from the next retention run.")

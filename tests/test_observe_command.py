"""The observers wired into real processes: `serve --observe`, `observe`, `pause`, `resume`."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from gum_mcp.cli import main
from gum_mcp.store import Store
from tests.conftest import PYTHON, REPO, eventually, gum_env, make_settings, wait_until


def file_observations(data_dir: Path) -> list:
    if not (data_dir / "gum.sqlite3").exists():
        return []
    with Store.open(make_settings(data_dir)) as store:
        return [o for o in store.observations(limit=50) if o.kind == "file"]


@pytest.mark.anyio
async def test_serve_observe_files_and_a_clean_stop_flushes_what_it_holds(tmp_path: Path) -> None:
    data_dir, watched = tmp_path / "data", tmp_path / "notes"
    watched.mkdir()
    env = gum_env(data_dir, GUM_WATCH_DIRS=str(watched), GUM_FILES_WINDOW="3600")
    params = StdioServerParameters(command=PYTHON, args=["-m", "gum_mcp", "serve", "--observe", "files"], env=env,
                                   cwd=REPO)
    note = watched / "q4-plan.md"
    async with Client(params, mode="legacy") as client:

        async def files_health() -> dict | None:
            status = (await client.call_tool("status", {})).structured_content
            found = [o for o in status["observing"]["observers"] if o["name"] == "files"]
            return found[0] if found and found[0]["state"] == "running" else None

        await eventually(files_health, timeout=60)

        async def edited() -> bool:
            note.write_text("# Q4 plan\nbudget line\nbudget line\n")
            return (await files_health())["counts"].get("events", 0) > 0

        await eventually(edited, timeout=60, interval=0.3)
        paused = await client.call_tool("pause_observing", {"minutes": 5})
        assert not paused.is_error and "paused until" in paused.structured_content["message"]
        status = (await client.call_tool("status", {})).structured_content
        assert status["observing"]["paused_until"]
        resumed = await client.call_tool("resume_observing", {})
        assert resumed.structured_content["message"] == "observing resumed"
        # the window is an hour long: nothing was flushed yet
        assert file_observations(data_dir) == []
    # the client went away, the server stopped cleanly and flushed the coalesced activity
    found = file_observations(data_dir)
    assert len(found) == 1 and "q4-plan.md" in found[0].content


@contextmanager
def observing_files(tmp_path: Path, **extra_env: str) -> Iterator[tuple[subprocess.Popen, Callable[[], bool]]]:
    """`gum-mcp observe --observe files` on a fresh data dir, with `observed()`: touch a watched file
    and tell whether a file observation reached the inbox. Killed on the way out if still running."""
    data_dir, watched = tmp_path / "data", tmp_path / "notes"
    watched.mkdir()
    env = gum_env(data_dir, GUM_WATCH_DIRS=str(watched), **extra_env)
    proc = subprocess.Popen([PYTHON, "-m", "gum_mcp", "observe", "--observe", "files"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def observed() -> bool:
        assert proc.poll() is None, proc.stderr.read()
        (watched / "todo.txt").write_text("call Jordan about the budget\n")
        return bool(file_observations(data_dir))

    try:
        yield proc, observed
    finally:
        if proc.poll() is None:
            proc.kill()


def test_observe_command_feeds_the_inbox_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    with observing_files(tmp_path, GUM_FILES_WINDOW="0.5") as (proc, observed):
        wait_until(observed, timeout=60, interval=0.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert "nothing was lost" in proc.stderr.read()
    assert "todo.txt" in file_observations(tmp_path / "data")[0].content


def test_observe_captures_before_the_engine_has_started(tmp_path: Path) -> None:
    """An observer-only process waits for no MCP request and not for the engine: its first capture is
    in the inbox while the engine's start is held back (a test-only gate), and the engine starts after."""
    gate, log = tmp_path / "engine-may-start", tmp_path / "data" / "logs" / "gum-mcp.log"

    def engine_started() -> bool:
        return log.exists() and "engine started" in log.read_text()

    with observing_files(tmp_path, GUM_FILES_WINDOW="0.2", GUM_TEST_ENGINE_START_GATE=str(gate)) as (proc, observed):
        wait_until(observed, timeout=60, interval=0.2)
        assert not engine_started()  # the capture came first
        gate.touch()
        wait_until(engine_started, timeout=60)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0


def test_pause_and_resume_commands(tmp_path: Path, monkeypatch, capsys) -> None:
    from gum_mcp.observers import paused_until

    monkeypatch.setenv("GUM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    assert main(["pause", "--for", "30m"]) == 0
    assert "observing paused until" in capsys.readouterr().out
    assert paused_until(make_settings(tmp_path / "data")) is not None
    assert main(["resume"]) == 0
    assert capsys.readouterr().out.strip() == "observing resumed"
    assert paused_until(make_settings(tmp_path / "data")) is None
    assert main(["pause", "--for", "soon"]) == 2
    assert main(["pause", "--for", "2026-12-01"]) == 2  # a date is not a duration
    assert main(["observe"]) == 2

"""A forget is complete across layers, even after a crash: the files it must delete (kept and pending
screenshots, the file observer's cache) and the purge of freed text are recorded in the forget's own
transaction, done after it, and finished by the next process that opens the data dir when a crash
(SIGKILL, through the CLI in a real subprocess) or an error came in between."""

from __future__ import annotations

import signal
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from gum_mcp.config import Settings
from gum_mcp.domain import BatchResult, NewObservation, NewProposition, PropositionDraft, utcnow
from gum_mcp.forgetting import open_store
from gum_mcp.observers.frames import Frame, FrameStore
from gum_mcp.store import Store
from gum_mcp.store.db import CRASH_ENV
from gum_mcp.store.forget import FORGET_CRASH_POINTS
from tests.conftest import PYTHON, REPO, gum_env, make_settings

pytestmark = pytest.mark.timeout(120)

PLAIN = {"encrypt": False} if "encrypt" in Settings.model_fields else {}
SECRET = "zebrafinchdiary"
AT = utcnow() - timedelta(hours=6)


def settings_for(data_dir: Path) -> Settings:
    return make_settings(data_dir, **PLAIN)


def frame(frames: FrameStore, app: str, minutes: float = 0, title: str = f"{SECRET} - chat") -> Frame:
    return frames.save(AT + timedelta(minutes=minutes), [f"\x89PNG {title}".encode()], "png", app=app,
                       title=title, window_source="ewmh", monitors=[])


def keep(frames: FrameStore, saved: Frame, observation_id: int) -> None:
    assert frames.commit(saved)
    frames.finish(saved, observation_id, keep=True)


def seed(data_dir: Path) -> dict[str, object]:
    """A Signal screen observation with a kept screenshot and a proposition, a pending Signal frame, and
    unrelated things that must stay."""
    settings = settings_for(data_dir)
    frames = FrameStore(settings)
    with Store.open(settings) as store:
        [chat, code] = store.add_observations([
            NewObservation(content=f"Screen at 09:30 in Signal\nSam: the {SECRET} is in the drawer", kind="screen",
                           source="screen", observed_at=AT, app="Signal"),
            NewObservation(content="Screen at 12:30 in Code\nediting loader.py", kind="screen", source="screen",
                           observed_at=AT + timedelta(hours=3), app="Code"),
        ])
        store.complete_batch(BatchResult(observation_ids=(chat.id, code.id), new=(
            NewProposition(draft=PropositionDraft(text=f"Priya keeps a {SECRET}", reasoning="chat", confidence=6,
                                                  decay=6), evidence=(chat.id,)),
            NewProposition(draft=PropositionDraft(text="Priya edits loader.py", reasoning="code", confidence=6,
                                                  decay=4), evidence=(code.id,)),
        )))
    kept = frame(frames, "Signal")
    keep(frames, kept, chat.id)
    pending = frame(frames, "Signal", minutes=1)
    other = frame(frames, "Code", minutes=180, title="loader.py")
    return {"chat": chat.id, "kept": kept, "pending": pending, "other": other}


def exists(saved: Frame) -> bool:
    root = saved.directory.parent
    return any(p.name.startswith(saved.stamp) for p in root.rglob("*"))


def pending_deletes(data_dir: Path) -> int:
    with Store.open(settings_for(data_dir)) as store, store.db.read() as conn:
        return conn.execute("SELECT count(*) FROM pending_deletes").fetchone()[0]


def every_file(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file())


def cli(data_dir: Path, *argv: str, crash: str | None = None) -> subprocess.CompletedProcess:
    extra = {"GUM_ENCRYPT": "0"} if PLAIN else {}
    if crash:
        extra[CRASH_ENV] = crash
    return subprocess.run([PYTHON, "-m", "gum_mcp", *argv], env=gum_env(data_dir, **extra), cwd=REPO,
                          capture_output=True, text=True, timeout=90)


COMMANDS = {
    "observation": lambda seeded: ["forget", "--observation", str(seeded["chat"])],
    "app": lambda seeded: ["forget", "--app", "signal"],
    "range": lambda seeded: ["forget", "--since", (AT - timedelta(minutes=10)).isoformat(),
                             "--until", (AT + timedelta(minutes=10)).isoformat()],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_crash_between_the_commit_and_the_files_is_finished_by_the_next_start(tmp_path: Path, command: str) -> None:
    data_dir = tmp_path / "data"
    seeded = seed(data_dir)
    crashed = cli(data_dir, *COMMANDS[command](seeded), crash="forget:after_commit")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    with Store.open(settings_for(data_dir)) as store:  # a bare store finishes nothing
        assert [o.id for o in store.observations(limit=10) if o.id == seeded["chat"]] == []  # committed
    assert pending_deletes(data_dir) > 0
    assert exists(seeded["kept"])  # the files were left by the crash
    if command != "observation":
        assert exists(seeded["pending"])

    restarted = cli(data_dir, "status")
    assert restarted.returncode == 0, restarted.stderr
    assert pending_deletes(data_dir) == 0
    assert not exists(seeded["kept"])
    if command != "observation":
        assert not exists(seeded["pending"])  # it would have become an observation of the forgotten time / app
    assert exists(seeded["other"])
    database = b"".join(p.read_bytes() for p in data_dir.glob("gum.sqlite3*"))
    assert SECRET.encode() not in database  # the purge a crash interrupted was done too
    if command != "observation":
        assert SECRET.encode() not in every_file(data_dir)
    assert b"loader.py" in database


def test_a_crash_before_the_commit_changes_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    seeded = seed(data_dir)
    assert FORGET_CRASH_POINTS == ("forget:before_commit", "forget:after_commit")
    crashed = cli(data_dir, "forget", "--app", "Signal", crash="forget:before_commit")
    assert crashed.returncode == -signal.SIGKILL
    with Store.open(settings_for(data_dir)) as store:
        assert store.get_observation(seeded["chat"]).content  # still there
    assert pending_deletes(data_dir) == 0 and exists(seeded["kept"]) and exists(seeded["pending"])


def test_a_failing_hook_does_not_leave_the_files(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    seeded = seed(data_dir)

    def broken(_report: object) -> None:
        raise RuntimeError("a hook that fails")

    with open_store(settings_for(data_dir)) as store:
        store.after_forget_hooks.insert(0, broken)
        report = store.forget_observations([seeded["chat"]])
        assert report.observation_ids == (seeded["chat"],)
    assert not exists(seeded["kept"]) and exists(seeded["pending"])  # pending frames are not an observation's
    assert pending_deletes(data_dir) == 0


def test_a_deleter_that_fails_is_retried_later(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    seeded = seed(data_dir)
    with open_store(settings_for(data_dir)) as store:
        working = store.deleters["observations"]

        def refuses(_spec: object) -> None:
            raise PermissionError("read-only screenshots folder")

        store.deleters["observations"] = refuses
        store.forget_observations([seeded["chat"]])
        assert exists(seeded["kept"]) and pending_deletes(data_dir) == 1
        store.deleters["observations"] = working
        assert store.finish_pending_deletes() == 1
    assert not exists(seeded["kept"]) and pending_deletes(data_dir) == 0


def test_forget_by_app_reaches_old_screen_text_and_pending_frames_but_no_other_app(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    seeded = seed(data_dir)
    with open_store(settings_for(data_dir)) as store:
        [legacy, slack] = store.add_observations([
            NewObservation(content='Screen at 09:40 in Signal — "Sam"\nmore about it', kind="screen", source="screen"),
            NewObservation(content="Screen at 09:41 in Signal Desktop Beta\nanother app", kind="screen",
                           source="screen", app="Signal Desktop Beta"),
        ])
        report = store.forget_app("  SIGNAL ")
        assert set(report.observation_ids) == {seeded["chat"], legacy.id}
        assert store.get_observation(slack.id).content
        assert {p.text for p in store.current_propositions().items} == {"Priya edits loader.py"}
    assert not exists(seeded["kept"]) and not exists(seeded["pending"]) and exists(seeded["other"])


def test_forget_everything_and_forget_source_reach_the_observers_files(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    seeded = seed(data_dir)
    settings = settings_for(data_dir)
    settings.files_cache_dir.mkdir(parents=True)
    (settings.files_cache_dir / "0123abcd").write_bytes(f"notes about the {SECRET}".encode())
    with open_store(settings) as store:
        store.forget_source("files")
        assert not any(settings.files_cache_dir.iterdir())
        store.forget_source("screen")
        assert not exists(seeded["kept"]) and not exists(seeded["pending"]) and not exists(seeded["other"])
        future = frame(FrameStore(settings), "Signal", minutes=24 * 60)  # captured after the forget: kept
        assert store.forget_everything().observations_deleted == 0
    assert exists(future)
    future.sidecar.unlink()
    for path in future.image_paths():
        path.unlink()
    assert SECRET.encode() not in every_file(data_dir)

"""The file observer against real inotify events (watchdog) in a temp dir, on a ManualClock."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gum_mcp.config import Settings
from gum_mcp.observers import forget_file_cache
from gum_mcp.observers.clock import ManualClock
from gum_mcp.observers.files import FileObserver, diff_stats
from gum_mcp.store import Store
from tests.conftest import make_settings, wait_until

pytestmark = [
    pytest.mark.timeout(60),
    # watchdog's harmless race when folders are created inside a new folder (filtered in production too)
    pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning"),
]

WINDOW = 600.0


class Rig:
    def __init__(self, tmp_path: Path, **overrides: Any) -> None:
        self.root = tmp_path / "work"
        self.root.mkdir(exist_ok=True)
        values: dict[str, Any] = {"watch_dirs": [self.root], "files_window": WINDOW}
        values.update(overrides)
        self.settings: Settings = make_settings(tmp_path / "data", **values)
        self.store = Store.open(self.settings)
        self.clock = ManualClock()
        self.observer = FileObserver(self.settings, self.store, clock=self.clock)

    def start(self) -> None:
        self.observer.start()
        wait_until(lambda: self.observer.counts().get("watched_folders") == len(self.observer.roots))

    def activity(self, name: str) -> Any:
        return self.observer.pending().get(str(self.root / name))

    def write(self, name: str, content: str, *, saves: int | None = None) -> None:
        """Write a file and wait until the observer has seen the save (its close-after-write)."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        before = self.activity(name).closes if self.activity(name) else 0
        path.write_text(content)
        wait_until(lambda: self.activity(name) is not None and self.activity(name).closes > before)

    def flush(self, expected: int) -> list[str]:
        """Let the window pass; wait for `expected` observations in all; return their texts, oldest first."""
        self.clock.advance(WINDOW + 1)
        wait_until(lambda: not self.observer.pending() and len(self.store.observations()) >= expected)
        return [o.content or "" for o in self.store.observations(newest_first=False, limit=1000)]

    def close(self) -> None:
        self.observer.stop(10)
        self.store.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    yield made
    made.close()


def test_a_burst_of_saves_is_one_observation(rig: Rig) -> None:
    rig.start()
    lines = [f"line {i}" for i in range(40)]
    rig.write("report.md", "\n".join(lines) + "\n")
    [created] = rig.flush(1)
    assert re.fullmatch(r"created .*/work/report\.md at \d\d:\d\d [\w+-]+: Markdown, 40 lines", created), created

    for save in range(6):
        lines = lines[:-5] + [f"new {save}-{i}" for i in range(25)]  # net: +125 / -5
        rig.write("report.md", "\n".join(lines) + "\n")
        rig.clock.advance(60)
    texts = rig.flush(2)
    assert len(texts) == 2
    edited = texts[1]
    # local clock times, labelled with their zone
    assert re.match(r"edited .*/work/report\.md 6 times between (\d\d:\d\d) and (\d\d:\d\d) [\w+-]+: ", edited), edited
    first, last = re.findall(r"\d\d:\d\d", edited)[:2]
    assert first != last
    assert "+125/-5 lines" in edited and "Markdown, 160 lines" in edited
    observation = rig.store.observations()[0]
    assert observation.kind == "file" and observation.source == "files"
    cache = list(rig.settings.files_cache_dir.iterdir())
    assert len(cache) == 1 and cache[0].stat().st_mode & 0o777 == 0o600
    assert rig.settings.files_cache_dir.stat().st_mode & 0o777 == 0o700


def test_ignored_folders_and_files(tmp_path: Path) -> None:
    rig = Rig(tmp_path, files_ignore=["*.log", "secret-notes"])
    try:
        rig.start()
        for folder in (".git", "node_modules/pkg", "__pycache__", ".venv/lib", "build", "dist", "target", ".cache",
                       ".mypy_cache", ".pytest_cache", ".tox", ".idea", "venv", ".hg", ".svn", "secret-notes"):
            (rig.root / folder).mkdir(parents=True, exist_ok=True)
            (rig.root / folder / "file.txt").write_text("ignored")
        (rig.root / "app.log").write_text("ignored by GUM_FILES_IGNORE")
        (rig.root / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
        (rig.root / "data.txt").write_bytes(b"looks like text\0but is binary")
        (rig.root / ".DS_Store").write_bytes(b"x")
        (rig.root / "notes.txt.swp").write_text("vim swap")
        rig.write("kept.txt", "the one file that counts\n")
        texts = rig.flush(1)
        assert len(texts) == 1 and "kept.txt" in texts[0]
        assert rig.observer.counts()["ignored"] >= 17
        assert rig.observer.counts()["ignored_binary"] == 1
    finally:
        rig.close()


def test_content_stays_local_by_default(rig: Rig) -> None:
    rig.start()
    rig.write("diary.md", "dear diary: the quokka-phrase is here\n")
    rig.flush(1)
    rig.write("diary.md", "dear diary: the quokka-phrase is here\nand a second platypus-line\n")
    texts = rig.flush(2)
    assert "+1/-0 lines" in texts[1]
    for text in texts:
        assert "quokka" not in text and "platypus" not in text and "diary:" not in text


def test_content_when_asked_is_redacted_and_truncated(tmp_path: Path) -> None:
    rig = Rig(tmp_path, files_include_content=True)
    try:
        rig.start()
        rig.write("config.md", "# Settings\n")
        created = rig.flush(1)[0]
        assert "Change (excerpt):\n# Settings" in created
        token = "ghp_" + "Zx9" * 14
        body = "# Settings\nthe platypus-line\ngithub token: " + token + "\n" + "filler words " * 400
        rig.write("config.md", body)
        edited = rig.flush(2)[1]
        assert "platypus-line" in edited
        assert token not in edited and "[REDACTED" in edited
        assert len(edited.split("Change (excerpt):\n", 1)[1]) <= 1500
    finally:
        rig.close()


def test_moves_renames_and_deletes(rig: Rig) -> None:
    (rig.root / "sub").mkdir()
    outside = rig.root.parent / "elsewhere"
    outside.mkdir()
    (outside / "e.md").write_text("brought in\n")
    rig.start()
    for name in ("a.md", "b.md", "c.md", "d.md"):
        rig.write(name, f"{name}\n")
    rig.flush(4)

    os.rename(rig.root / "a.md", rig.root / "renamed.md")
    os.rename(rig.root / "b.md", rig.root / "sub" / "b.md")
    (rig.root / "c.md").unlink()
    os.rename(rig.root / "d.md", outside / "d.md")
    os.rename(outside / "e.md", rig.root / "e.md")
    (rig.root / "tmp-scratch.txt").write_text("brief")
    wait_until(lambda: rig.activity("tmp-scratch.txt") is not None)
    (rig.root / "tmp-scratch.txt").unlink()
    wait_until(lambda: rig.activity("renamed.md") and rig.activity("sub/b.md") and rig.activity("c.md")
               and rig.activity("d.md") and rig.activity("e.md") and rig.activity("tmp-scratch.txt").deleted)
    texts = rig.flush(9)[4:]
    assert len(texts) == 5, texts  # the created-and-deleted scratch file is no observation
    joined = "\n".join(texts)
    assert re.search(r"renamed .*/a\.md to .*/renamed\.md at", joined)
    assert re.search(r"moved .*/work/b\.md to .*/work/sub/b\.md at", joined)
    assert re.search(r"deleted .*/c\.md at", joined)
    assert re.search(r"moved .*/d\.md out of the watched folders at", joined)
    assert re.search(r"created .*/work/e\.md at \d\d:\d\d [\w+-]+: Markdown, 1 line$", joined, re.MULTILINE)
    assert "scratch" not in joined


def test_atomic_save_is_an_edit(rig: Rig) -> None:
    rig.start()
    rig.write("essay.md", "one\ntwo\n")
    rig.flush(1)
    tmp = rig.root / ".essay.md.tmp"
    tmp.write_text("one\ntwo\nthree\n")
    os.replace(tmp, rig.root / "essay.md")
    wait_until(lambda: rig.activity("essay.md") is not None and rig.activity("essay.md").replaced == 1)
    texts = rig.flush(2)
    assert re.match(r"edited .*/essay\.md at \d\d:\d\d [\w+-]+: \+1/-0 lines", texts[1]), texts[1]


def test_stop_flushes_open_activity(rig: Rig) -> None:
    rig.start()
    rig.write("unsaved-window.txt", "x\n")
    assert rig.store.observations() == []
    assert rig.observer.stop(10)
    [observation] = rig.store.observations()
    assert "unsaved-window.txt" in (observation.content or "")


def test_pause_drops_file_events(rig: Rig) -> None:
    rig.start()
    rig.observer.pause()
    (rig.root / "private.txt").write_text("while paused\n")
    # created, modified, closed: all three dropped before resuming
    wait_until(lambda: rig.observer.counts().get("dropped_while_paused", 0) >= 3)
    rig.observer.resume()
    rig.write("public.txt", "after\n")
    texts = rig.flush(1)
    assert len(texts) == 1 and "public.txt" in texts[0]


def test_data_dir_inside_a_watched_folder_is_ignored(tmp_path: Path) -> None:
    rig = Rig(tmp_path, watch_dirs=[tmp_path])
    try:
        rig.start()
        rig.store.add_observation("something to write to the database")  # writes under data/
        (tmp_path / "data" / "note.txt").write_text("inside the data dir")
        rig.write("seen.txt", "outside\n")
        texts = rig.flush(2)
        assert [t for t in texts if "seen.txt" in t] and not [t for t in texts if "note.txt" in t or "gum" in t]
    finally:
        rig.close()


def test_missing_folder_and_inotify_limit_are_reported(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", watch_dirs=[tmp_path / "absent", tmp_path / "big"])
    (tmp_path / "big").mkdir()

    class LimitedObserver:
        daemon = True

        def start(self) -> None:
            pass

        def schedule(self, *args: object, **kwargs: object) -> None:
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

        def stop(self) -> None:
            pass

        def join(self, timeout: float | None = None) -> None:
            pass

    with Store.open(settings) as store:
        observer = FileObserver(settings, store, clock=ManualClock(), observer_factory=LimitedObserver)
        observer.start()
        try:
            wait_until(lambda: len(observer.health()["warnings"]) == 2)
            warnings = "\n".join(observer.health()["warnings"])
            assert "absent does not exist" in warnings
            assert "inotify watch limit reached (fs.inotify.max_user_watches = " in warnings
            assert "sysctl fs.inotify.max_user_watches" in warnings
            assert observer.health()["state"] == "running"
        finally:
            assert observer.stop(5)


def test_forget_file_cache(rig: Rig) -> None:
    rig.start()
    rig.write("a.txt", "a\n")
    rig.flush(1)
    assert forget_file_cache(rig.settings) == 1
    assert list(rig.settings.files_cache_dir.iterdir()) == []


def test_diff_stats() -> None:
    assert diff_stats(["a", "b", "c"], ["a", "x", "c", "d"]) == (2, 1, 2)
    assert diff_stats([], ["a"]) == (1, 0, 1)
    assert diff_stats(["a"], ["a"]) == (0, 0, 0)


def test_inotify_limit_found_by_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gum_mcp.observers import files

    monkeypatch.setattr(files, "inotify_probe", lambda paths: OSError(errno.ENOSPC, "no space"))
    rig = Rig(tmp_path)
    try:
        rig.start()
        warnings = rig.observer.health()["warnings"]
        assert len(warnings) == 1 and "inotify watch limit reached" in warnings[0] and "in part" in warnings[0]
    finally:
        rig.close()


def test_a_busy_store_loses_nothing(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    real = rig.store.add_observations
    calls: list[int] = []

    def flaky(items: Any) -> Any:
        calls.append(len(items))
        if len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")
        return real(items)

    monkeypatch.setattr(rig.store, "add_observations", flaky)
    rig.start()
    rig.write("retry.txt", "x\n")
    texts = rig.flush(1)
    assert len(texts) == 1 and "retry.txt" in texts[0]
    assert calls[:2] == [1, 1]
    assert rig.observer.health()["last_error"] is None

"""The screen observer against a real X display (Xvfb + openbox + xterm, driven by xdotool).

The sampler is stepped with `tick()` on a ManualClock over real grabs; transcription goes to the
loopback fake provider. Interval 1 s and settle 1.5 s: a change is captured on the third tick
after the screen stops changing. These tests run in `vision` mode (screenshots, masked, to the
model); tests/test_screen_privacy.py covers the modes themselves.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gum_mcp.config import Settings
from gum_mcp.observers import ObserverSet, forget_screenshots, pause_observing, resume_observing
from gum_mcp.observers.clock import ManualClock
from gum_mcp.observers.imaging import frame_format, image_size
from gum_mcp.observers.screen import BACKOFF_BASE, ScreenObserver
from gum_mcp.observers.window import open_window_reader
from gum_mcp.store import Store
from gum_mcp.store.keys import file_sealer  # sidecars are sealed on an encrypted data dir
from tests.conftest import wait_until
from tests.fake_provider import ANTHROPIC_PATH, OPENAI_PATH, FakeLLMServer
from tests.x11 import XServer, cleared, desktop, require_x

pytestmark = pytest.mark.timeout(120)

SUMMARY = "Typing a sentence into a terminal."


@pytest.fixture(scope="module")
def xserver() -> Iterator[XServer]:
    yield from desktop()


@pytest.fixture
def desk(xserver: XServer) -> Iterator[XServer]:
    yield from cleared(xserver)


@pytest.fixture
def bare() -> Iterator[XServer]:
    """A display of its own without a window manager."""
    require_x()
    server = XServer(640, 480)
    try:
        yield server
    finally:
        server.close()


class Rig:
    def __init__(self, fake: FakeLLMServer, data_dir: Path, display: str, provider: str = "openai",
                 **overrides: Any) -> None:
        values: dict[str, Any] = {"llm_max_retries": 0, "screen_interval": 1.0, "screen_settle": 1.5,
                                  "screen_mode": "vision"}
        values.update(overrides)
        self.fake = fake
        self.settings: Settings = fake.settings(provider, data_dir, **values)
        self.store = Store.open(self.settings)
        self.clock = ManualClock()
        self.display = display
        self.observers: list[ScreenObserver] = []
        self.observer = self.new_observer()

    def new_observer(self, **kwargs: Any) -> ScreenObserver:
        observer = ScreenObserver(self.settings, self.store, clock=self.clock, display=self.display, **kwargs)
        self.observers.append(observer)
        return observer

    def ticks(self, n: int, observer: ScreenObserver | None = None) -> list[str]:
        observer = observer or self.observer
        outcomes = []
        for _ in range(n):
            outcomes.append(observer.tick())
            self.clock.advance(1.0)
        return outcomes

    def files(self, under: Path | None = None) -> list[Path]:
        root = under or self.settings.screens_dir
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []

    def close(self) -> None:
        for observer in self.observers:
            observer.stop(5)
            observer.close()
        self.store.close()


@pytest.fixture
def rig_factory(fake_provider: FakeLLMServer, tmp_path: Path) -> Iterator[Any]:
    fake_provider.default = lambda body, path: {"summary": SUMMARY, "text": "the quick brown fox"}
    rigs: list[Rig] = []

    def make(display: str, **kwargs: Any) -> Rig:
        rig = Rig(fake_provider, tmp_path / f"data{len(rigs)}", display, **kwargs)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


def images_in(body: dict[str, Any], path: str) -> list[bytes]:
    """The images of a provider request, checked to be in that provider's wire format."""
    user = [m for m in body["messages"] if m["role"] == "user"][-1]
    found = []
    for part in user["content"]:
        if path == OPENAI_PATH and part.get("type") == "image_url":
            url = part["image_url"]["url"]
            prefix = f"data:image/{frame_format()};base64,"
            assert url.startswith(prefix), url[:40]
            found.append(base64.b64decode(url[len(prefix):]))
        elif path == ANTHROPIC_PATH and part.get("type") == "image":
            source = part["source"]
            assert source["type"] == "base64" and source["media_type"] == f"image/{frame_format()}"
            found.append(base64.b64decode(source["data"]))
    return found


def data_dir_contains(data_dir: Path, needle: bytes) -> list[Path]:
    return [p for p in data_dir.rglob("*") if p.is_file() and needle.lower() in p.read_bytes().lower()]


# ------------------------------------------------------------------------------ change -> capture


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_one_change_is_one_observation(desk: XServer, rig_factory: Any, provider: str) -> None:
    rig = rig_factory(desk.display, provider=provider)
    desk.xterm("notes")
    before = desk.settle()
    assert "baseline" in rig.ticks(4)
    assert rig.ticks(3) == ["same", "same", "same"]

    desk.type("the quick brown fox jumps over the lazy dog")
    desk.settle(before)
    outcomes = rig.ticks(8)
    assert outcomes.count("captured") == 1, outcomes
    assert outcomes[-1] == "same"

    pending = rig.files(rig.settings.screens_dir / "pending")
    assert len(pending) == 2  # one image (one monitor) and its sidecar
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in pending)
    sidecar = json.loads(file_sealer(rig.settings).open(next(p for p in pending if p.suffix == ".json").read_bytes()))
    assert sidecar["app"] == "XTerm" and sidecar["title"] == "notes"

    assert rig.observer.transcribe_pending() == 1
    path = OPENAI_PATH if provider == "openai" else ANTHROPIC_PATH
    requests = [r for r in rig.fake.requests if r.path == path]
    assert len(requests) == 1  # one vision call for one settled change
    images = images_in(requests[0].body, path)
    assert len(images) == 1
    assert image_size(images[0]) == (1024, 768)  # within 1280: not scaled

    observations = rig.store.observations()
    assert len(observations) == 1
    observation = observations[0]
    assert observation.kind == "screen" and observation.source == "screen"
    assert "XTerm" in observation.content and '"notes"' in observation.content and SUMMARY in observation.content
    assert rig.files() == []  # the screenshot is gone after transcription
    health = rig.observer.health()
    assert health["counts"]["captured"] == 1 and health["counts"]["transcribed"] == 1
    assert health["last_error"] is None


def test_no_change_no_observation(desk: XServer, rig_factory: Any) -> None:
    rig = rig_factory(desk.display)
    desk.xterm("idle")
    desk.settle()
    outcomes = rig.ticks(12)
    assert "captured" not in outcomes and outcomes.count("baseline") == 1
    assert rig.observer.transcribe_pending() == 0
    assert rig.fake.requests == []
    assert rig.store.observations() == []


def test_previous_transcript_is_context(desk: XServer, rig_factory: Any) -> None:
    rig = rig_factory(desk.display)
    desk.xterm("context")
    screen = desk.settle()
    rig.ticks(4)
    for words in ("first line of words typed here", "\rsecond line of other words"):
        desk.type(words)
        screen = desk.settle(screen)
        assert rig.ticks(5).count("captured") == 1
        assert rig.observer.transcribe_pending() == 1
    first, second = rig.fake.requests
    assert "<previous/>" in json.dumps(first.body)
    stored = rig.store.observations(newest_first=False)[0].content
    assert "<previous>Screen at" in json.dumps(second.body)
    prompt = [m for m in second.body["messages"] if m["role"] == "user"][-1]["content"][0]["text"]
    assert SUMMARY in prompt, prompt
    assert html.escape(stored.split("\n")[0]) in prompt


# ------------------------------------------------------------------------------ privacy


def test_excluded_windows_leave_nothing(desk: XServer, rig_factory: Any) -> None:
    rig = rig_factory(desk.display, screen_exclude=["online banking"])
    secret_title = "KeePassXC - zebravault.kdbx"
    desk.xterm(secret_title)
    screen = desk.settle()
    desk.type("zebra-secret-phrase-42")
    screen = desk.settle(screen)
    outcomes = rig.ticks(6)
    assert set(outcomes) == {"excluded"}, outcomes

    # the user's own pattern, focused
    bank = desk.xterm("Online Banking - zebrabank", geometry="60x10+300+300")
    desk.type("zebra-iban-1234")
    screen = desk.settle(screen)
    assert set(rig.ticks(5)) == {"excluded"}

    # a normal window focused while the excluded one is still visible behind it: the screen is
    # observed with the excluded window's rectangle painted over (tests/test_screen_privacy.py
    # checks those pixels); this first settled screen is the baseline
    desk.close_window(bank)
    desk.xterm("editor", geometry="40x8+500+100")
    desk.type("ordinary words")
    screen = desk.settle(screen)
    outcomes = rig.ticks(5)
    assert "excluded" not in outcomes and outcomes.count("baseline") == 1, outcomes

    assert rig.observer.transcribe_pending() == 0
    assert rig.fake.requests == []
    assert rig.store.observations() == []
    assert rig.files() == []
    assert data_dir_contains(rig.settings.data_dir, b"zebra") == []
    assert data_dir_contains(rig.settings.data_dir, b"keepass") == []
    assert rig.observer.health()["counts"]["excluded"] >= 11

    # once they are gone, the ordinary screen is observed as before
    desk.close_windows()
    desk.xterm("after")
    desk.type("now this may be seen")
    desk.settle(screen)
    assert rig.ticks(6).count("captured") == 1
    desk.type(" and a change after that")
    desk.settle()
    assert rig.ticks(5).count("captured") == 1
    assert rig.observer.transcribe_pending() == 2
    assert all("zebra" not in json.dumps(r.body).lower() for r in rig.fake.requests)


# ------------------------------------------------------------------------------ failures and restarts


def capture_one(desk: XServer, rig: Rig, title: str, observer: ScreenObserver | None = None) -> None:
    desk.xterm(title)
    screen = desk.settle()
    rig.ticks(4, observer)
    desk.type(f"some words for {title}")
    desk.settle(screen)
    assert rig.ticks(5, observer).count("captured") == 1


def test_transcription_failure_keeps_the_frame(desk: XServer, rig_factory: Any) -> None:
    rig = rig_factory(desk.display)
    capture_one(desk, rig, "flaky")
    rig.fake.fault("500")
    assert rig.observer.transcribe_pending() == 0
    pending = rig.files(rig.settings.screens_dir / "pending")
    assert len(pending) == 2
    sidecar = json.loads(file_sealer(rig.settings).open(next(p for p in pending if p.suffix == ".json").read_bytes()))
    assert sidecar["attempts"] == 1 and "500" in sidecar["last_error"]
    health = rig.observer.health()
    assert "transcription failed" in health["last_error"] and "stays pending" in health["last_error"]
    assert rig.store.observations() == []

    assert rig.observer.transcribe_pending() == 0  # still backing off: nothing sent
    assert len(rig.fake.requests) == 1
    rig.clock.advance(BACKOFF_BASE)
    assert rig.observer.transcribe_pending() == 1
    assert len(rig.fake.requests) == 2
    assert len(rig.store.observations()) == 1
    assert rig.files() == []
    assert rig.observer.health()["last_error"] is None


def test_pending_frames_survive_a_restart(desk: XServer, rig_factory: Any) -> None:
    rig = rig_factory(desk.display)
    first = rig.new_observer(transcribe=False)
    capture_one(desk, rig, "restart", first)
    first.close()
    assert len(rig.files()) == 2
    rig.store.close()
    rig.store = Store.open(rig.settings)
    second = rig.new_observer()
    second.store = rig.store
    assert second.transcribe_pending() == 1
    assert len(rig.store.observations()) == 1
    assert rig.files() == []
    assert second.transcribe_pending() == 0  # no duplicate


def test_kept_screenshots_are_forgotten(desk: XServer, rig_factory: Any) -> None:
    from gum_mcp.observers import screenshots_forget_hook

    rig = rig_factory(desk.display, keep_screenshots=True)
    rig.store.after_forget_hooks.append(screenshots_forget_hook(rig.settings))
    capture_one(desk, rig, "keep")
    assert rig.observer.transcribe_pending() == 1
    kept = rig.files(rig.settings.screens_dir / "kept")
    observation = rig.store.observations()[0]
    assert len(kept) == 2 and any(f".obs{observation.id}.json" in p.name for p in kept)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in kept)
    rig.store.forget_observations([observation.id])
    assert rig.files() == []

    # forget by time also drops frames still waiting for transcription
    rig.observer.transcribe_enabled = False
    desk.type(" more")
    desk.settle()
    assert rig.ticks(5).count("captured") == 1
    assert rig.files()
    assert forget_screenshots(rig.settings, since=None, until=rig.clock.now()) == 1
    assert rig.files() == []
    assert rig.observer.transcribe_pending() == 0


def test_no_display_names_the_cause(rig_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rig = rig_factory(":987654")
    assert rig.observer.tick() == "unavailable"
    assert "':987654'" in rig.observer.health()["last_error"]
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    other = rig.new_observer()
    other.display = None
    other._source.display = None  # type: ignore[attr-defined]
    assert other.tick() == "unavailable"
    assert "DISPLAY is not set" in other.health()["last_error"]


# ------------------------------------------------------------------------------ window titles


def test_xterm_title_from_wm_name(desk: XServer) -> None:
    term = desk.xterm("plain-title")
    assert "not found" in desk.run("xprop", "-id", str(term.window), "_NET_WM_NAME")  # xterm sets only WM_NAME
    reader = open_window_reader(desk.display)
    try:
        info = reader.focused()
        assert (info.title, info.app, info.instance, info.source) == ("plain-title", "XTerm", "xterm", "ewmh")
        assert info.window_id == term.window
        desk.xdotool("set_window", "--name", "renamed-title", str(term.window))
        wait_until(lambda: reader.focused().title == "renamed-title")
        assert [w.title for w in reader.visible()] == ["renamed-title"]
    finally:
        reader.close()


def test_without_window_manager_focus_and_pointer(bare: XServer) -> None:
    assert any(word in bare.run("xprop", "-root", "_NET_ACTIVE_WINDOW") for word in ("not found", "no such atom"))
    term = bare.xterm("no-wm", geometry="40x10+10+10")
    reader = open_window_reader(bare.display)
    try:
        bare.xdotool("mousemove", "60", "60")  # no focus set: PointerRoot, the window under the pointer
        wait_until(lambda: reader.focused().title == "no-wm")
        assert reader.focused().source == "pointer"
        bare.xdotool("mousemove", "600", "450")
        wait_until(lambda: reader.focused().title is None)
        bare.xdotool("windowfocus", "--sync", str(term.window))
        info = reader.focused()
        assert (info.title, info.app, info.source) == ("no-wm", "XTerm", "focus")
        assert [w.title for w in reader.visible()] == ["no-wm"]
    finally:
        reader.close()


# ------------------------------------------------------------------------------ threads, pause, stop


def test_threads_pause_and_stop(desk: XServer, rig_factory: Any) -> None:
    rig = rig_factory(desk.display)
    observers = ObserverSet(rig.settings, rig.store, ["screen"], clock=rig.clock,
                            options={"screen": {"display": desk.display}})
    screen = observers.get("screen")
    assert isinstance(screen, ScreenObserver)

    def ticks() -> int:
        return screen.counts().get("ticks", 0)

    def step(n: int) -> None:
        for _ in range(n):
            seen = ticks()
            rig.clock.advance(1.0)
            wait_until(lambda seen=seen: ticks() > seen)

    desk.xterm("threaded")
    before = desk.settle()
    observers.start()
    try:
        wait_until(lambda: ticks() >= 1)
        step(3)
        desk.type("typed while the threads run")
        before = desk.settle(before)
        step(4)
        wait_until(lambda: screen.counts().get("transcribed") == 1)
        assert len(rig.store.observations()) == 1
        assert observers.status()["observers"][0]["counts"]["captured"] == 1

        pause_observing(rig.settings)
        wait_until(lambda: screen.health()["state"] == "paused")
        assert observers.status()["paused_until"] == "indefinitely"
        paused_at = ticks()
        desk.type(" and more while paused")
        desk.settle(before)
        for _ in range(4):
            seen = screen.counts().get("paused_checks", 0)
            rig.clock.advance(1.0)
            wait_until(lambda seen=seen: screen.counts().get("paused_checks", 0) > seen)
        assert ticks() == paused_at
        resume_observing(rig.settings)
        step(6)
        assert screen.health()["state"] == "running"
        assert len(rig.store.observations()) == 1  # the screen after a pause is a new baseline
    finally:
        assert observers.stop(10)
    assert screen.health()["state"] == "stopped"
    assert not screen.alive


def test_screen_observer_is_private_on_disk(desk: XServer, rig_factory: Any) -> None:
    rig = rig_factory(desk.display)
    rig.observer.transcribe_enabled = False
    capture_one(desk, rig, "perm")
    for path in [rig.settings.screens_dir, *rig.settings.screens_dir.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert os.listdir(rig.settings.screens_dir / "kept") == []

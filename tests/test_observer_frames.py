"""The screen observer's parts without a display: change policy on synthetic frames, exclusions,
pixels (signature, downscale, PNG), and the frames on disk (recovery, forget, permissions)."""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gum_mcp.config import Settings
from gum_mcp.domain import utcnow
from gum_mcp.observers import imaging, screen
from gum_mcp.observers.clock import ManualClock
from gum_mcp.observers.exclusions import Exclusions
from gum_mcp.observers.frames import FrameStore, forget_screenshots
from gum_mcp.observers.screen import NAIVE_POLICY, ScreenObserver, ScreenSource
from gum_mcp.observers.window import WindowInfo, WindowReader
from gum_mcp.store import Store

pytestmark = pytest.mark.timeout(60)

XTERM = WindowInfo(title="notes", app="XTerm", instance="xterm", window_id=7, source="ewmh")


class FakeScreen(ScreenSource):
    """Monitors as numpy BGRA arrays the test paints on."""

    def __init__(self, *sizes: tuple[int, int]) -> None:
        self.images = [np.full((h, w, 4), 255, dtype=np.uint8) for w, h in sizes or [(320, 200)]]
        self.grabs = 0
        self.on_grab: Any = None

    def grab(self) -> list[tuple[imaging.Grab, dict[str, Any]]]:
        self.grabs += 1
        if self.on_grab:
            self.on_grab()
        out, left = [], 0
        for image in self.images:
            h, w = image.shape[:2]
            out.append((imaging.Grab(image.tobytes(), w, h, left, 0),
                        {"left": left, "top": 0, "width": w, "height": h}))
            left += w
        return out


class Windows(WindowReader):
    def __init__(self, focused: WindowInfo = XTERM, visible: list[WindowInfo] | None = None) -> None:
        self.info = focused
        self.others = visible or []

    def focused(self) -> WindowInfo:
        return self.info

    def visible(self) -> list[WindowInfo]:
        return [self.info, *self.others]


def text(image: np.ndarray, row: int, col: int, chars: int) -> None:
    """Paint `chars` dark 6x13 character cells at a text position."""
    for i in range(chars):
        y, x = 4 + row * 14, 4 + (col + i) * 7
        image[y : y + 13, x : x + 6, :3] = 0 if (i % 2 == 0) else 40


def cursor(image: np.ndarray, on: bool, row: int = 5, col: int = 30) -> None:
    y, x = 4 + row * 14, 4 + col * 7
    image[y : y + 13, x : x + 6, :3] = 0 if on else 255


def rig(settings: Settings, store: Store, source: FakeScreen, windows: Windows | None = None,
        **kwargs: Any) -> tuple[ScreenObserver, ManualClock]:
    clock = ManualClock()
    observer = ScreenObserver(settings, store, clock=clock, source=source, windows=windows or Windows(),
                              transcribe=False, **kwargs)
    observer.mode = "vision"  # frames with images: these tests are about capture, not GUM_SCREEN_MODE
    return observer, clock


def run(observer: ScreenObserver, clock: ManualClock, n: int, each: Any = None) -> list[str]:
    outcomes = []
    for i in range(n):
        if each:
            each(i)
        outcomes.append(observer.tick())
        clock.advance(1.0)
    return outcomes


# ---------------------------------------------------------------------------------- change policy


def test_blinking_cursor_does_not_block_settling(settings: Settings, store: Store) -> None:
    source = FakeScreen()
    image = source.images[0]
    observer, clock = rig(settings, store, source)

    def blink(i: int) -> None:
        cursor(image, on=i % 2 == 0)

    outcomes = run(observer, clock, 4, blink)
    assert outcomes.count("baseline") == 1
    text(image, 0, 0, 20)  # one burst of typing
    outcomes = run(observer, clock, 8, blink)
    assert outcomes.count("captured") == 1, outcomes
    assert run(observer, clock, 6, blink).count("captured") == 0


def test_a_character_or_a_clock_tick_is_not_a_capture(settings: Settings, store: Store) -> None:
    source = FakeScreen()
    observer, clock = rig(settings, store, source)
    run(observer, clock, 4)
    text(source.images[0], 2, 10, 1)
    assert "captured" not in run(observer, clock, 5)
    text(source.images[0], 3, 0, 12)
    assert run(observer, clock, 5).count("captured") == 1


def test_naive_policy_captures_every_change(settings: Settings, store: Store) -> None:
    source = FakeScreen()
    observer, clock = rig(settings, store, source, policy=NAIVE_POLICY)
    run(observer, clock, 2)

    def typing(i: int) -> None:
        text(source.images[0], 0, i, 1)

    assert run(observer, clock, 6, typing).count("captured") == 6


def test_only_changed_monitors_are_sent(settings: Settings, store: Store) -> None:
    source = FakeScreen((320, 200), (400, 240))
    observer, clock = rig(settings, store, source)
    run(observer, clock, 4)
    text(source.images[1], 1, 1, 25)
    assert run(observer, clock, 5).count("captured") == 1
    frame = FrameStore(settings).pending()[0]
    assert len(frame.images) == 1
    assert frame.monitors == [{"left": 320, "top": 0, "width": 400, "height": 240}]
    data = frame.read_images()[0]
    assert imaging.image_size(data) == (400, 240)
    assert (frame.app, frame.title, frame.window_source) == ("XTerm", "notes", "ewmh")


def test_focus_change_during_grab_voids_the_sample(settings: Settings, store: Store) -> None:
    source = FakeScreen()
    windows = Windows()
    observer, clock = rig(settings, store, source, windows)
    run(observer, clock, 4)
    text(source.images[0], 0, 0, 30)

    def switch() -> None:
        windows.info = WindowInfo(title="KeePassXC", app="KeePassXC")

    source.on_grab = switch
    assert observer.tick() == "excluded"
    source.on_grab = None
    windows.info = XTERM
    assert run(observer, clock, 5).count("captured") == 1


def test_titles_are_redacted_in_the_sidecar(settings: Settings, store: Store) -> None:
    token = "ghp_Zq81nF0xLmP3vB7cR2tY9uW4sK6dH5jA1eG0"  # a realistic body: a repeated one reads as a placeholder
    source = FakeScreen()
    observer, clock = rig(settings, store, source, Windows(WindowInfo(title=f"token {token}", app="XTerm")))
    run(observer, clock, 4)
    text(source.images[0], 0, 0, 30)
    assert run(observer, clock, 5).count("captured") == 1
    raw = b"".join(p.read_bytes() for p in settings.screens_dir.rglob("*.json"))
    assert token.encode() not in raw and b"REDACTED" in raw


def test_backlog_drops_the_oldest_frames(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Transcription keeps failing: capture goes on, and at most GUM_SCREEN_MAX_PENDING frames wait."""
    from tests.conftest import make_settings

    vision = {"screen_mode": "vision"} if "screen_mode" in Settings.model_fields else {}  # frames with images
    settings = make_settings(tmp_path / "data", screen_max_pending=2, **vision)
    with Store.open(settings) as store:
        source = FakeScreen()
        observer, clock = rig(settings, store, source, policy=NAIVE_POLICY)
        run(observer, clock, 2)

        def typing(i: int) -> None:
            text(source.images[0], i, 0, 30)

        with caplog.at_level("WARNING", logger="gum_mcp.observers"):
            assert run(observer, clock, 5, typing).count("captured") == 5
        frames = observer.frames.pending()
        assert len(frames) == 2 and observer.counts()["frames_dropped"] == 3
        assert frames[-1].captured_at == max(f.captured_at for f in frames)  # the newest stay
        assert len({p.name.split(".")[0] for p in observer.frames.pending_dir.iterdir()}) == 2  # images went too
        assert any("dropped the 1 oldest pending frame" in r.getMessage() for r in caplog.records)
        assert any("oldest are dropped" in w for w in observer.health()["warnings"])


def test_unreadable_title_with_skip(settings: Settings, store: Store) -> None:
    from tests.conftest import make_settings

    strict = make_settings(settings.data_dir, screen_unknown="skip")
    source = FakeScreen()
    observer, clock = rig(strict, store, source, Windows(WindowInfo(title=None, readable=False)))
    assert set(run(observer, clock, 4)) == {"excluded"}
    assert source.grabs == 0  # an excluded screen is not even grabbed
    observer, clock = rig(settings, store, source, Windows(WindowInfo(title=None, readable=False)))
    assert "baseline" in run(observer, clock, 4)


# ---------------------------------------------------------------------------------- exclusions


@pytest.mark.parametrize(
    ("app", "title"),
    [
        ("KeePassXC", "Passwords.kdbx"),
        ("keepassxc", "x"),
        ("1Password", "All items"),
        ("Bitwarden", "Vault"),
        ("Enpass", "Enpass"),
        ("Dashlane", ""),
        ("LastPass", ""),
        ("Keychain Access", "Login"),
        ("pass", ""),
        ("Firefox", "Mozilla Firefox Private Browsing"),
        ("Google-chrome", "New Tab - Google Chrome (Incognito)"),
        ("Microsoft-edge", "InPrivate - Microsoft Edge"),
        ("XTerm", "pass show email/work"),
        ("XTerm", "KeePassXC - database"),
    ],
)
def test_default_exclusions(app: str, title: str) -> None:
    assert Exclusions().window_reason(WindowInfo(title=title, app=app)) is not None


@pytest.mark.parametrize(
    ("app", "title"),
    [("XTerm", "notes"), ("Firefox", "Compass - passenger reviews"), ("Code", "password_reset.py - project")],
)
def test_ordinary_windows_are_not_excluded(app: str, title: str) -> None:
    assert Exclusions().window_reason(WindowInfo(title=title, app=app)) is None


def test_user_patterns_and_visible_windows() -> None:
    rules = Exclusions([r"online bank", "^Slack$"])
    assert rules.reason(WindowInfo(title="My Online Banking", app="Firefox")) is not None
    assert rules.reason(WindowInfo(title="general", app="Slack")) is not None
    reason = rules.reason(XTERM, [WindowInfo(title="Incognito", app="Chromium")])
    assert reason is not None and reason.startswith("a visible window")
    assert "Incognito" not in reason  # reasons name the rule, not the title
    assert rules.reason(XTERM, [XTERM]) is None


# ---------------------------------------------------------------------------------- pixels


def decode_png(data: bytes) -> np.ndarray:
    width, height = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    rows = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, width * 3 + 1)
    assert (rows[:, 0] == 1).all()  # Sub filter
    return np.cumsum(rows[:, 1:].reshape(height, width, 3), axis=1, dtype=np.uint8)


def test_png_round_trip() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    data = imaging._png(rgb, 53, 37)
    assert imaging.image_size(data) == (53, 37)
    assert np.array_equal(decode_png(data), rgb)


@pytest.mark.parametrize(
    ("size", "expected"),
    [((1920, 1080), (1280, 720)), ((2560, 1440), (1280, 720)), ((800, 600), (800, 600)), ((1080, 1920), (720, 1280))],
)
def test_downscale(size: tuple[int, int], expected: tuple[int, int]) -> None:
    w, h = size
    image = np.zeros((h, w, 4), dtype=np.uint8)
    image[..., 0], image[..., 1], image[..., 2], image[..., 3] = 10, 100, 200, 255  # B, G, R, A
    rgb = imaging.downscale_rgb(imaging.Grab(image.tobytes(), w, h))
    assert rgb.shape == (expected[1], expected[0], 3)
    assert (rgb == np.array([200, 100, 10], dtype=np.uint8)).all()  # flat colour stays exact, as RGB
    assert imaging.image_size(imaging.encode(rgb)) == expected


def test_signature_sees_one_character() -> None:
    image = np.full((768, 1024, 4), 255, dtype=np.uint8)
    before = imaging.signature(imaging.Grab(image.tobytes(), 1024, 768))
    image[100:113, 200:206, :3] = 0
    after = imaging.signature(imaging.Grab(image.tobytes(), 1024, 768))
    threshold = screen.ChangePolicy().threshold
    assert 1 <= imaging.changed_blocks(before, after, threshold) <= 6


# ---------------------------------------------------------------------------------- frames on disk


def save(frames: FrameStore, at_minutes_ago: float) -> Any:
    return frames.save(utcnow() - timedelta(minutes=at_minutes_ago), [b"\x89PNG fake"], "png", app="A",
                       title="t", window_source="ewmh", monitors=[])


def test_frames_recover_after_a_crash(settings: Settings, store: Store) -> None:
    frames = FrameStore(settings)
    done = save(frames, 3)
    undone = save(frames, 2)
    kept = save(frames, 1)
    (frames.pending_dir / "20260101T000000_000000-abcdef.0.png").write_bytes(b"half written")
    (frames.pending_dir / ".x.json.tmp").write_bytes(b"{")
    (frames.pending_dir / "20260101T000001_000000-abcdef.0.png").write_bytes(b"being written right now")
    (frames.pending_dir / "20260101T000001_000000-abcdef.0.png").chmod(0o600)
    for name in ("20260101T000000_000000-abcdef.0.png", ".x.json.tmp"):
        os.utime(frames.pending_dir / name, (time.time() - 120, time.time() - 120))
    assert frames.commit(done) and frames.commit(undone)
    existing = store.add_observation("screen text", kind="screen", source="screen", observed_at=done.captured_at)

    def lookup(at: Any) -> int | None:
        return existing.id if at == done.captured_at else None

    report = frames.recover(lookup)
    assert report == {"finished": 1, "restored": 1, "orphans": 2}
    assert [f.stamp for f in frames.pending()] == [undone.stamp, kept.stamp]
    assert (frames.pending_dir / "20260101T000001_000000-abcdef.0.png").exists()  # too young to be an orphan
    for path in frames.root.rglob("*"):
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600)


def test_forget_removes_frames_in_the_range(settings: Settings) -> None:
    frames = FrameStore(settings)
    old, middle, new = save(frames, 30), save(frames, 20), save(frames, 10)
    assert frames.commit(new)
    frames.finish(new, 42, keep=True)
    now = utcnow()
    assert forget_screenshots(settings, until=now, pending=False) == 1  # retention: kept frames only
    assert len(frames.pending()) == 2
    new = save(frames, 10)
    assert frames.commit(new)
    frames.finish(new, 42, keep=True)
    assert forget_screenshots(settings, since=now - timedelta(minutes=25), until=now - timedelta(minutes=15)) == 1
    assert [f.stamp for f in frames.pending()] == [old.stamp]
    assert frames.forget_observations([41]) == 0
    assert frames.forget_observations([42]) == 1
    assert list(frames.kept_dir.iterdir()) == []
    assert forget_screenshots(settings) == 1
    assert frames.pending() == []
    assert middle.stamp not in json.dumps([p.name for p in frames.root.rglob("*")])


def test_a_forgotten_frame_is_not_committed(settings: Settings) -> None:
    frames = FrameStore(settings)
    frame = save(frames, 1)
    forget_screenshots(settings)
    assert frames.commit(frame) is False
    assert not any(Path(frames.root).rglob("*.png"))

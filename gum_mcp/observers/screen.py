"""The screen observer: sample, wait for the screen to settle, capture, transcribe, append.

Two threads:

- the **sampler** (the observer thread) wakes every `GUM_SCREEN_INTERVAL` seconds. It first reads
  the focused and visible windows and checks the exclusions: an excluded screen is not even
  grabbed. Otherwise it grabs every monitor (mss), reads the windows again (a window that changed
  during the grab voids the sample), and reduces each grab to a block signature (`imaging`).
  The screen is *settled* when every sample of the last `GUM_SCREEN_SETTLE` seconds is within
  `minor_blocks` of the current one (a blinking cursor stays within). A settled screen that
  differs from the last captured one by more than `same_blocks` is captured: the monitors that
  changed are read on this machine and written as one pending frame (`frames`). The first settled
  screen after a start, a pause or a reconnect is the baseline and is not captured.

  Reading a capture is the privacy boundary (`GUM_SCREEN_MODE`): the rectangles of visible excluded
  windows are painted over first (a focused excluded window, or one whose rectangle cannot be
  read, voids the screen as before); OCR (`ocr`) reads the rest; the text goes through the store's
  redactor and a high-entropy check (`masking`). In `text` and `local` mode the frame holds only
  that redacted text: the pixels are dropped at once, never written. In `vision` mode the regions
  the redactor flags, low-confidence and high-entropy words are painted over too, and only then is
  the image downscaled, encoded and written; a frame OCR fails on is not kept at all.
- the **transcriber** turns each pending frame into a `screen` observation: `text` sends the new
  redacted text to the model (ONE call per frame; none when no line changed), `vision` the masked
  image (one call), `local` makes no call. The prompts live in `transcription`. The frame is then
  deleted (or kept with GUM_KEEP_SCREENSHOTS). A failure leaves the frame pending and retries after
  a backoff; frames survive restarts.

Tests drive the sampler with `tick()` on a `ManualClock` and the transcriber with
`transcribe_pending()`, both synchronous.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from gum_mcp.config import LiveSettings, Settings
from gum_mcp.domain import NewObservation, local_time, utcnow
from gum_mcp.observers import imaging, masking, transcription
from gum_mcp.observers.base import Observer
from gum_mcp.observers.clock import Clock
from gum_mcp.observers.exclusions import Exclusions
from gum_mcp.observers.frames import Frame, FrameStore
from gum_mcp.observers.ocr import Box, OcrEngine, OcrError, default_engine
from gum_mcp.observers.transcription import SYSTEM_PROMPT, ScreenSummary, ScreenTranscript
from gum_mcp.observers.window import WindowError, WindowInfo, WindowReader, open_window_reader
from gum_mcp.store.private_files import write_private

if TYPE_CHECKING:
    import numpy as np

    from gum_mcp.llm.base import LLMProvider
    from gum_mcp.store import Store

log = logging.getLogger("gum_mcp.observers")

SOURCE = "screen"
STAGE = "screen"
REOPEN_DELAY = 30.0  # seconds between attempts to open the display
MONITORS_REFRESH = 60.0  # seconds between re-reading the monitor layout
BACKOFF_BASE = 5.0
BACKOFF_MAX = 300.0
PREVIOUS_MAX_AGE = timedelta(hours=1)  # an older previous transcript is no context
MAX_TRANSCRIPT_CHARS = 8000


@dataclass(frozen=True)
class ChangePolicy:
    """When a screen counts as changed, settled, and different enough to capture.

    Block units: `imaging.signature` blocks of `block` x `block` pixels. A block has changed when
    its byte sum moved by more than `pixel_delta` per colour channel on average.
    """

    block: int = 8
    pixel_delta: int = 4
    minor_blocks: int = 6  # consecutive samples within this are "the same" (cursor blink, a clock)
    same_blocks: int = 12  # a settled screen within this of the last captured one is not captured
    settle: float | None = None  # seconds; None: settings.screen_settle

    @property
    def threshold(self) -> int:
        return self.pixel_delta * 3 * self.block * self.block


NAIVE_POLICY = ChangePolicy(minor_blocks=0, same_blocks=0, settle=0.0)


SENDS = {
    "text": "redacted text read on this machine (no image)",
    "vision": "the screenshot with secrets, unreadable text and excluded windows painted over",
    "local": "nothing at capture (the redacted text is the observation)",
}

__all__ = ["SYSTEM_PROMPT", "ChangePolicy", "ScreenObserver", "ScreenSource", "ScreenTranscript"]


class ScreenSource:
    """Where pixels come from: `grab()` returns one (Grab, monitor) per monitor."""

    def open(self) -> None:
        """Connect; raise with a message naming the cause when the screen cannot be read."""

    def grab(self) -> list[tuple[imaging.Grab, dict[str, Any]]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class MssSource(ScreenSource):
    """Every monitor through mss (`mss.MSS()`), reconnecting now and then to see monitor changes."""

    def __init__(self, display: str | None = None) -> None:
        self.display = display
        self._sct: Any = None

    def open(self) -> None:
        import mss

        kwargs: dict[str, Any] = {}
        if self.display is not None and sys.platform.startswith("linux"):
            kwargs["display"] = self.display
        sct = mss.MSS(**kwargs)
        try:
            if len(sct.monitors) < 2:
                raise RuntimeError("no monitor found")
        except BaseException:
            sct.close()
            raise
        self._sct = sct

    def grab(self) -> list[tuple[imaging.Grab, dict[str, Any]]]:
        sct = self._sct
        if sct is None:
            raise RuntimeError("not open")
        grabs = []
        for monitor in sct.monitors[1:]:
            shot = sct.grab(monitor)
            grabs.append((imaging.Grab(shot.raw, shot.width, shot.height, shot.left, shot.top), dict(monitor)))
        return grabs

    def close(self) -> None:
        sct, self._sct = self._sct, None
        if sct is not None:
            with contextlib.suppress(Exception):
                sct.close()


def display_problem(display: str | None, exc: Exception) -> str:
    """A message naming why the screen could not be read."""
    text = str(exc) or type(exc).__name__
    if sys.platform.startswith("linux"):
        name = display if display is not None else os.environ.get("DISPLAY")
        if not name:
            if os.environ.get("WAYLAND_DISPLAY"):
                return "a Wayland session without X11 (DISPLAY is not set); screen capture needs X11 or XWayland"
            return "no display: DISPLAY is not set (no graphical session)"
        return f"X display {name!r} cannot be opened or read ({text})"
    if sys.platform == "darwin":
        return f"{text} (grant Screen Recording permission in System Settings > Privacy & Security)"
    return text


def screen_problem(display: str | None = None) -> str | None:
    """Why the screen cannot be observed here (for `doctor`), or None when it can."""
    source = MssSource(display)
    try:
        source.open()
        source.grab()
    except Exception as exc:
        return display_problem(display, exc)
    finally:
        source.close()
    return None


@dataclass
class _Sample:
    at: float
    signature: list[np.ndarray]


class ScreenObserver(Observer):
    name = "screen"

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock: Clock | None = None,
        display: str | None = None,
        policy: ChangePolicy | None = None,
        provider_factory: Callable[[], LLMProvider] | None = None,
        source: ScreenSource | None = None,
        windows: WindowReader | None = None,
        transcribe: bool = True,
        backoff_base: float = BACKOFF_BASE,
        backoff_max: float = BACKOFF_MAX,
        ocr: OcrEngine | None = None,
    ) -> None:
        super().__init__(settings, store, clock=clock)
        self.mode = settings.screen_mode
        self.ocr = ocr if ocr is not None else default_engine(settings.tesseract)
        self.display = display
        self.policy = policy or ChangePolicy()
        self.settle = self.policy.settle if self.policy.settle is not None else settings.screen_settle
        self.interval = settings.screen_interval
        self.exclusions = Exclusions(settings.screen_exclude, unknown=settings.screen_unknown)
        self._live = LiveSettings(settings)  # GUM_SCREEN_MODE, GUM_SCREEN_EXCLUDE changed in <data dir>/.env
        self._exclude = list(settings.screen_exclude)
        self.frames = FrameStore(settings)
        self.provider_factory = provider_factory
        self.transcribe_enabled = transcribe
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        # sampler state (sampler thread only)
        self._source = source or MssSource(display)
        self._source_open = False
        self._source_opened_at = 0.0
        self._windows: WindowReader | None = windows
        self._own_windows = windows is None
        self._window: deque[_Sample] = deque()
        self._reference: list[np.ndarray] | None = None
        self._pending_frames = 0
        self._pending_checked_at = float("-inf")
        # transcriber state
        self._frames_ready = threading.Event()
        self._transcriber: threading.Thread | None = None
        self._retry_at = float("-inf")  # clock.monotonic() before which no transcription is tried
        self._failures = 0
        self._previous: tuple[datetime, str] | None = None
        self._previous_loaded = False
        self._recovered = False
        # what the last capture read (sampler thread): its redacted lines and window
        self._previous_lines: set[str] = set()
        self._previous_where: tuple[str | None, str | None] | None = None
        self._ocr_noted = False

    # ---------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._recover()  # before any thread writes a frame
        super().start()
        if self.transcribe_enabled and (self._transcriber is None or not self._transcriber.is_alive()):
            self._transcriber = threading.Thread(
                target=self._transcriber_main, name="gum-observer-screen-transcriber", daemon=True
            )
            self._transcriber.start()

    def stop(self, timeout: float = 15.0) -> bool:
        self._stop.set()
        self.wake()
        done = super().stop(timeout)
        transcriber = self._transcriber
        if transcriber is not None:
            transcriber.join(timeout)
            done = done and not transcriber.is_alive()
        return done

    def wake(self) -> None:
        self._frames_ready.set()

    def close(self) -> None:
        """Release the display (called in the sampler thread, or by a test that called tick())."""
        self._source_open = False
        self._source.close()
        if self._own_windows:
            windows, self._windows = self._windows, None
            if windows is not None:
                windows.close()

    def health(self) -> dict[str, Any]:
        """The observer's health plus `screen`: the mode in force and the OCR engine."""
        health = super().health()
        health["screen"] = {"mode": self.mode, "ocr": self.ocr.describe(),
                            "sends": SENDS[self.mode]}
        return health

    # ---------------------------------------------------------------------------- sampler

    def run(self) -> None:
        next_tick = self.clock.monotonic()
        while not self.stopping:
            if self.paused() is not None:
                self.reset()
                self.count("paused_checks")
                if self.sleep(min(1.0, self.interval)):
                    return
                next_tick = self.clock.monotonic()
                continue
            if not self._ensure_open():
                if self.sleep(REOPEN_DELAY):
                    return
                continue
            self.follow_settings()
            self.tick()
            next_tick += self.interval
            now = self.clock.monotonic()
            if next_tick < now:  # fell behind (a slow capture): skip, don't burst
                next_tick = now
            if self.sleep(next_tick - now):
                return

    def follow_settings(self) -> None:
        """The screen mode and exclusions of `<data dir>/.env` when they changed (the person's page writes them)."""
        live = self._live.current()
        if live.screen_exclude != self._exclude:
            self.exclusions = Exclusions(live.screen_exclude, unknown=self.settings.screen_unknown)
            self._exclude = list(live.screen_exclude)
        if live.screen_mode != self.mode:
            log.info("screen mode %s (was %s)", live.screen_mode, self.mode)
            self.mode = live.screen_mode

    def reset(self) -> None:
        """Forget the sampling state: the next settled screen is a new baseline."""
        self._window.clear()
        self._reference = None

    def _ensure_open(self) -> bool:
        now = self.clock.monotonic()
        if self._source_open and now - self._source_opened_at > MONITORS_REFRESH:
            self._source.close()  # reconnect to re-read the monitor layout (mss caches it)
            self._source_open = False
        if not self._source_open:
            try:
                self._source.open()
            except Exception as exc:
                self.record_error(f"cannot capture the screen: {self._display_problem(exc)}", part="capture")
                return False
            self._source_open = True
            self._source_opened_at = now
            self.clear_error(part="capture")
            if self._own_windows and self._windows is not None and self._windows.broken:
                self._windows.close()  # the X server went away and came back: reconnect
                self._windows = None
        if self._windows is None:
            try:
                self._windows = open_window_reader(self.display)
                if self._windows.problem:
                    self.warn("windows", self._windows.problem)
                else:
                    self.unwarn("windows")
            except WindowError as exc:
                self._windows = WindowReader()
                self.warn("windows", f"window titles unknown: {exc}")
        return True

    def _display_problem(self, exc: Exception) -> str:
        return display_problem(self.display, exc)

    def _read_windows(self) -> tuple[WindowInfo, list[WindowInfo]]:
        reader = self._windows or WindowReader()
        return reader.focused(), reader.visible()

    def tick(self) -> str:
        """One sample. Returns what happened: unavailable, excluded, unstable, changing, waiting,
        baseline, same, captured or error."""
        self.count("ticks")
        if not self._ensure_open():
            return "unavailable"
        now = self.clock.monotonic()
        focused, visible = self._read_windows()
        reason = self.exclusions.reason(focused)
        excluded = [w for w in visible if self.exclusions.window_reason(w)] if not reason else []
        hidden: list[Box] = []
        if excluded:
            # A visible excluded window beside the focused one is painted over before anything
            # reads the pixels; when its rectangle cannot be read, the screen is not captured.
            boxes = masking.window_frames(self._windows, excluded)
            if boxes is None:
                reason = "a visible window is excluded and its rectangle is unknown"
            else:
                hidden = boxes
        if reason:
            self._window.clear()
            self.record_event("excluded")
            return "excluded"
        try:
            grabbed = self._source.grab()
        except Exception as exc:
            self.record_error(f"screen grab failed: {self._display_problem(exc)}", part="capture")
            self._source.close()
            self._source_open = False
            self.reset()
            return "error"
        grabs = [grab for grab, _monitor in grabbed]
        monitors = [monitor for _grab, monitor in grabbed]
        after = (self._windows or WindowReader()).focused()
        if (after.window_id, after.title, after.app) != (focused.window_id, focused.title, focused.app):
            # The focus moved during the grab: we cannot tell which window the pixels show.
            self._window.clear()
            if self.exclusions.reason(after):
                self.record_event("excluded")
                return "excluded"
            return "unstable"
        if excluded and masking.window_frames(self._windows, excluded) != hidden:
            self._window.clear()  # an excluded window moved during the grab
            return "unstable"
        self.count("samples")
        policy = self.policy
        signature = [imaging.signature(grab, policy.block) for grab in grabs]
        previous = self._window[-1].signature if self._window else None
        self._window.append(_Sample(now, signature))
        while len(self._window) >= 2 and self._window[1].at <= now - self.settle:
            self._window.popleft()
        oldest = self._window[0]
        stable = oldest.at <= now - self.settle and all(
            self._diff(sample.signature, signature) <= policy.minor_blocks for sample in self._window
        )
        if not stable:
            moved = previous is None or self._diff(previous, signature) > policy.minor_blocks
            return "changing" if moved else "waiting"
        if self._reference is None:
            self._reference = signature
            self.count("baseline")
            return "baseline"
        per_monitor = self._diffs(self._reference, signature)
        if sum(per_monitor) <= policy.same_blocks:
            return "same"
        changed = [i for i, d in enumerate(per_monitor) if d > policy.same_blocks]
        if not changed:
            changed = [max(range(len(per_monitor)), key=per_monitor.__getitem__)]
        frame = self._capture([grabs[i] for i in changed], [monitors[i] for i in changed], focused, hidden)
        self._reference = signature
        self._cap_backlog()
        if frame is None:
            return "same" if self.mode != "vision" else "error"
        return "captured"

    def _cap_backlog(self) -> None:
        """While transcription keeps failing, keep at most GUM_SCREEN_MAX_PENDING frames: the oldest go."""
        cap = self.settings.screen_max_pending
        if self._pending_count() <= cap:
            self.unwarn("backlog")
            return
        dropped = self.frames.drop_oldest(keep=cap)
        self._pending_frames = self.frames.pending_count()
        self._pending_checked_at = self.clock.monotonic()
        self.set_count("pending_frames", self._pending_frames)
        if dropped:
            self.count("frames_dropped", dropped)
            log.warning("screen: dropped the %d oldest pending frame(s), %d dropped since start: transcription keeps "
                        "failing and at most %d wait (GUM_SCREEN_MAX_PENDING)", dropped,
                        self.counts().get("frames_dropped", 0), cap)
            self.warn("backlog", f"{cap} screen frames are waiting for transcription; the oldest are dropped to make "
                                 "room (is the LLM provider reachable?)")

    def _diff(self, a: list[np.ndarray], b: list[np.ndarray]) -> int:
        return sum(self._diffs(a, b))

    def _diffs(self, a: list[np.ndarray], b: list[np.ndarray]) -> list[int]:
        if len(a) != len(b):
            return [max(x.size for x in b)] * len(b)
        threshold = self.policy.threshold
        return [imaging.changed_blocks(x, y, threshold) for x, y in zip(a, b, strict=True)]

    def _pending_count(self) -> int:
        now = self.clock.monotonic()
        if now - self._pending_checked_at > 30.0:
            self._pending_frames = self.frames.pending_count()
            self._pending_checked_at = now
        return self._pending_frames

    def _capture(
        self, grabs: list[imaging.Grab], monitors: list[dict[str, Any]], window: WindowInfo,
        hidden: Sequence[Box] = (),
    ) -> Frame | None:
        """Read the grabs on this machine (see the module doc) and write one pending frame.
        None: nothing to write (vision: OCR failed; text, local: no new text in the same window)."""
        redact = self.store.redactor.redact
        app = redact(window.app).text if window.app else None
        title = redact(window.title).text if window.title else None
        read = self._read(grabs, hidden)
        if read is None:
            return None
        analysis, images = read
        if self.mode != "vision":
            images = []  # the pixels end here
            lines = analysis["text"].splitlines()
            new, unchanged = transcription.new_lines(lines, self._previous_lines)
            same_window = self._previous_where == (app, title)
            self._previous_lines = set(lines)
            self._previous_where = (app, title)
            if not new and same_window:
                self.count("same_text")
                return None
            analysis["new_text"] = "\n".join(new)
            analysis["unchanged"] = unchanged
        frame = self.frames.save(
            self.clock.now(),
            images,
            "jpg" if imaging.frame_format() == "jpeg" else "png",
            app=app,
            title=title,
            window_source=window.source,
            monitors=[
                {key: monitor.get(key) for key in ("left", "top", "width", "height")} for monitor in monitors
            ],
            analysis=analysis,
        )
        self._pending_frames += 1
        self.record_event("captured")
        self.count("masked_regions", analysis["masked"])
        self.set_count("pending_frames", self._pending_frames)
        self._frames_ready.set()
        return frame

    def _read(self, grabs: list[imaging.Grab], hidden: Sequence[Box]) -> tuple[dict[str, Any], list[bytes]] | None:
        """OCR, redaction and masking of one capture: (analysis, masked encoded images for vision).
        None when vision mode cannot make the images safe (no OCR engine, or OCR failed)."""
        ocr = self.ocr
        vision = self.mode == "vision"
        if not ocr.available:
            note = f"no OCR engine ({ocr.problem})"
            if vision:
                self.warn("ocr", f"{note}: GUM_SCREEN_MODE=vision sends no screen unread; nothing is captured")
                self.count("ocr_failed")
                return None
            self.warn("ocr", f"{note}: screens are recorded by window title and application only")
        else:
            self.unwarn("ocr")
        lines_out: list[str] = []
        images: list[bytes] = []
        masked = painted_windows = 0
        ocr_seconds = 0.0
        status = ocr.describe()
        for index, grab in enumerate(grabs):
            bgra = grab.array().copy()
            local = masking.boxes_on_monitor(hidden, grab.left, grab.top, grab.width, grab.height)
            painted_windows += masking.paint(bgra, local, pad=0)
            lines = []
            if ocr.available:
                try:
                    result = ocr.read(bgra[:, :, 2::-1])
                except OcrError as exc:
                    self.count("ocr_failed")
                    if vision:
                        self.record_error(f"screen OCR failed; the frame is not sent: {exc}", part="ocr")
                        return None
                    self.record_error(f"screen OCR failed; title and application only: {exc}", part="ocr")
                    status = f"failed: {exc}"
                else:
                    self.clear_error(part="ocr")
                    ocr_seconds += result.seconds
                    lines = masking.words_outside(result.lines(), local)
            if vision:
                regions = masking.regions_to_mask(lines, self.store.redactor)
                masked += masking.paint(bgra, [box for box, _reason in regions])
                images.append(imaging.encode(imaging.downscale_rgb(imaging.Grab(bgra, grab.width, grab.height))))
            laid = transcription.layout(lines, (grab.width, grab.height))
            if len(grabs) > 1:
                laid = [f"{line[:-3]} of monitor {index + 1} --" if line.startswith("-- ") else line for line in laid]
            lines_out += laid
        text, redactions = masking.redact_screen_text("\n".join(lines_out), self.store.redactor)
        if not vision:
            masked = redactions
        self.count("ocr_ms_total", round(ocr_seconds * 1000))
        analysis = {
            "mode": self.mode, "ocr": status, "text": text, "masked": masked + painted_windows,
            "excluded_windows": painted_windows, "ocr_ms": round(ocr_seconds * 1000, 1),
        }
        return analysis, images

    # ---------------------------------------------------------------------------- transcriber

    def _transcriber_main(self) -> None:
        delay = 1.0
        while not self.stopping:
            try:
                anyio.run(self._transcribe_forever)
                delay = 1.0
            except Exception as exc:
                log.exception("screen transcriber crashed")
                self.record_error(f"transcriber crashed: {type(exc).__name__}: {exc}", part="transcription")
                if self._stop.wait(delay):
                    return
                delay = min(60.0, delay * 2)

    async def _transcribe_forever(self) -> None:
        provider: LLMProvider | None = None
        try:
            async with anyio.create_task_group() as group:

                async def watch_stop() -> None:
                    await anyio.to_thread.run_sync(self._stop.wait, abandon_on_cancel=True)
                    group.cancel_scope.cancel()

                group.start_soon(watch_stop)
                await anyio.to_thread.run_sync(self._recover)
                while not self.stopping:
                    self._frames_ready.clear()
                    if self.paused() is None:
                        if self.mode != "local":
                            provider = await self._provider(provider)
                        if provider is not None or self.mode == "local":
                            await self._transcribe_due(provider, limit=None)
                    await anyio.to_thread.run_sync(self._frames_ready.wait, 1.0, abandon_on_cancel=True)
                group.cancel_scope.cancel()
        finally:
            if provider is not None:
                with anyio.CancelScope(shield=True):
                    await provider.aclose()

    def transcribe_pending(self, limit: int | None = None) -> int:
        """Transcribe the due pending frames now, in the calling thread (tests, benchmarks, CLI).
        Returns how many became observations. Do not call while the observer thread runs."""

        async def main() -> int:
            await anyio.to_thread.run_sync(self._recover)
            provider = await self._provider(None) if self.mode != "local" else None
            if provider is None and self.mode != "local":
                return 0
            try:
                return await self._transcribe_due(provider, limit=limit)
            finally:
                if provider is not None:
                    await provider.aclose()

        return anyio.run(main)

    async def _provider(self, current: LLMProvider | None) -> LLMProvider | None:
        if current is not None:
            return current
        from gum_mcp.llm.errors import LLMNotConfigured
        from gum_mcp.llm.factory import build_provider

        try:
            if self.provider_factory is not None:
                return self.provider_factory()
            return build_provider(self.settings, self.store)
        except LLMNotConfigured as exc:
            self.record_error(f"screen frames wait for transcription: {exc}", part="transcription")
            return None

    def _recover(self) -> None:
        if self._recovered:
            return
        self._recovered = True

        def observation_at(captured_at: datetime) -> int | None:
            found = self.store.observations(
                source=SOURCE, since=captured_at - timedelta(milliseconds=1),
                until=captured_at + timedelta(milliseconds=1), limit=1,
            )
            return found[0].id if found else None

        done = self.frames.recover(observation_at, keep=self.settings.keep_screenshots)
        if any(done.values()):
            log.info("screen: recovered frames on start: %s", done)
        self._pending_frames = self.frames.pending_count()
        self.set_count("pending_frames", self._pending_frames)

    async def _transcribe_due(self, provider: LLMProvider | None, *, limit: int | None) -> int:
        from gum_mcp.llm.errors import LLMBudgetExceeded, LLMError

        done = 0
        while not self.stopping and (limit is None or done < limit):
            if self.paused() is not None or self.clock.monotonic() < self._retry_at:
                break
            frames = await anyio.to_thread.run_sync(self.frames.pending)
            self._pending_frames = len(frames)
            self.set_count("pending_frames", len(frames))
            if not frames:
                break
            # Oldest first; a frame that failed max_attempts times goes behind the others.
            frames.sort(key=lambda f: (f.attempts >= self.settings.max_attempts, f.stamp))
            frame = frames[0]
            try:
                ok = await self._transcribe_one(provider, frame)
                if ok is None:
                    break  # the frame waits: no provider, or it cannot be made safe yet
            except LLMBudgetExceeded as exc:
                wait = max(60.0, (exc.paused_until - utcnow()).total_seconds())
                self._retry_at = self.clock.monotonic() + wait
                self.warn("budget", f"screen frames wait for the daily token budget: {exc}")
                break
            except LLMError as exc:
                self._failures += 1
                frame.attempts += 1
                frame.last_error = str(exc)[:500]
                await anyio.to_thread.run_sync(self.frames.update, frame)
                delay = min(self.backoff_max, self.backoff_base * 2 ** (self._failures - 1))
                self._retry_at = self.clock.monotonic() + delay
                self.count("transcription_failures")
                self.record_error(
                    f"screen transcription failed (attempt {frame.attempts}); the frame stays pending, "
                    f"retry in {delay:.0f} s: {exc}",
                    part="transcription",
                )
                break
            self.unwarn("budget")
            self._failures = 0
            self._retry_at = float("-inf")
            if ok:
                done += 1
        return done

    def _send_mode(self, frame: Frame) -> str:
        """What this frame may send now: the mode in force, never more than the frame was made for
        (a text frame has no image; switching to text or local stops images at once)."""
        if self.mode == "vision" and frame.images:
            return "vision"
        return "local" if self.mode == "local" else "text"

    async def _transcribe_one(self, provider: LLMProvider | None, frame: Frame) -> bool | None:
        """True: the frame became an observation; False: it was forgotten meanwhile; None: it waits."""
        # a frame written before screens were read locally is read now
        if frame.analysis is None and not await anyio.to_thread.run_sync(self._analyse_stored, frame):
            return None
        analysis = frame.analysis or {}
        mode = self._send_mode(frame)
        new_text = str(analysis.get("new_text", analysis.get("text", "")) or "")
        at = frame.captured_at.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
        user = self.settings.user_name
        if mode == "local" or (mode == "text" and not new_text.strip()):
            content = self._observation_text(frame, mode, None, new_text)
        elif provider is None:
            return None
        elif mode == "text":
            previous = await anyio.to_thread.run_sync(self._previous_transcript, frame.captured_at)
            prompt = transcription.text_prompt(
                at, frame.app, frame.title, new_text, int(analysis.get("unchanged") or 0),
                transcription.summary_of(previous), ocr=str(analysis.get("ocr") or ""),
            )
            summary = await provider.complete(
                ScreenSummary,
                system=transcription.TEXT_SYSTEM_PROMPT.format(user=user),
                messages=[{"role": "user", "content": prompt}],
                stage=STAGE,
            )
            content = self._observation_text(frame, mode, summary.summary, new_text)
        else:
            try:
                images = await anyio.to_thread.run_sync(frame.read_images)
            except FileNotFoundError:
                return False  # forgotten meanwhile
            previous = await anyio.to_thread.run_sync(self._previous_transcript, frame.captured_at)
            reply = await provider.complete(
                ScreenTranscript,
                system=transcription.VISION_SYSTEM_PROMPT.format(user=user),
                messages=[{"role": "user", "content": transcription.vision_prompt(
                    at, frame.app, frame.title, len(images), previous)}],
                stage=STAGE,
                images=images,
                vision=True,
            )
            content = self._observation_text(frame, mode, reply.summary, reply.text)
        return await anyio.to_thread.run_sync(self._commit, frame, content)

    def _analyse_stored(self, frame: Frame) -> bool:
        """Read a pending frame written without an analysis (its images) as a capture is read now;
        the masked images replace the stored ones. False when it cannot be made safe (kept pending)."""
        import io

        import numpy as np
        from PIL import Image

        try:
            stored = frame.read_images()
        except FileNotFoundError:
            return False
        grabs = []
        for data in stored:
            rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            bgra = np.empty((*rgb.shape[:2], 4), dtype=np.uint8)
            bgra[:, :, 2::-1] = rgb
            bgra[:, :, 3] = 255
            grabs.append(imaging.Grab(bgra, rgb.shape[1], rgb.shape[0]))
        read = self._read(grabs, ())
        if read is None:
            return False
        analysis, images = read
        for path, data in zip(frame.image_paths(), images, strict=False):
            write_private(path, data)
        frame.analysis = analysis
        return self.frames.update(frame)

    def _observation_text(self, frame: Frame, mode: str, summary: str | None, text: str) -> str:
        at = local_time(frame.captured_at)  # with its zone: the engine reads times in UTC
        where = " — ".join(part for part in (frame.app, f'"{frame.title}"' if frame.title else None) if part)
        masked = int((frame.analysis or {}).get("masked") or 0)
        head = (f"Screen at {at}" + (f" in {where}" if where else "")
                + f" [screen mode {mode}; {masked} region{'s' if masked != 1 else ''} masked]")
        text = text.strip()
        limit = min(self.settings.max_observation_chars, MAX_TRANSCRIPT_CHARS)
        body = f"{head}\n{(summary or '').strip()}".strip()
        label = "Visible text:" if mode == "vision" else "Visible text (read on this machine):"
        if text:
            room = limit - len(body) - len(label) - 2
            if room > 100:
                body += f"\n\n{label}\n" + (text if len(text) <= room else text[: room - 1] + "…")
        elif mode != "vision":
            ocr = str((frame.analysis or {}).get("ocr") or "")
            if ocr.startswith(("unavailable", "failed")):
                body += "\n(no screen text: OCR " + ocr + ")"
        return body[:limit]

    def _commit(self, frame: Frame, content: str) -> bool:
        if not self.frames.commit(frame):
            self.count("forgotten_before_commit")
            return False  # forget removed the frame while it was being transcribed
        try:
            observation = self.store.add_observations(
                [NewObservation(content=content, kind="screen", source=SOURCE, observed_at=frame.captured_at,
                                app=frame.app)]
            )[0]
        except BaseException:
            self.frames.uncommit(frame)
            raise
        self.frames.finish(frame, observation.id, keep=self.settings.keep_screenshots)
        self._previous = (frame.captured_at, observation.content or "")
        self._pending_frames = max(0, self._pending_frames - 1)
        self.set_count("pending_frames", self._pending_frames)
        self.record_event("transcribed")
        self.clear_error(part="transcription")
        return True

    def _previous_transcript(self, at: datetime) -> str | None:
        if self._previous is None and not self._previous_loaded:
            self._previous_loaded = True
            found = self.store.observations(source=SOURCE, until=at, limit=1)
            if found and found[0].content:
                self._previous = (found[0].observed_at, found[0].content)
        if self._previous is None:
            return None
        when, text = self._previous
        if at - when > PREVIOUS_MAX_AGE:
            return None
        return text

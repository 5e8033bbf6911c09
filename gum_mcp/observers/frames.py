"""Screen frames on disk: pending until transcribed, kept only with GUM_KEEP_SCREENSHOTS.

Layout under `settings.screens_dir` (directories 0700, files 0600; when the data dir is encrypted,
every file, image and sidecar, is sealed with AES-256-GCM: store/keys.py, store/crypto.py):

    pending/<stamp>.<n>.<ext>     the downscaled image of monitor n (PNG or JPEG)
    pending/<stamp>.json          the sidecar: captured_at, app, title (redacted), monitors, attempts
    pending/<stamp>.committing    the sidecar while its transcript is being added to the inbox
    kept/<stamp>.<n>.<ext>        a transcribed frame, kept on request
    kept/<stamp>.obs<ID>.json     its sidecar, naming the observation it became

`<stamp>` is the capture time in UTC (`20260105T090000_123456`) plus a random suffix, so names
sort by capture time and forget can match them by time without opening them.

A frame is written images first, sidecar last (atomic rename): a frame without a sidecar is an
interrupted write and is deleted on start. Committing renames the sidecar, so a forget that runs
while a frame is being transcribed wins: the transcript is dropped. A `.committing` sidecar found
on start is finished if its observation exists, else put back to pending. Nothing else is ever
lost: a frame leaves `pending/` only once its observation is committed.

This module does no image processing (no numpy): the CLI imports it for forget.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gum_mcp.config import Settings
from gum_mcp.domain import ForgetReport, to_ts
from gum_mcp.store.db import ensure_private_dir
from gum_mcp.store.keys import FileSealer, file_sealer
from gum_mcp.store.private_files import write_private

log = logging.getLogger("gum_mcp.observers")

STAMP_FORMAT = "%Y%m%dT%H%M%S_%f"
_STAMP = re.compile(r"^(\d{8}T\d{6}_\d{6})-([0-9a-f]{6})")
_KEPT_SIDECAR = re.compile(r"^(?P<stamp>\d{8}T\d{6}_\d{6}-[0-9a-f]{6})\.obs(?P<id>\d+)\.json$")


@dataclass
class Frame:
    """One captured screen, waiting for (or done with) transcription."""

    stamp: str
    directory: Path
    captured_at: datetime
    images: list[str]
    app: str | None = None
    title: str | None = None  # redacted before it was written
    window_source: str = "none"
    monitors: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    last_error: str | None = None
    observation_id: int | None = None
    # what the screen observer read locally (mode, redacted OCR text, masked regions); None: an image only
    analysis: dict[str, Any] | None = None
    # seals and opens the files (AES-GCM when the data dir is encrypted; store/keys.py)
    sealer: FileSealer | None = field(default=None, repr=False, compare=False)

    @property
    def sidecar(self) -> Path:
        return self.directory / f"{self.stamp}.json"

    @property
    def committing(self) -> Path:
        return self.directory / f"{self.stamp}.committing"

    def image_paths(self) -> list[Path]:
        return [self.directory / name for name in self.images]

    def read_images(self) -> list[bytes]:
        opened = self.sealer.open if self.sealer is not None else bytes
        return [opened(path.read_bytes()) for path in self.image_paths()]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "captured_at": self.captured_at.isoformat(),
            "images": self.images,
            "app": self.app,
            "title": self.title,
            "window_source": self.window_source,
            "monitors": self.monitors,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "observation_id": self.observation_id,
            "analysis": self.analysis,
        }

    @classmethod
    def from_json(cls, stamp: str, directory: Path, data: dict[str, Any]) -> Frame:
        captured = datetime.fromisoformat(data["captured_at"])
        if captured.tzinfo is None:
            captured = captured.replace(tzinfo=UTC)
        return cls(
            stamp=stamp,
            directory=directory,
            captured_at=captured,
            images=list(data.get("images") or []),
            app=data.get("app"),
            title=data.get("title"),
            window_source=data.get("window_source") or "none",
            monitors=list(data.get("monitors") or []),
            attempts=int(data.get("attempts") or 0),
            last_error=data.get("last_error"),
            observation_id=data.get("observation_id"),
            analysis=data.get("analysis"),
        )


def stamp_time(name: str) -> datetime | None:
    match = _STAMP.match(name)
    if not match:
        return None
    return datetime.strptime(match.group(1), STAMP_FORMAT).replace(tzinfo=UTC)


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


class FrameStore:
    def __init__(self, settings: Settings) -> None:
        self.root = settings.screens_dir
        self.sealer = file_sealer(settings)
        self.pending_dir = self.root / "pending"
        self.kept_dir = self.root / "kept"

    def ensure(self) -> None:
        for path in (self.root, self.pending_dir, self.kept_dir):
            ensure_private_dir(path)

    # -- writing

    def save(
        self,
        captured_at: datetime,
        images: list[bytes],
        ext: str,
        *,
        app: str | None,
        title: str | None,
        window_source: str,
        monitors: list[dict[str, Any]],
        analysis: dict[str, Any] | None = None,
    ) -> Frame:
        self.ensure()
        stamp = f"{captured_at.astimezone(UTC).strftime(STAMP_FORMAT)}-{os.urandom(3).hex()}"
        names = [f"{stamp}.{n}.{ext}" for n in range(len(images))]
        for name, data in zip(names, images, strict=True):
            write_private(self.pending_dir / name, self.sealer.seal(data))
        frame = Frame(stamp=stamp, directory=self.pending_dir, captured_at=captured_at, images=names, app=app,
                      title=title, window_source=window_source, monitors=monitors, analysis=analysis)
        frame.sealer = self.sealer
        write_private(frame.sidecar, self.sealer.seal(json.dumps(frame.to_json()).encode()))
        return frame

    def update(self, frame: Frame) -> bool:
        """Rewrite a pending frame's sidecar (attempts, last error). False if it was forgotten."""
        if not frame.sidecar.exists():
            return False
        write_private(frame.sidecar, self.sealer.seal(json.dumps(frame.to_json()).encode()), sync=False)
        return True

    def commit(self, frame: Frame) -> bool:
        """Claim a pending frame for its observation. False when forget removed it meanwhile."""
        try:
            os.rename(frame.sidecar, frame.committing)
            return True
        except FileNotFoundError:
            return False

    def uncommit(self, frame: Frame) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.rename(frame.committing, frame.sidecar)

    def finish(self, frame: Frame, observation_id: int, *, keep: bool) -> None:
        """The frame's observation is committed: delete the frame, or move it to kept/."""
        frame.observation_id = observation_id
        if keep:
            self.ensure()
            kept = []
            for path in frame.image_paths():
                try:
                    os.replace(path, self.kept_dir / path.name)
                    kept.append(path.name)
                except FileNotFoundError:
                    pass
            frame.images = kept
            write_private(self.kept_dir / f"{frame.stamp}.obs{observation_id}.json",
                          self.sealer.seal(json.dumps(frame.to_json()).encode()), sync=False)
        else:
            for path in frame.image_paths():
                _unlink(path)
        _unlink(frame.committing)
        _unlink(frame.sidecar)

    # -- reading

    def pending(self) -> list[Frame]:
        """Pending frames, oldest first."""
        try:
            names = sorted(os.listdir(self.pending_dir))
        except FileNotFoundError:
            return []
        frames = []
        for name in names:
            if not name.endswith(".json") or name.startswith("."):
                continue
            frame = self._load(self.pending_dir / name, name[: -len(".json")])
            if frame is not None:
                frames.append(frame)
        return frames

    def drop_oldest(self, *, keep: int) -> int:
        """Delete the oldest pending frames until at most `keep` wait (a frame being committed is left
        alone). Returns how many were deleted."""
        try:
            names = os.listdir(self.pending_dir)
        except FileNotFoundError:
            return 0
        stamps = sorted(name[: -len(".json")] for name in names if name.endswith(".json") and name[0] != ".")
        doomed = stamps[: max(0, len(stamps) - keep)]
        for stamp in doomed:
            self._delete_stamp(self.pending_dir, stamp)
        return len(doomed)

    def pending_count(self) -> int:
        try:
            return sum(1 for name in os.listdir(self.pending_dir) if name.endswith(".json") and name[0] != ".")
        except FileNotFoundError:
            return 0

    def _load(self, path: Path, stamp: str) -> Frame | None:
        try:
            data = json.loads(self.sealer.open(path.read_bytes()))
            frame = Frame.from_json(stamp, path.parent, data)
            frame.sealer = self.sealer
            return frame
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("screen: dropping unreadable frame %s (%s)", path.name, exc)
            self._delete_stamp(path.parent, stamp)
            return None

    # -- recovery and removal

    def recover(
        self, observation_at: Callable[[datetime], int | None], *, keep: bool = False, orphan_age: float = 60.0
    ) -> dict[str, int]:
        """On start: finish or roll back interrupted commits, delete interrupted writes (files without
        a sidecar, older than `orphan_age` seconds, so a frame being written now is left alone).

        `observation_at(captured_at)` returns the id of a screen observation already stored for that
        capture time, or None.
        """
        done = {"finished": 0, "restored": 0, "orphans": 0}
        try:
            names = os.listdir(self.pending_dir)
        except FileNotFoundError:
            return done
        for name in names:
            if name.endswith(".committing"):
                stamp = name[: -len(".committing")]
                frame = self._load(self.pending_dir / name, stamp)
                if frame is None:
                    continue
                existing = observation_at(frame.captured_at)
                if existing is not None:
                    self.finish(frame, existing, keep=keep)
                    done["finished"] += 1
                else:
                    self.uncommit(frame)
                    done["restored"] += 1
        names = os.listdir(self.pending_dir)
        sidecars = {n.rsplit(".", 1)[0] for n in names if n.endswith((".json", ".committing"))}
        cutoff = time.time() - orphan_age
        for name in names:
            match = _STAMP.match(name)
            interrupted = name.startswith(".") or match is None or match.group(0) not in sidecars
            if not interrupted:
                continue
            try:
                if (self.pending_dir / name).stat().st_mtime > cutoff:
                    continue
            except FileNotFoundError:
                continue
            _unlink(self.pending_dir / name)
            done["orphans"] += 1
        return done

    def _delete_stamp(self, directory: Path, stamp: str) -> None:
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return
        for name in names:
            if name.startswith(stamp):
                _unlink(directory / name)

    def forget(self, since: datetime | None = None, until: datetime | None = None, *, pending: bool = True) -> int:
        """Delete frames captured in [since, until): kept ones, and pending ones unless `pending` is False.
        Returns how many frames."""
        low = to_ts(since) if since is not None else float("-inf")
        high = to_ts(until) if until is not None else float("inf")
        removed: set[str] = set()
        for directory in (self.pending_dir, self.kept_dir) if pending else (self.kept_dir,):
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                continue
            for name in names:
                clean = name.lstrip(".")
                when = stamp_time(clean)
                if when is None or not (low <= when.timestamp() < high):
                    continue
                if _unlink(directory / name):
                    match = _STAMP.match(clean)
                    if match:
                        removed.add(match.group(0))
        return len(removed)

    def forget_app(self, app: str, until: datetime | None = None) -> int:
        """Delete frames (pending and kept) whose focused application is `app` (case-insensitive),
        captured before `until`. Returns how many frames."""
        wanted = app.casefold()
        high = to_ts(until) if until is not None else float("inf")
        removed = 0
        for directory in (self.pending_dir, self.kept_dir):
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                continue
            for name in names:
                match = _STAMP.match(name)
                if match is None or not name.endswith((".json", ".committing")):
                    continue
                when = stamp_time(name)
                if when is None or when.timestamp() >= high:
                    continue
                try:
                    data = json.loads(self.sealer.open((directory / name).read_bytes()))
                except (OSError, ValueError):
                    continue
                if isinstance(data, dict) and str(data.get("app") or "").casefold() == wanted:
                    self._delete_stamp(directory, match.group(0))
                    removed += 1
        return removed

    def forget_observations(self, observation_ids: Iterable[int]) -> int:
        """Delete kept frames whose observation is among `observation_ids`."""
        wanted = set(observation_ids)
        if not wanted:
            return 0
        try:
            names = os.listdir(self.kept_dir)
        except FileNotFoundError:
            return 0
        removed = 0
        for name in names:
            match = _KEPT_SIDECAR.match(name)
            if match and int(match.group("id")) in wanted:
                self._delete_stamp(self.kept_dir, match.group("stamp"))
                removed += 1
        return removed


def forget_screenshots(
    settings: Settings, since: datetime | None = None, until: datetime | None = None, *, pending: bool = True
) -> int:
    """Forget screenshots captured in [since, until) (None: open-ended): kept ones, and pending frames
    (which then never become observations) unless `pending=False` (retention pruning keeps pending
    work, as the store does). Returns how many frames were removed."""
    return FrameStore(settings).forget(since, until, pending=pending)


def screenshots_forget_hook(settings: Settings) -> Callable[[ForgetReport], None]:
    """An `after_forget_hooks` entry: deletes kept screenshots of the forgotten observations."""
    frames = FrameStore(settings)

    def hook(report: ForgetReport) -> None:
        removed = frames.forget_observations(report.observation_ids)
        if removed:
            log.info("forgot %d kept screenshot(s)", removed)

    return hook

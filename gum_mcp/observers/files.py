"""The file observer: what the person creates, edits, moves and deletes in GUM_WATCH_DIRS.

watchdog (inotify on Linux) reports raw events in its own threads; the handler only timestamps
them (on the observer's clock) and queues them. The observer thread turns them into one
*activity* per file and, `GUM_FILES_WINDOW` seconds after an activity's first event, into one
observation such as

    edited ~/notes/report.md 6 times between 10:02 and 10:14: +120/-30 lines in 4 places (Markdown, now 310 lines)

The change summary is computed locally from a cached copy of the file's previous version
(`settings.files_cache_dir`, 0600, text files up to `TEXT_CAP` bytes). By default no file content
is put in an observation: only names, counts and sizes. With `GUM_FILES_INCLUDE_CONTENT=1` a
redacted, truncated excerpt of the change is added (redacted before it is truncated, so a cut
can never hide a secret from the redactor).

Ignored: VCS, build, cache and virtual-env folders, editor temp files, binary files (by extension
and by a NUL byte in the first 8 KiB), `GUM_FILES_IGNORE` globs, and the data directory itself.
Editors that save through a temporary file and a rename are seen as one edit of the real file.
On stop every open activity is flushed, so a clean shutdown loses nothing.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import fnmatch
import hashlib
import logging
import os
import queue
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gum_mcp.config import Settings
from gum_mcp.domain import NewObservation, local_time
from gum_mcp.observers.base import Observer
from gum_mcp.observers.clock import Clock, SystemClock
from gum_mcp.store.db import ensure_private_dir
from gum_mcp.store.keys import FileSealer, file_sealer
from gum_mcp.store.private_files import write_private

if TYPE_CHECKING:
    from gum_mcp.store import Store

log = logging.getLogger("gum_mcp.observers")

# watchdog warns (harmlessly) when a folder created inside a new folder races its recursive watch
warnings.filterwarnings("ignore", message=r"Callback with id .* already exists", category=RuntimeWarning)

SOURCE = "files"
TEXT_CAP = 256 * 1024  # larger files get sizes, not diffs
SNIFF_BYTES = 8192
EDIT_GAP = 2.0  # modify events closer than this (seconds) are one save, where closes are not reported
CONTENT_CHARS = 1500  # the excerpt with GUM_FILES_INCLUDE_CONTENT
ROOTS_RECHECK = 30.0  # seconds between looks for watch folders that did not exist

IGNORED_DIRS = frozenset({
    ".git", ".hg", ".svn", ".bzr", "_darcs", "CVS",
    "node_modules", "bower_components", "__pycache__", ".venv", "venv", ".env", "env",
    "build", "dist", "target", "out", ".cache", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", ".nox",
    ".idea", ".vscode", ".gradle", ".next", ".nuxt", ".svelte-kit", ".parcel-cache", ".sass-cache",
    ".terraform", ".direnv", ".eggs", ".ipynb_checkpoints", ".Trash", ".DS_Store",
})
IGNORED_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", "4913", ".directory"})
IGNORED_GLOBS = (
    "*.swp", "*.swo", "*.swx", "*~", ".#*", "#*#", "*.tmp", "*.temp", "*.part", "*.crdownload",
    ".goutputstream-*", "*.pyc", "*.pyo", "*.egg-info", "*.orig", "*.rej", ".*.kate-swp", "*.bak",
)
BINARY_EXTENSIONS = frozenset({
    "png", "jpg", "jpeg", "gif", "bmp", "ico", "icns", "webp", "tif", "tiff", "psd", "heic", "heif", "raw", "cr2",
    "nef", "svgz", "mp3", "mp4", "m4a", "m4v", "mov", "avi", "mkv", "webm", "wav", "flac", "ogg", "oga", "opus",
    "aac", "wma", "wmv", "mpg", "mpeg", "zip", "gz", "tgz", "bz2", "xz", "lz", "lzma", "zst", "7z", "rar", "tar",
    "jar", "war", "ear", "whl", "egg", "apk", "ipa", "deb", "rpm", "msi", "dmg", "iso", "img", "pdf", "doc", "docx",
    "xls", "xlsx", "ppt", "pptx", "odt", "ods", "odp", "key", "numbers", "pages", "epub", "mobi", "exe", "dll", "so",
    "dylib", "o", "a", "lib", "obj", "class", "pyc", "pyo", "pyd", "wasm", "bin", "dat", "db", "sqlite", "sqlite3",
    "mdb", "woff", "woff2", "ttf", "otf", "eot", "pkl", "pickle", "npy", "npz", "pt", "pth", "onnx", "safetensors",
    "h5", "parquet", "feather", "arrow",
})

KINDS = {
    ".md": "Markdown", ".markdown": "Markdown", ".txt": "text", ".rst": "reStructuredText", ".tex": "LaTeX",
    ".py": "Python", ".js": "JavaScript", ".ts": "TypeScript", ".tsx": "TypeScript", ".jsx": "JavaScript",
    ".rs": "Rust", ".go": "Go", ".java": "Java", ".kt": "Kotlin", ".c": "C", ".h": "C", ".cpp": "C++",
    ".hpp": "C++", ".cs": "C#", ".rb": "Ruby", ".php": "PHP", ".swift": "Swift", ".sh": "shell",
    ".html": "HTML", ".css": "CSS", ".scss": "SCSS", ".json": "JSON", ".yaml": "YAML", ".yml": "YAML",
    ".toml": "TOML", ".ini": "INI", ".csv": "CSV", ".sql": "SQL", ".ipynb": "notebook", ".org": "Org",
}


@dataclass
class Activity:
    """What happened to one file since its window opened."""

    path: str
    first_mono: float
    first_at: datetime
    last_at: datetime
    created: bool = False  # it did not exist before this window
    deleted: bool = False
    moved_out: bool = False
    moved_from: str | None = None
    closes: int = 0  # close-after-write events (one per save where the platform reports them)
    bursts: int = 0  # groups of modify events (the fallback count of saves)
    replaced: int = 0  # atomic saves: another file renamed onto this one
    last_modify: float | None = None
    events: int = 0

    @property
    def edits(self) -> int:
        return (self.closes or self.bursts) + self.replaced

    def absorb(self, other: Activity) -> None:
        self.first_mono = min(self.first_mono, other.first_mono)
        self.first_at = min(self.first_at, other.first_at)
        self.last_at = max(self.last_at, other.last_at)
        self.closes += other.closes
        self.bursts += other.bursts
        self.replaced += other.replaced
        self.events += other.events


def _cache_key(path: str) -> str:
    return hashlib.sha256(os.fsencode(path)).hexdigest()[:40]


class FileCache:
    """Previous versions of text files, 0600 under files_cache_dir, named by a hash of the path (and
    sealed with AES-256-GCM when the data dir is encrypted)."""

    def __init__(self, directory: Path, sealer: FileSealer | None = None) -> None:
        self.directory = directory
        self.sealer = sealer

    def _path(self, path: str) -> Path:
        return self.directory / _cache_key(path)

    def has(self, path: str) -> bool:
        return self._path(path).exists()

    def get(self, path: str) -> bytes | None:
        try:
            data = self._path(path).read_bytes()
            return self.sealer.open(data) if self.sealer is not None else data
        except (FileNotFoundError, ValueError):  # ValueError: sealed with a key that is gone
            return None

    def put(self, path: str, data: bytes) -> None:
        ensure_private_dir(self.directory)
        write_private(self._path(path), self.sealer.seal(data) if self.sealer is not None else data, sync=False)

    def move(self, src: str, dest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.replace(self._path(src), self._path(dest))

    def drop(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(path).unlink()


def forget_file_cache(settings: Settings) -> int:
    """Delete every cached file copy. Returns how many were removed."""
    removed = 0
    try:
        names = os.listdir(settings.files_cache_dir)
    except FileNotFoundError:
        return 0
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (settings.files_cache_dir / name).unlink()
            removed += 1
    return removed


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # pragma: no cover


def _lines(data: bytes) -> list[str]:
    return data.decode("utf-8", "replace").splitlines()


def diff_stats(before: list[str], after: list[str]) -> tuple[int, int, int]:
    """(lines added, lines removed, places changed)."""
    added = removed = places = 0
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=len(before) + len(after) > 4000)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        places += 1
        removed += i2 - i1
        added += j2 - j1
    return added, removed, places


def inotify_probe(paths: Iterable[str]) -> OSError | None:
    """Can one more inotify watch be added (Linux)? The error if not (ENOSPC: the watch limit)."""
    import sys

    paths = list(paths)
    if not paths or not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        init, add = libc.inotify_init1, libc.inotify_add_watch
    except (OSError, AttributeError):
        return None
    add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    fd = init(os.O_CLOEXEC)
    if fd < 0:
        code = ctypes.get_errno()
        return OSError(code, os.strerror(code))
    try:
        if add(fd, os.fsencode(paths[0]), 0x00000004) < 0:  # IN_ATTRIB
            code = ctypes.get_errno()
            return OSError(code, os.strerror(code)) if code in (errno.ENOSPC, errno.EMFILE) else None
        return None
    finally:
        os.close(fd)


class _Handler:
    """watchdog handler: timestamp and queue; nothing else happens in watchdog's threads."""

    def __init__(self, observer: FileObserver) -> None:
        self.observer = observer

    def dispatch(self, event: Any) -> None:
        clock = self.observer.clock
        self.observer._events.put((clock.monotonic(), clock.now(), event))


class FileObserver(Observer):
    name = "files"

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock: Clock | None = None,
        observer_factory: Callable[[], Any] | None = None,
        window: float | None = None,
    ) -> None:
        super().__init__(settings, store, clock=clock)
        self.window = window if window is not None else settings.files_window
        self.observer_factory = observer_factory
        self.cache = FileCache(settings.files_cache_dir, file_sealer(settings))
        self.roots = self._roots(settings.watch_dirs)
        self.data_dir = str(settings.data_dir.resolve())
        self._events: queue.Queue[tuple[float, datetime, Any]] = queue.Queue()
        self._activities: dict[str, Activity] = {}
        self._unsent: list[NewObservation] = []  # summarised, not yet in the inbox (store busy)
        self._watchdog: Any = None
        self._watching: set[str] = set()
        self._roots_checked = float("-inf")
        self._home = str(Path.home())

    @staticmethod
    def _roots(dirs: Iterable[Path]) -> list[str]:
        resolved = sorted({str(Path(d).expanduser().resolve()) for d in dirs})
        roots: list[str] = []
        for path in resolved:  # drop folders inside another watched folder (events would double)
            if not any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots):
                roots.append(path)
        return roots

    # ------------------------------------------------------------------------ lifecycle

    def wake(self) -> None:
        self._events.put((0.0, self.clock.now(), None))

    def run(self) -> None:
        self._start_watching()
        while not self.stopping:
            self._check_roots()
            self.process_events(timeout=self._poll_timeout())
            if self.paused() is not None:
                continue
            self.flush_due()
        self._stop_watching()
        self.process_events(timeout=0)
        self.flush_due(force=True)

    def close(self) -> None:
        self._stop_watching()

    def _poll_timeout(self) -> float:
        if not isinstance(self.clock, SystemClock):
            return 0.05  # a test clock moves in jumps: look often
        if not self._activities:
            return 1.0
        due = min(a.first_mono for a in self._activities.values()) + self.window
        return min(1.0, max(0.05, due - self.clock.monotonic()))

    def _new_watchdog(self) -> Any:
        if self.observer_factory is not None:
            return self.observer_factory()
        try:  # Linux: unpaired moves as moves (in from / out to unwatched places), not creates and deletes
            from watchdog.observers.inotify import InotifyObserver

            return InotifyObserver(generate_full_events=True)
        except Exception:
            from watchdog.observers import Observer as WatchdogObserver

            return WatchdogObserver()

    def _start_watching(self) -> None:
        self._stop_watching()  # after a crash and restart
        if not self.roots:
            self.warn("roots", "no folders to watch: set GUM_WATCH_DIRS")
            return
        self._watchdog = self._new_watchdog()
        self._watchdog.daemon = True
        self._watchdog.start()
        self._watching = set()
        self._roots_checked = float("-inf")
        self._check_roots()

    def _stop_watching(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            with contextlib.suppress(Exception):
                watchdog.stop()
                watchdog.join(10)

    def _check_roots(self) -> None:
        if self._watchdog is None:
            return
        now = self.clock.monotonic()
        if now - self._roots_checked < ROOTS_RECHECK:
            return
        self._roots_checked = now
        from watchdog.events import (
            DirMovedEvent,
            FileClosedEvent,
            FileCreatedEvent,
            FileDeletedEvent,
            FileModifiedEvent,
            FileMovedEvent,
        )

        kinds = [FileCreatedEvent, FileModifiedEvent, FileDeletedEvent, FileMovedEvent, FileClosedEvent, DirMovedEvent]
        for root in self.roots:
            if root in self._watching:
                continue
            key = f"root:{root}"
            if not os.path.isdir(root):
                self.warn(key, f"watch folder {self._show(root)} does not exist; it is watched once it appears")
                continue
            try:
                self._watchdog.schedule(_Handler(self), root, recursive=True, event_filter=kinds)
            except OSError as exc:
                self.warn(key, self._watch_problem(root, exc))
                continue
            self._watching.add(root)
            self.unwarn(key)
        self.set_count("watched_folders", len(self._watching))
        # watchdog skips subfolders it cannot watch without saying so: probe for one more watch
        problem = inotify_probe(self._watching)
        if problem is not None:
            self.warn("inotify", self._watch_problem(", ".join(sorted(self._watching)), problem))
        else:
            self.unwarn("inotify")

    def _watch_problem(self, root: str, exc: OSError) -> str:
        if exc.errno == errno.ENOSPC:
            try:
                limit = Path("/proc/sys/fs/inotify/max_user_watches").read_text().strip()
            except OSError:
                limit = "?"
            return (
                f"inotify watch limit reached (fs.inotify.max_user_watches = {limit}): {self._show(root)} is not "
                "watched, or only in part. Raise it: sudo sysctl fs.inotify.max_user_watches=524288 (persist it in "
                "/etc/sysctl.d/), or watch fewer folders"
            )
        if exc.errno == errno.EMFILE:
            return (
                f"inotify instance limit reached (fs.inotify.max_user_instances): {self._show(root)} is not "
                "watched; raise it with sudo sysctl fs.inotify.max_user_instances=1024"
            )
        return f"cannot watch {self._show(root)}: {exc.strerror or exc}"

    # ------------------------------------------------------------------------ events

    def process_events(self, timeout: float = 0.0) -> int:
        """Handle queued events (waiting up to `timeout` for the first). Returns how many."""
        handled = 0
        try:
            item = self._events.get(timeout=timeout) if timeout > 0 else self._events.get_nowait()
        except queue.Empty:
            return 0
        paused = self.paused() is not None
        while True:
            mono, at, event = item
            if event is not None:
                handled += 1
                if paused:
                    self.count("dropped_while_paused")
                else:
                    self._handle(mono, at, event)
            try:
                item = self._events.get_nowait()
            except queue.Empty:
                break
        self.set_count("open_activities", len(self._activities))
        return handled

    def _root_of(self, path: str) -> str | None:
        for root in self.roots:
            if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
                return root
        return None

    def relevant(self, path: str) -> bool:
        """Whether events on this file are observed (not ignored, not binary by name)."""
        root = self._root_of(path)
        if root is None:
            return False
        if path == self.data_dir or path.startswith(self.data_dir + os.sep):
            return False
        rel = os.path.relpath(path, root)
        parts = rel.split(os.sep)
        name = parts[-1]
        for part in parts[:-1]:
            if part in IGNORED_DIRS or part.endswith(".egg-info"):
                return False
        if name in IGNORED_NAMES or any(fnmatch.fnmatch(name, glob) for glob in IGNORED_GLOBS):
            return False
        ext = os.path.splitext(name)[1].lower().lstrip(".")
        if ext in BINARY_EXTENSIONS:
            return False
        posix = "/".join(parts)
        for glob in self.settings.files_ignore:
            pattern = glob.rstrip("/")
            if fnmatch.fnmatch(posix, pattern) or fnmatch.fnmatch(name, pattern):
                return False
            if any(fnmatch.fnmatch(part, pattern) for part in parts[:-1]):
                return False
        return True

    def _activity(self, path: str, mono: float, at: datetime) -> Activity:
        activity = self._activities.get(path)
        if activity is None:
            activity = Activity(path=path, first_mono=mono, first_at=at, last_at=at)
            self._activities[path] = activity
        activity.last_at = max(activity.last_at, at)
        activity.events += 1
        return activity

    def _handle(self, mono: float, at: datetime, event: Any) -> None:
        self.count("events")
        kind = event.event_type
        src = os.fsdecode(event.src_path)
        if kind == "moved":
            if event.is_directory:
                return  # watchdog reports a moved event for each file inside
            self._moved(src, os.fsdecode(event.dest_path or ""), mono, at)
            return
        if event.is_directory:
            return
        if not self.relevant(src):
            self.count("ignored")
            return
        fresh = src not in self._activities
        activity = self._activity(src, mono, at)
        if kind == "created":
            if fresh:
                activity.created = not self.cache.has(src)
            activity.deleted = activity.moved_out = False
        elif kind == "deleted":
            activity.deleted = True
        elif kind == "modified":
            if activity.last_modify is None or mono - activity.last_modify > EDIT_GAP:
                activity.bursts += 1
            activity.last_modify = mono
        elif kind == "closed":
            activity.closes += 1
        self.record_event("events_observed")

    def _moved(self, src: str, dest: str, mono: float, at: datetime) -> None:
        src_ok, dest_ok = self.relevant(src), self.relevant(dest)
        if src_ok and dest_ok:
            before = self._activities.pop(src, None)
            activity = self._activity(dest, mono, at)
            if before is not None:
                activity.absorb(before)
                activity.created = before.created
                activity.moved_from = before.moved_from if before.moved_from else (None if before.created else src)
            elif activity.events == 1:
                activity.moved_from = src
            if activity.moved_from == dest:
                activity.moved_from = None
            activity.deleted = activity.moved_out = False
            self.cache.move(src, dest)
        elif src_ok:  # renamed to a temp/backup name, or moved out of the watched folders
            activity = self._activity(src, mono, at)
            activity.deleted = True
            activity.moved_out = self._root_of(dest) is None
        elif dest_ok:  # an editor's atomic save: temp file renamed onto the real one
            fresh = dest not in self._activities
            activity = self._activity(dest, mono, at)
            if fresh and not self.cache.has(dest) and self._root_of(src) is None:
                activity.created = True  # moved in from outside
            elif self._root_of(src) is not None:
                activity.replaced += 1
            activity.deleted = activity.moved_out = False
        else:
            self.count("ignored")
            return
        self.record_event("events_observed")

    # ------------------------------------------------------------------------ flushing

    def pending(self) -> dict[str, Activity]:
        """Open activities by path (for tests and status)."""
        return dict(self._activities)

    def flush_due(self, *, force: bool = False) -> int:
        """Turn activities whose window has ended (all, with force) into observations."""
        now = self.clock.monotonic()
        due = [a for a in self._activities.values() if force or now - a.first_mono >= self.window]
        if not due and not self._unsent:
            return 0
        items: list[NewObservation] = []
        for activity in sorted(due, key=lambda a: (a.first_mono, a.path)):
            del self._activities[activity.path]
            try:
                item = self._summarise(activity)
            except OSError as exc:
                self.record_error(f"cannot read {self._show(activity.path)}: {exc.strerror or exc}", part="read")
                continue
            if item is not None:
                items.append(item)
        self.set_count("open_activities", len(self._activities))
        self._unsent.extend(items)
        if not self._unsent:
            return 0
        try:
            self.store.add_observations(self._unsent)
        except Exception as exc:  # the store is busy or gone: keep them and try again next loop
            self.record_error(f"cannot add {len(self._unsent)} file observation(s) to the inbox: {exc}",
                              part="inbox")
            return 0
        sent, self._unsent = len(self._unsent), []
        self.record_event("observations", sent)
        self.clear_error(part="inbox")
        return sent

    def _show(self, path: str) -> str:
        if path == self._home or path.startswith(self._home.rstrip(os.sep) + os.sep):
            return "~" + path[len(self._home.rstrip(os.sep)):]
        return path

    @staticmethod
    def _when(activity: Activity) -> str:
        """When, in local time with its zone (e.g. `between 14:05 and 14:20 CET`): the engine reads UTC."""
        first = activity.first_at.astimezone()
        last = activity.last_at.astimezone()
        zone = last.tzname() or last.strftime("%z")
        if first.strftime("%Y%m%d%H%M") == last.strftime("%Y%m%d%H%M"):
            return f"at {first:%H:%M} {zone}"
        if first.date() == last.date():
            return f"between {first:%H:%M} and {last:%H:%M} {zone}"
        return f"between {local_time(first, '%Y-%m-%d %H:%M')} and {local_time(last, '%Y-%m-%d %H:%M')}"

    def _summarise(self, activity: Activity) -> NewObservation | None:
        path = activity.path
        shown = self._show(path)
        when = self._when(activity)
        if not os.path.isfile(path):
            self.cache.drop(path)
            if activity.created:
                self.count("transient")
                return None  # a temporary file: created and gone within the window
            where = f" (was {self._show(activity.moved_from)})" if activity.moved_from else ""
            text = (
                f"moved {shown}{where} out of the watched folders {when}"
                if activity.moved_out
                else f"deleted {shown}{where} {when}"
            )
            return NewObservation(content=text, kind="file", source=SOURCE, observed_at=activity.first_at)

        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            head = handle.read(min(size, TEXT_CAP) if size <= TEXT_CAP else SNIFF_BYTES)
        if b"\0" in head[:SNIFF_BYTES]:
            self.count("ignored_binary")
            self.cache.drop(path)
            return None
        current = head if size <= TEXT_CAP else None
        previous = self.cache.get(path)
        edits = activity.edits
        kind = KINDS.get(os.path.splitext(path)[1].lower())

        if activity.moved_from:
            verb = "renamed" if os.path.dirname(activity.moved_from) == os.path.dirname(path) else "moved"
            head_text = f"{verb} {self._show(activity.moved_from)} to {shown} {when}"
            if edits:
                head_text += f", edited {edits} time{'s' if edits != 1 else ''}"
        elif activity.created:
            head_text = f"created {shown} {when}"
            if edits > 1:
                head_text += f", saved {edits} times"
        else:
            if edits == 0 and previous is not None and current == previous:
                self.count("unchanged")
                return None
            count = max(edits, 1)
            head_text = f"edited {shown} {count} times {when}" if count > 1 else f"edited {shown} {when}"

        details: list[str] = []
        excerpt: str | None = None
        if current is None:
            details.append(f"{_human_size(size)}, too large to compare")
        else:
            now_lines = _lines(current)
            if previous is not None and not activity.created:
                before_lines = _lines(previous)
                added, removed, places = diff_stats(before_lines, now_lines)
                if added or removed:
                    change = f"+{added}/-{removed} lines"
                    if places > 1:
                        change += f" in {places} places"
                    details.append(change)
                elif not activity.moved_from:
                    details.append("no change in content")
                if self.settings.files_include_content and (added or removed):
                    excerpt = "\n".join(
                        line.rstrip("\n")
                        for line in list(difflib.unified_diff(before_lines, now_lines, lineterm="", n=1))[2:]
                    )
            elif activity.created:
                if self.settings.files_include_content:
                    excerpt = "\n".join(now_lines)
            else:
                details.append("no earlier copy to compare")
                if self.settings.files_include_content:
                    excerpt = "\n".join(now_lines)
            kind_text = f"{kind}, " if kind else ""
            details.append(f"{kind_text}{len(now_lines)} line{'s' if len(now_lines) != 1 else ''}")
            self.cache.put(path, current)
        text = head_text + (": " + "; ".join(details) if details else "")
        if excerpt:
            redacted = self.store.redactor.redact(excerpt).text  # redact first, then cut
            if len(redacted) > CONTENT_CHARS:
                redacted = redacted[: CONTENT_CHARS - 1] + "…"
            text += f"\n\nChange (excerpt):\n{redacted}"
        text = text[: self.settings.max_observation_chars]
        return NewObservation(content=text, kind="file", source=SOURCE, observed_at=activity.first_at)

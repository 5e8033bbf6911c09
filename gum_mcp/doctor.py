"""`gum-mcp doctor`: one line per check, OK / WARN / FAIL, with a hint to fix what is not OK."""

from __future__ import annotations

import sqlite3
import stat
import sys
from dataclasses import dataclass
from typing import Literal

import anyio

from gum_mcp.config import Settings

Level = Literal["OK", "WARN", "FAIL"]


@dataclass(frozen=True)
class Check:
    level: Level
    name: str
    detail: str
    hint: str = ""

    def line(self) -> str:
        hint = f"  -> {self.hint}" if self.hint and self.level != "OK" else ""
        return f"{self.level:4s}  {self.name:14s} {self.detail}{hint}"


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info < (3, 11):  # noqa: UP036 (a check for people, not for the parser)
        return Check("FAIL", "python", version, "gum-mcp needs Python 3.11 or newer")
    return Check("OK", "python", f"{version} ({sys.executable})")


def check_data_dir(settings: Settings) -> Check:
    path = settings.data_dir
    if not path.exists():
        return Check("WARN", "data dir", f"{path} does not exist yet", "it is created on first use")
    mode = stat.S_IMODE(path.stat().st_mode)
    loose = [p.name for p in path.iterdir() if p.is_file() and stat.S_IMODE(p.stat().st_mode) & 0o077]
    if mode & 0o077 or loose:
        what = f"dir is {mode:o}" if mode & 0o077 else f"readable by others: {', '.join(loose)}"
        return Check("FAIL", "data dir", f"{path}: {what}", f"chmod 700 {path} and chmod 600 the files in it")
    return Check("OK", "data dir", f"{path} (private)")


def check_store(settings: Settings) -> Check:
    if not settings.db_path.exists():
        return Check("WARN", "store", "no database yet", "it is created on first use")
    try:
        conn = sqlite3.connect(f"file:{settings.db_path}?mode=ro", uri=True, timeout=5)
        try:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return Check("FAIL", "store", f"{settings.db_path}: {exc}", "restore from `gum-mcp export` output or a backup")
    if result != "ok":
        return Check("FAIL", "store", f"quick_check: {result}", "restore from a backup; export what is readable")
    return Check("OK", "store", f"{settings.db_path.name}: integrity ok, schema v{version}")


def check_embedding(settings: Settings) -> Check:
    from gum_mcp.index.models import model_status

    status = model_status(settings)  # keyword search still works without a model: a warning, not a failure
    return Check("OK" if status.available else "WARN", "embeddings", status.describe())


def check_index(settings: Settings) -> Check:
    """The vector index against the store: what it has applied of index_log, and its counts."""
    from gum_mcp.index.vector_index import open_index
    from gum_mcp.store import Store

    if not settings.db_path.exists():
        return Check("WARN", "vector index", "no database yet")
    index, reason = open_index(settings, read_only=True)
    if index is None:
        return Check("WARN", "vector index", f"off: {reason}", "keyword search still works; see embeddings")
    try:
        with Store.open(settings) as store:
            latest = store.index_log_max_seq()
            current = store.count_current_propositions()
        behind = [c for c in ("propositions", "observations") if index.cursor(c) < latest]
        indexed = index.count("propositions")
    finally:
        index.close()
    if indexed != current and not behind:
        return Check("FAIL", "vector index", f"{indexed} propositions indexed, {current} current in the store",
                     "run `gum-mcp reindex`")
    if behind:
        return Check("WARN", "vector index", f"behind the store ({', '.join(behind)}); the running server catches "
                     "up within seconds", "start `gum-mcp serve`, or run `gum-mcp reindex`")
    return Check("OK", "vector index", f"in step with the store ({indexed} propositions)")


def check_screen(settings: Settings) -> Check:
    from gum_mcp.observers.screen import screen_problem

    wanted = "screen" in settings.observe
    problem = screen_problem()
    if problem is None:
        return Check("OK", "screen", "capture works" + ("" if wanted else " (not observed: GUM_OBSERVE)"))
    level: Level = "FAIL" if wanted else "WARN"
    return Check(level, "screen", problem, "fix the display or permission, or drop screen from GUM_OBSERVE")


def check_watch_dirs(settings: Settings) -> Check:
    if not settings.watch_dirs:
        wanted = "files" in settings.observe
        return Check("FAIL" if wanted else "OK", "watch dirs", "none set" + ("" if wanted else " (files not observed)"),
                     "set GUM_WATCH_DIRS to the folders to watch")
    missing = [str(p) for p in settings.watch_dirs if not p.is_dir()]
    if missing:
        return Check("FAIL", "watch dirs", f"not folders: {', '.join(missing)}", "fix GUM_WATCH_DIRS")
    return Check("OK", "watch dirs", ", ".join(str(p) for p in settings.watch_dirs))


def check_llm(settings: Settings) -> Check:
    from gum_mcp.llm.check import check_provider
    from gum_mcp.store import Store

    with Store.open(settings) as store:
        result = anyio.run(check_provider, settings, store)
    if result.ok:
        return Check("OK", "llm provider", result.line())
    return Check("FAIL", "llm provider", result.line(), "see README, Configuration: the provider settings")


def run_checks(settings: Settings, *, llm: bool = True) -> list[Check]:
    checks = [check_python(), check_data_dir(settings), check_store(settings), check_embedding(settings),
              check_index(settings), check_screen(settings), check_watch_dirs(settings)]
    if llm:
        checks.append(check_llm(settings))
    return checks

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
    from gum_mcp.store.permissions import loose_paths

    mode = stat.S_IMODE(path.stat().st_mode)
    # every file and folder under it, whoever wrote it
    loose = [str(p.relative_to(path)) for p in loose_paths(path) if p != path]
    if mode & 0o077 or loose:
        shown = ", ".join(loose[:5]) + (f" and {len(loose) - 5} more" if len(loose) > 5 else "")
        what = f"dir is {mode:o}" if mode & 0o077 else f"open to others: {shown}"
        return Check("FAIL", "data dir", f"{path}: {what}",
                     f"chmod -R go-rwx {path} (folders 700, files 600); the server keeps them so from then on")
    return Check("OK", "data dir", f"{path} (private, every file and folder)")


def check_store(settings: Settings) -> Check:
    if not settings.db_path.exists():
        return Check("WARN", "store", "no database yet", "it is created on first use")
    from gum_mcp.store.db import connect, driver
    from gum_mcp.store.keys import KeyProblem, find_key

    try:
        key = find_key(settings)
        conn = connect(settings.db_path, None if key is None else key.sqlcipher, read_only=True, timeout=5)
        try:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
    except KeyProblem as exc:
        return Check("FAIL", "store", str(exc), "set GUM_DB_KEY to the recovery copy of the key (`gum-mcp key export`)")
    except (sqlite3.DatabaseError, driver().DatabaseError) as exc:
        return Check("FAIL", "store", f"{settings.db_path}: {exc}", "restore from `gum-mcp export` output or a backup")
    if result != "ok":
        return Check("FAIL", "store", f"quick_check: {result}", "restore from a backup; export what is readable")
    return Check("OK", "store", f"{settings.db_path.name}: integrity ok, schema v{version}")


def check_encryption(settings: Settings) -> Check:
    """Whether the store is encrypted at rest and where its key lives (gum_mcp/store/keys.py)."""
    from gum_mcp.store.encrypt import describe_encryption, encryption_status

    info = encryption_status(settings)
    line = describe_encryption(info)
    if info["state"] == "new":
        return Check("OK", "encryption", "the store will be created " +
                     ("plaintext (GUM_ENCRYPT=0)" if settings.encrypt is False else "encrypted"))
    if info["state"] == "plaintext":
        return Check("WARN", "encryption", "off: the store is plaintext",
                     "run `gum-mcp encrypt` (stop the gum-mcp servers first; safe to re-run)")
    if "problem" in info:
        return Check("FAIL", "encryption", line, "set GUM_DB_KEY to the recovery copy of the key")
    if info.get("rotation_unfinished") or info.get("leftover"):
        return Check("WARN", "encryption", line, "run `gum-mcp key rotate` / `gum-mcp encrypt` again to finish")
    hint = "" if info.get("kept_in") == "keychain" else "back the key up: `gum-mcp key export`"
    return Check("OK", "encryption", line, hint)


def check_embedding(settings: Settings) -> Check:
    from gum_mcp.index.models import model_status

    status = model_status(settings)  # keyword search still works without a model: a warning, not a failure
    return Check("OK" if status.available else "WARN", "embeddings", status.describe())


def check_index_backend(settings: Settings) -> Check:
    """Where the vector index lives, and for a Chroma server (GUM_CHROMA_URL) whether it answers."""
    if not settings.chroma_url:
        from gum_mcp.store.keys import store_state

        kind = "encrypted" if store_state(settings.db_path) == "encrypted" else "plaintext"
        if kind == "plaintext" and settings.chroma_dir.exists():
            return Check("WARN", "index backend", f"local, {kind}: {settings.vectors_path}; {settings.chroma_dir} "
                         "is an older version's index", "the owning process deletes it on its next start "
                         "(or delete it yourself); the index is rebuilt")
        return Check("OK", "index backend", f"local, {kind}: {settings.vectors_path}")
    from gum_mcp.index.vector_index import collection_names, make_client, server_namespace

    url = settings.chroma_url
    token = " (with GUM_CHROMA_TOKEN)" if settings.chroma_token else ""
    try:
        client = make_client(settings)
        try:
            client.heartbeat()
            client.list_collections(limit=1)  # refused without the right token, where one is required
        finally:
            close = getattr(client, "close", None)
            if callable(close):
                close()
    except Exception as exc:
        return Check("FAIL", "index backend", f"Chroma server {url}{token} unreachable: {type(exc).__name__}: "
                     f"{str(exc)[:200]}", "start the server or correct GUM_CHROMA_URL / GUM_CHROMA_TOKEN; "
                     "searches use keywords meanwhile")
    names = ""
    if settings.db_path.exists():
        try:
            names = "; this data directory's collections: " + ", ".join(
                collection_names(server_namespace(settings)).values())
        except Exception:  # the store is checked on its own line
            names = ""
    return Check("OK", "index backend", f"Chroma server {url}{token}: reachable{names}")


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
    if not wanted:  # nothing to fix: say what would happen, without a warning
        return Check("OK", "screen", "not observed" + (" (capture would work here)" if problem is None else
                                                       f" (capture would not work here: {problem})"))
    if problem is None:
        return Check("OK", "screen", "capture works")
    return Check("FAIL", "screen", problem, "fix the display or permission, or drop screen from GUM_OBSERVE")


def check_screen_text(settings: Settings) -> Check:
    from gum_mcp.observers.ocr import default_engine

    engine = default_engine(settings.tesseract)
    mode = settings.screen_mode
    if engine.available:
        return Check("OK", "screen text", f"GUM_SCREEN_MODE={mode}; OCR {engine.describe()} (on this machine)")
    wanted = "screen" in settings.observe
    effect = ("nothing is captured: vision mode never sends a screen it could not read" if mode == "vision"
              else "screens are recorded by window title and application only")
    return Check("FAIL" if wanted and mode == "vision" else "WARN", "screen text",
                 f"GUM_SCREEN_MODE={mode}; no OCR engine ({engine.problem}): {effect}",
                 "install Tesseract (README, Screen modes)")


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
    from gum_mcp.llm.factory import not_configured_reason
    from gum_mcp.store import Store

    missing = not_configured_reason(settings)
    if missing:
        env_file = settings.data_dir / ".env"
        what = missing.removeprefix("no LLM provider configured: ")
        return Check("FAIL", "llm provider", f"not configured: {what}; put it in {env_file}",
                     "the variables are listed in .env.example; then run `gum-mcp doctor` again")
    with Store.open(settings) as store:
        result = anyio.run(check_provider, settings, store)
    if result.ok and result.paused:  # it answers now; the engine stays paused until told
        return Check("WARN", "llm provider", result.line(), "run `gum-mcp retry` to resume the engine")
    if result.ok:
        return Check("OK", "llm provider", result.line())
    return Check("FAIL", "llm provider", result.line(), "see README, Configuration: the provider settings")


def run_checks(settings: Settings, *, llm: bool = True) -> list[Check]:
    checks = [check_python(), check_data_dir(settings), check_store(settings), check_encryption(settings),
              check_embedding(settings), check_index_backend(settings),
              check_index(settings), check_screen(settings), check_screen_text(settings), check_watch_dirs(settings)]
    if llm:
        checks.append(check_llm(settings))
    return checks

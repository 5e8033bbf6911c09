"""Old data gets the new redactor: stored text is redacted again when the redactor improved.

The store records which redactor its text was redacted with (`meta.redaction_version`: the built-in
rules' `REDACTOR_VERSION` and a fingerprint of GUM_REDACT_PATTERNS and GUM_REDACT_CONTACTS). When that
differs from the running redactor's, the owning process runs this job in the background, a batch of
rows per transaction, resumably (its progress is in `meta.reredact`; a restart continues where it
stopped):

1. ``pending``        observations still waiting for the engine (they are the next to reach a model);
2. ``propositions``   every proposition's text and reasoning, current or retired (the immutability
   trigger lets this job, and only it, rewrite them: schema migration 6);
3. ``observations``   every other observation, newest first;
4. ``notes``          what else holds free text: skip reasons, feedback notes, lineage notes,
   suggestions.

Then the version is recorded, freed pages are purged from the files (`Database.purge_freed_text`) and,
when a proposition or an observation changed, a rebuild of the vector index is requested: its vectors
were computed from the old text. Until the job is done, `claim_batch` and `observations` redact what they
return again in memory, so no secret of the old text reaches a model or a client meanwhile.
`status()` is what `gum-mcp status` and the `status` tool show.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from gum_mcp.store.db import Database
from gum_mcp.store.redaction import REDACTOR_VERSION, Redactor

log = logging.getLogger("gum_mcp.store")

VERSION_KEY = "redaction_version"
STATE_KEY = "reredact"
BYPASS_KEY = "redacting"  # held only inside this job's write transactions (schema migration 6)
BATCH = 200
PHASES = ("pending", "propositions", "observations", "notes")


def target_version(redactor: Redactor) -> str:
    """What the running redactor would record: its rules' version and a fingerprint of its settings."""
    settings = json.dumps({"patterns": sorted(redactor.extra_patterns), "contacts": redactor.contacts})
    return f"{REDACTOR_VERSION}:{hashlib.sha256(settings.encode()).hexdigest()[:12]}"


@dataclass
class ReredactStatus:
    target: str
    stored: str | None  # the version the stored text was redacted with (None: before versions were recorded)
    phase: str | None = None  # None when done
    done: int = 0  # rows looked at
    total: int = 0  # rows to look at (observations and propositions when the job started)
    changed: int = 0  # rows whose text changed
    vectors_stale: bool = False

    @property
    def current(self) -> bool:
        return self.stored == self.target

    def line(self) -> str:
        if self.current:
            return f"up to date (redactor {self.target})"
        return (f"redacting stored text again with redactor {self.target}: {self.done:,} of {self.total:,} rows "
                f"checked, {self.changed:,} changed")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("vectors_stale")
        return {**data, "current": self.current}


def _meta(conn: Any, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def _set_meta(conn: Any, key: str, value: str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def is_current(db: Database, redactor: Redactor) -> bool:
    """True when the stored text was redacted with this redactor. A store with nothing in it yet is
    marked current here, so a new data directory never runs the job."""
    target = target_version(redactor)
    with db.read() as conn:
        stored = _meta(conn, VERSION_KEY)
        if stored == target:
            return True
        empty = stored is None and conn.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM observations) AND NOT EXISTS (SELECT 1 FROM propositions)"
        ).fetchone()[0]
    if not empty:
        return False
    with db.write() as conn:
        if conn.execute("SELECT NOT EXISTS (SELECT 1 FROM observations) AND NOT EXISTS (SELECT 1 FROM propositions)"
                        ).fetchone()[0]:
            _set_meta(conn, VERSION_KEY, target)
            return True
    return False


def status(db: Database, redactor: Redactor) -> ReredactStatus:
    target = target_version(redactor)
    with db.read() as conn:
        stored = _meta(conn, VERSION_KEY)
        raw = _meta(conn, STATE_KEY)
        if stored == target:
            return ReredactStatus(target=target, stored=stored)
        state = json.loads(raw) if raw else None
        if state is None or state.get("target") != target:
            total = conn.execute("SELECT (SELECT count(*) FROM observations) + (SELECT count(*) FROM propositions)"
                                 ).fetchone()[0]
            return ReredactStatus(target=target, stored=stored, phase=PHASES[0], total=total)
    return ReredactStatus(target=target, stored=stored, phase=state["phase"], done=state["done"],
                          total=state["total"], changed=state["changed"],
                          vectors_stale=state.get("vectors_stale", False))


def step(db: Database, redactor: Redactor, *, batch: int = BATCH) -> ReredactStatus:
    """One batch of the job (a transaction or two); returns where it stands. A no-op when up to date."""
    target = target_version(redactor)
    with db.read() as conn:
        if _meta(conn, VERSION_KEY) == target:
            return ReredactStatus(target=target, stored=target)
        raw = _meta(conn, STATE_KEY)
        state = json.loads(raw) if raw else None
        if state is None or state.get("target") != target:
            total = conn.execute("SELECT (SELECT count(*) FROM observations) + (SELECT count(*) FROM propositions)"
                                 ).fetchone()[0]
            top = conn.execute("SELECT coalesce(max(id), 0) FROM observations").fetchone()[0]
            state = {"target": target, "phase": PHASES[0], "cursor": 0, "top": top, "done": 0, "total": total,
                     "changed": 0, "vectors_stale": False}
    phase = state["phase"]
    if phase == "pending":
        finished = _observations(db, redactor, state, batch, pending=True)
    elif phase == "propositions":
        finished = _propositions(db, redactor, state, batch)
    elif phase == "observations":
        finished = _observations(db, redactor, state, batch, pending=False)
    else:
        _notes(db, redactor, state)
        finished = True
    if finished:
        following = PHASES.index(phase) + 1
        if following < len(PHASES):
            state["phase"] = PHASES[following]
            state["cursor"] = state["top"] + 1 if PHASES[following] == "observations" else 0
            _save(db, state)
        else:
            return _finish(db, state)
    return status(db, redactor)


def run(db: Database, redactor: Redactor, *, batch: int = BATCH,
        progress: Callable[[ReredactStatus], None] | None = None) -> ReredactStatus:
    """The whole job (blocking), batch after batch."""
    started = time.monotonic()
    while True:
        current = step(db, redactor, batch=batch)
        if progress is not None:
            progress(current)
        if current.current:
            if current.changed or time.monotonic() - started > 1:
                log.info("re-redaction done in %.1f s", time.monotonic() - started)
            return current


def _save(db: Database, state: dict[str, Any], conn: Any = None) -> None:
    if conn is not None:
        _set_meta(conn, STATE_KEY, json.dumps(state))
        return
    with db.write() as write:
        _set_meta(write, STATE_KEY, json.dumps(state))


def _finish(db: Database, state: dict[str, Any]) -> ReredactStatus:
    with db.write() as conn:
        _set_meta(conn, VERSION_KEY, state["target"])
        conn.execute("DELETE FROM meta WHERE key = ?", (STATE_KEY,))
        if state["vectors_stale"]:
            # the vectors were computed from the old text: the owner rebuilds the index (index_log.py)
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('reindex_requested', '1')")
    if state["changed"]:
        log.info("re-redaction: %d rows of stored text changed; purging the old text from the files",
                 state["changed"])
        db.purge_freed_text()
    return ReredactStatus(target=state["target"], stored=state["target"], done=state["done"], total=state["total"],
                          changed=state["changed"])


def _observations(db: Database, redactor: Redactor, state: dict[str, Any], batch: int, *, pending: bool) -> bool:
    cursor = state["cursor"]
    with db.read() as conn:
        if pending:
            rows = conn.execute(
                "SELECT id, content, last_error FROM observations WHERE status IN ('pending', 'failed')"
                " AND id > ? ORDER BY id LIMIT ?", (cursor, batch)).fetchall()
        else:
            rows = conn.execute(
                "SELECT id, content, last_error FROM observations WHERE id < ? ORDER BY id DESC LIMIT ?",
                (cursor, batch)).fetchall()
    updates = []
    for oid, content, last_error in rows:
        new_content, count = _redact(redactor, content)
        new_error, _ = _redact(redactor, last_error)
        if new_content != content or new_error != last_error:
            updates.append((new_content, count, new_error, oid, content, last_error))
    with db.write() as conn:
        for new_content, count, new_error, oid, content, last_error in updates:
            # only if the row did not change meanwhile (forgotten, pruned): the next run sees the rest
            changed = conn.execute(
                "UPDATE observations SET content = ?, redactions = redactions + ?, last_error = ?"
                " WHERE id = ? AND content IS ? AND last_error IS ?",
                (new_content, count, new_error, oid, content, last_error)).rowcount
            state["changed"] += changed
            state["vectors_stale"] = state["vectors_stale"] or bool(changed and new_content != content)
        if rows:
            state["cursor"] = rows[-1][0]
            if not pending:
                state["done"] += len(rows)
        _save(db, state, conn)
    return len(rows) < batch


def _propositions(db: Database, redactor: Redactor, state: dict[str, Any], batch: int) -> bool:
    with db.read() as conn:
        rows = conn.execute("SELECT id, text, reasoning FROM propositions WHERE id > ? ORDER BY id LIMIT ?",
                            (state["cursor"], batch)).fetchall()
    updates = []
    for pid, text, reasoning in rows:
        new_text, _ = _redact(redactor, text)
        new_reasoning, _ = _redact(redactor, reasoning)
        if new_text != text or new_reasoning != reasoning:
            updates.append((new_text, new_reasoning, pid, text, reasoning))
    with db.write() as conn:
        if updates:
            _set_meta(conn, BYPASS_KEY, "1")
            try:
                for new_text, new_reasoning, pid, text, reasoning in updates:
                    # text is always set, so the FTS trigger (on text) also refreshes the reasoning it indexes
                    changed = conn.execute(
                        "UPDATE propositions SET text = ?, reasoning = ? WHERE id = ? AND text IS ? AND reasoning IS ?",
                        (new_text, new_reasoning, pid, text, reasoning)).rowcount
                    state["changed"] += changed
                    state["vectors_stale"] = state["vectors_stale"] or bool(changed)
            finally:
                conn.execute("DELETE FROM meta WHERE key = ?", (BYPASS_KEY,))
        if rows:
            state["cursor"] = rows[-1][0]
            state["done"] += len(rows)
        _save(db, state, conn)
    return len(rows) < batch


# (table, key columns, text columns): small tables, done in one pass
_NOTES = (
    ("feedback", ("id",), ("note",)),
    ("lineage", ("parent_id", "child_id"), ("note",)),
    ("suggestions", ("id",), ("title", "action", "rationale", "note")),
)


def _notes(db: Database, redactor: Redactor, state: dict[str, Any]) -> None:
    for table, keys, columns in _NOTES:
        with db.read() as conn:
            try:
                rows = conn.execute(f"SELECT {', '.join(keys + columns)} FROM {table}").fetchall()
            except Exception:  # a table this store does not have (yet)
                log.debug("re-redaction: no %s table", table, exc_info=True)
                continue
        updates = []
        for row in rows:
            values = list(row[len(keys):])
            new = [_redact(redactor, value)[0] for value in values]
            if new != values:
                updates.append((tuple(row[: len(keys)]), values, new))
        if not updates:
            continue
        with db.write() as conn:
            sets = ", ".join(f"{column} = ?" for column in columns)
            where = " AND ".join([*(f"{key} = ?" for key in keys), *(f"{column} IS ?" for column in columns)])
            for key_values, old, new in updates:
                state["changed"] += conn.execute(f"UPDATE {table} SET {sets} WHERE {where}",
                                                 (*new, *key_values, *old)).rowcount
            _save(db, state, conn)


def _redact(redactor: Redactor, text: str | None) -> tuple[str | None, int]:
    if not text:
        return text, 0
    result = redactor.redact(text)
    return result.text, result.count

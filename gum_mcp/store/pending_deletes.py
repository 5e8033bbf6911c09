"""What a forget must still remove outside SQLite, recorded in the forget's own transaction.

A forget writes one `pending_deletes` row per kind of work left (which screenshots, the file
observer's cache, the purge of freed text) in the same transaction as the database change, then
does the work after COMMIT and deletes the rows. A crash or an error in between leaves the rows, and
the next process that opens the store with its deleters (`gum_mcp.forgetting.open_store`: every
entry point) finishes them. Each kind is idempotent, so doing one twice is harmless.

Kinds (specs are JSON of ids, Unix times and an app name; never content):
- "observations" {"ids": [...]}: files kept for these observations (kept screenshots)
- "range" {"since": t | null, "until": t}: screenshots captured in [since, until)
- "source" {"source": s, "until": t}: what that source keeps on disk, up to the forget
- "app" {"app": a, "until": t}: screenshots of that application, up to the forget
- "everything" {"until": t}: every screenshot up to the forget and the file observer's cache
- "purge" {}: merge the FTS indexes and truncate the WAL (the store does this one itself)
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gum_mcp.domain import to_ts, utcnow

#: A deleter does the work of one kind; it raises (OSError, ...) to leave the row for later.
Deleter = Callable[[dict[str, Any]], None]

PURGE = "purge"


@dataclass(frozen=True)
class PendingDelete:
    id: int
    kind: str
    spec: dict[str, Any]


def record(conn: sqlite3.Connection, kind: str, spec: dict[str, Any] | None = None) -> None:
    """Inside the forget's transaction: this work is left to do."""
    conn.execute(
        "INSERT INTO pending_deletes (kind, spec, created_at) VALUES (?, ?, ?)",
        (kind, json.dumps(spec or {}, sort_keys=True), to_ts(utcnow())),
    )


def pending(conn: sqlite3.Connection) -> list[PendingDelete]:
    rows = conn.execute("SELECT id, kind, spec FROM pending_deletes ORDER BY id").fetchall()
    found = []
    for row in rows:
        try:
            spec = json.loads(row[2])
        except ValueError:
            spec = {}
        found.append(PendingDelete(row[0], row[1], spec if isinstance(spec, dict) else {}))
    return found


def done(conn: sqlite3.Connection, ids: list[int]) -> None:
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        conn.execute(f"DELETE FROM pending_deletes WHERE id IN ({','.join('?' * len(chunk))})", chunk)

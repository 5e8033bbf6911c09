"""What the privacy audit held back: held observations, skipped ones, their review and their retention.

The audit fails closed (engine/pipeline.py): an observation it gives no verdict for is *held*: it stays
pending with one more attempt counted (`hold`), and after GUM_MAX_ATTEMPTS it is skipped with that
reason. A skipped observation is never embedded (index_log.py, schema migration 6) and never served
raw (`Inbox.observations(exclude_status="skipped")`). Its content stays for review for
GUM_SKIPPED_RETENTION_DAYS (`gum-mcp audit --list`), during which `release` gives it back to the
engine, which then uses it without auditing it again. After that `purge_content` deletes the content
and keeps a content-free row (time, source, app, reason), so counts stay true.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gum_mcp.config import Settings
from gum_mcp.domain import InvalidInput, NotFound, from_ts, to_ts, utcnow
from gum_mcp.store import reredact
from gum_mcp.store.db import Database
from gum_mcp.store.redaction import Redactor

NO_VERDICT = "audit: no verdict"


@dataclass(frozen=True)
class SkippedObservation:
    id: int
    kind: str
    source: str
    app: str | None
    observed_at: datetime
    skipped_at: datetime | None
    reason: str | None
    content: str | None  # None once the retention deleted it


def _chunks(values: Sequence[int], size: int = 500) -> list[list[int]]:
    return [list(values[i : i + size]) for i in range(0, len(values), size)]


def hold(db: Database, observation_ids: Sequence[int], reason: str, *, max_attempts: int) -> tuple[int, int]:
    """The audit gave these pending observations no verdict: count an attempt and keep them pending to be
    audited again; those that reached `max_attempts` are skipped with the reason. Returns (held, skipped)."""
    ids = sorted(set(observation_ids))
    if not ids:
        return 0, 0
    reason = reason[:2000]
    skip_reason = f"{reason} after {max_attempts} attempt{'s' if max_attempts != 1 else ''}"[:2000]
    held = skipped = 0
    with db.write() as conn:
        now = to_ts(utcnow())
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            held += conn.execute(
                f"UPDATE observations SET attempts = attempts + 1, last_error = ?"
                f" WHERE status = 'pending' AND id IN ({marks})", (reason, *chunk)).rowcount
            skipped += conn.execute(
                f"UPDATE observations SET status = 'skipped', processed_at = ?, last_error = ?"
                f" WHERE status = 'pending' AND attempts >= ? AND id IN ({marks})",
                (now, skip_reason, max_attempts, *chunk)).rowcount
    return held - skipped, skipped


def released(db: Database, observation_ids: Sequence[int]) -> set[int]:
    """Those of `observation_ids` the person released after the audit skipped them (`release`)."""
    found: set[int] = set()
    with db.read() as conn:
        for chunk in _chunks(list(observation_ids)):
            marks = ",".join("?" * len(chunk))
            found.update(row[0] for row in conn.execute(
                f"SELECT id FROM observations WHERE audit_released = 1 AND id IN ({marks})", chunk))
    return found


def list_skipped(db: Database, *, limit: int = 50, with_content_only: bool = False) -> list[SkippedObservation]:
    """Skipped observations, the most recently skipped first."""
    where = "status = 'skipped'" + (" AND content IS NOT NULL" if with_content_only else "")
    with db.read() as conn:
        rows = conn.execute(
            f"SELECT id, kind, source, app, observed_at, processed_at, last_error, content FROM observations"
            f" WHERE {where} ORDER BY coalesce(processed_at, observed_at) DESC, id DESC LIMIT ?", (limit,)).fetchall()
    return [SkippedObservation(id=r[0], kind=r[1], source=r[2], app=r[3], observed_at=from_ts(r[4]),
                               skipped_at=from_ts(r[5]) if r[5] is not None else None, reason=r[6], content=r[7])
            for r in rows]


def counts(db: Database) -> dict[str, int]:
    """{"skipped": all skipped rows, "reviewable": those whose content is still kept, "held": pending
    observations the audit gave no verdict for yet}."""
    with db.read() as conn:
        skipped, reviewable = conn.execute(
            "SELECT count(*), count(content) FROM observations WHERE status = 'skipped'").fetchone()
        held = conn.execute("SELECT count(*) FROM observations WHERE status = 'pending' AND last_error LIKE ?",
                            (NO_VERDICT + "%",)).fetchone()[0]
    return {"skipped": skipped, "reviewable": reviewable, "held": held}


def release(db: Database, observation_id: int) -> None:
    """Let the engine use an observation the audit skipped: pending again, attempts reset, and marked so
    that the audit does not judge it again. Raises NotFound, or InvalidInput when it was not skipped or
    its content is already gone."""
    with db.write() as conn:
        row = conn.execute("SELECT status, content IS NOT NULL FROM observations WHERE id = ?",
                           (observation_id,)).fetchone()
        if row is None:
            raise NotFound(f"no observation with id {observation_id}")
        status, has_content = row
        if status != "skipped":
            raise InvalidInput(f"observation {observation_id} was not skipped by the audit (it is {status})")
        if not has_content:
            raise InvalidInput(f"observation {observation_id}: its content was deleted after "
                               "GUM_SKIPPED_RETENTION_DAYS; there is nothing left to release")
        conn.execute(
            "UPDATE observations SET status = 'pending', attempts = 0, last_error = NULL, processed_at = NULL,"
            " audit_released = 1 WHERE id = ?", (observation_id,))


def purge_content(db: Database, *, retention: timedelta, now: datetime | None = None) -> int:
    """Delete the content of observations skipped longer than `retention` ago; the row stays (time,
    source, app, reason). Freed pages are purged from the files. Returns how many were purged."""
    cutoff = to_ts((now or utcnow()) - retention)
    with db.write() as conn:
        purged = conn.execute(
            "UPDATE observations SET content = NULL, pruned_at = ? WHERE status = 'skipped'"
            " AND content IS NOT NULL AND coalesce(processed_at, created_at) <= ?",
            (to_ts(now or utcnow()), cutoff)).rowcount
    if purged:
        db.purge_freed_text()
    return purged


def privacy_status(db: Database, redactor: Redactor, settings: Settings) -> dict[str, Any]:
    """For `gum-mcp status` and the status tool: the re-redaction job and the audit's counts."""
    redaction = reredact.status(db, redactor)
    return {
        "redaction": {**redaction.as_dict(), "line": redaction.line()},
        "audit": {"enabled": settings.audit, "skipped_retention_days": settings.skipped_retention_days,
                  **counts(db)},
    }


def audit_line(privacy: dict[str, Any]) -> str:
    audit = privacy["audit"]
    if not audit["enabled"]:
        return "off (GUM_AUDIT=false: every observation is used)"
    return (f"on; {audit['skipped']} skipped ({audit['reviewable']} reviewable: gum-mcp audit), "
            f"{audit['held']} waiting for a verdict")

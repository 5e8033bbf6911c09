"""The inbox: observations in, redacted and durable; batches claimed, completed or failed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime

from gum_mcp.domain import (
    InvalidInput,
    NewObservation,
    NotFound,
    Observation,
    from_ts,
    to_ts,
    utcnow,
)
from gum_mcp.store import reredact
from gum_mcp.store.db import Database
from gum_mcp.store.redaction import Redactor

OBSERVATION_COLUMNS = (
    "id, kind, source, content, observed_at, created_at, status, attempts, last_error,"
    " processed_at, redactions"
)


def observation_from_row(row: sqlite3.Row) -> Observation:
    return Observation(
        id=row["id"],
        kind=row["kind"],
        source=row["source"],
        content=row["content"],
        observed_at=from_ts(row["observed_at"]),
        created_at=from_ts(row["created_at"]),
        status=row["status"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        processed_at=from_ts(row["processed_at"]),
        redactions=row["redactions"],
    )


def placeholders(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


class Inbox:
    db: Database
    redactor: Redactor
    max_observation_chars: int

    def add_observations(self, items: Iterable[NewObservation]) -> list[Observation]:
        """Redact and store observations in one transaction; return them once committed.

        Every item is checked first: one bad item refuses the whole call and stores nothing.
        """
        items = list(items)
        if not items:
            return []
        now = utcnow()
        rows = []
        for number, item in enumerate(items):
            where = f"observation {number + 1}: " if len(items) > 1 else ""
            if not isinstance(item, NewObservation):
                raise InvalidInput(f"{where}expected a NewObservation")
            if len(item.content) > self.max_observation_chars:
                raise InvalidInput(
                    f"{where}content is {len(item.content):,} characters; the limit is "
                    f"{self.max_observation_chars:,} (GUM_MAX_OBSERVATION_CHARS)"
                )
            redacted = self.redactor.redact(item.content)
            observed = item.observed_at or now
            if observed.tzinfo is None:
                raise InvalidInput(f"{where}observed_at must include a time zone")
            app = self.redactor.redact(item.app).text if item.app else None
            rows.append(
                (item.kind, item.source, redacted.text, to_ts(observed), to_ts(now), redacted.count, app)
            )
        with self.db.write() as conn:
            ids = [
                conn.execute(
                    "INSERT INTO observations (kind, source, content, observed_at, created_at,"
                    " redactions, app) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    row,
                ).fetchone()[0]
                for row in rows
            ]
        return [
            Observation(
                id=id_,
                kind=row[0],
                source=row[1],
                content=row[2],
                observed_at=from_ts(row[3]),
                created_at=from_ts(row[4]),
                status="pending",
                redactions=row[5],
            )
            for id_, row in zip(ids, rows, strict=True)
        ]

    def add_observation(self, content: str, *, kind: str = "text", source: str = "unknown",
                        observed_at: datetime | None = None) -> Observation:
        try:
            item = NewObservation(content=content, kind=kind, source=source, observed_at=observed_at)
        except ValueError as exc:
            raise InvalidInput(_first_error(exc)) from None
        return self.add_observations([item])[0]

    def get_observation(self, observation_id: int) -> Observation:
        with self.db.read() as conn:
            row = conn.execute(
                f"SELECT {OBSERVATION_COLUMNS} FROM observations WHERE id = ?", (observation_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no observation with id {observation_id}")
        return observation_from_row(row)

    def observations(
        self,
        *,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        source: str | None = None,
        limit: int = 100,
        newest_first: bool = True,
        exclude_status: str | None = None,
    ) -> list[Observation]:
        clauses, params = [], []
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if exclude_status is not None:  # e.g. "skipped": what the privacy audit held back is never served
            clauses.append("status != ?")
            params.append(exclude_status)
        if since is not None:
            clauses.append("observed_at >= ?")
            params.append(to_ts(since))
        if until is not None:
            clauses.append("observed_at < ?")
            params.append(to_ts(until))
        if source is not None:
            clauses.append("source = ?")
            params.append(source)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        order = "DESC" if newest_first else "ASC"
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT {OBSERVATION_COLUMNS} FROM observations {where}"
                f" ORDER BY observed_at {order}, id {order} LIMIT ?",
                (*params, limit),
            ).fetchall()
        return self._redacted_now([observation_from_row(row) for row in rows])

    def claim_batch(self, limit: int) -> list[Observation]:
        """The oldest pending observations, in the order they arrived.

        Claiming changes nothing on disk: only the engine lock owner processes the inbox, and a
        crash before `complete_batch` commits simply leaves the batch pending.
        """
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT {OBSERVATION_COLUMNS} FROM observations WHERE status = 'pending'"
                " ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        return self._redacted_now([observation_from_row(row) for row in rows])

    def _redacted_now(self, observations: list[Observation]) -> list[Observation]:
        """Until the stored text has been redacted with this redactor (reredact.py runs in the engine's
        process), redact what is returned again, so no secret of older text reaches a model or a client."""
        if not observations or reredact.is_current(self.db, self.redactor):
            return observations
        return [o.model_copy(update={"content": self.redactor.redact(o.content).text}) if o.content else o
                for o in observations]

    def pending_count(self) -> int:
        with self.db.read() as conn:
            return conn.execute("SELECT count(*) FROM observations WHERE status = 'pending'").fetchone()[0]

    def fail_batch(self, observation_ids: Sequence[int], reason: str, *, max_attempts: int) -> int:
        """Count a failed attempt; observations that reached `max_attempts` become failed.

        Returns how many became failed.
        """
        if not observation_ids:
            return 0
        reason = reason[:2000]
        with self.db.write() as conn:
            marks = placeholders(observation_ids)
            conn.execute(
                f"UPDATE observations SET attempts = attempts + 1, last_error = ?"
                f" WHERE status = 'pending' AND id IN ({marks})",
                (reason, *observation_ids),
            )
            return conn.execute(
                f"UPDATE observations SET status = 'failed', processed_at = ?"
                f" WHERE status = 'pending' AND attempts >= ? AND id IN ({marks})",
                (to_ts(utcnow()), max_attempts, *observation_ids),
            ).rowcount

    def retry_failed(self, observation_ids: Sequence[int] | None = None) -> int:
        """Put failed observations back to pending with a fresh attempt count."""
        with self.db.write() as conn:
            if observation_ids is None:
                cursor = conn.execute(
                    "UPDATE observations SET status = 'pending', attempts = 0, processed_at = NULL"
                    " WHERE status = 'failed'"
                )
            else:
                cursor = conn.execute(
                    "UPDATE observations SET status = 'pending', attempts = 0, processed_at = NULL"
                    f" WHERE status = 'failed' AND id IN ({placeholders(observation_ids)})",
                    tuple(observation_ids),
                )
            return cursor.rowcount


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        return f"{field}: {first['msg'].removeprefix('Value error, ')}"
    return str(exc)

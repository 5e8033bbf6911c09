"""The access log: which client called which tool, resource or prompt, when, and the ids of the
propositions and observations the result carried (ids only, never text).

The MCP server writes one row per call (gum_mcp/server/guard.py); `gum-mcp access-log` and the
admin-only resource gum://access-log read it. Retention removes old rows with `prune_access_log`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel

from gum_mcp.domain import from_ts, to_ts
from gum_mcp.store.db import Database

Kind = Literal["tool", "resource", "prompt"]
Outcome = Literal["ok", "error", "denied"]


class AccessEntry(BaseModel):
    id: int | None = None
    at: datetime
    client: str
    transport: str
    kind: Kind
    name: str
    outcome: Outcome
    proposition_ids: tuple[int, ...] = ()
    observation_ids: tuple[int, ...] = ()


class WeeklyAccess(BaseModel):
    """One client's week (Monday to Sunday, UTC)."""

    client: str
    week: date
    calls: int
    denied: int
    errors: int
    propositions: int
    observations: int
    by_name: dict[str, int]
    last_at: datetime


def week_of(at: datetime) -> date:
    day = at.astimezone(UTC).date()
    return day - timedelta(days=day.weekday())


def _entry(row: object) -> AccessEntry:
    return AccessEntry(
        id=row["id"], at=from_ts(row["at"]), client=row["client"], transport=row["transport"],  # type: ignore[index]
        kind=row["kind"], name=row["name"], outcome=row["outcome"],  # type: ignore[index]
        proposition_ids=tuple(json.loads(row["proposition_ids"])),  # type: ignore[index]
        observation_ids=tuple(json.loads(row["observation_ids"])),  # type: ignore[index]
    )


@dataclass
class _Week:
    calls: int = 0
    denied: int = 0
    errors: int = 0
    propositions: set[int] = field(default_factory=set)
    observations: set[int] = field(default_factory=set)
    by_name: Counter[str] = field(default_factory=Counter)
    last_at: datetime | None = None


class AccessLog:
    db: Database

    def record_access(self, entry: AccessEntry) -> int:
        with self.db.write() as conn:
            return int(conn.execute(
                "INSERT INTO access_log (at, client, transport, kind, name, outcome, proposition_ids,"
                " observation_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (to_ts(entry.at), entry.client, entry.transport, entry.kind, entry.name, entry.outcome,
                 json.dumps(sorted(set(entry.proposition_ids))), json.dumps(sorted(set(entry.observation_ids)))),
            ).lastrowid)

    def access_log(self, *, client: str | None = None, since: datetime | None = None,
                   limit: int | None = 100) -> list[AccessEntry]:
        """Entries, newest first; `limit` None for all."""
        sql, args = self._where(client, since)
        sql = f"SELECT * FROM access_log{sql} ORDER BY at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self.db.read() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [_entry(row) for row in rows]

    def access_summary(self, *, client: str | None = None, since: datetime | None = None) -> list[WeeklyAccess]:
        """Per client and week: calls, refusals, errors, distinct propositions and observations returned,
        calls per tool/resource/prompt. Newest week first, then by client."""
        weeks: dict[tuple[str, date], _Week] = {}
        for entry in self.access_log(client=client, since=since, limit=None):
            week = weeks.setdefault((entry.client, week_of(entry.at)), _Week())
            week.calls += 1
            week.denied += entry.outcome == "denied"
            week.errors += entry.outcome == "error"
            week.propositions.update(entry.proposition_ids)
            week.observations.update(entry.observation_ids)
            week.by_name[f"{entry.kind} {entry.name}"] += 1
            week.last_at = max(week.last_at or entry.at, entry.at)
        return [
            WeeklyAccess(client=name, week=monday, calls=w.calls, denied=w.denied, errors=w.errors,
                         propositions=len(w.propositions), observations=len(w.observations),
                         by_name=dict(w.by_name.most_common()), last_at=w.last_at or datetime.min.replace(tzinfo=UTC))
            for (name, monday), w in sorted(weeks.items(), key=lambda item: (-item[0][1].toordinal(), item[0][0]))
        ]

    def prune_access_log(self, before: datetime) -> int:
        """Delete the entries older than `before` (retention). Returns how many."""
        with self.db.write() as conn:
            return conn.execute("DELETE FROM access_log WHERE at < ?", (to_ts(before),)).rowcount

    @staticmethod
    def _where(client: str | None, since: datetime | None) -> tuple[str, list[object]]:
        clauses, args = [], []
        if client is not None:
            clauses.append("client = ?")
            args.append(client)
        if since is not None:
            clauses.append("at >= ?")
            args.append(to_ts(since))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

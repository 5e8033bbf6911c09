"""Retention: what keeps a store that runs for months from growing without bound.

`apply_retention(policy, now=...)` does, in order (each step its own transaction):

1. **Observation text**: the content of processed (or skipped, or failed) observations older than
   `GUM_RETENTION_DAYS` is dropped (`Forgetting.prune`); pending work never is.
2. **Observation rows**: an observation whose text is gone is deleted, with its evidence links,
   unless it is among the newest `GUM_EVIDENCE_KEEP` evidence observations of a current
   proposition. So a current proposition never loses its link to an observation that still
   exists, and it always keeps links to its newest evidence, which forget relies on to find
   what a belief rests on. Retired versions keep their links to every observation that remains.
   A deleted observation no longer counts as a source of the suggestions drawn from it (the
   suggestions stay, bounded by step 4).
3. **LLM calls**: per-call rows older than `GUM_LLM_CALLS_DAYS` are deleted; the daily totals
   (accounting.py) stay `USAGE_DAYS` (400) days.
4. **Suggestions**: one that is no longer open (expired, dismissed or done) is deleted once its last
   step (offered, or answered) is older than `GUM_SUGGESTION_DAYS`.

A retention period of 0 keeps that kind of data forever. The report of the last run is kept in
`meta` (`last_retention`), so every process (status, the CLI) can show when it ran and what it
removed. The runtime's owner applies retention at start and every `GUM_RETENTION_INTERVAL` seconds;
`gum-mcp prune` applies it at once. Screenshots kept on disk are the caller's part (they are files).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field

from gum_mcp.config import Settings
from gum_mcp.domain import to_ts, utcnow
from gum_mcp.store.accounting import USAGE_DAYS
from gum_mcp.store.db import Database
from gum_mcp.store.inbox import placeholders

log = logging.getLogger("gum_mcp.store")

_LAST_KEY = "last_retention"


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each kind of data is kept; 0 days (or 0 kept links) = forever."""

    retention_days: int = 30
    evidence_keep: int = 20
    llm_calls_days: int = 30
    suggestion_days: int = 90
    usage_days: int = USAGE_DAYS

    @classmethod
    def from_settings(cls, settings: Settings, *, retention_days: int | None = None) -> RetentionPolicy:
        return cls(retention_days=settings.retention_days if retention_days is None else retention_days,
                   evidence_keep=settings.evidence_keep, llm_calls_days=settings.llm_calls_days,
                   suggestion_days=settings.suggestion_days)


class RetentionReport(BaseModel):
    """What one retention run removed."""

    at: datetime
    seconds: float = 0.0
    retention_days: int = 0
    text_pruned: int = Field(0, description="observations whose text was dropped")
    observations_deleted: int = Field(0, description="observation rows deleted once their text was gone")
    evidence_links_deleted: int = 0
    llm_calls_deleted: int = 0
    usage_days_deleted: int = 0
    suggestions_deleted: int = 0
    screenshots_deleted: int = 0
    index_log_compacted: int = 0
    access_log_deleted: int = Field(0, description="access-log entries older than the retention period")

    @property
    def removed(self) -> dict[str, int]:
        """The non-zero counts, for a log line."""
        keys = ("text_pruned", "observations_deleted", "evidence_links_deleted", "llm_calls_deleted",
                "usage_days_deleted", "suggestions_deleted", "screenshots_deleted", "index_log_compacted",
                "access_log_deleted")
        return {key: getattr(self, key) for key in keys if getattr(self, key)}

    def line(self) -> str:
        removed = ", ".join(f"{key.replace('_', ' ')} {count}" for key, count in self.removed.items())
        return removed or "nothing to remove"


class Retention:
    db: Database
    prune: Callable[..., int]  # Forgetting.prune: drop the text of old observations
    delete_closed_suggestions: Callable[..., int]  # Suggestions
    prune_access_log: Callable[[datetime], int]  # AccessLog: who read what, kept as long as observations

    def apply_retention(self, policy: RetentionPolicy, *, now: datetime | None = None) -> RetentionReport:
        """Apply `policy` as of `now` (default: the current time); see the module docstring."""
        now = now or utcnow()
        started = time.monotonic()
        report = RetentionReport(at=now, retention_days=policy.retention_days)
        if policy.retention_days > 0:
            report.text_pruned = self.prune(policy.retention_days, now=now)
            deleted, links = self.delete_pruned_observations(
                before=now - timedelta(days=policy.retention_days), keep_per_proposition=policy.evidence_keep)
            report.observations_deleted, report.evidence_links_deleted = deleted, links
            report.access_log_deleted = self.prune_access_log(now - timedelta(days=policy.retention_days))
        if policy.llm_calls_days > 0:
            report.llm_calls_deleted = self._delete_llm_calls(now - timedelta(days=policy.llm_calls_days))
        if policy.usage_days > 0:
            report.usage_days_deleted = self._delete_usage(now - timedelta(days=policy.usage_days))
        if policy.suggestion_days > 0:
            report.suggestions_deleted = self.delete_closed_suggestions(
                before=now - timedelta(days=policy.suggestion_days), now=now)
        report.seconds = round(time.monotonic() - started, 3)
        return report

    def delete_pruned_observations(self, *, before: datetime, keep_per_proposition: int) -> tuple[int, int]:
        """Delete observations observed before `before` whose text was pruned, except the newest
        `keep_per_proposition` evidence observations of each current proposition (0: every evidence
        observation of a current proposition stays). Returns (observations, evidence links) deleted."""
        with self.db.write() as conn:
            candidates = [row[0] for row in conn.execute(
                "SELECT id FROM observations WHERE content IS NULL AND status != 'pending' AND observed_at < ?",
                (to_ts(before),))]
            if not candidates:
                return 0, 0
            if keep_per_proposition > 0:
                pinned = {row[0] for row in conn.execute(
                    "SELECT DISTINCT observation_id FROM (SELECT e.observation_id, row_number() OVER"
                    " (PARTITION BY e.proposition_id ORDER BY o.observed_at DESC, o.id DESC) AS rank"
                    " FROM evidence e JOIN propositions p ON p.id = e.proposition_id"
                    " JOIN observations o ON o.id = e.observation_id WHERE p.retired_at IS NULL)"
                    " WHERE rank <= ?", (keep_per_proposition,))}
            else:
                pinned = {row[0] for row in conn.execute(
                    "SELECT DISTINCT e.observation_id FROM evidence e JOIN propositions p"
                    " ON p.id = e.proposition_id WHERE p.retired_at IS NULL")}
            doomed = [oid for oid in candidates if oid not in pinned]
            links = 0
            for chunk in _chunks(doomed):
                marks = placeholders(chunk)
                links += conn.execute(f"SELECT count(*) FROM evidence WHERE observation_id IN ({marks})",
                                      chunk).fetchone()[0]
                # the suggestions drawn from them stay (their own retention bounds them)
                conn.execute(f"DELETE FROM suggestion_sources WHERE observation_id IN ({marks})", chunk)
                conn.execute(f"DELETE FROM observations WHERE id IN ({marks})", chunk)
        return len(doomed), links

    def _delete_llm_calls(self, before: datetime) -> int:
        with self.db.write() as conn:
            return conn.execute("DELETE FROM llm_calls WHERE at < ?", (to_ts(before),)).rowcount

    def _delete_usage(self, before: datetime) -> int:
        with self.db.write() as conn:
            return conn.execute("DELETE FROM llm_usage WHERE day < ?",
                                (before.astimezone(UTC).date().isoformat(),)).rowcount

    # -- the last run, for status
    def record_retention(self, report: RetentionReport) -> None:
        with self.db.write() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
                         " SET value = excluded.value", (_LAST_KEY, report.model_dump_json()))

    def last_retention(self) -> RetentionReport | None:
        """The report of the last retention run recorded in this store (any process), or None."""
        with self.db.read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (_LAST_KEY,)).fetchone()
        if row is None:
            return None
        try:
            return RetentionReport.model_validate(json.loads(row[0]))
        except ValueError:
            return None


def _chunks(values: Sequence[int], size: int = 500) -> list[list[int]]:
    return [list(values[start : start + size]) for start in range(0, len(values), size)]

"""Forgetting and retention: data removed from the files, not hidden.

Forgetting observations deletes them and scrubs (text removed, retired with cause forgotten) every
proposition, retired versions included, whose only evidence they were. Forgetting a proposition
scrubs its whole lineage (ancestors and descendants) and, if asked, forgets its evidence too.
After the transaction the FTS indexes are merged and the WAL truncated, so the words are gone from
the database file and its WAL (secure_delete zeroes freed pages).

Later layers hook in: `forget_hooks` run inside the transaction with the ids removed, and
`after_forget_hooks` after it commits (e.g. to delete kept screenshots). The vector index learns of
every removal from index_log.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from gum_mcp.domain import ForgetReport, InvalidInput, NotFound, to_ts, utcnow
from gum_mcp.store.db import Database
from gum_mcp.store.inbox import placeholders

ForgetHook = Callable[[sqlite3.Connection, ForgetReport], None]
AfterForgetHook = Callable[[ForgetReport], None]


class Forgetting:
    db: Database
    forget_hooks: list[ForgetHook]
    after_forget_hooks: list[AfterForgetHook]

    def forget_observations(self, observation_ids: Sequence[int]) -> ForgetReport:
        return self._forget(lambda conn: list(observation_ids), [])

    def forget_range(self, since: datetime | None, until: datetime | None) -> ForgetReport:
        if since is None and until is None:
            raise InvalidInput("give since, until or both: forgetting everything takes `forget --all`")
        if since is not None and until is not None and since >= until:
            raise InvalidInput("since must be before until")

        def select(conn: sqlite3.Connection) -> list[int]:
            rows = conn.execute(
                "SELECT id FROM observations WHERE observed_at >= ? AND observed_at < ?",
                (to_ts(since) if since else float("-inf"), to_ts(until) if until else float("inf")),
            ).fetchall()
            return [row[0] for row in rows]

        return self._forget(select, [])

    def forget_source(self, source: str) -> ForgetReport:
        def select(conn: sqlite3.Connection) -> list[int]:
            return [row[0] for row in conn.execute("SELECT id FROM observations WHERE source = ?", (source,))]

        return self._forget(select, [])

    def forget_everything(self) -> ForgetReport:
        def select(conn: sqlite3.Connection) -> list[int]:
            return [row[0] for row in conn.execute("SELECT id FROM observations")]

        def all_props(conn: sqlite3.Connection) -> list[int]:
            return [row[0] for row in conn.execute("SELECT id FROM propositions WHERE text IS NOT NULL")]

        return self._forget(select, all_props)

    def forget_proposition(self, proposition_id: int, *, delete_evidence: bool = False) -> ForgetReport:
        """Scrub a proposition and its lineage; with delete_evidence, forget its evidence too."""

        def lineage(conn: sqlite3.Connection) -> list[int]:
            if conn.execute("SELECT 1 FROM propositions WHERE id = ?", (proposition_id,)).fetchone() is None:
                raise NotFound(f"no proposition with id {proposition_id}")
            rows = conn.execute(
                "WITH RECURSIVE up(id) AS (SELECT ? UNION SELECT l.parent_id FROM lineage l"
                " JOIN up ON l.child_id = up.id),"
                " down(id) AS (SELECT ? UNION SELECT l.child_id FROM lineage l JOIN down ON l.parent_id = down.id)"
                " SELECT id FROM up UNION SELECT id FROM down",
                (proposition_id, proposition_id),
            ).fetchall()
            return [row[0] for row in rows]

        def evidence(conn: sqlite3.Connection) -> list[int]:
            if not delete_evidence:
                return []
            props = lineage(conn)
            rows = conn.execute(
                f"SELECT DISTINCT observation_id FROM evidence WHERE proposition_id IN ({placeholders(props)})",
                props,
            ).fetchall()
            return [row[0] for row in rows]

        return self._forget(evidence, lineage)

    def _forget(
        self,
        select_observations: Callable[[sqlite3.Connection], list[int]],
        select_propositions: Callable[[sqlite3.Connection], list[int]] | list[int],
    ) -> ForgetReport:
        with self.db.write() as conn:
            props = (
                select_propositions(conn) if callable(select_propositions) else list(select_propositions)
            )
            observations = sorted(set(select_observations(conn)))
            affected: set[int] = set()
            for chunk in _chunks(observations):
                affected.update(
                    row[0] for row in conn.execute(
                        f"SELECT DISTINCT proposition_id FROM evidence WHERE observation_id IN ({placeholders(chunk)})",
                        chunk,
                    )
                )
                conn.execute(f"DELETE FROM observations WHERE id IN ({placeholders(chunk)})", chunk)
            # propositions left with no evidence at all were resting only on what was forgotten
            orphaned = [
                pid for pid in sorted(affected)
                if conn.execute("SELECT 1 FROM evidence WHERE proposition_id = ? LIMIT 1", (pid,)).fetchone() is None
            ]
            scrub = sorted(set(props) | set(orphaned))
            now = to_ts(utcnow())
            for chunk in _chunks(scrub):
                marks = placeholders(chunk)
                conn.execute(
                    f"UPDATE propositions SET text = NULL, reasoning = NULL, retired_cause = 'forgotten',"
                    f" retired_at = coalesce(retired_at, ?) WHERE id IN ({marks})",
                    (now, *chunk),
                )
                conn.execute(f"UPDATE feedback SET note = NULL WHERE proposition_id IN ({marks})", chunk)
                conn.execute(f"UPDATE lineage SET note = NULL WHERE child_id IN ({marks})", chunk)
            report = ForgetReport(
                observations_deleted=len(observations), propositions_forgotten=len(scrub),
                observation_ids=tuple(observations), proposition_ids=tuple(scrub),
            )
            for hook in self.forget_hooks:
                hook(conn, report)
        if observations or scrub:
            self.db.purge_freed_text()
        for after in self.after_forget_hooks:
            after(report)
        return report

    def prune(self, retention_days: int, *, now: datetime | None = None) -> int:
        """Drop the content of processed observations older than the retention period.

        Pending work is never pruned. Propositions keep their evidence links and are marked
        evidence_pruned. Returns how many observations were pruned. 0 days = keep forever.
        """
        if retention_days <= 0:
            return 0
        cutoff = to_ts((now or utcnow()) - timedelta(days=retention_days))
        stamp = to_ts(now or utcnow())
        with self.db.write() as conn:
            ids = [
                row[0] for row in conn.execute(
                    "SELECT id FROM observations WHERE observed_at < ? AND content IS NOT NULL"
                    " AND status != 'pending'",
                    (cutoff,),
                )
            ]
            for chunk in _chunks(ids):
                marks = placeholders(chunk)
                conn.execute(
                    f"UPDATE observations SET content = NULL, pruned_at = ? WHERE id IN ({marks})",
                    (stamp, *chunk),
                )
                conn.execute(
                    "UPDATE propositions SET evidence_pruned = 1 WHERE evidence_pruned = 0 AND id IN"
                    f" (SELECT proposition_id FROM evidence WHERE observation_id IN ({marks}))",
                    chunk,
                )
        if ids:
            self.db.purge_freed_text()
        return len(ids)


def _chunks(values: Sequence[int], size: int = 500) -> list[list[int]]:
    return [list(values[start : start + size]) for start in range(0, len(values), size)]

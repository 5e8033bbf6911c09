"""Everything the store holds, out: JSON lines export and counts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO

from gum_mcp.domain import Stats, from_ts, to_ts, utcnow
from gum_mcp.store.db import Database
from gum_mcp.store.inbox import OBSERVATION_COLUMNS, observation_from_row

#: (record type, query) in export order; times are written as ISO-8601 UTC.
_EXPORT = (
    ("observation", "SELECT * FROM observations ORDER BY id"),
    ("proposition", "SELECT * FROM propositions ORDER BY id"),
    ("lineage", "SELECT * FROM lineage ORDER BY child_id, parent_id"),
    ("evidence", "SELECT * FROM evidence ORDER BY proposition_id, observation_id"),
    ("feedback", "SELECT * FROM feedback ORDER BY id"),
    ("llm_call", "SELECT * FROM llm_calls ORDER BY id"),
    ("suggestion", "SELECT * FROM suggestions ORDER BY id"),
    ("suggestion_ground", "SELECT * FROM suggestion_grounds ORDER BY suggestion_id, proposition_id"),
)
_TIME_COLUMNS = {
    "observed_at", "created_at", "processed_at", "pruned_at", "last_supported_at", "retired_at", "at", "responded_at",
}


class Export:
    db: Database

    def export_records(self) -> Iterator[dict]:
        """Every record, one dict each, from one consistent snapshot."""
        with self.db.read() as conn:
            for kind, query in _EXPORT:
                for row in conn.execute(query):
                    record = {"type": kind}
                    for key in row.keys():  # noqa: SIM118 (sqlite3.Row is not a dict)
                        value = row[key]
                        if key in _TIME_COLUMNS and value is not None:
                            value = from_ts(value).isoformat()
                        record[key] = value
                    yield record

    def export_jsonl(self, out: IO[str]) -> int:
        count = 0
        for record in self.export_records():
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
        return count

    def stats(self) -> Stats:
        midnight = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
        with self.db.read() as conn:
            by_status = dict(conn.execute("SELECT status, count(*) FROM observations GROUP BY status").fetchall())
            current, retired = conn.execute(
                "SELECT count(*) FILTER (WHERE retired_at IS NULL), count(*) FILTER (WHERE retired_at IS NOT NULL)"
                " FROM propositions"
            ).fetchone()
            oldest, newest = conn.execute("SELECT min(observed_at), max(observed_at) FROM observations").fetchone()
            failed = conn.execute(
                f"SELECT {OBSERVATION_COLUMNS} FROM observations WHERE status = 'failed' ORDER BY id DESC LIMIT 20"
            ).fetchall()
            return Stats(
                observations={s: by_status.get(s, 0) for s in ("pending", "processed", "skipped", "failed")},
                propositions_current=current,
                propositions_retired=retired,
                evidence_links=conn.execute("SELECT count(*) FROM evidence").fetchone()[0],
                feedback=conn.execute("SELECT count(*) FROM feedback").fetchone()[0],
                llm_calls=conn.execute("SELECT count(*) FROM llm_calls").fetchone()[0],
                tokens_today=conn.execute(
                    "SELECT coalesce(sum(input_tokens + output_tokens), 0) FROM llm_calls WHERE at >= ?",
                    (to_ts(midnight),),
                ).fetchone()[0],
                oldest_observation=from_ts(oldest),
                newest_observation=from_ts(newest),
                schema_version=conn.execute("PRAGMA user_version").fetchone()[0],
                failed=tuple(observation_from_row(row) for row in failed),
            )




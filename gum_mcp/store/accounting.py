"""LLM call accounting: one row per attempt, so cost and failures are visible, and daily totals.

Every `llm_calls` row also adds to its UTC day's `llm_usage` row (calls, failed attempts, tokens per
provider and model) in the same transaction. Retention (retention.py) deletes the per-call rows after
`GUM_LLM_CALLS_DAYS` and the daily totals after `USAGE_DAYS`, so the usage chart keeps more than a
year while the table of calls stays small.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from pydantic import BaseModel

from gum_mcp.domain import LLMCall, from_ts, to_ts
from gum_mcp.store.db import Database

#: Days the daily totals are kept (more than a year, for the usage chart).
USAGE_DAYS = 400


class DailyUsage(BaseModel):
    day: date
    provider: str
    model: str
    calls: int
    failures: int
    input_tokens: int
    output_tokens: int


class Accounting:
    db: Database

    def record_llm_call(self, call: LLMCall) -> None:
        day = call.at.astimezone(UTC).date().isoformat()
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO llm_calls (at, stage, provider, model, input_tokens, output_tokens,"
                " latency_ms, outcome, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (to_ts(call.at), call.stage, call.provider, call.model, call.input_tokens,
                 call.output_tokens, call.latency_ms, call.outcome, (call.error or None) and call.error[:1000]),
            )
            conn.execute(
                "INSERT INTO llm_usage (day, provider, model, calls, failures, input_tokens, output_tokens)"
                " VALUES (?, ?, ?, 1, ?, ?, ?) ON CONFLICT (day, provider, model) DO UPDATE SET"
                " calls = calls + 1, failures = failures + excluded.failures,"
                " input_tokens = input_tokens + excluded.input_tokens,"
                " output_tokens = output_tokens + excluded.output_tokens",
                (day, call.provider, call.model, int(call.outcome != "ok"), call.input_tokens, call.output_tokens),
            )

    def tokens_used_since(self, since: datetime) -> int:
        with self.db.read() as conn:
            return conn.execute(
                "SELECT coalesce(sum(input_tokens + output_tokens), 0) FROM llm_calls WHERE at >= ?",
                (to_ts(since),),
            ).fetchone()[0]

    def llm_calls(self, *, since: datetime | None = None, limit: int = 1000) -> list[LLMCall]:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT * FROM llm_calls WHERE at >= ? ORDER BY id LIMIT ?",
                (to_ts(since) if since else 0.0, limit),
            ).fetchall()
        return [
            LLMCall(
                stage=r["stage"], provider=r["provider"], model=r["model"],
                input_tokens=r["input_tokens"], output_tokens=r["output_tokens"],
                latency_ms=r["latency_ms"], outcome=r["outcome"], error=r["error"], at=from_ts(r["at"]),
            )
            for r in rows
        ]

    def usage_by_day(self, *, since: date | None = None) -> list[DailyUsage]:
        """Calls and tokens per UTC day, provider and model, oldest first (kept USAGE_DAYS days)."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT * FROM llm_usage WHERE day >= ? ORDER BY day, provider, model",
                ((since or date.min).isoformat(),),
            ).fetchall()
        return [DailyUsage(day=date.fromisoformat(r["day"]), provider=r["provider"], model=r["model"],
                           calls=r["calls"], failures=r["failures"], input_tokens=r["input_tokens"],
                           output_tokens=r["output_tokens"]) for r in rows]

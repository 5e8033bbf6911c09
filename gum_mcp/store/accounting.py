"""LLM call accounting: one row per attempt, so cost and failures are visible."""

from __future__ import annotations

from datetime import datetime

from gum_mcp.domain import LLMCall, from_ts, to_ts
from gum_mcp.store.db import Database


class Accounting:
    db: Database

    def record_llm_call(self, call: LLMCall) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO llm_calls (at, stage, provider, model, input_tokens, output_tokens,"
                " latency_ms, outcome, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (to_ts(call.at), call.stage, call.provider, call.model, call.input_tokens,
                 call.output_tokens, call.latency_ms, call.outcome, (call.error or None) and call.error[:1000]),
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

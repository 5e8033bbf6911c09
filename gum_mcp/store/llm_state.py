"""What the LLM layer and the engine remember between calls and processes (migration 7).

- `llm_methods`: the structured-output method an OpenAI-compatible server accepted, per (base URL, model)
  (`gum_mcp.llm.memory.MethodMemory`; the provider asks in it from the first call on).
- `engine_pause`: the engine paused because the provider kept failing the same way (`gum_mcp.engine.loop`).
  Every process shows it (status, doctor); `gum-mcp retry` clears it, and the engine ends it itself when
  it starts under another configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gum_mcp.domain import from_ts, to_ts, utcnow
from gum_mcp.store.db import Database


@dataclass(frozen=True)
class EnginePause:
    reason: str
    config: str  # the configuration's fingerprint (gum_mcp.llm.memory.config_fingerprint)
    paused_at: datetime


class LLMState:
    db: Database

    def remembered_method(self, base_url: str, model: str) -> str | None:
        with self.db.read() as conn:
            row = conn.execute("SELECT method FROM llm_methods WHERE base_url = ? AND model = ?",
                               (base_url, model)).fetchone()
        return None if row is None else str(row[0])

    def remember_method(self, base_url: str, model: str, method: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO llm_methods (base_url, model, method, learnt_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (base_url, model) DO UPDATE SET method = excluded.method, learnt_at = excluded.learnt_at",
                (base_url, model, method, to_ts(utcnow())),
            )

    def remembered_methods(self) -> list[tuple[str, str, str, datetime]]:
        """(base URL, model, method, learnt at), most recently learnt first."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT * FROM llm_methods ORDER BY learnt_at DESC").fetchall()
        return [(r["base_url"], r["model"], r["method"], from_ts(r["learnt_at"])) for r in rows]

    def engine_pause(self) -> EnginePause | None:
        with self.db.read() as conn:
            row = conn.execute("SELECT reason, config, paused_at FROM engine_pause WHERE id = 1").fetchone()
        return None if row is None else EnginePause(row["reason"], row["config"], from_ts(row["paused_at"]))

    def set_engine_pause(self, reason: str, config: str) -> None:
        with self.db.write() as conn:
            conn.execute("INSERT OR REPLACE INTO engine_pause (id, reason, config, paused_at) VALUES (1, ?, ?, ?)",
                         (reason[:2000], config, to_ts(utcnow())))

    def clear_engine_pause(self) -> EnginePause | None:
        """End the pause; what it was, or None when the engine was not paused so."""
        with self.db.write() as conn:
            row = conn.execute("SELECT reason, config, paused_at FROM engine_pause WHERE id = 1").fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM engine_pause WHERE id = 1")
        return EnginePause(row["reason"], row["config"], from_ts(row["paused_at"]))

"""What the benchmarks share: the trace of a week, and propositions seeded straight into SQLite."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from gum_mcp.store import Store

#: A working week of observations (685), kept in the repository so benches and tests need nothing beside it.
TRACE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "week.jsonl"


def trace_rows() -> list[dict]:
    """The week of observations in `tests/fixtures/week.jsonl`, one dict a line."""
    return [json.loads(line) for line in TRACE.read_text().splitlines() if line.strip()]


def seed_propositions(store: Store, count: int, texts: Sequence[str], *, prefix: str = "",
                      age_seconds: float = 0.0) -> None:
    """`count` current propositions made from `texts` (cycled, cut to 160 characters), with spread
    confidences, decays and times, written in one transaction (the engine's path is not measured)."""
    now = time.time() - age_seconds
    with store.db.write() as conn:
        conn.executemany(
            "INSERT INTO propositions (text, reasoning, confidence, decay, created_at, last_supported_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                (f"{prefix}{texts[i % len(texts)][:160]} (#{i})", "seeded for the benchmark", 1 + i % 10,
                 1 + (i * 7) % 10, now - i, now - i * 3)
                for i in range(count)
            ),
        )

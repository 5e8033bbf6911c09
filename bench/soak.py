"""A year of a busy person in minutes: does the data directory stay bounded?

    .venv/bin/python bench/soak.py [--months 12] [--per-day 200] [--batch 25]

Drives the store and the engine directly (no MCP), against the loopback fake provider
(tests/fake_provider.py) with the plausible replies of bench/engine.py, on a simulated clock that
starts a year ago: every simulated day adds `--per-day` observations (tests/fixtures/week.jsonl,
685 observations of a working week, cycled, each day's share spread over 08:00-20:00), lets the
engine process them in batches, asks for suggestions twice a day and answers some (accepted,
dismissed, done), captures screen frames that are never transcribed (the vision provider is down
all year: pending frames pile up against GUM_SCREEN_MAX_PENDING), and applies retention at the end
of the day as the engine's owner does (`gum_mcp.runtime.apply_retention`, with the index log
compacted as when the vector index is off). Retrieval is BM25 only. LLM calls are stamped with the
simulated time. Logs go to `<data dir>/logs` with a small GUM_LOG_MAX_BYTES, so rotation shows.

Prints one row per simulated month (30 days): the data directory's size, row counts per table,
pending frames, log bytes and evidence links per current proposition; then checks that
observations, llm_calls, suggestions, frames, log bytes and evidence per proposition at the last
month are within 10 % of month 3.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import anyio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from engine import USER, PlausibleBrain, topic  # noqa: E402
from seeding import trace_rows  # noqa: E402

from gum_mcp.domain import NewObservation, utcnow  # noqa: E402
from gum_mcp.engine.loop import Engine  # noqa: E402
from gum_mcp.engine.suggest import suggest  # noqa: E402
from gum_mcp.llm.factory import build_provider  # noqa: E402
from gum_mcp.observers.frames import FrameStore  # noqa: E402
from gum_mcp.retrieval import Retriever  # noqa: E402
from gum_mcp.runtime import apply_retention  # noqa: E402
from gum_mcp.server.logs import log_to_file  # noqa: E402
from gum_mcp.store import Store  # noqa: E402
from tests import fake_provider  # noqa: E402
from tests.fake_provider import FakeLLMServer  # noqa: E402
from tests.test_engine import Request  # noqa: E402

BOUNDED = ("observations", "llm_calls", "suggestions", "frames", "log_bytes", "ev/prop")
TABLES = ("observations", "propositions", "evidence", "lineage", "llm_calls", "llm_usage", "suggestions",
          "index_log")
FRAMES_PER_DAY = 4
#: Rotated logs kept in the soak: with N backups the files total between N and N + 1 times GUM_LOG_MAX_BYTES.
LOG_BACKUPS = 15
SUGGEST_TIMES = (dtime(9, 30), dtime(11, 0), dtime(14, 0), dtime(16, 30))
#: How the person answers a suggestion, by its id: accepted, done, or never (it expires). No dismissals: they
#: lower what similar suggestions are worth for a month, which makes the number stored swing (tests/test_retention.py
#: covers dismissed ones).
VERDICTS = ("accepted", "done", None)


class Clock:
    """The simulated time every part of the soak reads."""

    def __init__(self, start: datetime) -> None:
        self.at = start

    def now(self) -> datetime:
        return self.at


class SoakBrain(PlausibleBrain):
    """bench/engine.py's plausible replies, plus suggestions grounded on the propositions shown: one of a few
    kinds of help per proposition, a different kind each time, about one of the recent observations shown."""

    KINDS = (
        ("Prepare a short status note on {key}", "Draft a status note on {key} from this week's activity"),
        ("Collect open questions about {key}", "List the unanswered questions around {key} before the next meeting"),
        ("Block focus time tomorrow for {key}", "Put ninety quiet minutes into tomorrow morning's calendar for {key}"),
        ("Summarise yesterday's changes in {key}", "Write a digest of what changed in {key} yesterday"),
        ("Check upcoming deadlines for {key}", "Look through mail and tickets for dates that concern {key}"),
        ("Tidy the backlog of {key}", "Sort stale items of {key} into keep, merge and close"),
    )

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def SuggestReply(self, r: Request) -> dict:
        self.asked += 1
        out = []
        for rank, prop in enumerate(r.propositions[:3]):
            key = re.sub(rf"^{USER} (regularly works on|spends much of the week on|is currently focused on) ", "",
                         prop.text).removesuffix(", this week")
            title, action = self.KINDS[(self.asked + rank) % len(self.KINDS)]
            seen = r.observations[(self.asked * 3 + rank) % len(r.observations)].content if r.observations else ""
            about = " ".join(seen.split()[:14])
            out.append({"title": title.format(key=key), "action": f"{action.format(key=key)}, starting from: {about}",
                        "rationale": f"{USER} keeps coming back to {key}", "proposition_ids": [prop.id],
                        "benefit": 8, "cost": 2})
        return {"suggestions": out}


def table_counts(store: Store) -> dict[str, int]:
    with store.db.read() as conn:
        counts = {name: conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in TABLES}
        current = conn.execute("SELECT count(*) FROM propositions WHERE retired_at IS NULL").fetchone()[0]
        links = conn.execute("SELECT count(*) FROM evidence e JOIN propositions p ON p.id = e.proposition_id"
                             " WHERE p.retired_at IS NULL").fetchone()[0]
        most = conn.execute("SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM evidence e JOIN propositions"
                            " p ON p.id = e.proposition_id WHERE p.retired_at IS NULL GROUP BY e.proposition_id)"
                            ).fetchone()[0]
    counts["current"] = current
    counts["ev/prop"] = round(links / current, 1) if current else 0.0
    counts["ev max"] = most
    return counts


def lap(spent: dict[str, float], part: str, mark: float) -> float:
    now = time.perf_counter()
    spent[part] += now - mark
    return now


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def day_rows(rows: list[dict], day: int, per_day: int) -> list[tuple[dict, float]]:
    """The day's share of the trace (cycled) with seconds after 08:00, spread over twelve hours."""
    start = day * per_day
    return [(rows[(start + i) % len(rows)], 12 * 3600 * i / per_day) for i in range(per_day)]


async def soak(months: int, per_day: int, batch: int, log_max_bytes: int, keep_logs: Path | None = None
               ) -> list[dict[str, Any]]:
    rows = trace_rows()
    days = months * 30
    start = (utcnow() - timedelta(days=days + 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    clock = Clock(start)
    table: list[dict[str, Any]] = []
    fake_provider._Handler.disable_nagle_algorithm = True  # replies in one segment: no 40 ms delayed-ACK stall
    with tempfile.TemporaryDirectory() as tmp, FakeLLMServer() as fake:
        fake.default = SoakBrain()
        data = Path(tmp) / "data"
        settings = fake.settings("openai", data, user_name=USER, batch_min=batch, batch_max=batch, batch_max_wait=0,
                                 llm_max_retries=0, embedding="none", retention_days=30, llm_calls_days=30,
                                 suggestion_days=30, evidence_keep=20, screen_max_pending=200,
                                 log_max_bytes=log_max_bytes, log_backups=LOG_BACKUPS)
        log_to_file(settings)
        store = Store.open(settings)
        record = store.record_llm_call
        store.record_llm_call = lambda call: record(call.model_copy(update={"at": clock.now()}))  # type: ignore[method-assign]
        provider = build_provider(settings, store)
        retriever = Retriever(store, None, "soak: BM25 only")
        engine = Engine(store, provider, settings, related=retriever.related, now=clock.now, failure_backoff=0)
        frames = FrameStore(settings)
        frames_dropped = 0
        started = time.perf_counter()
        spent = dict.fromkeys(("engine", "suggest", "frames", "retention"), 0.0)
        try:
            for day in range(days):
                today = start + timedelta(days=day)
                todo = day_rows(rows, day, per_day)
                mark = time.perf_counter()
                for offset in range(0, len(todo), batch):
                    chunk = todo[offset : offset + batch]
                    clock.at = today + timedelta(hours=8, seconds=chunk[-1][1])
                    store.add_observations([NewObservation(content=r["content"], kind=r["kind"], source=r["source"],
                                                           observed_at=today + timedelta(hours=8, seconds=s))
                                            for r, s in chunk])
                    while await engine.step():
                        pass
                mark = lap(spent, "engine", mark)
                for at in SUGGEST_TIMES:
                    clock.at = datetime.combine(today.date(), at, tzinfo=UTC)
                    await suggest(store, provider, retriever.related, settings, limit=3, now=clock.now())
                    for open_one in store.suggestions(status="pending", now=clock.now()):
                        verdict = VERDICTS[open_one.id % len(VERDICTS)]
                        if verdict is not None:
                            store.respond_to_suggestion(open_one.id, verdict, now=clock.now())
                mark = lap(spent, "suggest", mark)
                for n in range(FRAMES_PER_DAY):  # the vision provider is down: frames only pile up
                    clock.at = today + timedelta(hours=8, seconds=n * 12 * 3600 / FRAMES_PER_DAY)
                    frames.save(clock.now(), [b"\x89PNG fake frame " + bytes(2000)], "png", app="Code",
                                title=f"{topic(rows[n]['content'])}", window_source="none", monitors=[])
                    frames_dropped += frames.drop_oldest(keep=settings.screen_max_pending)
                mark = lap(spent, "frames", mark)
                clock.at = today + timedelta(hours=23, minutes=30)
                apply_retention(store, now=clock.now(), compact_index_log=True)
                lap(spent, "retention", mark)
                if (day + 1) % 30 == 0:
                    counts = table_counts(store)
                    row = {"month": (day + 1) // 30, "size_kb": dir_bytes(data) // 1024, **counts,
                           "frames": frames.pending_count(), "dropped": frames_dropped,
                           "log_bytes": dir_bytes(settings.log_dir), "seconds": round(time.perf_counter() - started)}
                    table.append(row)
                    print_row(row, header=len(table) == 1)
            print("wall time by part: " + ", ".join(f"{k} {v:.0f} s" for k, v in spent.items()))
            if keep_logs:
                import shutil
                shutil.copytree(settings.log_dir, keep_logs, dirs_exist_ok=True)
        finally:
            await provider.aclose()
            store.close()
            for handler in list(logging.getLogger("gum_mcp").handlers):
                if isinstance(handler, logging.FileHandler):
                    handler.close()
                    logging.getLogger("gum_mcp").removeHandler(handler)
    return table


COLUMNS = ("month", "size_kb", "observations", "propositions", "current", "evidence", "ev/prop", "ev max",
           "lineage", "llm_calls", "llm_usage", "suggestions", "index_log", "frames", "dropped", "log_bytes",
           "seconds")


def print_row(row: dict[str, Any], *, header: bool) -> None:
    widths = [max(len(c), 7) for c in COLUMNS]
    if header:
        print(" ".join(c.rjust(w) for c, w in zip(COLUMNS, widths, strict=True)))
    print(" ".join(str(row[c]).rjust(w) for c, w in zip(COLUMNS, widths, strict=True)), flush=True)


def check(table: list[dict[str, Any]]) -> bool:
    if len(table) < 4:
        print("\n(fewer than 4 months: no bound check)")
        return True
    base, last = table[2], table[-1]
    print(f"\nmonth {last['month']} against month 3 (bound: within 10 %):")
    ok = True
    for key in BOUNDED:
        change = (last[key] - base[key]) / base[key] if base[key] else float(last[key] != 0)
        exercised = bool(base[key])  # a bound on nothing proves nothing (a fake that stopped answering, say)
        good = abs(change) <= 0.10 and exercised
        ok &= good
        verdict = "ok" if good else ("NOT EXERCISED (none at month 3)" if not exercised else "OVER")
        print(f"  {key:13s} {base[key]!s:>9} -> {last[key]!s:>9}  {change:+7.1%}  {verdict}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--per-day", type=int, default=200, help="observations a simulated day")
    parser.add_argument("--batch", type=int, default=25, help="GUM_BATCH_MIN = GUM_BATCH_MAX")
    parser.add_argument("--log-max-bytes", type=int, default=4096, help="GUM_LOG_MAX_BYTES for the soak (small, "
                        "so that rotation shows within months)")
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    started = time.perf_counter()
    table = anyio.run(soak, args.months, args.per_day, args.batch, args.log_max_bytes)
    ok = check(table)
    print(f"\n{args.months * 30} simulated days in {time.perf_counter() - started:.0f} s; bounds "
          f"{'hold' if ok else 'DO NOT hold'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

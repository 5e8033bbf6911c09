"""Store throughput: durable inserts per second, and listing a page among 100,000 propositions.

    .venv/bin/python bench/store.py [--propositions 100000] [--durability normal|full]

Prints medians of repeated runs, measured here in one process. Default durability (synchronous
NORMAL in WAL mode) makes a commit survive a process crash; `full` also survives power loss.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seeding import seed_propositions, trace_rows

from gum_mcp.config import load_settings
from gum_mcp.domain import NewObservation
from gum_mcp.store import Store


def trace_texts() -> list[str]:
    return [row["content"] for row in trace_rows()]


def bench_inserts(store: Store, texts: list[str], batch: int, total: int) -> float:
    items = [NewObservation(content=texts[i % len(texts)], kind="screen", source="bench") for i in range(total)]
    start = time.perf_counter()
    if batch == 1:
        for item in items:
            store.add_observations([item])
    else:
        for offset in range(0, total, batch):
            store.add_observations(items[offset : offset + batch])
    return total / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--propositions", type=int, default=100_000)
    parser.add_argument("--durability", choices=("normal", "full"), default="normal")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    texts = trace_texts()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(env={}, cwd=Path(tmp), data_dir=Path(tmp) / "data", durability=args.durability)
        with Store.open(settings) as store:
            batched = [bench_inserts(store, texts, 100, 5_000) for _ in range(args.runs)]
            single = [bench_inserts(store, texts, 1, 1_000) for _ in range(args.runs)]
            print(f"durability={args.durability}  (SQLite WAL, synchronous="
                  f"{'FULL' if args.durability == 'full' else 'NORMAL'}, redaction + FTS5 on every insert)")
            print(f"inserts, batches of 100 : median {statistics.median(batched):8.0f}/s   "
                  f"(runs: {', '.join(f'{x:.0f}' for x in batched)})")
            print(f"inserts, one at a time  : median {statistics.median(single):8.0f}/s   "
                  f"(runs: {', '.join(f'{x:.0f}' for x in single)})")

            seed_propositions(store, args.propositions, texts)
            for order in ("recent", "confidence"):
                times, cursor = [], None
                for _ in range(200):
                    start = time.perf_counter()
                    page = store.current_propositions(limit=50, order=order, cursor=cursor)
                    times.append((time.perf_counter() - start) * 1000)
                    cursor = page.next_cursor
                times.sort()
                print(f"page of 50 among {args.propositions:,} ({order:10s}): median {statistics.median(times):.2f} ms,"
                      f" p95 {times[int(len(times) * 0.95)]:.2f} ms")


if __name__ == "__main__":
    main()

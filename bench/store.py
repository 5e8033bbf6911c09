"""Store throughput, encrypted vs plaintext side by side: durable inserts per second (batched and
single), and listing a page among 100,000 propositions.

    .venv/bin/python bench/store.py [--propositions 100000] [--durability normal|full] [--runs 15]
                                    [--modes encrypted,plaintext,stdlib]

Modes, each its own data directory, measured in one process with the runs interleaved (so a noisy
neighbour on a shared machine slows every mode alike):
- `encrypted`: SQLCipher 4 through sqlcipher3 with the data dir's key (what a new data dir gets);
- `plaintext`: the same driver and SQLite build, no key (GUM_ENCRYPT=0): the cost of encryption is
  encrypted / plaintext;
- `stdlib` (optional): Python's own sqlite3 module, no key: what the store used before sqlcipher3.

Prints medians of the runs (inserts per second of wall-clock time and of the process's CPU time:
on a shared machine the second is the steadier) and the encrypted/plaintext ratio. Default
durability (synchronous NORMAL in WAL mode) makes a commit survive a process crash; `full` also
survives power loss.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seeding import seed_propositions, trace_rows

from gum_mcp.config import Settings, load_settings
from gum_mcp.domain import NewObservation
from gum_mcp.store import Store
from gum_mcp.store import db as store_db

MODES = ("encrypted", "plaintext", "stdlib")


def trace_texts() -> list[str]:
    return [row["content"] for row in trace_rows()]


def mode_settings(mode: str, root: Path, durability: str) -> Settings:
    """Settings for one mode; the encrypted one gets its key from GUM_DB_KEY (no keychain in a bench)."""
    extra = {"encrypt": True, "db_key": secrets.token_hex(32)} if mode == "encrypted" else {"encrypt": False}
    return load_settings(env={}, cwd=root, data_dir=root / mode, durability=durability, **extra)


@contextlib.contextmanager
def driver_for(mode: str) -> Iterator[None]:
    """The stdlib mode opens its store with Python's sqlite3 (the connection keeps its driver)."""
    if mode != "stdlib":
        yield
        return
    original = store_db.driver
    store_db.driver = lambda: sqlite3  # type: ignore[assignment]
    try:
        yield
    finally:
        store_db.driver = original  # type: ignore[assignment]


def bench_inserts(store: Store, texts: list[str], batch: int, total: int) -> tuple[float, float]:
    """Inserts per second of wall-clock time, and per second of this process's CPU time (steadier on a
    shared machine: another process's load does not count)."""
    items = [NewObservation(content=texts[i % len(texts)], kind="screen", source="bench") for i in range(total)]
    start, cpu = time.perf_counter(), time.process_time()
    if batch == 1:
        for item in items:
            store.add_observations([item])
    else:
        for offset in range(0, total, batch):
            store.add_observations(items[offset : offset + batch])
    return total / (time.perf_counter() - start), total / (time.process_time() - cpu)


def bench_pages(store: Store, order: str, pages: int = 200) -> list[float]:
    times, cursor = [], None
    for _ in range(pages):
        start = time.perf_counter()
        page = store.current_propositions(limit=50, order=order, cursor=cursor)
        times.append((time.perf_counter() - start) * 1000)
        cursor = page.next_cursor
    return times


def _runs(values: list[float]) -> str:
    return ", ".join(f"{x:.0f}" for x in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--propositions", type=int, default=100_000)
    parser.add_argument("--durability", choices=("normal", "full"), default="normal")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--modes", default="encrypted,plaintext", help=f"comma-separated, of {', '.join(MODES)}")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    texts = trace_texts()
    with tempfile.TemporaryDirectory() as tmp:
        stores: dict[str, Store] = {}
        for mode in modes:
            with driver_for(mode):
                stores[mode] = Store.open(mode_settings(mode, Path(tmp), args.durability))
        try:
            batched: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
            single: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
            for run in range(args.runs):  # interleaved, in alternating order
                order = modes if run % 2 == 0 else modes[::-1]
                for mode in order:
                    batched[mode].append(bench_inserts(stores[mode], texts, 100, 5_000))
                for mode in order:
                    single[mode].append(bench_inserts(stores[mode], texts, 1, 500))
            for mode in modes:
                seed_propositions(stores[mode], args.propositions, texts)
            pages: dict[tuple[str, str], list[float]] = {}
            for order in ("recent", "confidence"):
                for _ in range(3):  # interleaved rounds of 200 pages each
                    for mode in modes:
                        pages.setdefault((mode, order), []).extend(bench_pages(stores[mode], order))
        finally:
            for store in stores.values():
                store.close()

    med = statistics.median
    print(f"durability={args.durability} (WAL, synchronous={'FULL' if args.durability == 'full' else 'NORMAL'}; "
          f"redaction + FTS5 on every insert); {store_db.cipher_version() or 'no SQLCipher'}; "
          f"SQLite {store_db.driver().sqlite_version} (stdlib sqlite3: {sqlite3.sqlite_version})")
    print(f"{'':34s}" + "".join(f"{m:>14s}" for m in modes) + ("   encrypted/plaintext" if {"encrypted", "plaintext"}
                                                               <= set(modes) else ""))

    def row(label: str, values: dict[str, float], higher_is_better: bool, unit: str) -> None:
        line = f"{label:34s}" + "".join(f"{values[m]:>11.{2 if unit == 'ms' else 0}f} {unit:2s}" for m in modes)
        if "encrypted" in values and "plaintext" in values:
            ratio = values["encrypted"] / values["plaintext"]
            cost = (1 / ratio - 1) if higher_is_better else (ratio - 1)
            line += f"   {ratio:5.2f}x (cost {cost * 100:+.0f}%)"
        print(line)

    for n, clock in ((0, "wall"), (1, "CPU")):
        row(f"inserts, batches of 100 ({clock})", {m: med(r[n] for r in batched[m]) for m in modes}, True, "/s")
        row(f"inserts, one at a time ({clock})", {m: med(r[n] for r in single[m]) for m in modes}, True, "/s")
    for order in ("recent", "confidence"):
        row(f"page of 50 of {args.propositions:,} ({order}) p50", {m: med(pages[(m, order)]) for m in modes},
            False, "ms")
    for mode in modes:
        print(f"  {mode} (wall): batched runs {_runs([r[0] for r in batched[mode]])}; "
              f"single runs {_runs([r[0] for r in single[mode]])}")


if __name__ == "__main__":
    main()

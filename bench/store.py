"""Store throughput, encrypted vs plaintext side by side: durable inserts per second (batched and
single), and listing a page among 100,000 propositions.

    .venv/bin/python bench/store.py [--propositions 100000] [--durability normal|full] [--runs 15]
                                    [--modes encrypted,plaintext,stdlib]

Modes, each its own data directory, measured in one process, taking turns every 50 single inserts (every 5
batches) inside each run (so a noisy neighbour, or the machine's own drift, slows every mode alike):
- `encrypted`: SQLCipher 4 through sqlcipher3 with the data dir's key (what a new data dir gets);
- `plaintext`: the same driver and SQLite build, no key (GUM_ENCRYPT=0): the cost of encryption is
  encrypted / plaintext;
- `stdlib` (optional): Python's own sqlite3 module, no key: what the store used before sqlcipher3.

Prints medians of the runs (inserts per second of wall-clock time and of the process's CPU time:
on a shared machine the second is the steadier) and the encrypted/plaintext ratio, also per run (each run
measures both modes in the same moments: the median of those is the steadier cost). Default
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


def bench_inserts(stores: dict[str, Store], texts: list[str], batch: int, total: int,
                  turn: int) -> dict[str, tuple[float, float]]:
    """Per mode: inserts per second of wall-clock time, and per second of this process's CPU time (steadier on a
    shared machine: another process's load does not count). The modes take turns every `turn` inserts, in
    alternating order, so every mode's figure comes from the same moments of the run: this machine's speed
    drifts by 20-30 % within minutes, and modes measured one after the other (a run each) gave costs anywhere
    from +14 % to +28 % for the same code."""
    items = [NewObservation(content=texts[i % len(texts)], kind="screen", source="bench") for i in range(total)]
    spent = {mode: [0.0, 0.0] for mode in stores}
    modes = list(stores)
    for n, offset in enumerate(range(0, total, turn)):
        part = items[offset : offset + turn]
        for mode in modes if n % 2 == 0 else modes[::-1]:
            store = stores[mode]
            start, cpu = time.perf_counter(), time.process_time()
            for first in range(0, len(part), batch):
                store.add_observations(part[first : first + batch])
            spent[mode][0] += time.perf_counter() - start
            spent[mode][1] += time.process_time() - cpu
    return {mode: (total / wall, total / cpu) for mode, (wall, cpu) in spent.items()}


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
            batched: list[dict[str, tuple[float, float]]] = []
            single: list[dict[str, tuple[float, float]]] = []
            for _ in range(args.runs):
                batched.append(bench_inserts(stores, texts, 100, 5_000, turn=500))
                single.append(bench_inserts(stores, texts, 1, 500, turn=50))
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

    def row(label: str, values: dict[str, float], higher_is_better: bool, unit: str,
            paired: list[float] | None = None) -> None:
        line = f"{label:34s}" + "".join(f"{values[m]:>11.{2 if unit == 'ms' else 0}f} {unit:2s}" for m in modes)
        if "encrypted" in values and "plaintext" in values:
            ratio = values["encrypted"] / values["plaintext"]
            cost = (1 / ratio - 1) if higher_is_better else (ratio - 1)
            line += f"   {ratio:5.2f}x (cost {cost * 100:+.0f}%)"
            if paired:  # each run's own encrypted/plaintext cost: the modes took turns inside the run
                low, high = min(paired) * 100, max(paired) * 100
                line += f"; per run {med(paired) * 100:+.0f}% (runs {low:+.0f}..{high:+.0f}%)"
        print(line)

    def costs(runs: list[dict[str, tuple[float, float]]], n: int) -> list[float]:
        if not {"encrypted", "plaintext"} <= set(modes):
            return []
        return [r["plaintext"][n] / r["encrypted"][n] - 1 for r in runs]

    for n, clock in ((0, "wall"), (1, "CPU")):
        row(f"inserts, batches of 100 ({clock})", {m: med(r[m][n] for r in batched) for m in modes}, True, "/s",
            costs(batched, n))
        row(f"inserts, one at a time ({clock})", {m: med(r[m][n] for r in single) for m in modes}, True, "/s",
            costs(single, n))
    for order in ("recent", "confidence"):
        row(f"page of 50 of {args.propositions:,} ({order}) p50", {m: med(pages[(m, order)]) for m in modes},
            False, "ms")
    for mode in modes:
        print(f"  {mode} (wall): batched runs {_runs([r[mode][0] for r in batched])}; "
              f"single runs {_runs([r[mode][0] for r in single])}")


if __name__ == "__main__":
    main()

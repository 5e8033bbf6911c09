"""Embedding speed: sentences/second at batch sizes 1, 16 and 64, and the model's load time.

    python bench/embeddings.py [--runs 5] [--texts 256] [--precision float32|int8]
    python bench/embeddings.py --compare-with /tmp/today [--runs 5]   # side by side, alternating
    ... --short    # short sentences (~5-10 word pieces) instead of propositions

`--compare-with PATH` runs other code (e.g. `git worktree add /tmp/today HEAD`) and this checkout in fresh
processes, alternately run by run (load from other processes falls on both alike): the other code in float32,
this code in float32 and in int8, each process timing one run of every batch size and of single search queries
(`query`: this code embeds them in int8 whatever the texts' precision, as GUM_QUERY_PRECISION does by default;
older code embeds a query as a text; load includes that second encoder); medians are printed, and the cosine of
this code's int8 vectors to its float32 ones.

Texts are realistic propositions (one or two sentences, ~15-40 word pieces). Each figure is the median
of several runs. Needs the model: `python -m gum_mcp.index.models install` (or `gum-mcp models install`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

CODE = os.environ.get("GUM_BENCH_CODE") or str(Path(__file__).resolve().parents[1])
sys.path.insert(0, CODE)

from gum_mcp.config import load_settings  # noqa: E402
from gum_mcp.index.embeddings import MiniLMEmbedder  # noqa: E402
from gum_mcp.index.minilm import MiniLM, openblas_threads  # noqa: E402
from gum_mcp.index.models import find_minilm  # noqa: E402

PEOPLE = ["Priya", "Jordan", "Alex", "Mei", "Sam", "the user", "Tomás", "Aisha"]
SUBJECTS = [
    "is preparing the Q4 budget in Excel for {other}; due Friday",
    "prefers dark mode in VS Code and usually codes late at night",
    "is learning Rust by porting a small CLI tool from Python",
    "has a recurring 1:1 with {other} on Tuesdays at 10am",
    "reads papers on retrieval-augmented generation during the morning commute",
    "is planning a trip to Lisbon in October and compares flight prices on Kayak",
    "keeps project notes in Obsidian with daily pages and backlinks",
    "is frustrated by flaky CI runs on the data-pipeline repository",
    "asked {other} to review the pull request that migrates the billing service to Postgres 16",
    "tends to postpone email replies until Friday afternoon",
    "is drafting a blog post about local-first software and CRDTs",
    "listens to lo-fi playlists on Spotify while writing code",
    "uses Figma to sketch onboarding screens before implementing them in React",
    "is interviewing candidates for a senior backend role with {other}",
    "tracks running workouts with Strava and is training for a half marathon in spring",
]
QUALIFIERS = ["", " (confidence high)", ", according to several screenshots", ", probably for work",
              " and seems stressed about it", ", as seen in Slack this week"]


def propositions(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        person, other = rng.sample(PEOPLE, 2)
        texts.append(_capitalised(f"{person} {rng.choice(SUBJECTS).format(other=other)}{rng.choice(QUALIFIERS)}."))
    return texts


SHORT = ["prefers dark mode", "is on a call", "reads the news", "plans a trip to Lisbon", "writes Rust",
         "skips lunch on Fridays", "uses Obsidian for notes", "trains for a half marathon", "reviews a pull request",
         "listens to lo-fi music", "drafts the Q4 budget", "is learning Spanish"]


def short_sentences(count: int, seed: int = 7) -> list[str]:
    """Short sentences (~5-10 word pieces with [CLS] and [SEP]): the issue's "short sentences"."""
    rng = random.Random(seed)
    return [_capitalised(f"{rng.choice(PEOPLE)} {rng.choice(SHORT)}.") for _ in range(count)]


def bench_texts(count: int, short: bool) -> list[str]:
    return (short_sentences if short else propositions)(count)


def _capitalised(text: str) -> str:
    return text[0].upper() + text[1:]


BATCHES = (1, 16, 64)


def one_run(texts: int, precision: str, short: bool = False) -> dict:
    """In this process: one timed run of every batch size (after a warm-up), as JSON-able figures."""
    settings = load_settings(env=os.environ)
    model_dir = find_minilm(settings.models_dir)
    assert model_dir is not None, "the model is not installed"
    started = time.perf_counter()
    try:  # as the server makes it: search queries in int8 (GUM_QUERY_PRECISION's default)
        embedder = MiniLMEmbedder(model_dir, precision, "int8")
    except TypeError:  # older code: one precision for everything
        embedder = MiniLMEmbedder(model_dir, precision) if precision != "float32" else MiniLMEmbedder(model_dir)
    load = time.perf_counter() - started
    sample = bench_texts(texts, short)
    embedder.embed(sample[:64])
    rates = {}
    # one search query at a time, as a search embeds it (the model itself: no cache)
    embed_query = getattr(embedder.model, "embed_query", None) or (lambda text: embedder.model.embed([text]))
    start = time.perf_counter()
    for n, text in enumerate(sample):
        embed_query(f"{text} ({n})")
    rates["query"] = len(sample) / (time.perf_counter() - start)
    for batch_size in BATCHES:
        start = time.perf_counter()
        for offset in range(0, len(sample), batch_size):
            # distinct texts per call: the single-text cache of newer code must not answer
            part = [f"{text} ({offset})" for text in sample[offset : offset + batch_size]]
            embedder.embed(part)
        rates[batch_size] = len(sample) / (time.perf_counter() - start)
    return {"rates": rates, "load_s": load, "vectors": embedder.embed(sample[:32]).tolist()}


def compare(other: str, runs: int, texts: int, short: bool = False) -> int:
    import numpy as np

    here = str(Path(__file__).resolve().parents[1])
    variants = [("other code, float32", other, "float32"), ("this code, float32", here, "float32"),
                ("this code, int8", here, "int8")]
    got: dict[str, list[dict]] = {name: [] for name, _, _ in variants}
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for run in range(runs):
        for name, code, precision in variants if run % 2 == 0 else reversed(variants):
            out = subprocess.run([sys.executable, __file__, "--one-run", precision, "--texts", str(texts)]
                                 + (["--short"] if short else []),
                                 env={**env, "GUM_BENCH_CODE": code}, capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                return out.returncode
            got[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    kind = "short sentences" if short else "propositions"
    print(f"{runs} runs each, alternating; medians (sentences/s); texts: {kind}; "
          f"load average now {os.getloadavg()[0]:.2f}")
    columns = [str(b) for b in BATCHES] + ["query"]
    print(f"{'':22}" + "".join(f"{f'batch {b}':>12}" for b in BATCHES) + f"{'query':>12}{'load':>10}")
    for name, _, _ in variants:
        rows = got[name]
        print(f"{name:22}" + "".join(f"{statistics.median(r['rates'][c] for r in rows):12.1f}" for c in columns)
              + f"{statistics.median(r['load_s'] for r in rows) * 1000:8.0f}ms")
    base = got[variants[0][0]]
    def median(rows: list[dict], column: str) -> float:
        return statistics.median(r["rates"][column] for r in rows)

    for name, _, _ in variants[1:]:
        print(f"{name} / other code: " + ", ".join(
            f"{'batch ' + c if c.isdigit() else c} {median(got[name], c) / median(base, c):.2f}x" for c in columns))
    exact = np.array(got["this code, float32"][0]["vectors"], dtype=np.float32)
    fast = np.array(got["this code, int8"][0]["vectors"], dtype=np.float32)
    cosines = (exact * fast).sum(axis=1)
    print(f"int8 vs float32 cosine: min {cosines.min():.4f}, mean {cosines.mean():.4f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--precision", default="float32", choices=("float32", "int8"))
    parser.add_argument("--compare-with", metavar="PATH", help="other code to run side by side (see above)")
    parser.add_argument("--one-run", metavar="PRECISION", help=argparse.SUPPRESS)
    parser.add_argument("--short", action="store_true", help="short sentences instead of propositions")
    args = parser.parse_args()
    if args.one_run:
        print(json.dumps(one_run(args.texts, args.one_run, args.short)))
        return 0
    if args.compare_with:
        return compare(args.compare_with, args.runs, args.texts, args.short)

    settings = load_settings(env=os.environ)
    model_dir = find_minilm(settings.models_dir)
    if model_dir is None:
        print(f"all-MiniLM-L6-v2 is not installed in {settings.models_dir}; "
              "run `python -m gum_mcp.index.models install`", file=sys.stderr)
        return 1

    loads = []
    for _ in range(3):  # the first load may read the file from disk, later ones from the page cache
        start = time.perf_counter()
        MiniLM(model_dir).embed(["warm up"])
        loads.append(time.perf_counter() - start)
    embedder = MiniLMEmbedder(model_dir, args.precision) if args.precision != "float32" else MiniLMEmbedder(model_dir)
    texts = bench_texts(args.texts, args.short)
    pieces = [len(ids) for ids in embedder.model.token_ids(texts)]
    print(f"model: {embedder.name} ({embedder.dim} dims) from {model_dir}")
    print(f"load time (weights + tokenizer + first call): first {loads[0] * 1000:.0f} ms, "
          f"median {statistics.median(loads) * 1000:.0f} ms")
    kind = "short sentences" if args.short else "propositions"
    print(f"texts: {len(texts)} {kind}, word pieces per text: median {statistics.median(pieces):.0f}, "
          f"max {max(pieces)}")
    print(f"cpus: {os.cpu_count()}, OpenBLAS threads per matmul: {openblas_threads()}, "
          f"forward passes in parallel: {embedder.model.workers}, load average: {os.getloadavg()[0]:.2f}")
    embedder.embed(texts[:64])  # warm caches
    for batch_size in (1, 16, 64):
        rates = []
        for run in range(args.runs):
            # distinct texts per run: the embedder's cache of single texts must not answer
            fresh = [f"{text} ({batch_size}.{run})" for text in texts]
            start = time.perf_counter()
            for offset in range(0, len(fresh), batch_size):
                embedder.embed(fresh[offset : offset + batch_size])
            rates.append(len(texts) / (time.perf_counter() - start))
        median = statistics.median(rates)
        print(f"batch {batch_size:>3}: {median:8.1f} sentences/s  ({1000 / median * batch_size:7.2f} ms per call; "
              f"runs {min(rates):.0f}..{max(rates):.0f})")
    print(f"load average after: {os.getloadavg()[0]:.2f} (other processes on these cores lower the figures)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

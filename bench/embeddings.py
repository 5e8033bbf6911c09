"""Embedding speed: sentences/second at batch sizes 1, 16 and 64, and the model's load time.

    python bench/embeddings.py [--runs 5] [--texts 256]

Texts are realistic propositions (one or two sentences, ~15-40 word pieces). Each figure is the median
of several runs. Needs the model: `python -m gum_mcp.index.models install` (or `gum-mcp models install`).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gum_mcp.config import load_settings
from gum_mcp.index.embeddings import MiniLMEmbedder
from gum_mcp.index.minilm import MiniLM, openblas_threads
from gum_mcp.index.models import find_minilm

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
        text = f"{person} {rng.choice(SUBJECTS).format(other=other)}{rng.choice(QUALIFIERS)}."
        texts.append(text[0].upper() + text[1:])
    return texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--texts", type=int, default=256)
    args = parser.parse_args()

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
    embedder = MiniLMEmbedder(model_dir)
    texts = propositions(args.texts)
    pieces = [len(ids) for ids in embedder.model.token_ids(texts)]
    print(f"model: {embedder.name} ({embedder.dim} dims) from {model_dir}")
    print(f"load time (weights + tokenizer + first call): first {loads[0] * 1000:.0f} ms, "
          f"median {statistics.median(loads) * 1000:.0f} ms")
    print(f"texts: {len(texts)} propositions, word pieces per text: median {statistics.median(pieces):.0f}, "
          f"max {max(pieces)}")
    print(f"cpus: {os.cpu_count()}, OpenBLAS threads per matmul: {openblas_threads()}, "
          f"forward passes in parallel: {embedder.model.workers}, load average: {os.getloadavg()[0]:.2f}")
    embedder.embed(texts[:64])  # warm caches
    for batch_size in (1, 16, 64):
        rates = []
        for _ in range(args.runs):
            start = time.perf_counter()
            for offset in range(0, len(texts), batch_size):
                embedder.embed(texts[offset : offset + batch_size])
            rates.append(len(texts) / (time.perf_counter() - start))
        median = statistics.median(rates)
        print(f"batch {batch_size:>3}: {median:8.1f} sentences/s  ({1000 / median * batch_size:7.2f} ms per call; "
              f"runs {min(rates):.0f}..{max(rates):.0f})")
    print(f"load average after: {os.getloadavg()[0]:.2f} (other processes on these cores lower the figures)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

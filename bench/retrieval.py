"""Retrieval latency at scale, encrypted vs plaintext side by side: p50/p95 of BM25-only, vector-only and
hybrid search at N propositions, index build time, peak RSS, and the time from a process's start to
its first hybrid answer.

    python bench/retrieval.py [--sizes 1000,10000,100000] [--queries 200] [--real 2000] [--json]
                              [--modes encrypted,plaintext] [--starts 3]

Modes: `encrypted` (SQLCipher store; vectors in the encrypted vectors.sqlite3, searched in memory by
gum_mcp/index/vector_store.py) and `plaintext` (GUM_ENCRYPT=0: the same without a key).
Both are built in one process per size and queried alternately, query by query, so load from other
processes on the machine falls on both alike.

Start to first hybrid answer: a fresh process (`--first-answer`) on the data dir just built, timed
from its first line to the first search whose hits carry the vector signal: imports, the embedding
model, opening the store and the index (for `encrypted`: reading every vector into memory), the query.
The OS file cache is warm (the data dir was just written), as it is for a server restarted by its client.

Each size runs in its own process (so peak RSS is that size's). Propositions are generated, one or two
sentences of realistic length (15-45 words) over a vocabulary with names, projects, places and tools, and
committed through the store (FTS5 triggers and index_log included).

What is measured is query latency, not embedding: embedding 100k texts with MiniLM takes several
minutes on 2 cores, so `--real` texts (default 2000) are embedded for real and the rest of the
collection is filled with those vectors perturbed by Gaussian noise (re-normalised), which gives the
index (and its k-means clusters from 20,000 vectors) a realistic spread. The real embedding rate is
reported, and the full embed time at N is extrapolated from it. Every vector-only and hybrid query
embeds its query text with the real model inside the timed section. search() is timed end to end:
FTS5, the vector search, SQLite hydration, weights and MMR. BM25-only is search() with no index,
exactly what runs without an embedder.

BLAS threads: by default OpenBLAS starts one busy-waiting thread per core. On this 2-core machine, next to
other threads, that made 10-20% of single-query embeddings take 0.1-0.7 s instead of ~6 ms. The
bench runs with OPENBLAS_NUM_THREADS=1 (`--blas-threads default` shows the other figures); the server
should run that way too (set before numpy is imported).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

PROCESS_START = time.perf_counter()  # --first-answer measures from here (the interpreter has started)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PEOPLE = ["Priya", "Jordan", "Mei", "Sam", "Anika", "Diego", "Kavya", "Tomás", "Aisha", "Noah", "Lena", "Omar",
          "Hiro", "Fatima", "Lucas", "Zoe", "Ravi", "Elena", "Marcus", "Yuki", "Ingrid", "Kwame", "Sofia", "Ben",
          "Chloe", "Arjun", "Nadia", "Felix", "Grace", "Mateo", "Leila", "Oscar", "Hana", "Ivan", "June", "Pablo"]
PROJECTS = ["etl-pipeline", "billing-service", "claims dashboard", "Q4 forecast", "data catalog", "search revamp",
            "mobile onboarding", "pricing model", "warehouse migration", "fraud alerts", "customer 360",
            "churn report", "inventory sync", "ML feature store", "access review", "cost dashboard", "API gateway",
            "event tracking", "payroll export", "vendor portal", "SLA report", "A/B test platform", "docs site",
            "incident tooling", "retention study", "lead scoring", "ops runbook", "budget tracker", "Kafka upgrade"]
PLACES = ["Lisbon", "Porto", "Toronto", "Montreal", "Kyoto", "Berlin", "Mexico City", "Pune", "Sintra", "Vancouver",
          "Chicago", "Oaxaca", "Seville", "Reykjavik", "Barcelona", "Istanbul", "Seoul", "Lima", "Nairobi", "Oslo",
          "Dublin", "Prague", "Hanoi", "Cape Town", "Melbourne", "Bogotá", "Athens", "Marrakech", "Quebec City"]
TOOLS = ["VS Code", "Excel", "Jira", "Slack", "Notion", "Obsidian", "Figma", "DBeaver", "Airflow", "dbt", "Strava",
         "Spotify", "Duolingo", "YNAB", "1Password", "Garmin Connect", "Zoom", "Google Sheets", "Postgres",
         "Docker", "GitHub", "Linear", "Tableau", "Looker", "Kindle", "Anki", "Todoist", "Miro", "Trello"]
TOPICS = ["half marathon training", "Rust lifetimes", "vegetarian recipes", "apartment hunting", "tax filing",
          "wedding planning", "sourdough baking", "street photography", "learning Portuguese", "piano practice",
          "sleep tracking", "budgeting", "conference talks", "home workouts", "board games", "sci-fi novels",
          "cycling routes", "indoor plants", "knee physiotherapy", "flight deals", "chess openings", "meal prep",
          "jazz records", "climbing", "podcast editing", "mentoring juniors", "interview prep", "data quality"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "weekday mornings",
        "weekend afternoons", "late evenings", "lunch breaks"]
TEMPLATES = [
    "{s} is working on the {project} with {person} and wants it finished before {day}.",
    "{s} uses {tool} every {day} to keep track of {topic}.",
    "{s} is planning a trip to {place} and compares prices for {topic} there.",
    "{s} has a recurring meeting with {person} about the {project} on {day}.",
    "{s} is interested in {topic} and reads about it during {day}.",
    "{s} asked {person} to review changes to the {project} in {tool}.",
    "{s} prefers {tool} over the alternatives for {topic}.",
    "{s} spends {day} on {topic}, usually with {person}.",
    "{s} keeps notes on the {project} in {tool} and shares them with {person}.",
    "{s} visited {place} with {person} and enjoyed the {topic} scene.",
    "{s} is frustrated that the {project} keeps failing on {day}.",
    "{s} follows a plan for {topic} and logs progress in {tool}.",
    "{person} recommended {place} to {s_lower} for a long weekend focused on {topic}.",
    "{s} wants to get better at {topic} this year and set a goal with {person}.",
    "{s} blocks {day} for deep work on the {project}.",
]
QUALIFIERS = ["", "", " This has come up in several screenshots this week.", " It seems to matter a lot to her.",
              " She mentioned it to {person} in Slack.", " The deadline is in {n} days.",
              " She spent about {n} minutes on it today.", " It has been a pattern for {n} weeks."]
QUESTIONS = [
    "what is she doing with {person}", "when does she work on the {project}", "trip to {place}",
    "how does she track {topic}", "which tool does she use for {topic}", "{person} {project}",
    "what is blocking the {project}", "her plans for {day}", "who helps her with {topic}",
    "does she like {place}", "{tool}", "{topic} progress", "meetings about the {project} on {day}",
    "what did {person} recommend", "what frustrates her at work",
]


def _fill(rng: random.Random, template: str) -> str:
    s = rng.choice(["Priya", "The user", "She"])
    return template.format(s=s, s_lower=s if s == "Priya" else s.lower(), person=rng.choice(PEOPLE),
                           project=rng.choice(PROJECTS), place=rng.choice(PLACES), tool=rng.choice(TOOLS),
                           topic=rng.choice(TOPICS), day=rng.choice(DAYS), n=rng.randint(2, 90))


def propositions(count: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    return [_fill(rng, rng.choice(TEMPLATES)) + _fill(rng, rng.choice(QUALIFIERS)) for _ in range(count)]


def queries(count: int, seed: int = 12) -> list[str]:
    rng = random.Random(seed)
    return [_fill(rng, rng.choice(QUESTIONS)) for _ in range(count)]


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": statistics.median(ordered) * 1000,
            "p95_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000}


MODES = ("encrypted", "plaintext")


def mode_settings(root: Path, mode: str, models_dir: Path, key: str):
    from gum_mcp.config import load_settings

    extra = {"encrypt": True, "db_key": key} if mode == "encrypted" else {"encrypt": False}
    return load_settings(env={}, cwd=root, data_dir=root / mode, models_dir=models_dir, **extra)


def run_size(size: int, n_queries: int, real: int, root: Path, modes: list[str], key: str) -> dict:
    import numpy as np

    from gum_mcp.config import load_settings
    from gum_mcp.domain import BatchResult, NewProposition, PropositionDraft, utcnow
    from gum_mcp.index.embeddings import make_embedder
    from gum_mcp.index.vector_index import WRITE_BATCH, VectorIndex
    from gum_mcp.retrieval import search
    from gum_mcp.store import Store

    models_dir = load_settings().models_dir
    figures: dict = {"n": size, "modes": {}}
    first = mode_settings(root, modes[0], models_dir, key)
    embedder, reason = make_embedder(first)
    if embedder is None:
        raise SystemExit(f"needs the embedding model: {reason}")
    texts = propositions(size)
    now = utcnow()
    started = time.perf_counter()
    n_real = min(real, size)
    base = embedder.embed(texts[:n_real])
    embed_s = time.perf_counter() - started
    figures["real_embeddings"] = n_real
    figures["embed_rate_per_s"] = n_real / embed_s
    figures["full_embed_estimate_s"] = size / figures["embed_rate_per_s"]
    opened = {}
    for mode in modes:
        rng = random.Random(size)
        settings = mode_settings(root, mode, models_dir, key)
        store = Store.open(settings)
        index = VectorIndex.open(settings, embedder)
        opened[mode] = (store, index)
        got = figures["modes"][mode] = {}
        started = time.perf_counter()
        for start in range(0, size, 1000):
            chunk = texts[start : start + 1000]
            new = tuple(
                NewProposition(draft=PropositionDraft(text=text, confidence=rng.randint(3, 10),
                                                      decay=rng.randint(1, 10)))
                for text in chunk
            )
            store.complete_batch(BatchResult(observation_ids=(), new=new),
                                 at=now - timedelta(days=rng.uniform(0, 120)))
        got["sqlite_build_s"] = time.perf_counter() - started

        # Fill the collection directly (bench only): real vectors, then perturbed copies of them.
        collection = index._collection("propositions")
        noise = np.random.default_rng(size)
        started = time.perf_counter()
        after = 0
        written = 0
        while True:
            page = store.index_items_page("propositions", after_id=after, limit=WRITE_BATCH)
            if not page:
                break
            vectors = []
            for _item in page:
                position = written + len(vectors)
                if position < n_real:
                    vectors.append(base[position])
                else:
                    vector = base[position % n_real] + noise.normal(0, 0.35 / np.sqrt(embedder.dim), embedder.dim)
                    vectors.append((vector / np.linalg.norm(vector)).astype(np.float32))
            collection.upsert(ids=[str(item.id) for item in page], embeddings=np.stack(vectors),
                              metadatas=[item.metadata() for item in page])
            written += len(page)
            after = page[-1].id
        identity = store.store_identity()
        seq = store.index_log_max_seq()
        index._set_cursor("propositions", seq, identity)
        index._set_cursor("observations", seq, identity)
        got["index_build_s"] = time.perf_counter() - started
        report = index.catch_up(store)  # nothing left to do: checks the cursor bookkeeping
        assert not report.rebuilt and report.upserted == 0, report

    asked = queries(n_queries)
    for text in asked[:10]:  # warm caches (HNSW load, SQLite pages)
        for store, index in opened.values():
            search(store, index, text, 5)
            search(store, None, text, 5)
    timings = {mode: {"bm25": [], "vector": [], "hybrid": []} for mode in modes}
    cached = getattr(embedder, "_queries", None)  # the embedder's cache of query vectors: every mode embeds
    for text in asked:
        for method in ("bm25", "vector", "hybrid"):
            for mode, (store, index) in opened.items():  # alternating: load falls on both modes alike
                if cached is not None:
                    cached.clear()
                started = time.perf_counter()
                hits = search(store, None if method == "bm25" else index, text, 5, method=method,  # type: ignore[arg-type]
                              now=now)
                timings[mode][method].append(time.perf_counter() - started)
                assert hits or method == "bm25", (mode, method, text)
    for mode, (store, index) in opened.items():
        got = figures["modes"][mode]
        for method, samples in timings[mode].items():
            got[method] = _percentiles(samples)
        started = time.perf_counter()
        for _ in range(20):
            search(store, index, "", 5, now=now)
        got["empty_query_ms"] = (time.perf_counter() - started) / 20 * 1000
        index.close()
        store.close()
        got["files_mb"] = sum(p.stat().st_size for p in (root / mode).rglob("*") if p.is_file()) / 1e6
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def first_answer(root: Path, mode: str, key: str, started: float) -> dict:
    """In a fresh process: from its start to the first hybrid answer (see the module docstring)."""
    from gum_mcp.config import load_settings
    from gum_mcp.index.embeddings import make_embedder
    from gum_mcp.index.vector_index import open_index
    from gum_mcp.retrieval import search
    from gum_mcp.store import Store

    imported = time.perf_counter()
    settings = mode_settings(root, mode, load_settings().models_dir, key)
    embedder, reason = make_embedder(settings)
    assert embedder is not None, reason
    with Store.open(settings) as store:
        opened = time.perf_counter()
        index, reason = open_index(settings, embedder=embedder)
        assert index is not None, reason
        loaded = time.perf_counter()
        try:
            hits = search(store, index, "trip to Lisbon with Priya", 5)
            assert hits and any("vector" in hit.signals for hit in hits), hits
        finally:
            index.close()
    answered = time.perf_counter()
    return {"total_s": answered - started, "imports_s": imported - started, "model_and_store_s": opened - imported,
            "index_s": loaded - opened, "query_s": answered - loaded}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--real", type=int, default=2000, help="texts embedded for real per size")
    parser.add_argument("--modes", default=",".join(MODES), help="encrypted, plaintext or both (default)")
    parser.add_argument("--starts", type=int, default=3, help="fresh processes timed to their first hybrid answer")
    parser.add_argument("--blas-threads", default="1",
                        help="OPENBLAS_NUM_THREADS for the run ('default' leaves it unset); see the docstring")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--first-answer", metavar="MODE", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.first_answer:
        print(json.dumps(first_answer(Path(args.root), args.first_answer, args.key, PROCESS_START)))
        return 0
    if args.child:
        print(json.dumps(run_size(args.child, args.queries, args.real, Path(args.root), modes, args.key)))
        return 0
    logging_quiet = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if args.blas_threads != "default":
        logging_quiet["OPENBLAS_NUM_THREADS"] = logging_quiet["OMP_NUM_THREADS"] = args.blas_threads
    key = secrets.token_hex(32)  # the encrypted stores' GUM_DB_KEY (a bench uses no keychain)
    results = []
    for size in (int(s) for s in args.sizes.split(",") if s.strip()):
        with tempfile.TemporaryDirectory(prefix="gum-bench-") as tmp:
            print(f"N={size:,}: building ...", file=sys.stderr, flush=True)
            out = subprocess.run([sys.executable, __file__, "--child", str(size), "--queries", str(args.queries),
                                  "--real", str(args.real), "--modes", ",".join(modes), "--root", tmp, "--key", key],
                                 capture_output=True, text=True, env=logging_quiet)
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                return out.returncode
            result = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"N={size:,}: timing start -> first hybrid answer ...", file=sys.stderr, flush=True)
            starts: dict[str, list[dict]] = {mode: [] for mode in modes}
            for _ in range(args.starts):
                for mode in modes:  # alternating
                    run = subprocess.run([sys.executable, __file__, "--first-answer", mode, "--root", tmp,
                                          "--key", key], capture_output=True, text=True, env=logging_quiet)
                    if run.returncode != 0:
                        print(run.stderr, file=sys.stderr)
                        return run.returncode
                    starts[mode].append(json.loads(run.stdout.strip().splitlines()[-1]))
            for mode in modes:
                ordered = sorted(starts[mode], key=lambda r: r["total_s"])
                if ordered:  # --starts 0: not measured
                    result["modes"][mode]["first_answer"] = ordered[len(ordered) // 2]  # the median run
            results.append(result)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'N':>8} {'mode':>10} | {'BM25 p50/p95 ms':>16} | {'vector p50/p95':>15} | {'hybrid p50/p95':>15} |"
          f" {'empty q':>7} | {'sqlite build':>12} | {'index write':>11} | {'files':>8} |"
          f" {'start -> 1st hybrid (index load)':>32}")
    for r in results:
        for mode, m in r["modes"].items():
            fa = m.get("first_answer")
            first = f"{fa['total_s']:>12.2f} s ({fa['index_s']:.2f} s)" if fa else f"{'(not measured)':>32}"
            print(f"{r['n']:>8,} {mode:>10} | {m['bm25']['p50_ms']:>7.1f} / {m['bm25']['p95_ms']:<6.1f} |"
                  f" {m['vector']['p50_ms']:>6.1f} / {m['vector']['p95_ms']:<6.1f} |"
                  f" {m['hybrid']['p50_ms']:>6.1f} / {m['hybrid']['p95_ms']:<6.1f} | {m['empty_query_ms']:>5.1f}ms |"
                  f" {m['sqlite_build_s']:>10.1f} s | {m['index_build_s']:>9.1f} s | {m['files_mb']:>5.0f} MB |"
                  f" {first}")
        if {"encrypted", "plaintext"} <= set(r["modes"]):
            enc, plain = r["modes"]["encrypted"], r["modes"]["plaintext"]
            print(f"{'':>8} {'enc/plain':>10} | {enc['bm25']['p50_ms'] / plain['bm25']['p50_ms']:>7.2f}x{'':8} |"
                  f" {enc['vector']['p50_ms'] / plain['vector']['p50_ms']:>6.2f}x{'':8} |"
                  f" {enc['hybrid']['p50_ms'] / plain['hybrid']['p50_ms']:>6.2f}x{'':8} |")
        print(f"{'':>8} embed/s {r['embed_rate_per_s']:.0f}, full embed estimate {r['full_embed_estimate_s']:.0f} s,"
              f" peak RSS (both modes in one process) {r['peak_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

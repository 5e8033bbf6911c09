"""Retrieval quality on the frozen labelled set: recall@5 and MRR of BM25-only, vector-only, plain RRF and
hybrid (the default), plus the word overlap between queries and their targets.

    python bench/retrieval_quality.py [--json]

The set (tests/fixtures/retrieval_quality.json) was written and frozen before any tuning: ~200
propositions about one person with distractors, >= 40 queries, many sharing few words with their targets.
Every method runs through the same pipeline (filters, recency x confidence weights, MMR where embeddings
exist); only the relevance signals differ. BM25-only is exactly what retrieval does without an embedder.
Needs the MiniLM model (`gum-mcp models install`). tests/test_retrieval.py runs the same evaluation.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gum_mcp.domain import BatchResult, NewProposition, PropositionDraft, utcnow
from gum_mcp.retrieval import search
from gum_mcp.store.search import STOP_WORDS

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "retrieval_quality.json"
METHODS = ("bm25", "vector", "rrf", "hybrid")


def load_fixture(path: Path = FIXTURE) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def populate(store, fixture: dict, now: datetime) -> dict[int, str]:
    """Add the fixture's propositions (last supported `age_days` before `now`); return id -> key."""
    keys: dict[int, str] = {}
    for prop in fixture["propositions"]:
        draft = PropositionDraft(text=prop["text"], confidence=prop["confidence"], decay=prop["decay"])
        at = now - timedelta(days=prop["age_days"])
        [pid] = store.complete_batch(BatchResult(observation_ids=(), new=(NewProposition(draft=draft),)), at=at)
        keys[pid] = prop["key"]
    return keys


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[^\W_]+", text.casefold()) if w not in STOP_WORDS}


def word_overlap(fixture: dict) -> list[float]:
    """Per query: the share of its content words found in the text of its targets."""
    texts = {p["key"]: p["text"] for p in fixture["propositions"]}
    shares = []
    for q in fixture["queries"]:
        words = _words(q["query"])
        target = set().union(*(_words(texts[key]) for key in q["relevant"]))
        shares.append(len(words & target) / len(words) if words else 0.0)
    return shares


@dataclass
class Scores:
    recall_at_5: float
    mrr: float
    per_query_recall: list[float]


def evaluate(store, index, fixture: dict, keys: dict[int, str], now: datetime,
             methods: tuple[str, ...] = METHODS, **options) -> dict[str, Scores]:
    results = {}
    texts = [q["query"] for q in fixture["queries"]]
    vectors = index.embedder.embed(texts) if index is not None else [None] * len(texts)  # one batch
    for method in methods:
        recalls, reciprocal = [], []
        for q, vector in zip(fixture["queries"], vectors, strict=True):
            relevant = set(q["relevant"])
            top10 = [keys[h.id] for h in search(store, index, q["query"], 10, method=method, now=now,
                                                query_vector=vector, **options)]
            top5 = [keys[h.id] for h in search(store, index, q["query"], 5, method=method, now=now,
                                               query_vector=vector, **options)]
            recalls.append(len(relevant & set(top5)) / len(relevant))
            rank = next((n for n, key in enumerate(top10, start=1) if key in relevant), None)
            reciprocal.append(1.0 / rank if rank else 0.0)
        results[method] = Scores(sum(recalls) / len(recalls), sum(reciprocal) / len(reciprocal), recalls)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    from gum_mcp.config import load_settings
    from gum_mcp.index.embeddings import make_embedder
    from gum_mcp.index.vector_index import VectorIndex
    from gum_mcp.store import Store

    fixture = load_fixture()
    overlap = word_overlap(fixture)
    with tempfile.TemporaryDirectory(prefix="gum-quality-") as tmp:
        settings = load_settings(env={}, cwd=Path(tmp), data_dir=Path(tmp) / "data",
                                 models_dir=load_settings().models_dir)
        embedder, reason = make_embedder(settings)
        if embedder is None:
            print(f"needs the embedding model: {reason}", file=sys.stderr)
            return 1
        now = utcnow()
        with Store.open(settings) as store, VectorIndex.open(settings, embedder) as index:
            keys = populate(store, fixture, now)
            index.catch_up(store)
            scores = evaluate(store, index, fixture, keys, now)
            no_mmr = evaluate(store, index, fixture, keys, now, methods=("hybrid",), diversify=False)["hybrid"]
    zero = [n for n, share in enumerate(overlap) if share == 0]
    figures = {
        "propositions": len(fixture["propositions"]),
        "queries": len(fixture["queries"]),
        "mean_word_overlap": sum(overlap) / len(overlap),
        "queries_with_no_shared_word": len(zero),
        "methods": {
            m: {"recall@5": s.recall_at_5, "mrr@10": s.mrr,
                "recall@5_no_shared_word": sum(s.per_query_recall[n] for n in zero) / max(len(zero), 1)}
            for m, s in scores.items()
        },
        "hybrid_without_mmr": {"recall@5": no_mmr.recall_at_5, "mrr@10": no_mmr.mrr},
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"{figures['propositions']} propositions, {figures['queries']} queries; mean word overlap "
          f"query->targets {figures['mean_word_overlap']:.2f}; {len(zero)} queries share no word with their targets")
    print(f"{'method':<10} {'recall@5':>9} {'MRR@10':>8} {'recall@5 (no shared word)':>27}")
    for method, row in figures["methods"].items():
        print(f"{method:<10} {row['recall@5']:>9.3f} {row['mrr@10']:>8.3f} {row['recall@5_no_shared_word']:>27.3f}")
    print(f"{'hybrid, no MMR':<10} {no_mmr.recall_at_5:>5.3f} {no_mmr.mrr:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

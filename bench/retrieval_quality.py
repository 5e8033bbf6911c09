"""Retrieval quality on two labelled sets, side by side: recall@5, recall@10, hit@5 and MRR@10 of BM25-only,
vector-only, plain RRF and the project's hybrid (the defaults of `gum_mcp.retrieval.search`).

    python bench/retrieval_quality.py [--json] [--check] [--tags]

- The tuning set (tests/fixtures/retrieval_quality.json): ~200 propositions about one person, 52 queries.
  Retrieval's constants may be chosen by looking at it.
- The held-out set (tests/fixtures/retrieval_heldout.json): >= 2,000 propositions about four invented
  people (one store per person, as each is a user model of their own), >= 300 queries written
  independently of the propositions' wording, tagged fact / preference-task / time-bound / no-shared-word.
  Nothing is tuned on it: it is only reported. `--check` prints its properties and checks its invariants.

Every method runs through the same pipeline (filters, recency x confidence weights, diversity where
embeddings exist); only the relevance signals differ. BM25-only is exactly what retrieval does without an
embedder. Each query is searched twice, with k=5 and k=10 (k hits asked are the k most useful, so the
top 5 of a k=10 search are not reused). `--tags` adds hit@5 per tag on the held-out set.

With a real LLM provider configured (GUM_LLM_PROVIDER and its key or base URL, from the environment or
./.env), the deep mode is measured too (`gum_mcp.retrieval.deep`: the hybrid's pool for k=10 reranked by the
LLM, one call per query, ~400 calls; `--no-deep` skips it); its row says how many calls fell back.
Embeddings are computed as the environment asks (GUM_EMBEDDING_PRECISION for the texts, float32 unless set;
GUM_QUERY_PRECISION for the queries, int8 unless set), so e.g. `GUM_QUERY_PRECISION=float32 python
bench/retrieval_quality.py` measures what int8 queries change.
Needs the MiniLM model (`gum-mcp models install`). tests/test_retrieval.py runs the tuning-set evaluation.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gum_mcp.domain import BatchResult, NewProposition, PropositionDraft, utcnow
from gum_mcp.retrieval import search
from gum_mcp.store.search import STOP_WORDS, fts_query

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
FIXTURE = FIXTURES / "retrieval_quality.json"
HELDOUT = FIXTURES / "retrieval_heldout.json"
METHODS = ("bm25", "vector", "rrf", "hybrid")
METRICS = ("recall@5", "recall@10", "hit@5", "mrr@10")
QUERY_TAGS = ("fact", "preference-task", "time-bound", "no-shared-word")


def load_fixture(path: Path = FIXTURE) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def people(fixture: dict) -> list[str | None]:
    """The user models of a set: its people (one store each), or [None] for a one-person set."""
    return [p["key"] for p in fixture.get("people", [])] or [None]


def subset(fixture: dict, person: str | None) -> dict:
    """The propositions and queries of one person (all of them for a one-person set)."""
    if person is None:
        return fixture
    return {"propositions": [p for p in fixture["propositions"] if p.get("person") == person],
            "queries": [q for q in fixture["queries"] if q.get("person") == person]}


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


def shares_a_stem(query: str, texts: Iterable[str]) -> bool:
    """Would FTS5 (porter stems, stop-words dropped, as retrieval searches) match any of `texts`?"""
    match = fts_query(query)
    if match is None:
        return False
    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE VIRTUAL TABLE t USING fts5(text, tokenize = 'porter unicode61 remove_diacritics 2')")
        db.executemany("INSERT INTO t(text) VALUES (?)", [(t,) for t in texts])
        return db.execute("SELECT count(*) FROM t WHERE t MATCH ?", (match,)).fetchone()[0] > 0
    finally:
        db.close()


def properties(fixture: dict) -> dict:
    """What a labelled set is made of, and any broken invariant (`problems`): unknown or cross-person gold
    keys, duplicate keys or queries, and a no-shared-word tag that disagrees with the texts."""
    props = fixture["propositions"]
    by_key = {p["key"]: p for p in props}
    problems = []
    if len(by_key) != len(props):
        problems.append("duplicate proposition keys")
    seen: set[tuple[str | None, str]] = set()
    no_stem = no_word = 0
    gold: set[str] = set()
    for q in fixture["queries"]:
        ident = (q.get("person"), q["query"])
        if ident in seen:
            problems.append(f"duplicate query {q['query']!r}")
        seen.add(ident)
        missing = [k for k in q["relevant"] if k not in by_key]
        if missing or not q["relevant"]:
            problems.append(f"query {q['query']!r}: unknown gold {missing}")
            continue
        if any(by_key[k].get("person") != q.get("person") for k in q["relevant"]):
            problems.append(f"query {q['query']!r}: gold of another person")
        gold.update(q["relevant"])
        texts = [by_key[k]["text"] for k in q["relevant"]]
        shares = shares_a_stem(q["query"], texts)
        no_stem += not shares
        no_word += not (_words(q["query"]) & set().union(*(_words(t) for t in texts)))
        tagged = "no-shared-word" in q.get("tags", ())
        if "tags" in q and tagged == shares:
            problems.append(f"query {q['query']!r}: no-shared-word tag is {tagged}, texts say {not shares}")
    queries = fixture["queries"]
    sources: dict[str, int] = {}
    for p in props:
        sources[p.get("source", "hand-written")] = sources.get(p.get("source", "hand-written"), 0) + 1
    return {
        "people": len(people(fixture)) if fixture.get("people") else 1,
        "propositions": len(props),
        "propositions_by_source": sources,
        "gold_propositions": len(gold),
        "queries": len(queries),
        "queries_by_tag": {t: sum(t in q.get("tags", ()) for q in queries) for t in QUERY_TAGS},
        "gold_per_query": sum(len(q["relevant"]) for q in queries) / max(len(queries), 1),
        "share_no_shared_word": no_word / max(len(queries), 1),
        "share_no_shared_stem": no_stem / max(len(queries), 1),
        "mean_word_overlap": sum(word_overlap(fixture)) / max(len(queries), 1),
        "problems": problems,
    }


@dataclass
class Scores:
    recall_at_5: float = 0.0
    recall_at_10: float = 0.0
    hit_at_5: float = 0.0
    mrr: float = 0.0
    per_query: list[dict[str, float]] = field(default_factory=list)  # one row of METRICS per query

    @classmethod
    def of(cls, rows: list[dict[str, float]]) -> Scores:
        n = max(len(rows), 1)
        mean = {m: sum(r[m] for r in rows) / n for m in METRICS}
        return cls(mean["recall@5"], mean["recall@10"], mean["hit@5"], mean["mrr@10"], rows)

    def as_dict(self) -> dict[str, float]:
        return {"recall@5": self.recall_at_5, "recall@10": self.recall_at_10, "hit@5": self.hit_at_5,
                "mrr@10": self.mrr}

    @property
    def per_query_recall(self) -> list[float]:
        return [r["recall@5"] for r in self.per_query]


def judge(relevant: set[str], top5: list[str], top10: list[str]) -> dict[str, float]:
    rank = next((n for n, key in enumerate(top10, start=1) if key in relevant), None)
    return {"recall@5": len(relevant & set(top5)) / len(relevant),
            "recall@10": len(relevant & set(top10)) / len(relevant),
            "hit@5": float(bool(relevant & set(top5))),
            "mrr@10": 1.0 / rank if rank else 0.0}


def evaluate(store, index, fixture: dict, keys: dict[int, str], now: datetime,
             methods: tuple[str, ...] = METHODS, **options) -> dict[str, Scores]:
    """Each method's scores over the fixture's queries, against one populated store."""
    results = {}
    texts = [q["query"] for q in fixture["queries"]]
    # each query embedded once, as a search embeds it (`embed_query`: in GUM_QUERY_PRECISION), for every method
    vectors = [index.embed_query(t) for t in texts] if index is not None else [None] * len(texts)
    for method in methods:
        rows = []
        for q, vector in zip(fixture["queries"], vectors, strict=True):
            top = {k: [keys[h.id] for h in search(store, index, q["query"], k, method=method, now=now,
                                                   query_vector=vector, **options)] for k in (5, 10)}
            rows.append(judge(set(q["relevant"]), top[5], top[10]))
        results[method] = Scores.of(rows)
    return results


def evaluate_deep(store, index, fixture: dict, keys: dict[int, str], now: datetime,
                  provider_settings) -> tuple[Scores, int]:
    """The deep mode over the fixture's queries: the hybrid's pool for k=10 reranked by the provider these
    settings configure (accounted in `store`), one call per query (the model's order does not depend on k:
    the top 5 are the first 5). Also how many calls fell back to the fast ranking."""
    import anyio

    from gum_mcp.llm.factory import build_provider
    from gum_mcp.retrieval.deep import pool_size, rerank

    texts = [q["query"] for q in fixture["queries"]]
    vectors = [index.embed_query(t) for t in texts]
    rows, fallbacks = [], 0

    async def run() -> None:
        nonlocal fallbacks
        async with build_provider(provider_settings, store) as provider:
            for q, vector in zip(fixture["queries"], vectors, strict=True):
                pool = search(store, index, q["query"], pool_size(10), now=now, query_vector=vector)
                result = await rerank(provider, q["query"], pool, 10)
                fallbacks += not result.reranked
                top = [keys[h.id] for h in result.hits]
                rows.append(judge(set(q["relevant"]), top[:5], top[:10]))

    anyio.run(run)
    return Scores.of(rows), fallbacks


def run_set(fixture: dict, settings_for, embedder, now: datetime, variants: dict[str, dict],
            provider_settings=None) -> dict[str, Scores]:
    """Every variant (name -> search options, "method" among them) over a whole set, one store per person;
    per-query rows in the fixture's query order, scores averaged over all queries. With `provider_settings`,
    also "deep" (its provider accounts into each person's store)."""
    from gum_mcp.index.vector_index import VectorIndex
    from gum_mcp.store import Store

    names = [*variants, "deep"] if provider_settings is not None else list(variants)
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    order: list[tuple[str | None, str]] = []
    for n, person in enumerate(people(fixture)):
        part = subset(fixture, person)
        settings = settings_for(n)
        with Store.open(settings) as store, VectorIndex.open(settings, embedder) as index:
            keys = populate(store, part, now)
            index.catch_up(store)
            for name, options in variants.items():
                options = dict(options)
                method = options.pop("method", "hybrid")
                rows[name] += evaluate(store, index, part, keys, now, (method,), **options)[method].per_query
            if provider_settings is not None:
                scores, fallbacks = evaluate_deep(store, index, part, keys, now, provider_settings)
                rows["deep"] += scores.per_query
                DEEP_FALLBACKS[0] += fallbacks
        order += [(person, q["query"]) for q in part["queries"]]
    # back to the fixture's order, so per-query rows line up with fixture["queries"]
    position = {ident: n for n, ident in enumerate(order)}
    wanted = [position[(q.get("person"), q["query"])] for q in fixture["queries"]]
    return {name: Scores.of([r[i] for i in wanted]) for name, r in rows.items()}


VARIANTS: dict[str, dict] = {m: {"method": m} for m in METHODS} | {"hybrid, no dedup": {"diversify": False}}
DEEP_FALLBACKS = [0]  # deep-mode calls that fell back to the fast ranking (provider errors), over a run


def by_tag(fixture: dict, scores: Scores, metric: str = "hit@5") -> dict[str, float]:
    out = {}
    for tag in QUERY_TAGS:
        picked = [row[metric] for q, row in zip(fixture["queries"], scores.per_query, strict=True)
                  if tag in q.get("tags", ())]
        if picked:
            out[tag] = sum(picked) / len(picked)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--check", action="store_true", help="only print the sets' properties and invariants")
    parser.add_argument("--tags", action="store_true", help="also hit@5 per tag on the held-out set")
    parser.add_argument("--no-deep", action="store_true", help="skip the deep mode even with a provider configured")
    args = parser.parse_args(argv)

    sets = {"tuning": load_fixture(FIXTURE), "held-out": load_fixture(HELDOUT)}
    props = {name: properties(fixture) for name, fixture in sets.items()}
    if args.check:
        print(json.dumps(props, indent=2, ensure_ascii=False))
        return 1 if any(p["problems"] for p in props.values()) else 0

    from gum_mcp.config import load_settings
    from gum_mcp.index.embeddings import make_embedder
    from gum_mcp.llm.factory import not_configured_reason

    environment = load_settings()
    deep = not args.no_deep and not_configured_reason(environment) is None
    with tempfile.TemporaryDirectory(prefix="gum-quality-") as tmp:
        models_dir = environment.models_dir

        def settings_for(n: int, name: str = "set"):
            data = Path(tmp) / f"{name}-{n}"
            # plaintext: quality does not depend on it, and no key is left in the config folder per temp store
            return load_settings(env={}, cwd=Path(tmp), data_dir=data, models_dir=models_dir, encrypt=False,
                                 embedding_precision=environment.embedding_precision,
                                 query_precision=environment.query_precision)

        embedder, reason = make_embedder(settings_for(0, "probe"))
        if embedder is None:
            print(f"needs the embedding model: {reason}", file=sys.stderr)
            return 1
        now = utcnow()
        if deep:
            print(f"deep mode: reranking with {environment.llm_provider} {environment.model or '(default model)'}, "
                  f"one call per query", file=sys.stderr)
        provider_settings = environment.model_copy(update={"data_dir": Path(tmp) / "deep"}) if deep else None
        results = {name: run_set(fixture, lambda n, name=name: settings_for(n, name), embedder, now, VARIANTS,
                                 provider_settings)
                   for name, fixture in sets.items()}
    variants = list(results["tuning"])
    figures = {
        name: {"properties": {k: v for k, v in props[name].items() if k != "problems"},
               "methods": {v: s.as_dict() for v, s in results[name].items()},
               "hit@5_by_tag": {v: by_tag(sets[name], s) for v, s in results[name].items()}}
        for name in sets
    }
    if deep:
        figures["deep_fallbacks"] = DEEP_FALLBACKS[0]
    if args.json:
        print(json.dumps(figures, indent=2, ensure_ascii=False))
        return 0
    heads = []
    for name in sets:
        p = props[name]
        heads.append(f"{name}: {p['queries']} queries, {p['propositions']} propositions, "
                     f"{p['share_no_shared_stem']:.0%} share no word")
    print("   |   ".join(heads))
    cols = "".join(f"{m:>10}" for m in METRICS)
    print(f"{'':<16}{cols}   |{cols}")
    for variant in variants:
        cells = "   |".join("".join(f"{results[name][variant].as_dict()[m]:>10.3f}" for m in METRICS)
                            for name in sets)
        print(f"{variant:<16}{cells}")
    if args.tags:
        tags = [t for t in QUERY_TAGS if props["held-out"]["queries_by_tag"].get(t)]
        print(f"\nheld-out hit@5 by tag\n{'':<16}" + "".join(f"{t:>17}" for t in tags))
        for variant in variants:
            row = by_tag(sets["held-out"], results["held-out"][variant])
            print(f"{variant:<16}" + "".join(f"{row[t]:>17.3f}" for t in tags))
    if deep:
        print(f"deep: {DEEP_FALLBACKS[0]} calls fell back to the fast ranking")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

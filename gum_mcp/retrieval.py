"""Hybrid retrieval: FTS5 BM25 + Chroma vectors, score-aware fusion, decay half-life, confidence, MMR.

search(store, index, query, k, since, until, min_confidence, over) -> list[Hit]

1. Candidates, per collection (propositions: current ones only; observations: those with content):
   BM25 top-n from FTS5 (user text sanitised in `gum_mcp.store.search`) and vector top-n from Chroma,
   n = max(40, 8k); the FTS5 query runs in a worker thread while the query is embedded and Chroma
   searched. BM25 candidates the vector top-n missed get their exact cosine from their stored
   embedding; vector candidates outside the BM25 top-n count as bm25 0. Filters are exact (SQLite, on
   live values); the vector side is restricted to the allowed ids when the filter is selective, else
   over-fetched and post-filtered.
2. Relevance in [0, 1] (score-aware fusion, `_fuse`); both signals on absolute scales:
       v = clip((cosine - SIM_FLOOR) / (SIM_CEIL - SIM_FLOOR), 0, 1)
           SIM_FLOOR 0.1 is about the median cosine of a query and an unrelated proposition (MiniLM),
           SIM_CEIL 0.6 about the upper quartile for a relevant one (measured on the labelled set);
       b = min(1, bm25 / ideal),  ideal = (number of query words) * ln((N - 0.5) / 1.5)
           the share of the score a document matching every query word, each as rare as a word can be
           in N documents, would get: one common word of a long question is weak, the one rare name
           asked for is strong;
       relevance = (max(v, b) + AGREEMENT * min(v, b)) / (1 + AGREEMENT)
   A signal that found nothing useful contributes ~0 and cannot drag the other down, whereas plain
   reciprocal rank fusion gives the top of a junk list as much weight as the top of a good one and
   measures worse than its better half (bench/retrieval_quality.py); when both agree, the item rises.
3. Weights (multiplied in; age counted from last_supported_at, observations from observed_at):
       half_life_days(decay) = HALF_LIFE_BASE_DAYS * 2 ** (decay - 1)
           decay 1 -> 1 day (a passing state: "is tired today"), 4 -> 8 days (this week's task),
           7 -> 64 days (a project), 10 -> 512 days (identity: "is vegetarian"). Each step doubles,
           so decay 10 = long-lasting = fades slowest;
       recency    = RECENCY_FLOOR + (1 - RECENCY_FLOOR) * 2 ** (-age_days / half_life_days)
       confidence = CONFIDENCE_FLOOR + (1 - CONFIDENCE_FLOOR) * confidence / 10
       score      = relevance * recency * confidence
   The floors keep an old but exactly relevant proposition findable. Observations count as decay
   OBSERVATION_DECAY and confidence OBSERVATION_CONFIDENCE (raw evidence, not yet a belief).
4. MMR over the best candidates with the stored embeddings: pick argmax of
   MMR_LAMBDA * score / best_score - (1 - MMR_LAMBDA) * max cosine to what is already picked;
   a near-duplicate (cosine >= DUPLICATE_SIMILARITY to a pick: a paraphrase of the same fact) comes
   only after every distinct candidate. Skipped without embeddings.
5. Empty query (no words): the current propositions with the highest recency x confidence
   (exact, in SQL), diversified the same way; observations: the most recent.

Without an embedder or index, retrieval is BM25 only (a warning is logged once; `Retriever.status()`
says why). Everything here blocks; `Retriever` has async wrappers that run it in worker threads.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import anyio.to_thread
import numpy as np

from gum_mcp.domain import (
    HALF_LIFE_BASE_DAYS,
    InvalidInput,
    Observation,
    Proposition,
    half_life_days,
    parse_when,
    to_ts,
    utcnow,
)
from gum_mcp.store.search import query_terms

if TYPE_CHECKING:
    from gum_mcp.config import Settings
    from gum_mcp.index.vector_index import VectorHit, VectorIndex
    from gum_mcp.store import Store

log = logging.getLogger("gum_mcp.retrieval")

Over = Literal["propositions", "observations", "both"]
Method = Literal["hybrid", "bm25", "vector", "rrf"]
Kind = Literal["proposition", "observation"]

# -- recency and confidence
RECENCY_FLOOR = 0.4
CONFIDENCE_FLOOR = 0.5
OBSERVATION_DECAY = 4
OBSERVATION_CONFIDENCE = 5

# -- fusion
SIM_FLOOR = 0.1
SIM_CEIL = 0.6
AGREEMENT = 0.5
RRF_K = 60

# -- candidates and diversity
MIN_CANDIDATES = 40
CANDIDATES_PER_HIT = 8
IDS_FILTER_MAX = 2000  # a filter this selective restricts the vector search to its ids
MAX_OVERFETCH = 1000
MMR_LAMBDA = 0.7
DUPLICATE_SIMILARITY = 0.9  # paraphrases of one fact score 0.85-0.99 with MiniLM, distinct facts < 0.8
MMR_POOL_PER_HIT = 4
MAX_K = 100

_DAY = 86400.0


def recency_weight(decay: int, age_days: float) -> float:
    fresh = 2.0 ** (-max(0.0, age_days) / half_life_days(decay))
    return RECENCY_FLOOR + (1.0 - RECENCY_FLOOR) * fresh


def confidence_weight(confidence: int) -> float:
    return CONFIDENCE_FLOOR + (1.0 - CONFIDENCE_FLOOR) * int(confidence) / 10.0


@dataclass(frozen=True)
class Hit:
    """One search result: a current proposition or an observation, with how it was found."""

    kind: Kind
    id: int
    score: float  # relevance x recency x confidence (hits come in MMR order, so not always descending)
    relevance: float  # 0..1, from the signals
    recency: float  # weight, RECENCY_FLOOR..1
    confidence: float  # weight, CONFIDENCE_FLOOR..1
    signals: tuple[str, ...]  # which of "bm25" and "vector" matched (empty for the empty query)
    bm25: float | None = None  # raw bm25 score (higher is better) when the text matched
    similarity: float | None = None  # cosine similarity of the embeddings, when known
    proposition: Proposition | None = None
    observation: Observation | None = None

    @property
    def text(self) -> str:
        if self.proposition is not None:
            return self.proposition.text or ""
        return (self.observation.content if self.observation is not None else None) or ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hit:
        """The scores and signals of `as_dict()` (its record fields are left to the reader's own store)."""
        return cls(
            kind=data["kind"], id=int(data["id"]), score=float(data["score"]), relevance=float(data["relevance"]),
            recency=float(data["recency"]), confidence=float(data["confidence_weight"]),
            signals=tuple(data["signals"]), bm25=data.get("bm25"), similarity=data.get("similarity"),
        )

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "id": self.id,
            "text": self.text,
            "score": round(self.score, 6),
            "relevance": round(self.relevance, 6),
            "recency": round(self.recency, 6),
            "confidence_weight": round(self.confidence, 6),
            "signals": list(self.signals),
            "bm25": None if self.bm25 is None else round(self.bm25, 6),
            "similarity": None if self.similarity is None else round(self.similarity, 6),
        }
        if self.proposition is not None:
            p = self.proposition
            data.update(
                confidence=p.confidence, decay=p.decay, created_at=p.created_at.isoformat(),
                last_supported_at=p.last_supported_at.isoformat(), support_count=p.support_count,
            )
        if self.observation is not None:
            o = self.observation
            data.update(observed_at=o.observed_at.isoformat(), source=o.source, observation_kind=o.kind)
        return data


@dataclass
class _Candidate:
    kind: Kind
    id: int
    bm25: float = 0.0
    bm25_rank: int | None = None
    similarity: float | None = None
    vector_rank: int | None = None
    embedding: np.ndarray | None = None
    item: Proposition | Observation | None = None
    relevance: float = 0.0
    recency: float = 1.0
    confidence: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return self.relevance * self.recency * self.confidence


_KIND: dict[str, Kind] = {"propositions": "proposition", "observations": "observation"}
_warned_bm25_only = False
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """A small pool, created on first use (never at import), for the BM25 side of a hybrid search."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gum-retrieval")
        return _pool


def _warn_bm25_only(reason: str) -> None:
    global _warned_bm25_only
    if not _warned_bm25_only:
        _warned_bm25_only = True
        log.warning("vector search is unavailable (%s): retrieval uses BM25 only", reason)


def search(
    store: Store,
    index: VectorIndex | None,
    query: str | None,
    k: int = 5,
    since: datetime | None = None,
    until: datetime | None = None,
    min_confidence: int | None = None,
    over: Over = "propositions",
    *,
    method: Method = "hybrid",
    diversify: bool = True,
    now: datetime | None = None,
    query_vector: np.ndarray | None = None,
) -> list[Hit]:
    """The k best hits for `query` (see the module docstring). Blocking.

    `method` picks the signals: "hybrid" (default), "bm25", "vector", or "rrf" (plain reciprocal rank
    fusion, kept for comparison). With `index` None, every method but "vector" falls back to BM25.
    `query_vector`: the query's embedding when the caller has it already (e.g. embedded in a batch).
    """
    if not 1 <= k <= MAX_K:
        raise InvalidInput(f"k: must be between 1 and {MAX_K}")
    if over not in ("propositions", "observations", "both"):
        raise InvalidInput("over: must be 'propositions', 'observations' or 'both'")
    if method not in ("hybrid", "bm25", "vector", "rrf"):
        raise InvalidInput("method: must be 'hybrid', 'bm25', 'vector' or 'rrf'")
    if min_confidence is not None and not 1 <= min_confidence <= 10:
        raise InvalidInput("min_confidence: must be between 1 and 10")
    if since is not None and until is not None and since >= until:
        raise InvalidInput("since must be before until")
    now = now or utcnow()
    collections = ("propositions", "observations") if over == "both" else (over,)
    if index is None and method != "bm25":
        _warn_bm25_only("no vector index")
    usable = [c for c in collections if index is not None and index.available(c)] if method != "bm25" else []
    text = (query or "").strip()
    empty = not query_terms(text, drop_stop_words=False)
    n = max(MIN_CANDIDATES, CANDIDATES_PER_HIT * k)

    candidates: list[_Candidate] = []
    if empty:
        for collection in collections:
            candidates += _recent(store, collection, n, since, until, min_confidence, now)
        for cand in candidates:
            cand.relevance = 1.0
    else:
        # BM25 (SQLite releases the GIL) runs in a worker while the query is embedded and Chroma searched.
        parallel = index is not None and bool(usable) and method != "vector"
        bm25_jobs: dict[str, Any] = {}
        for collection in collections:
            if method != "vector":
                job = functools.partial(_text_search, store, collection, text, n, since, until, min_confidence)
                bm25_jobs[collection] = _executor().submit(job) if parallel else job
        vector = None
        vector_hits: dict[str, list[VectorHit]] = {}
        try:
            if index is not None and usable:
                vector = index.embed_query(text) if query_vector is None else np.asarray(query_vector, np.float32)
            if vector is not None and method != "bm25":
                for c in usable:
                    vector_hits[c] = _vector_search(store, index, c, vector, n, since, until, min_confidence)
        except Exception as exc:  # a Chroma server down, an embedding API error: answer with BM25 now
            log.warning("vector search failed (%s: %s); answering with BM25 only", type(exc).__name__, exc)
            vector, vector_hits, usable = None, {}, []
        for collection in collections:
            # A collection without vectors is searched with BM25 alone, scaled as BM25-only retrieval.
            effective = method if (collection in usable or method == "vector") else "bm25"
            job = bm25_jobs.get(collection)
            bm25_hits = (job.result() if hasattr(job, "result") else job()) if job is not None else []
            found = _gather(store, index if collection in usable else None, collection, bm25_hits,
                            vector_hits.get(collection, []), vector, n, since, until, min_confidence, effective)
            ideal = _ideal_bm25(store, collection, text) if effective == "hybrid" else 1.0
            _fuse(found, effective, ideal)
            candidates += found
        for cand in candidates:
            _weigh(cand, now)
    candidates = [c for c in candidates if c.relevance > 0]
    candidates.sort(key=lambda c: (-c.score, c.kind, -c.id))
    pool = candidates[: max(k * MMR_POOL_PER_HIT, 20)]
    if diversify and index is not None and usable:
        try:
            _fill_embeddings(index, pool, usable)
        except Exception as exc:  # diversity is a nicety: never fail a search for it
            log.warning("could not read embeddings for MMR (%s: %s)", type(exc).__name__, exc)
        chosen = mmr(pool, k)
    else:
        chosen = pool[:k]
    return [_hit(c) for c in chosen]


# -- candidates


def _text_search(
    store: Store, collection: str, text: str, n: int, since: datetime | None, until: datetime | None,
    min_confidence: int | None,
) -> list[tuple[int, float]]:
    if collection == "propositions":
        return store.search_propositions_text(text, limit=n, since=since, until=until, min_confidence=min_confidence)
    return store.search_observations_text(text, limit=n, since=since, until=until)


def _vector_search(
    store: Store, index: VectorIndex, collection: str, vector: np.ndarray, n: int,
    since: datetime | None, until: datetime | None, min_confidence: int | None,
) -> list[VectorHit]:
    """Vector top-n among the items passing the filters: restricted to their ids when the filter is
    selective, else over-fetched (the filters are applied exactly on hydration)."""
    props = collection == "propositions"
    filtered = since is not None or until is not None or (props and min_confidence is not None)
    ids: list[int] | None = None
    fetch = n
    if filtered:
        if props:
            allowed = store.count_current_propositions(since=since, until=until, min_confidence=min_confidence)
        else:
            allowed = store.count_observations_with_content(since=since, until=until)
        if allowed == 0:
            return []
        if allowed <= IDS_FILTER_MAX:
            if props:
                ids = store.current_proposition_ids(since=since, until=until, min_confidence=min_confidence,
                                                    limit=IDS_FILTER_MAX)
            else:
                ids = store.observation_ids_with_content(since=since, until=until, limit=IDS_FILTER_MAX)
        else:
            total = max(index.count(collection), 1)  # type: ignore[arg-type]
            fetch = min(MAX_OVERFETCH, math.ceil(n * 1.2 * total / allowed))
    return index.query(collection, vector, fetch, ids=ids, include_embeddings=True)  # type: ignore[arg-type]


def _gather(
    store: Store,
    index: VectorIndex | None,
    collection: str,
    bm25_hits: list[tuple[int, float]],
    vector_hits: list[VectorHit],
    vector: np.ndarray | None,
    n: int,
    since: datetime | None,
    until: datetime | None,
    min_confidence: int | None,
    method: Method,
) -> list[_Candidate]:
    kind = _KIND[collection]
    props = collection == "propositions"
    cands: dict[int, _Candidate] = {}
    for rank, (item_id, score) in enumerate(bm25_hits):
        cands[item_id] = _Candidate(kind, item_id, bm25=score, bm25_rank=rank)
    for rank, hit in enumerate(vector_hits):
        cand = cands.get(hit.id)
        if cand is None:
            cand = cands[hit.id] = _Candidate(kind, hit.id)
        cand.similarity = hit.similarity
        cand.vector_rank = rank
        cand.embedding = hit.embedding
    if index is not None and vector is not None and method != "vector":
        # BM25 candidates the vector top-n missed: exact cosine from their stored embeddings. (Vector
        # candidates outside the BM25 top-n keep bm25 0: at best a weak lexical match, and scoring them
        # would cost a second FTS5 pass.)
        lacking = [c.id for c in cands.values() if c.similarity is None]
        if lacking:
            stored = index.embeddings(collection, lacking)  # type: ignore[arg-type]
            for item_id, emb in stored.items():
                cands[item_id].embedding = emb
                cands[item_id].similarity = float(np.dot(emb, vector))

    # Hydrate from SQLite: the truth. Drops what the index still has but the store no longer does,
    # and applies the filters to live values (the vector side may have been over-fetched).
    if props:
        items = store.get_propositions(list(cands))
        keep: dict[int, _Candidate] = {}
        for item_id, cand in cands.items():
            item = items.get(item_id)
            if item is None or item.retired_at is not None or item.text is None:
                continue
            if (since is not None and item.last_supported_at < since) or (
                until is not None and item.last_supported_at >= until
            ):
                continue
            if min_confidence is not None and item.confidence < min_confidence:
                continue
            cand.item = item
            keep[item_id] = cand
    else:
        items_o = store.get_observations(list(cands))
        keep = {}
        for item_id, cand in cands.items():
            obs = items_o.get(item_id)
            if obs is None or obs.content is None:
                continue
            if (since is not None and obs.observed_at < since) or (until is not None and obs.observed_at >= until):
                continue
            cand.item = obs
            keep[item_id] = cand
    found = list(keep.values())
    # Ranks after filtering, for RRF.
    for attr in ("bm25_rank", "vector_rank"):
        ranked = sorted((c for c in found if getattr(c, attr) is not None), key=lambda c: getattr(c, attr))
        for rank, cand in enumerate(ranked):
            setattr(cand, attr, rank)
    return found


def _recent(
    store: Store, collection: str, n: int, since: datetime | None, until: datetime | None,
    min_confidence: int | None, now: datetime,
) -> list[_Candidate]:
    if collection == "propositions":
        ranked = store.recent_propositions(
            now=now, limit=n, half_life_base_days=HALF_LIFE_BASE_DAYS, recency_floor=RECENCY_FLOOR,
            confidence_floor=CONFIDENCE_FLOOR, since=since, until=until, min_confidence=min_confidence,
        )
        items = store.get_propositions([item_id for item_id, _ in ranked])
        cands = []
        for item_id, _weight in ranked:
            item = items.get(item_id)
            if item is not None:
                cand = _Candidate("proposition", item_id, item=item)
                _weigh(cand, now)
                cands.append(cand)
        return cands
    ids = store.observation_ids_with_content(since=since, until=until, limit=n)
    observations = store.get_observations(ids)
    cands = []
    for item_id in ids:
        obs = observations.get(item_id)
        if obs is not None and obs.content is not None:
            cand = _Candidate("observation", item_id, item=obs)
            _weigh(cand, now)
            cands.append(cand)
    return cands


def _weigh(cand: _Candidate, now: datetime) -> None:
    item = cand.item
    if isinstance(item, Proposition):
        age = (to_ts(now) - to_ts(item.last_supported_at)) / _DAY
        cand.recency = recency_weight(item.decay, age)
        cand.confidence = confidence_weight(item.confidence)
    elif isinstance(item, Observation):
        age = (to_ts(now) - to_ts(item.observed_at)) / _DAY
        cand.recency = recency_weight(OBSERVATION_DECAY, age)
        cand.confidence = confidence_weight(OBSERVATION_CONFIDENCE)


# -- fusion


def vector_relevance(similarity: float | None) -> float:
    if similarity is None:
        return 0.0
    return min(1.0, max(0.0, (similarity - SIM_FLOOR) / (SIM_CEIL - SIM_FLOOR)))


def _ideal_bm25(store: Store, collection: str, text: str) -> float:
    """About the bm25 score of a document matching every query word once, each word as rare as can be
    (FTS5's idf for a word in one of N documents is ln((N - 0.5) / 1.5))."""
    terms = len(query_terms(text))
    size = store.text_index_size(collection)
    return max(1, terms) * max(1.0, math.log(max(size - 0.5, 1.0) / 1.5))


def bm25_relevance(score: float, ideal: float) -> float:
    """The share of the best score a document could get for this query, 0..1: matching one common word
    of a long question is weak; matching the one rare name asked for is strong."""
    return min(1.0, score / ideal) if score > 0 else 0.0


def _fuse(cands: list[_Candidate], method: Method, ideal: float = 1.0) -> None:
    """Set each candidate's relevance (0..1) from its signals."""
    if not cands:
        return
    if method == "bm25":
        best = max(c.bm25 for c in cands) or 1.0
        for c in cands:
            c.relevance = c.bm25 / best if c.bm25_rank is not None else 0.0
    elif method == "vector":
        for c in cands:
            c.relevance = max(0.0, c.similarity) if c.vector_rank is not None and c.similarity is not None else 0.0
    elif method == "rrf":
        scores = {
            id(c): (1.0 / (RRF_K + c.bm25_rank + 1) if c.bm25_rank is not None else 0.0)
            + (1.0 / (RRF_K + c.vector_rank + 1) if c.vector_rank is not None else 0.0)
            for c in cands
        }
        best = max(scores.values()) or 1.0
        for c in cands:
            c.relevance = scores[id(c)] / best
    else:
        for c in cands:
            v = vector_relevance(c.similarity)
            b = bm25_relevance(c.bm25, ideal)
            c.relevance = (max(v, b) + AGREEMENT * min(v, b)) / (1.0 + AGREEMENT)


# -- diversity


def _fill_embeddings(index: VectorIndex, pool: list[_Candidate], usable: Sequence[str]) -> None:
    for collection in usable:
        kind = _KIND[collection]
        lacking = [c.id for c in pool if c.kind == kind and c.embedding is None]
        if lacking:
            stored = index.embeddings(collection, lacking)  # type: ignore[arg-type]
            for cand in pool:
                if cand.kind == kind and cand.id in stored:
                    cand.embedding = stored[cand.id]


def mmr(pool: list[_Candidate], k: int, *, lam: float | None = None) -> list[_Candidate]:
    """Maximal marginal relevance over `pool` (sorted best first). A candidate at DUPLICATE_SIMILARITY or
    more to one already chosen is a near-duplicate: it comes only after every distinct candidate. Items
    without an embedding are taken as unlike everything."""
    if not pool:
        return []
    lam = MMR_LAMBDA if lam is None else lam
    best = max(c.score for c in pool) or 1.0
    chosen: list[_Candidate] = []
    chosen_vectors: list[np.ndarray] = []
    remaining = list(pool)
    while remaining and len(chosen) < k:
        if chosen_vectors:
            matrix = np.stack(chosen_vectors)
        pick, pick_value = 0, -math.inf
        for n, cand in enumerate(remaining):
            redundancy = 0.0
            if chosen_vectors and cand.embedding is not None:
                redundancy = float(np.max(matrix @ cand.embedding))
            value = lam * cand.score / best - (1.0 - lam) * redundancy
            if redundancy >= DUPLICATE_SIMILARITY:
                value -= 2.0  # below any distinct candidate (values of those lie in [-1, 1])
            if value > pick_value:
                pick, pick_value = n, value
        cand = remaining.pop(pick)
        chosen.append(cand)
        if cand.embedding is not None:
            chosen_vectors.append(cand.embedding)
    return chosen


def _hit(cand: _Candidate) -> Hit:
    signals = []
    if cand.bm25 > 0:
        signals.append("bm25")
    if cand.vector_rank is not None and vector_relevance(cand.similarity) > 0:
        signals.append("vector")
    item = cand.item
    return Hit(
        kind=cand.kind, id=cand.id, score=cand.score, relevance=cand.relevance, recency=cand.recency,
        confidence=cand.confidence, signals=tuple(signals), bm25=cand.bm25 if cand.bm25 > 0 else None,
        similarity=cand.similarity,
        proposition=item if isinstance(item, Proposition) else None,
        observation=item if isinstance(item, Observation) else None,
    )


# -- for the runtime, the engine and the CLI


class Retriever:
    """A store and (maybe) a vector index, with the reason when there is none. Async wrappers run the
    blocking search in a worker thread."""

    def __init__(self, store: Store, index: VectorIndex | None, reason: str | None = None) -> None:
        self.store = store
        self.index = index
        self.reason = reason if index is None else None
        if index is None:
            _warn_bm25_only(reason or "no vector index")

    def status(self) -> dict[str, Any]:
        """For `doctor` and status: which mode, and why."""
        if self.index is None:
            return {"mode": "bm25-only", "reason": self.reason or "no vector index"}
        problems = {c: self.index.problem(c) for c in ("propositions", "observations")}
        problems = {c: p for c, p in problems.items() if p}
        return {"mode": "hybrid" if not problems else "partial", "reason": "; ".join(problems.values()) or None,
                "index": self.index.status()}

    def search(self, query: str | None, k: int = 5, **options: Any) -> list[Hit]:
        return search(self.store, self.index, query, k, **options)

    async def asearch(self, query: str | None, k: int = 5, **options: Any) -> list[Hit]:
        return await anyio.to_thread.run_sync(functools.partial(self.search, query, k, **options))

    async def related(self, text: str, k: int) -> list[Proposition]:
        """The engine's RelatedFn: up to k current propositions related to `text`."""
        hits = await self.asearch(text, k, over="propositions")
        return [hit.proposition for hit in hits if hit.proposition is not None]


def _when(value: datetime | str | None, name: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return parse_when(value, name=name)


def run_query(
    settings: Settings,
    text: str | None,
    k: int = 5,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    min_confidence: int | None = None,
    over: Over = "propositions",
    *,
    catch_up: bool = False,
) -> list[Hit]:
    """`gum-mcp query`: search the user model from a terminal. since/until may be datetimes or text
    (ISO-8601 or an age like 3d). The index is opened read-only unless `catch_up` (only the process
    that owns the data directory may write it); SQLite filters whatever the index has not caught up."""
    from gum_mcp.index.vector_index import open_index
    from gum_mcp.store import Store

    since_at, until_at = _when(since, "since"), _when(until, "until")
    with Store.open(settings) as store:
        index, reason = open_index(settings, read_only=not catch_up)
        try:
            if index is not None and catch_up:
                index.catch_up(store)
            if index is None:
                _warn_bm25_only(reason or "no vector index")
            return search(store, index, text, k, since_at, until_at, min_confidence, over)
        finally:
            if index is not None:
                index.close()

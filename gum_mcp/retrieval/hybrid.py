"""The search itself (`search`): candidates, fusion, weights and diversity put together; `Retriever` wraps it.

Without an embedder or index, retrieval is BM25 only (a warning is logged once; `Retriever.status()`
says why). Everything here blocks; `Retriever` has async wrappers that run it in worker threads.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import numpy as np

from gum_mcp.domain import InvalidInput, Observation, Proposition, utcnow
from gum_mcp.retrieval.calibration import null_for
from gum_mcp.retrieval.candidates import gather, recent, text_search, vector_search
from gum_mcp.retrieval.diversity import distinct_first, fill_embeddings
from gum_mcp.retrieval.fusion import fuse, ideal_bm25
from gum_mcp.retrieval.hits import Candidate, Hit, Method, Over
from gum_mcp.retrieval.weights import CANDIDATES_PER_HIT, DIVERSITY_POOL_PER_HIT, MAX_K, MIN_CANDIDATES, weigh
from gum_mcp.store.search import query_terms

if TYPE_CHECKING:
    from gum_mcp.index.vector_index import VectorHit, VectorIndex
    from gum_mcp.store import Store

log = logging.getLogger("gum_mcp.retrieval")

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


def warn_bm25_only(reason: str) -> None:
    """Log, once per process, that vector search is unavailable and why."""
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
    notes: list[str] | None = None,
) -> list[Hit]:
    """The k best hits for `query` (see `gum_mcp.retrieval`). Blocking.

    `method` picks the signals: "hybrid" (default), "bm25", "vector", or "rrf" (plain reciprocal rank
    fusion, kept for comparison). With `index` None, every method but "vector" falls back to BM25.
    `query_vector`: the query's embedding when the caller has it already (e.g. embedded in a batch).
    `notes`: a list to which a line is appended when the answer is weaker than asked (the vector side
    failed, e.g. a Chroma server down, or a collection's vectors are still being built: the search answers
    with BM25 only and never fails for it).
    """
    _check_arguments(k, over, method, min_confidence, since, until)
    now = now or utcnow()
    collections = ("propositions", "observations") if over == "both" else (over,)
    if index is None and method != "bm25":
        warn_bm25_only("no vector index")
    usable = [c for c in collections if index is not None and index.available(c)] if method != "bm25" else []
    text = (query or "").strip()
    empty = not query_terms(text, drop_stop_words=False)
    if index is not None and notes is not None and not empty and method != "bm25":
        notes += [f"keyword search only for {c}: {index.problem(c)}" for c in collections if c not in usable]
    n = max(MIN_CANDIDATES, CANDIDATES_PER_HIT * k)

    candidates: list[Candidate] = []
    if empty:
        for collection in collections:
            candidates += recent(store, collection, n, since, until, min_confidence, now)
        for cand in candidates:
            cand.relevance = 1.0
    else:
        candidates, usable = _query_candidates(store, index, collections, usable, text, n, since, until,
                                               min_confidence, method, query_vector, now, notes)
    candidates = [c for c in candidates if c.relevance > 0]
    candidates.sort(key=lambda c: (-c.score, c.kind, -c.id))
    pool = candidates[: max(k * DIVERSITY_POOL_PER_HIT, 20)]
    if diversify and index is not None and usable:
        try:
            fill_embeddings(index, pool, usable)
        except Exception as exc:  # diversity is a nicety: never fail a search for it
            log.warning("could not read embeddings for diversity (%s: %s)", type(exc).__name__, exc)
        chosen = distinct_first(pool, k)
    else:
        chosen = pool[:k]
    return [_hit(c) for c in chosen]


def _check_arguments(
    k: int, over: str, method: str, min_confidence: int | None, since: datetime | None, until: datetime | None,
) -> None:
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


def _query_candidates(
    store: Store, index: VectorIndex | None, collections: Sequence[str], usable: list[str], text: str, n: int,
    since: datetime | None, until: datetime | None, min_confidence: int | None, method: Method,
    query_vector: np.ndarray | None, now: datetime, notes: list[str] | None = None,
) -> tuple[list[Candidate], list[str]]:
    """The fused and weighed candidates for a query with words, and the collections searched with vectors
    (none when vector search failed)."""
    # BM25 (SQLite releases the GIL) runs in a worker while the query is embedded and the index searched.
    parallel = index is not None and bool(usable) and method != "vector"
    bm25_jobs: dict[str, Any] = {}
    for collection in collections:
        if method != "vector":
            job = functools.partial(text_search, store, collection, text, n, since, until, min_confidence)
            bm25_jobs[collection] = _executor().submit(job) if parallel else job
    vector, vector_hits, usable = _vector_side(store, index, usable, text, n, since, until, min_confidence,
                                               method, query_vector, notes)
    candidates: list[Candidate] = []
    for collection in collections:
        # A collection without vectors is searched with BM25 alone, scaled as BM25-only retrieval.
        effective = method if (collection in usable or method == "vector") else "bm25"
        job = bm25_jobs.get(collection)
        bm25_hits = (job.result() if hasattr(job, "result") else job()) if job is not None else []
        found = gather(store, index if collection in usable else None, collection, bm25_hits,
                       vector_hits.get(collection, []), vector, n, since, until, min_confidence, effective)
        ideal = ideal_bm25(store, collection, text) if effective == "hybrid" else 1.0
        null = null_for(store, index, collection, vector) if (
            index is not None and vector is not None and collection in usable) else None
        fuse(found, effective, ideal, null)
        candidates += found
    for cand in candidates:
        weigh(cand, now)
    return candidates, usable


def _vector_side(
    store: Store, index: VectorIndex | None, usable: list[str], text: str, n: int, since: datetime | None,
    until: datetime | None, min_confidence: int | None, method: Method, query_vector: np.ndarray | None,
    notes: list[str] | None = None,
) -> tuple[np.ndarray | None, dict[str, list[VectorHit]], list[str]]:
    """The query's embedding and the vector top-n per usable collection; on any failure none of them."""
    vector = None
    vector_hits: dict[str, list[VectorHit]] = {}
    try:
        if index is not None and usable:
            vector = index.embed_query(text) if query_vector is None else np.asarray(query_vector, np.float32)
        if vector is not None and method != "bm25":
            for c in usable:
                vector_hits[c] = vector_search(store, index, c, vector, n, since, until, min_confidence)
    except Exception as exc:  # a Chroma server down, an embedding API error: answer with BM25 now
        log.warning("vector search failed (%s: %s); answering with BM25 only", type(exc).__name__, exc)
        if notes is not None:
            notes.append(f"keyword search only: vector search failed ({type(exc).__name__})")
        return None, {}, []
    return vector, vector_hits, usable


def _hit(cand: Candidate) -> Hit:
    signals = []
    if cand.bm25 > 0:
        signals.append("bm25")
    if cand.vector_rank is not None and cand.vector_score > 0:
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
            warn_bm25_only(reason or "no vector index")

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

"""Finding candidates: BM25 top-n from FTS5, vector top-n from the vector index, merged and read from SQLite.

BM25 candidates the vector top-n missed get their exact cosine from their stored embedding; vector
candidates outside the BM25 top-n count as bm25 0. Filters are exact (SQLite, on live values); the
vector side is restricted to the allowed ids when the filter is selective, else over-fetched and
post-filtered. The empty query takes the current propositions with the highest recency x confidence
(exact, in SQL), or the most recent observations (`recent`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from gum_mcp.domain import HALF_LIFE_BASE_DAYS
from gum_mcp.retrieval.hits import KIND, Candidate, Method
from gum_mcp.retrieval.weights import CONFIDENCE_FLOOR, IDS_FILTER_MAX, MAX_OVERFETCH, RECENCY_FLOOR, weigh

if TYPE_CHECKING:
    from gum_mcp.domain import Observation, Proposition
    from gum_mcp.index.vector_index import VectorHit, VectorIndex
    from gum_mcp.store import Store


def text_search(
    store: Store, collection: str, text: str, n: int, since: datetime | None, until: datetime | None,
    min_confidence: int | None,
) -> list[tuple[int, float]]:
    if collection == "propositions":
        return store.search_propositions_text(text, limit=n, since=since, until=until, min_confidence=min_confidence)
    return store.search_observations_text(text, limit=n, since=since, until=until)


def vector_search(
    store: Store, index: VectorIndex, collection: str, vector: np.ndarray, n: int,
    since: datetime | None, until: datetime | None, min_confidence: int | None,
) -> list[VectorHit]:
    """Vector top-n among the items passing the filters: restricted to their ids when the filter is
    selective, else over-fetched (the filters are applied exactly on hydration)."""
    return vector_search_many(store, index, collection, [vector], n, since, until, min_confidence)[0]


def vector_search_many(
    store: Store, index: VectorIndex, collection: str, vectors: Sequence[np.ndarray], n: int,
    since: datetime | None, until: datetime | None, min_confidence: int | None,
) -> list[list[VectorHit]]:
    """`vector_search` for several vectors under one filter, in one index call (one pass over the vectors
    for all of them: a batch's drafts)."""
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
            return [[] for _ in vectors]
        if allowed <= IDS_FILTER_MAX:
            if props:
                ids = store.current_proposition_ids(since=since, until=until, min_confidence=min_confidence,
                                                    limit=IDS_FILTER_MAX)
            else:
                ids = store.observation_ids_with_content(since=since, until=until, limit=IDS_FILTER_MAX)
        else:
            total = max(index.count(collection), 1)  # type: ignore[arg-type]
            fetch = min(MAX_OVERFETCH, math.ceil(n * 1.2 * total / allowed))
    return index.query_many(collection, vectors, fetch, ids=ids, include_embeddings=True)  # type: ignore[arg-type]


def gather(
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
) -> list[Candidate]:
    """Merge both sides' hits into candidates, complete their cosines, read and filter their records."""
    cands = merge(index, collection, bm25_hits, vector_hits, vector, method)
    found = _hydrate(store, collection, cands.values(), since, until, min_confidence)
    # Ranks after filtering, for RRF.
    for attr in ("bm25_rank", "vector_rank"):
        ranked = sorted((c for c in found if getattr(c, attr) is not None), key=lambda c: getattr(c, attr))
        for rank, cand in enumerate(ranked):
            setattr(cand, attr, rank)
    return found


def merge(
    index: VectorIndex | None, collection: str, bm25_hits: list[tuple[int, float]], vector_hits: list[VectorHit],
    vector: np.ndarray | None, method: Method,
) -> dict[int, Candidate]:
    """Both sides' hits as candidates by id, with their cosines completed; records not read yet."""
    kind = KIND[collection]
    cands: dict[int, Candidate] = {}
    for rank, (item_id, score) in enumerate(bm25_hits):
        cands[item_id] = Candidate(kind, item_id, bm25=score, bm25_rank=rank)
    for rank, hit in enumerate(vector_hits):
        cand = cands.get(hit.id)
        if cand is None:
            cand = cands[hit.id] = Candidate(kind, hit.id)
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
    return cands


def _hydrate(
    store: Store, collection: str, cands: Iterable[Candidate], since: datetime | None, until: datetime | None,
    min_confidence: int | None,
) -> list[Candidate]:
    """The candidates whose records are live and pass the filters, in their order, each with its record
    (`records`)."""
    cands = list(cands)
    items = records(store, collection, [c.id for c in cands], since, until, min_confidence)
    found = []
    for cand in cands:
        item = items.get(cand.id)
        if item is not None:
            cand.item = item
            found.append(cand)
    return found


def records(
    store: Store, collection: str, ids: Sequence[int], since: datetime | None, until: datetime | None,
    min_confidence: int | None,
) -> dict[int, Proposition | Observation]:
    """Read the records from SQLite: the truth. Leaves out what the index still has but the store no longer
    does, and applies the filters to live values (the vector side may have been over-fetched)."""
    keep: dict[int, Proposition | Observation] = {}
    unique = list(dict.fromkeys(ids))
    if collection == "propositions":
        for item_id, item in store.get_propositions(unique).items():
            if item.retired_at is not None or item.text is None:
                continue
            if (since is not None and item.last_supported_at < since) or (
                until is not None and item.last_supported_at >= until
            ):
                continue
            if min_confidence is not None and item.confidence < min_confidence:
                continue
            keep[item_id] = item
    else:
        for item_id, obs in store.get_observations(unique).items():
            if obs.content is None:
                continue
            if (since is not None and obs.observed_at < since) or (until is not None and obs.observed_at >= until):
                continue
            keep[item_id] = obs
    return keep


def recent(
    store: Store, collection: str, n: int, since: datetime | None, until: datetime | None,
    min_confidence: int | None, now: datetime,
) -> list[Candidate]:
    """The empty query's candidates, weighed: best recency x confidence, or the newest observations."""
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
                cand = Candidate("proposition", item_id, item=item)
                weigh(cand, now)
                cands.append(cand)
        return cands
    ids = store.observation_ids_with_content(since=since, until=until, limit=n)
    observations = store.get_observations(ids)
    cands = []
    for item_id in ids:
        obs = observations.get(item_id)
        if obs is not None and obs.content is not None:
            cand = Candidate("observation", item_id, item=obs)
            weigh(cand, now)
            cands.append(cand)
    return cands

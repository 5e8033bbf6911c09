"""Finding candidates: BM25 top-n from FTS5, vector top-n from the vector index, merged and read from SQLite.

BM25 candidates the vector top-n missed get their exact cosine from their stored embedding; vector
candidates outside the BM25 top-n count as bm25 0. Filters are exact (SQLite, on live values); the
vector side is restricted to the allowed ids when the filter is selective, else over-fetched and
post-filtered. The empty query takes the current propositions with the highest recency x confidence
(exact, in SQL), or the most recent observations (`recent`).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from gum_mcp.domain import HALF_LIFE_BASE_DAYS
from gum_mcp.retrieval.hits import KIND, Candidate, Method
from gum_mcp.retrieval.weights import CONFIDENCE_FLOOR, IDS_FILTER_MAX, MAX_OVERFETCH, RECENCY_FLOOR, weigh

if TYPE_CHECKING:
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
    found = _hydrate(store, collection, cands, since, until, min_confidence)
    # Ranks after filtering, for RRF.
    for attr in ("bm25_rank", "vector_rank"):
        ranked = sorted((c for c in found if getattr(c, attr) is not None), key=lambda c: getattr(c, attr))
        for rank, cand in enumerate(ranked):
            setattr(cand, attr, rank)
    return found


def _hydrate(
    store: Store, collection: str, cands: dict[int, Candidate], since: datetime | None, until: datetime | None,
    min_confidence: int | None,
) -> list[Candidate]:
    """Read the records from SQLite: the truth. Drops what the index still has but the store no longer
    does, and applies the filters to live values (the vector side may have been over-fetched)."""
    keep: dict[int, Candidate] = {}
    if collection == "propositions":
        items = store.get_propositions(list(cands))
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
        for item_id, cand in cands.items():
            obs = items_o.get(item_id)
            if obs is None or obs.content is None:
                continue
            if (since is not None and obs.observed_at < since) or (until is not None and obs.observed_at >= until):
                continue
            cand.item = obs
            keep[item_id] = cand
    return list(keep.values())


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

"""The search set up for deduplication (`dedup_search`): the engine's gather step, not what users see.

A draft proposition must meet every existing proposition that might say the same thing, whatever
its age or confidence and however many paraphrases of it exist. So, unlike `search`:

- no MMR: two existing paraphrases of one claim are exactly what must both be found (MMR would
  put the second after every distinct candidate, and the twins would never meet);
- no recency and no confidence weight: an old, weakly held proposition is as much a duplicate as
  a fresh one;
- current propositions only, vector and keyword: the vector top-n and the BM25 top-n (n =
  `FETCH_PER_SIDE`), merged; BM25 candidates the vector side missed get their exact cosine from their
  stored embedding (`candidates.gather`);
- ranked by `similarity + LEXICAL_WEIGHT * lexical` (cosine of the query and the proposition, plus the
  share of the best possible BM25 score, `fusion.bm25_relevance`), at most `MAX_K` (20) hits.

Each `Hit` carries the raw cosine (`similarity`, None without vectors) for the engine's
near-duplicate stage; `relevance` and `score` are the ranking value scaled to 0..1, `recency` and
`confidence` are 1 (not weighed). Without an index (or when the vector side fails) it is BM25 only
and `similarity` is None. Blocking: call it in a worker thread.

`dedup_search_many` does it for a batch's drafts, embedding them all in one call.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from gum_mcp.retrieval.candidates import gather, text_search, vector_search
from gum_mcp.retrieval.fusion import bm25_relevance, ideal_bm25
from gum_mcp.retrieval.hits import Candidate, Hit
from gum_mcp.store.search import query_terms

if TYPE_CHECKING:
    from gum_mcp.index.vector_index import VectorHit, VectorIndex
    from gum_mcp.store import Store

log = logging.getLogger("gum_mcp.retrieval")

MAX_K = 20  # candidates per draft, at most
FETCH_PER_SIDE = 40  # vector top-n and BM25 top-n merged before ranking
LEXICAL_WEIGHT = 0.25  # weight of the BM25 share next to the cosine

_COLLECTION = "propositions"


def dedup_search(store: Store, index: VectorIndex | None, text: str, k: int = MAX_K) -> list[Hit]:
    """Up to `k` (at most `MAX_K`) current propositions most like `text`, best first, unweighted."""
    return _search(store, index, (text or "").strip(), k, None)


def dedup_search_many(store: Store, index: VectorIndex | None, texts: Sequence[str], k: int = MAX_K
                      ) -> list[list[Hit]]:
    """`dedup_search` for each of `texts` (a batch's drafts), their embeddings computed in one call: one
    embedder call for the batch instead of one per draft (the length-sorted passes of `minilm` pad little)."""
    texts = [(text or "").strip() for text in texts]
    wanted = [n for n, text in enumerate(texts) if query_terms(text, drop_stop_words=False)]
    vectors: dict[int, np.ndarray] = {}
    if wanted and index is not None and index.available(_COLLECTION):
        try:
            embedded = index.embedder.embed([texts[n] for n in wanted])
            vectors = {n: embedded[row] for row, n in enumerate(wanted)}
        except Exception as exc:  # an embedding API down: keyword candidates still count
            log.warning("dedup: embedding the batch failed (%s: %s); keyword candidates only",
                        type(exc).__name__, exc)
    return [_search(store, index if n in vectors else None, text, k, vectors.get(n)) for n, text in enumerate(texts)]


def _search(store: Store, index: VectorIndex | None, text: str, k: int, vector: np.ndarray | None) -> list[Hit]:
    k = max(1, min(int(k), MAX_K))
    if not query_terms(text, drop_stop_words=False):
        return []
    n = max(FETCH_PER_SIDE, 2 * k)
    bm25_hits = text_search(store, _COLLECTION, text, n, None, None, None)
    vector, vector_hits = _vector_side(store, index, text, n, vector)
    found = gather(store, index if vector is not None else None, _COLLECTION, bm25_hits, vector_hits, vector, n,
                   None, None, None, "hybrid" if vector is not None else "bm25")
    ideal = ideal_bm25(store, _COLLECTION, text)
    ranked = sorted(((_rank_value(c, ideal), c) for c in found), key=lambda rc: (-rc[0], rc[1].id))
    return [_hit(c, value) for value, c in ranked[:k] if value > 0]


def _vector_side(store: Store, index: VectorIndex | None, text: str, n: int, vector: np.ndarray | None
                 ) -> tuple[np.ndarray | None, list[VectorHit]]:
    if index is None or not index.available(_COLLECTION):
        return None, []
    try:
        if vector is None:  # a draft is compared with propositions as a text (`embed`), as in a batch
            vector = index.embedder.embed([text])[0]
        return vector, vector_search(store, index, _COLLECTION, vector, n, None, None, None)
    except Exception as exc:  # an embedding API or Chroma server down: keyword candidates still count
        log.warning("dedup: vector search failed (%s: %s); keyword candidates only", type(exc).__name__, exc)
        return None, []


def _rank_value(cand: Candidate, ideal: float) -> float:
    similarity = max(0.0, cand.similarity) if cand.similarity is not None else 0.0
    return similarity + LEXICAL_WEIGHT * bm25_relevance(cand.bm25, ideal)


def _hit(cand: Candidate, value: float) -> Hit:
    signals = []
    if cand.bm25 > 0:
        signals.append("bm25")
    if cand.similarity is not None:
        signals.append("vector")
    relevance = min(1.0, value / (1.0 + LEXICAL_WEIGHT))
    return Hit(
        kind="proposition", id=cand.id, score=relevance, relevance=relevance, recency=1.0, confidence=1.0,
        signals=tuple(signals), bm25=cand.bm25 if cand.bm25 > 0 else None, similarity=cand.similarity,
        proposition=cand.item,  # type: ignore[arg-type]
    )

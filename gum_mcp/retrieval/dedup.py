"""The search set up for deduplication (`dedup_search`): the engine's gather step, not what users see.

A draft proposition must meet every existing proposition that might say the same thing, whatever
its age or confidence and however many paraphrases of it exist. So, unlike `search`:

- no MMR: two existing paraphrases of one claim are exactly what must both be found (MMR would
  put the second after every distinct candidate, and the twins would never meet);
- no recency and no confidence weight: an old, weakly held proposition is as much a duplicate as
  a fresh one;
- current propositions only, vector and keyword: the vector top-n and the BM25 top-n (n =
  `FETCH_PER_SIDE`), merged; BM25 candidates the vector side missed get their exact cosine from their
  stored embedding (`candidates.merge`);
- ranked by `similarity + LEXICAL_WEIGHT * lexical` (cosine of the query and the proposition, plus the
  share of the best possible BM25 score, `fusion.bm25_relevance`), at most `MAX_K` (20) hits.

Each `Hit` carries the raw cosine (`similarity`, None without vectors) for the engine's
near-duplicate stage; `relevance` and `score` are the ranking value scaled to 0..1, `recency` and
`confidence` are 1 (not weighed). Without an index (or when the vector side fails) it is BM25 only
and `similarity` is None. Blocking: call it in a worker thread.

`dedup_search_many` does it for a batch's drafts: one embedder call, one pass over the vectors, and the
records read only for the best candidates (ranking needs only the cosines and BM25 scores), all drafts'
in one query.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from gum_mcp.retrieval.candidates import merge, records, text_search, vector_search_many
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
READ_AHEAD = 4  # records read beyond those needed, per text (in case some are no longer live)

_COLLECTION = "propositions"


def dedup_search(store: Store, index: VectorIndex | None, text: str, k: int = MAX_K) -> list[Hit]:
    """Up to `k` (at most `MAX_K`) current propositions most like `text`, best first, unweighted."""
    return dedup_search_many(store, index, [text], k)[0]


def dedup_search_many(store: Store, index: VectorIndex | None, texts: Sequence[str], k: int = MAX_K
                      ) -> list[list[Hit]]:
    """`dedup_search` for each of `texts` (a batch's drafts), together: their embeddings computed in one call
    (the length-sorted passes of `minilm` pad little) while their BM25 searches run, their vector top-n in
    one pass over the index, and the records of all their best candidates read in one query."""
    k = max(1, min(int(k), MAX_K))
    n = max(FETCH_PER_SIDE, 2 * k)
    texts = [(text or "").strip() for text in texts]
    wanted = [i for i, text in enumerate(texts) if query_terms(text, drop_stop_words=False)]

    def keyword_side() -> list[list[tuple[int, float]]]:
        return [text_search(store, _COLLECTION, texts[i], n, None, None, None) for i in wanted]

    vectors = vector_hits = None
    if wanted and index is not None and index.available(_COLLECTION):
        # the keyword side runs in SQLite while the embedder runs (both release the GIL)
        with ThreadPoolExecutor(1, thread_name_prefix="gum-dedup") as pool:
            keyword = pool.submit(keyword_side)
            vectors = _vectors(index, [texts[i] for i in wanted])
            keyword_hits = keyword.result()
        if vectors is not None:
            vector_hits = _vector_hits(store, index, vectors, n)
    else:
        keyword_hits = keyword_side()
    ranked: dict[int, list[tuple[float, Candidate]]] = {}
    for row, i in enumerate(wanted):
        bm25_hits = keyword_hits[row]
        if vector_hits is not None:  # set only when the vectors were made
            cands = merge(index, _COLLECTION, bm25_hits, vector_hits[row], vectors[row], "hybrid")
        else:
            cands = merge(None, _COLLECTION, bm25_hits, [], None, "bm25")
        ideal = ideal_bm25(store, _COLLECTION, texts[i])
        ranked[i] = sorted(((value, c) for c in cands.values() if (value := _rank_value(c, ideal)) > 0),
                           key=lambda vc: (-vc[0], vc[1].id))
    best = _live_best(store, ranked, k)
    return [best.get(i, []) for i in range(len(texts))]


def _vectors(index: VectorIndex, texts: list[str]) -> np.ndarray | None:
    """The texts' embeddings in one call (a draft is compared with propositions as a text, `embed`), or
    None when the embedder failed."""
    try:
        return index.embedder.embed(texts)
    except Exception as exc:  # an embedding API down: keyword candidates still count
        log.warning("dedup: embedding the batch failed (%s: %s); keyword candidates only", type(exc).__name__, exc)
        return None


def _vector_hits(store: Store, index: VectorIndex, vectors: np.ndarray, n: int) -> list[list[VectorHit]] | None:
    """Each vector's top-n, or None when the vector side failed."""
    try:
        return vector_search_many(store, index, _COLLECTION, list(vectors), n, None, None, None)
    except Exception as exc:  # the Chroma server down: keyword candidates still count
        log.warning("dedup: vector search failed (%s: %s); keyword candidates only", type(exc).__name__, exc)
        return None


def _live_best(store: Store, ranked: dict[int, list[tuple[float, Candidate]]], k: int) -> dict[int, list[Hit]]:
    """Each text's first k ranked candidates whose records are live: the records read best first, a few
    more than k per text at a time (the index may still hold what the store has just retired), all the
    texts' in one query."""
    best: dict[int, list[Hit]] = {i: [] for i in ranked}
    taken = dict.fromkeys(ranked, 0)
    while True:
        batch: dict[int, list[tuple[float, Candidate]]] = {}
        for i, order in ranked.items():
            missing = k - len(best[i])
            if missing > 0 and taken[i] < len(order):
                batch[i] = order[taken[i] : taken[i] + missing + READ_AHEAD]
                taken[i] += len(batch[i])
        if not batch:
            return best
        live = records(store, _COLLECTION, [c.id for chunk in batch.values() for _, c in chunk], None, None, None)
        for i, chunk in batch.items():
            for value, cand in chunk:
                if cand.id in live and len(best[i]) < k:
                    cand.item = live[cand.id]
                    best[i].append(_hit(cand, value))


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

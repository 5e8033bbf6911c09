"""Relevance in [0, 1] from the BM25 and vector signals (score-aware fusion, `fuse`).

    v = clip((cosine - SIM_FLOOR) / (SIM_CEIL - SIM_FLOOR), 0, 1)
    b = min(1, bm25 / ideal),  ideal = (number of query words) * ln((N - 0.5) / 1.5)
    relevance = (max(v, b) + AGREEMENT * min(v, b)) / (1 + AGREEMENT)

"bm25", "vector" and "rrf" (plain reciprocal rank fusion, kept for comparison) are the other methods.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from gum_mcp.retrieval.hits import Candidate, Method
from gum_mcp.retrieval.weights import AGREEMENT, RRF_K, SIM_CEIL, SIM_FLOOR
from gum_mcp.store.search import query_terms

if TYPE_CHECKING:
    from gum_mcp.store import Store


def vector_relevance(similarity: float | None) -> float:
    if similarity is None:
        return 0.0
    return min(1.0, max(0.0, (similarity - SIM_FLOOR) / (SIM_CEIL - SIM_FLOOR)))


def ideal_bm25(store: Store, collection: str, text: str) -> float:
    """About the bm25 score of a document matching every query word once, each word as rare as can be
    (FTS5's idf for a word in one of N documents is ln((N - 0.5) / 1.5))."""
    terms = len(query_terms(text))
    size = store.text_index_size(collection)
    return max(1, terms) * max(1.0, math.log(max(size - 0.5, 1.0) / 1.5))


def bm25_relevance(score: float, ideal: float) -> float:
    """The share of the best score a document could get for this query, 0..1: matching one common word
    of a long question is weak; matching the one rare name asked for is strong."""
    return min(1.0, score / ideal) if score > 0 else 0.0


def fuse(cands: list[Candidate], method: Method, ideal: float = 1.0) -> None:
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

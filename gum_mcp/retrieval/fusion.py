"""Relevance in [0, 1] from the BM25 and vector signals (score-aware fusion, `fuse`).

    v = clip(z / (2 e_N), 0, 1)      z: the cosine against this query's null distribution (`calibration`)
    b = min(1, bm25 / ideal),        ideal = (number of query words) * ln((N - 0.5) / 1.5)
    lexical = b * max(b, v)
    relevance = 1 - (1 - v) * (1 - lexical)

Both signals are calibrated per query, from the query and the score distributions, with no constant fitted to
a labelled set: v says how far the cosine stands above what unrelated items score for this query; b is the
share of the best score a document could get for this query (every query word, each as rare as a word can be
in N documents), so matching one common word of a long question or task is weak evidence and matching the one
rare name asked for is strong. A keyword match counts by how believable it is: fully when it is the whole
query (b near 1: the name or id asked for) or when the meaning agrees (v), and as b squared when neither (an
incidental word of a task, "Friday" in "suggest a restaurant for Friday", in an unrelated proposition). The
two then combine as independent evidence (noisy-OR): either alone can carry an item, a signal that found
nothing contributes 0 and cannot drag the other down, and agreement raises it.

"bm25", "vector" and "rrf" (plain reciprocal rank fusion, kept for comparison) are the other methods.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from gum_mcp.retrieval.calibration import Null, raw_relevance
from gum_mcp.retrieval.hits import Candidate, Method
from gum_mcp.retrieval.weights import RRF_K
from gum_mcp.store.search import query_terms

if TYPE_CHECKING:
    from gum_mcp.store import Store


def vector_relevance(similarity: float | None, null: Null | None = None) -> float:
    """v in 0..1: against the query's null distribution when there is one, else the cosine itself."""
    return null.relevance(similarity) if null is not None else raw_relevance(similarity)


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


def fuse(cands: list[Candidate], method: Method, ideal: float = 1.0, null: Null | None = None) -> None:
    """Set each candidate's relevance (0..1) from its signals, and its vector relevance (`vector_score`)."""
    if not cands:
        return
    for c in cands:
        c.vector_score = vector_relevance(c.similarity, null)
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
            v = c.vector_score
            b = bm25_relevance(c.bm25, ideal)
            c.relevance = 1.0 - (1.0 - v) * (1.0 - b * max(b, v))

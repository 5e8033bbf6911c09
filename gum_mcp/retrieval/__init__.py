"""Hybrid retrieval: FTS5 BM25 + Chroma vectors, score-aware fusion, decay half-life, confidence, MMR.

search(store, index, query, k, since, until, min_confidence, over) -> list[Hit]

1. Candidates, per collection (propositions: current ones only; observations: those with content):
   BM25 top-n from FTS5 (user text sanitised in `gum_mcp.store.search`) and vector top-n from Chroma,
   n = max(40, 8k); the FTS5 query runs in a worker thread while the query is embedded and Chroma
   searched. BM25 candidates the vector top-n missed get their exact cosine from their stored
   embedding; vector candidates outside the BM25 top-n count as bm25 0. Filters are exact (SQLite, on
   live values); the vector side is restricted to the allowed ids when the filter is selective, else
   over-fetched and post-filtered.
2. Relevance in [0, 1] (score-aware fusion, `fusion.fuse`); both signals on absolute scales:
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

Modules: `hits` (Hit, Candidate), `weights` (recency / confidence weights, every tuning constant),
`candidates` (BM25 / vector candidates, read from SQLite), `fusion` (relevance), `diversity` (MMR),
`hybrid` (search, Retriever), `query` (run_query, for `gum-mcp query`).
"""

from __future__ import annotations

from gum_mcp.domain import HALF_LIFE_BASE_DAYS, half_life_days
from gum_mcp.retrieval.diversity import mmr
from gum_mcp.retrieval.fusion import bm25_relevance, vector_relevance
from gum_mcp.retrieval.hits import Hit, Kind, Method, Over
from gum_mcp.retrieval.hybrid import Retriever, search
from gum_mcp.retrieval.query import run_query
from gum_mcp.retrieval.weights import (
    AGREEMENT,
    CANDIDATES_PER_HIT,
    CONFIDENCE_FLOOR,
    DUPLICATE_SIMILARITY,
    IDS_FILTER_MAX,
    MAX_K,
    MAX_OVERFETCH,
    MIN_CANDIDATES,
    MMR_LAMBDA,
    MMR_POOL_PER_HIT,
    OBSERVATION_CONFIDENCE,
    OBSERVATION_DECAY,
    RECENCY_FLOOR,
    RRF_K,
    SIM_CEIL,
    SIM_FLOOR,
    confidence_weight,
    recency_weight,
)

__all__ = [
    "AGREEMENT",
    "CANDIDATES_PER_HIT",
    "CONFIDENCE_FLOOR",
    "DUPLICATE_SIMILARITY",
    "HALF_LIFE_BASE_DAYS",
    "IDS_FILTER_MAX",
    "MAX_K",
    "MAX_OVERFETCH",
    "MIN_CANDIDATES",
    "MMR_LAMBDA",
    "MMR_POOL_PER_HIT",
    "OBSERVATION_CONFIDENCE",
    "OBSERVATION_DECAY",
    "RECENCY_FLOOR",
    "RRF_K",
    "SIM_CEIL",
    "SIM_FLOOR",
    "Hit",
    "Kind",
    "Method",
    "Over",
    "Retriever",
    "bm25_relevance",
    "confidence_weight",
    "half_life_days",
    "mmr",
    "recency_weight",
    "run_query",
    "search",
    "vector_relevance",
]

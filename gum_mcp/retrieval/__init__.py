"""Hybrid retrieval: FTS5 BM25 + index vectors, per-query calibrated fusion, decay half-life, confidence,
near-duplicates last; an LLM rerank of a wider pool for callers that can wait (`deep`).

search(store, index, query, k, since, until, min_confidence, over) -> list[Hit]

1. Candidates, per collection (propositions: current ones only; observations: those with content):
   BM25 top-n from FTS5 (user text sanitised in `gum_mcp.store.search`) and vector top-n from the index,
   n = max(40, 8k); the FTS5 query runs in a worker thread while the query is embedded and the index
   searched. BM25 candidates the vector top-n missed get their exact cosine from their stored
   embedding; vector candidates outside the BM25 top-n count as bm25 0. Filters are exact (SQLite, on
   live values); the vector side is restricted to the allowed ids when the filter is selective, else
   over-fetched and post-filtered.
2. Relevance in [0, 1] (`fusion.fuse`), each signal calibrated for this query from the query and the score
   distributions, nothing fitted to a labelled set:
       v = clip(z / (2 e_N), 0, 1)
           z: the cosine against the query's null distribution (its mean and spread over a reference sample of
           the collection's stored embeddings, `calibration`), e_N = sqrt(2 ln N): about the z the luckiest of
           N unrelated items reaches. 0 = a typical unrelated item, 1/2 = the best chance alone gives;
       b = min(1, bm25 / ideal),  ideal = (number of query words) * ln((N - 0.5) / 1.5)
           the share of the score a document matching every query word, each as rare as a word can be
           in N documents, would get: one common word of a long question or task is weak, the one rare
           name asked for is strong;
       lexical   = b * max(b, v)
           a keyword match counts fully when it is the whole query or the meaning agrees, as b^2 when
           neither (an incidental word of a task in an unrelated proposition);
       relevance = 1 - (1 - v) * (1 - lexical)   (independent evidence: either carries an item, both raise it)
   A signal that found nothing useful contributes 0 and cannot drag the other down, whereas plain
   reciprocal rank fusion gives the top of a junk list as much weight as the top of a good one and
   measures worse than its better half (bench/retrieval_quality.py).
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
4. Diversity that never costs relevance (`diversity.distinct_first`): hits in score order, except that a
   genuine near-duplicate of a hit already chosen (same words in the same order and cosine >=
   DUPLICATE_SIMILARITY: a restatement of the same fact) comes only after every distinct candidate.
   Similar but distinct facts keep their places. Skipped without embeddings.
5. Empty query (no words): the current propositions with the highest recency x confidence
   (exact, in SQL), diversified the same way; observations: the most recent.

`deep.rerank` (query_user's depth="deep"): the fast ranking's wider pool reordered by the configured LLM in one
bounded, accounted call; on any provider error the fast ranking, with a note.

Without an embedder or index, retrieval is BM25 only (a warning is logged once; `Retriever.status()`
says why). Everything here blocks but `deep`; `Retriever` has async wrappers that run it in worker threads.

Modules: `hits` (Hit, Candidate), `weights` (recency / confidence weights, every constant), `candidates`
(BM25 / vector candidates, read from SQLite), `calibration` (the null distribution of a query's cosines),
`fusion` (relevance), `diversity` (near-duplicates last), `hybrid` (search, Retriever), `deep` (LLM rerank),
`query` (run_query, for `gum-mcp query`), `dedup` (the engine's gather step).
"""

from __future__ import annotations

from gum_mcp.domain import HALF_LIFE_BASE_DAYS, half_life_days
from gum_mcp.retrieval.calibration import Null
from gum_mcp.retrieval.diversity import distinct_first, near_duplicates
from gum_mcp.retrieval.fusion import bm25_relevance, vector_relevance
from gum_mcp.retrieval.hits import Hit, Kind, Method, Over
from gum_mcp.retrieval.hybrid import Retriever, search
from gum_mcp.retrieval.query import run_query
from gum_mcp.retrieval.weights import (
    CANDIDATES_PER_HIT,
    CONFIDENCE_FLOOR,
    DIVERSITY_POOL_PER_HIT,
    DUPLICATE_SIMILARITY,
    IDS_FILTER_MAX,
    MAX_K,
    MAX_OVERFETCH,
    MIN_CANDIDATES,
    NULL_MIN,
    NULL_SAMPLE,
    OBSERVATION_CONFIDENCE,
    OBSERVATION_DECAY,
    RECENCY_FLOOR,
    RRF_K,
    confidence_weight,
    recency_weight,
)

__all__ = [
    "CANDIDATES_PER_HIT",
    "CONFIDENCE_FLOOR",
    "DIVERSITY_POOL_PER_HIT",
    "DUPLICATE_SIMILARITY",
    "HALF_LIFE_BASE_DAYS",
    "IDS_FILTER_MAX",
    "MAX_K",
    "MAX_OVERFETCH",
    "MIN_CANDIDATES",
    "NULL_MIN",
    "NULL_SAMPLE",
    "OBSERVATION_CONFIDENCE",
    "OBSERVATION_DECAY",
    "RECENCY_FLOOR",
    "RRF_K",
    "Hit",
    "Kind",
    "Method",
    "Null",
    "Over",
    "Retriever",
    "bm25_relevance",
    "confidence_weight",
    "distinct_first",
    "half_life_days",
    "near_duplicates",
    "recency_weight",
    "run_query",
    "search",
    "vector_relevance",
]

"""Recency and confidence weights, and every tuning constant of retrieval in one place.

    half_life_days(decay) = HALF_LIFE_BASE_DAYS * 2 ** (decay - 1)
    recency    = RECENCY_FLOOR + (1 - RECENCY_FLOOR) * 2 ** (-age_days / half_life_days)
    confidence = CONFIDENCE_FLOOR + (1 - CONFIDENCE_FLOOR) * confidence / 10

Age is counted from last_supported_at (observations: from observed_at). Observations count as decay
OBSERVATION_DECAY and confidence OBSERVATION_CONFIDENCE (raw evidence, not yet a belief).
"""

from __future__ import annotations

from datetime import datetime

from gum_mcp.domain import Observation, Proposition, half_life_days, to_ts
from gum_mcp.retrieval.hits import Candidate

# -- recency and confidence
RECENCY_FLOOR = 0.4
CONFIDENCE_FLOOR = 0.5
OBSERVATION_DECAY = 4
OBSERVATION_CONFIDENCE = 5

# -- fusion (no tuned constant: see `calibration` and `fusion`)
RRF_K = 60  # plain reciprocal rank fusion, kept for comparison only
NULL_SAMPLE = 1000  # stored embeddings (the most recently supported items) that stand for a collection's null
NULL_MIN = 2  # fewer items than this (no spread to measure): the cosine is used as it is

# -- candidates and diversity
MIN_CANDIDATES = 40
CANDIDATES_PER_HIT = 8
IDS_FILTER_MAX = 2000  # a filter this selective restricts the vector search to its ids
MAX_OVERFETCH = 1000
# A near-duplicate must use the same words in the same order (`diversity.same_wording`) AND have at least this
# cosine. Cosine alone separates nothing: similar-but-distinct facts reach 0.999 (another date) and restatements
# go down to 0.74 (tests/fixtures/near_duplicates.json, the tuning half of dedup_pairs.json). Among pairs with the
# same wording, restatements scored >= 0.90 and no distinct pair qualified (0 of 142; 0 of the ~545,000
# pairs of propositions about one person in the two retrieval sets).
DUPLICATE_SIMILARITY = 0.9
DIVERSITY_POOL_PER_HIT = 4  # candidates (per hit asked) from which near-duplicates are replaced
MAX_K = 100

_DAY = 86400.0


def recency_weight(decay: int, age_days: float) -> float:
    fresh = 2.0 ** (-max(0.0, age_days) / half_life_days(decay))
    return RECENCY_FLOOR + (1.0 - RECENCY_FLOOR) * fresh


def confidence_weight(confidence: int) -> float:
    return CONFIDENCE_FLOOR + (1.0 - CONFIDENCE_FLOOR) * int(confidence) / 10.0


def weigh(cand: Candidate, now: datetime) -> None:
    """Set the candidate's recency and confidence weights from its record."""
    item = cand.item
    if isinstance(item, Proposition):
        age = (to_ts(now) - to_ts(item.last_supported_at)) / _DAY
        # a standing instruction never decays: no recency weighting (issue 27)
        cand.recency = 1.0 if item.kind == "instruction" else recency_weight(item.decay, age)
        cand.confidence = confidence_weight(item.confidence)
    elif isinstance(item, Observation):
        age = (to_ts(now) - to_ts(item.observed_at)) / _DAY
        cand.recency = recency_weight(OBSERVATION_DECAY, age)
        cand.confidence = confidence_weight(OBSERVATION_CONFIDENCE)

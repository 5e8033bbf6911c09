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

# -- fusion
SIM_FLOOR = 0.1
SIM_CEIL = 0.6
AGREEMENT = 0.5
RRF_K = 60

# -- candidates and diversity
MIN_CANDIDATES = 40
CANDIDATES_PER_HIT = 8
IDS_FILTER_MAX = 2000  # a filter this selective restricts the vector search to its ids
MAX_OVERFETCH = 1000
MMR_LAMBDA = 0.7
DUPLICATE_SIMILARITY = 0.9  # paraphrases of one fact score 0.85-0.99 with MiniLM, distinct facts < 0.8
MMR_POOL_PER_HIT = 4
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
        cand.recency = recency_weight(item.decay, age)
        cand.confidence = confidence_weight(item.confidence)
    elif isinstance(item, Observation):
        age = (to_ts(now) - to_ts(item.observed_at)) / _DAY
        cand.recency = recency_weight(OBSERVATION_DECAY, age)
        cand.confidence = confidence_weight(OBSERVATION_CONFIDENCE)

"""Maximal marginal relevance (`mmr`) over the best candidates, with their stored embeddings.

Picks the argmax of MMR_LAMBDA * score / best_score - (1 - MMR_LAMBDA) * max cosine to what is already
picked; a near-duplicate (cosine >= DUPLICATE_SIMILARITY to a pick: a paraphrase of the same fact) comes
only after every distinct candidate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from gum_mcp.retrieval.hits import KIND, Candidate
from gum_mcp.retrieval.weights import DUPLICATE_SIMILARITY, MMR_LAMBDA

if TYPE_CHECKING:
    from gum_mcp.index.vector_index import VectorIndex


def fill_embeddings(index: VectorIndex, pool: list[Candidate], usable: Sequence[str]) -> None:
    """Read the stored embeddings of the candidates in `pool` that have none yet."""
    for collection in usable:
        kind = KIND[collection]
        lacking = [c.id for c in pool if c.kind == kind and c.embedding is None]
        if lacking:
            stored = index.embeddings(collection, lacking)  # type: ignore[arg-type]
            for cand in pool:
                if cand.kind == kind and cand.id in stored:
                    cand.embedding = stored[cand.id]


def mmr(pool: list[Candidate], k: int, *, lam: float | None = None) -> list[Candidate]:
    """Maximal marginal relevance over `pool` (sorted best first). A candidate at DUPLICATE_SIMILARITY or
    more to one already chosen is a near-duplicate: it comes only after every distinct candidate. Items
    without an embedding are taken as unlike everything."""
    if not pool:
        return []
    lam = MMR_LAMBDA if lam is None else lam
    best = max(c.score for c in pool) or 1.0
    chosen: list[Candidate] = []
    chosen_vectors: list[np.ndarray] = []
    remaining = list(pool)
    while remaining and len(chosen) < k:
        if chosen_vectors:
            matrix = np.stack(chosen_vectors)
        pick, pick_value = 0, -math.inf
        for n, cand in enumerate(remaining):
            redundancy = 0.0
            if chosen_vectors and cand.embedding is not None:
                redundancy = float(np.max(matrix @ cand.embedding))
            value = lam * cand.score / best - (1.0 - lam) * redundancy
            if redundancy >= DUPLICATE_SIMILARITY:
                value -= 2.0  # below any distinct candidate (values of those lie in [-1, 1])
            if value > pick_value:
                pick, pick_value = n, value
        cand = remaining.pop(pick)
        chosen.append(cand)
        if cand.embedding is not None:
            chosen_vectors.append(cand.embedding)
    return chosen

"""Diversity that never costs relevance (`distinct_first`): hits keep their score order, except that a genuine
near-duplicate of a hit already chosen comes only after every distinct candidate.

A near-duplicate is a restatement of the same fact: the same words in the same order (`same_wording`: case,
punctuation, articles, forms of "be"/"do", a few prepositions and light inflection aside; numbers exact)
AND a cosine of at least DUPLICATE_SIMILARITY. Two different statements of preference that merely resemble each
other (the cosine of many distinct facts about one person is >= 0.9, of facts differing only by a date 0.999)
keep their places: k hits asked are the k most useful ones. (This replaced MMR, which penalised every
candidate for resembling the top pick and lost relevant preferences to it.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from gum_mcp.domain import Observation, Proposition
from gum_mcp.retrieval.hits import KIND, Candidate
from gum_mcp.retrieval.weights import DUPLICATE_SIMILARITY

if TYPE_CHECKING:
    from gum_mcp.index.vector_index import VectorIndex

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
#: Words whose presence or absence does not make another fact: articles, forms of "be" and "do", and the
#: prepositions a restatement shuffles ("in March" / "this March"). Not "not", "no", "after", "before",
#: "other", "every": those change the fact.
_FILLER_TEXT = "a an the is are am be been being was were it its of to in on at for by with and this that does do did s"
_FILLER = frozenset(_FILLER_TEXT.split(" "))


def wording(text: str) -> tuple[str, ...]:
    """The words that carry a statement, in order (see `same_wording`)."""
    text = text.casefold().replace("\u2019", "'").replace("n't", " not").replace("'s", " ")
    return tuple(w for w in _WORD.findall(text) if w not in _FILLER)


def _same_word(a: str, b: str) -> bool:
    """Equal, or two forms of one word ("train"/"trains"/"training", "drawings"/"draws"): a shared stem of at
    least four letters, differing by at most three. Words with digits must be equal (another date is another
    fact)."""
    if a == b:
        return True
    if any(ch.isdigit() for ch in a + b):
        return False
    n = min(len(a), len(b))
    if n < 4:
        return False
    stem = 0
    while stem < n and a[stem] == b[stem]:
        stem += 1
    return stem >= max(4, n - 3)


def same_wording(a: Sequence[str], b: Sequence[str]) -> bool:
    """True when two wordings (`wording`) say the same words in the same order."""
    return len(a) == len(b) and all(_same_word(x, y) for x, y in zip(a, b, strict=True))


def near_duplicates(a: str, b: str, cosine: float) -> bool:
    """Whether two texts with this cosine are restatements of one fact."""
    return cosine >= DUPLICATE_SIMILARITY and same_wording(wording(a), wording(b))


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


def _text(cand: Candidate) -> str:
    item = cand.item
    if isinstance(item, Proposition):
        return item.text or ""
    if isinstance(item, Observation):
        return item.content or ""
    return ""


def distinct_first(pool: list[Candidate], k: int) -> list[Candidate]:
    """The first k of `pool` (sorted best first) in order, a near-duplicate of an earlier pick moved after
    every distinct candidate. Items without an embedding or text are distinct from everything."""
    chosen: list[Candidate] = []
    later: list[Candidate] = []
    kept: list[tuple[np.ndarray, tuple[str, ...]]] = []
    for cand in pool:
        if len(chosen) >= k:
            break
        words = wording(_text(cand)) if cand.embedding is not None else ()
        duplicate = bool(words) and any(
            same_wording(words, other) and float(np.dot(vector, cand.embedding)) >= DUPLICATE_SIMILARITY
            for vector, other in kept
        )
        if duplicate:
            later.append(cand)
            continue
        chosen.append(cand)
        if cand.embedding is not None and words:
            kept.append((cand.embedding, words))
    return (chosen + later)[:k]

"""How much a cosine says, for this query, this collection and this embedder (`Null`, `null_for`).

Most items of a collection are unrelated to any one query, so the cosines of the query to the collection are,
but for a few, a null distribution: its mean mu and standard deviation sigma say what an unrelated item scores
*for this query* (a broad question about the person is close to everything they do, a name close to nothing)
and with this embedder (MiniLM and OpenAI embeddings live on different cosine scales). They are measured on a
reference sample: the stored embeddings of up to NULL_SAMPLE items (the most recently supported), read once and
read again when the collection has grown or shrunk by a tenth (any change while it is smaller than the sample).
The collection's size is read from the store's full-text index (the same items, O(1)), not from the vector index.

A candidate's z = (cosine - mu) / sigma. The luckiest of N unrelated items reaches about e_N = sqrt(2 ln N)
(the expected maximum of N normal draws), so

    vector relevance v = clip(z / (2 e_N), 0, 1)

is 0 for a typical unrelated item, 1/2 for the best score N unrelated items reach by chance and 1 from twice
that on. Nothing is fitted to a labelled set: mu and sigma come from the query and the collection, N from
the collection's size. (For MiniLM and ~200 propositions this lands where the constants it replaces were,
v = (cosine - 0.1) / 0.5; it rises with N, as more unrelated items make a high score less telling.)
With fewer than NULL_MIN (2) items, or a sample without spread, v is the cosine itself (clipped to 0..1).
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gum_mcp.retrieval.weights import NULL_MIN, NULL_SAMPLE

if TYPE_CHECKING:
    from gum_mcp.index.vector_index import VectorIndex
    from gum_mcp.store import Store

log = logging.getLogger("gum_mcp.retrieval")

#: The reference sample is read again when the collection's size moved by this share since it was read.
RESAMPLE_CHANGE = 0.1


@dataclass(frozen=True)
class Null:
    """The null distribution of one query's cosines over one collection."""

    mean: float
    std: float
    size: int  # N: the items competing (the collection's size)

    @property
    def chance_max(self) -> float:
        """e_N: about the z-score the best of N unrelated items reaches."""
        return math.sqrt(2.0 * math.log(max(self.size, 2)))

    def relevance(self, similarity: float | None) -> float:
        """v in 0..1 (see the module)."""
        if similarity is None:
            return 0.0
        z = (similarity - self.mean) / self.std
        return min(1.0, max(0.0, z / (2.0 * self.chance_max)))


def raw_relevance(similarity: float | None) -> float:
    """Without a null distribution: the cosine, clipped to 0..1."""
    return 0.0 if similarity is None else min(1.0, max(0.0, similarity))


@dataclass
class _Sample:
    size: int  # the collection's size when read
    matrix: np.ndarray  # (n, dim) stored embeddings
    cursor: int = -1  # the index's cursor when read (it moves whenever the index applies changes)


class ReferenceSamples:
    """Per vector index and collection, the reference sample (thread-safe; an index's samples go with it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: weakref.WeakKeyDictionary[VectorIndex, dict[str, _Sample]] = weakref.WeakKeyDictionary()

    def matrix(self, store: Store, index: VectorIndex, collection: str) -> tuple[np.ndarray | None, int]:
        """The sample's embeddings (None when too few) and the collection's size."""
        # The store's FTS5 index holds the same items as the collection (current propositions, observations
        # with content) and tells its size in O(1); asking the index costs a count per search.
        size = store.text_index_size(collection)
        cursor = index.cursor(collection)  # type: ignore[arg-type]
        with self._lock:
            held = self._samples.get(index, {}).get(collection)
        # A sample read while the index was still filling (fewer vectors than the store has items) is read
        # again once the index has moved on.
        short = held is not None and held.matrix.shape[0] < min(size, NULL_SAMPLE) and held.cursor != cursor
        if held is None or short or _stale(held.size, size):
            held = _Sample(size, _read(store, index, collection), cursor)
            with self._lock:
                self._samples.setdefault(index, {})[collection] = held
        if held.matrix.shape[0] < NULL_MIN:
            return None, size
        return held.matrix, size

    def clear(self) -> None:
        with self._lock:
            self._samples.clear()


def _stale(read_at: int, size: int) -> bool:
    if read_at == size:
        return False
    return read_at <= NULL_SAMPLE or abs(size - read_at) >= RESAMPLE_CHANGE * read_at


def _read(store: Store, index: VectorIndex, collection: str) -> np.ndarray:
    if collection == "propositions":
        ids = store.current_proposition_ids(limit=NULL_SAMPLE)
    else:
        ids = store.observation_ids_with_content(limit=NULL_SAMPLE)
    stored = index.embeddings(collection, ids) if ids else {}  # type: ignore[arg-type]
    if not stored:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([np.asarray(v, dtype=np.float32) for v in stored.values()])


SAMPLES = ReferenceSamples()


def null_for(store: Store, index: VectorIndex, collection: str, vector: np.ndarray) -> Null | None:
    """The null distribution of `vector`'s cosines over `collection`, or None (too few items, no spread, or
    the sample could not be read: the caller then uses the raw cosine)."""
    try:
        matrix, size = SAMPLES.matrix(store, index, collection)
    except Exception as exc:  # calibration is a refinement: never fail a search for it
        log.warning("could not read the reference sample of %s (%s: %s)", collection, type(exc).__name__, exc)
        return None
    if matrix is None or matrix.shape[1] != np.asarray(vector).shape[-1]:
        return None
    cosines = matrix @ np.asarray(vector, dtype=np.float32)
    std = float(cosines.std())
    if not std > 1e-6:
        return None
    return Null(mean=float(cosines.mean()), std=std, size=max(size, int(matrix.shape[0])))

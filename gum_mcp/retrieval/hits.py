"""What a search returns (`Hit`) and what it ranks on the way (`Candidate`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from gum_mcp.domain import Observation, Proposition

Over = Literal["propositions", "observations", "both"]
Method = Literal["hybrid", "bm25", "vector", "rrf"]
Kind = Literal["proposition", "observation"]

#: The kind of item each searchable collection holds.
KIND: dict[str, Kind] = {"propositions": "proposition", "observations": "observation"}


@dataclass(frozen=True)
class Hit:
    """One search result: a current proposition or an observation, with how it was found."""

    kind: Kind
    id: int
    score: float  # relevance x recency x confidence (a near-duplicate comes after distinct hits)
    relevance: float  # 0..1, from the signals
    recency: float  # weight, RECENCY_FLOOR..1
    confidence: float  # weight, CONFIDENCE_FLOOR..1
    signals: tuple[str, ...]  # which of "bm25" and "vector" matched (empty for the empty query)
    bm25: float | None = None  # raw bm25 score (higher is better) when the text matched
    similarity: float | None = None  # cosine similarity of the embeddings, when known
    proposition: Proposition | None = None
    observation: Observation | None = None

    @property
    def text(self) -> str:
        if self.proposition is not None:
            return self.proposition.text or ""
        return (self.observation.content if self.observation is not None else None) or ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hit:
        """The scores and signals of `as_dict()` (its record fields are left to the reader's own store)."""
        return cls(
            kind=data["kind"], id=int(data["id"]), score=float(data["score"]), relevance=float(data["relevance"]),
            recency=float(data["recency"]), confidence=float(data["confidence_weight"]),
            signals=tuple(data["signals"]), bm25=data.get("bm25"), similarity=data.get("similarity"),
        )

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "id": self.id,
            "text": self.text,
            "score": round(self.score, 6),
            "relevance": round(self.relevance, 6),
            "recency": round(self.recency, 6),
            "confidence_weight": round(self.confidence, 6),
            "signals": list(self.signals),
            "bm25": None if self.bm25 is None else round(self.bm25, 6),
            "similarity": None if self.similarity is None else round(self.similarity, 6),
        }
        if self.proposition is not None:
            p = self.proposition
            data.update(
                confidence=p.confidence, decay=p.decay, created_at=p.created_at.isoformat(),
                last_supported_at=p.last_supported_at.isoformat(), support_count=p.support_count,
            )
        if self.observation is not None:
            o = self.observation
            data.update(observed_at=o.observed_at.isoformat(), source=o.source, observation_kind=o.kind)
        return data


@dataclass
class Candidate:
    """An item while it is being ranked: its signals, weights and (once read) its record and embedding."""

    kind: Kind
    id: int
    bm25: float = 0.0
    bm25_rank: int | None = None
    similarity: float | None = None
    vector_rank: int | None = None
    embedding: np.ndarray | None = None
    item: Proposition | Observation | None = None
    vector_score: float = 0.0  # v, the calibrated vector relevance (0..1)
    relevance: float = 0.0
    recency: float = 1.0
    confidence: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return self.relevance * self.recency * self.confidence

"""The data elements: views of observations and drafts, and how observations, propositions and drafts
are rendered (escaped) into a prompt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gum_mcp.domain import Proposition
from gum_mcp.engine.prompts import ids
from gum_mcp.engine.prompts.common import escape_attr, escape_text, iso


@dataclass(frozen=True)
class ObservationView:
    """One observation as the prompt shows it; `seen` counts identical repeats in the batch."""

    id: int
    kind: str
    source: str
    at: datetime
    content: str
    seen: int = 1


@dataclass(frozen=True)
class DraftView:
    n: int
    text: str
    reasoning: str
    confidence: int
    decay: int
    observation_ids: tuple[int, ...]
    candidates: tuple[int, ...] = ()


def render_observation(obs: ObservationView, *, typed: bool = True) -> str:
    """`<observation id="o12" ...>`; `typed=False` writes the bare number (the suggest step's prompt)."""
    seen = f' seen="{obs.seen}"' if obs.seen > 1 else ""
    oid = ids.typed(ids.OBSERVATION, obs.id) if typed else str(obs.id)
    return (
        f'<observation id="{oid}" kind="{escape_attr(obs.kind)}" source="{escape_attr(obs.source)}"'
        f' at="{iso(obs.at)}"{seen}>{escape_text(obs.content)}</observation>'
    )


def render_proposition(prop: Proposition, *, typed: bool = True) -> str:
    """`<proposition id="p34" ...>text<reasoning>...</reasoning></proposition>`; `typed=False` as above."""
    reasoning = f"<reasoning>{escape_text(prop.reasoning)}</reasoning>" if prop.reasoning else ""
    confirmed = ' confirmed_by_user="yes"' if prop.user_confirmed else ""
    pid = ids.typed(ids.PROPOSITION, prop.id) if typed else str(prop.id)
    return (
        f'<proposition id="{pid}" confidence="{prop.confidence}" decay="{prop.decay}"'
        f' support="{prop.support_count}" last_supported="{iso(prop.last_supported_at)}"{confirmed}>'
        f"{escape_text(prop.text or '')}{reasoning}</proposition>"
    )


def render_draft(draft: DraftView, *, with_candidates: bool = False) -> str:
    cited = " ".join(ids.typed_all(ids.OBSERVATION, draft.observation_ids))
    candidates = ""
    if with_candidates:
        candidates = f' compare_with="{" ".join(ids.typed_all(ids.PROPOSITION, draft.candidates))}"'
    reasoning = f"<reasoning>{escape_text(draft.reasoning)}</reasoning>" if draft.reasoning else ""
    return (
        f'<draft id="{ids.typed(ids.DRAFT, draft.n)}" confidence="{draft.confidence}" decay="{draft.decay}"'
        f' observations="{cited}"{candidates}>{escape_text(draft.text)}{reasoning}</draft>'
    )

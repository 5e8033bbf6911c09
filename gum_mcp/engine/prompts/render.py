"""The data elements: views of observations and drafts, and how observations, propositions and drafts
are rendered (escaped) into a prompt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gum_mcp.domain import Proposition
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


def render_observation(obs: ObservationView) -> str:
    seen = f' seen="{obs.seen}"' if obs.seen > 1 else ""
    return (
        f'<observation id="{obs.id}" kind="{escape_attr(obs.kind)}" source="{escape_attr(obs.source)}"'
        f' at="{iso(obs.at)}"{seen}>{escape_text(obs.content)}</observation>'
    )


def render_proposition(prop: Proposition) -> str:
    reasoning = f"<reasoning>{escape_text(prop.reasoning)}</reasoning>" if prop.reasoning else ""
    confirmed = ' confirmed_by_user="yes"' if prop.user_confirmed else ""
    return (
        f'<proposition id="{prop.id}" confidence="{prop.confidence}" decay="{prop.decay}"'
        f' support="{prop.support_count}" last_supported="{iso(prop.last_supported_at)}"{confirmed}>'
        f"{escape_text(prop.text or '')}{reasoning}</proposition>"
    )


def render_draft(draft: DraftView, *, with_candidates: bool = False) -> str:
    cited = " ".join(str(i) for i in draft.observation_ids)
    candidates = ""
    if with_candidates:
        candidates = f' compare_with="{" ".join(str(i) for i in draft.candidates)}"'
    reasoning = f"<reasoning>{escape_text(draft.reasoning)}</reasoning>" if draft.reasoning else ""
    return (
        f'<draft n="{draft.n}" confidence="{draft.confidence}" decay="{draft.decay}"'
        f' observations="{cited}"{candidates}>{escape_text(draft.text)}{reasoning}</draft>'
    )

"""Relating drafts to existing propositions (identical, similar, unrelated): reply, prompt and message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from gum_mcp.domain import Proposition
from gum_mcp.engine.prompts.common import EXAMPLE_FILE, EXAMPLE_PERSON, Reply, Score, preamble, section
from gum_mcp.engine.prompts.ids import TypedId
from gum_mcp.engine.prompts.render import DraftView, render_draft, render_proposition


class RelateJudgement(Reply):
    draft: TypedId = Field(description="the id of one <draft>, as shown (d3)")
    reason: str = Field("", description="first: one short sentence comparing the draft with the closest propositions")
    relation: Literal["identical", "similar", "unrelated"]
    proposition_ids: list[TypedId] = Field(
        description="existing propositions (p34) it is identical or similar to; empty when unrelated"
    )
    confidence: Score = Field(
        description="identical: the confidence the existing proposition deserves with this new support; "
        "otherwise the draft's own confidence",
    )


class RelateReply(Reply):
    """How each draft relates to the existing propositions."""

    judgements: list[RelateJudgement]


def relate_system(user: str) -> str:
    return preamble(user) + f"""

Your task: compare each new draft proposition about {user} with existing propositions, by id. For each \
draft give first a one-sentence reason, then the relation:
- identical: the draft makes the same claim as one existing proposition (a paraphrase with the same \
scope and meaning). The draft adds evidence, nothing else. Give the one matching id and the confidence \
that proposition deserves now that it has this further support (raise it for repeated support, lower \
it if the draft's evidence is weaker or partly contradicts it).
- similar: the draft and one or more existing propositions are about the same subject but differ in \
scope, detail, time or confidence, overlap, or contradict each other, so together they should be \
revised. Give every such id.
- unrelated: no existing proposition covers this subject. Give no ids.
Each draft lists in compare_with the ids most likely to matter; use only ids of the propositions \
shown. Give exactly one judgement per draft.

Example (invented, not about {user}): <draft id="d0">{EXAMPLE_PERSON} edits {EXAMPLE_FILE} every \
Monday</draft> against <proposition id="p0">{EXAMPLE_PERSON} keeps the team's travel budget in \
{EXAMPLE_FILE}</proposition> is {{"draft": "d0", "reason": "the same file, but a habit rather than \
what it holds", "relation": "similar", "proposition_ids": ["p0"], "confidence": 5}}."""


def relate_message(drafts: Sequence[DraftView], candidates: Sequence[Proposition]) -> str:
    return "\n\n".join(
        [
            section("existing_propositions", (render_proposition(p) for p in candidates)),
            section("drafts", (render_draft(d, with_candidates=True) for d in drafts)),
            "Judge each draft (d...): identical, similar or unrelated to the existing propositions (p...), by id.",
        ]
    )

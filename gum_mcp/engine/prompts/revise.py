"""Revising clusters of similar propositions and drafts: the reply, cluster view, system prompt and message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import Field

from gum_mcp.domain import Proposition
from gum_mcp.engine.prompts.common import Reply, preamble, section
from gum_mcp.engine.prompts.render import (
    DraftView,
    ObservationView,
    render_draft,
    render_observation,
    render_proposition,
)


class RevisedProposition(Reply):
    text: str
    reasoning: str
    confidence: int = Field(ge=1, le=10)
    decay: int = Field(ge=1, le=10)
    supersedes: list[int] = Field(description="ids of existing propositions this one replaces")
    drafts: list[int] = Field(description="n of the drafts folded into this one")
    observation_ids: list[int] = Field(description="ids of the new observations it rests on")


class ReviseReply(Reply):
    """The propositions that replace each cluster."""

    propositions: list[RevisedProposition]


@dataclass(frozen=True)
class ClusterView:
    propositions: tuple[Proposition, ...]
    drafts: tuple[DraftView, ...]
    observations: tuple[ObservationView, ...]


def revise_system(user: str) -> str:
    return preamble(user) + f"""

Your task: revise clusters of propositions about {user}. Each <cluster> holds existing propositions \
and new drafts judged similar to them, and the new observations behind the drafts. For each cluster \
write the set of propositions that should replace it:
- edit a proposition to fit the new evidence, merge ones that say the same thing, split one that \
mixes separate claims, and recalibrate confidence (consistent support raises it, contradiction \
lowers it) and decay (how long the claim stays true, 1 fleeting to 10 lasting);
- supersedes: the ids of the existing propositions each output replaces; an existing proposition \
that no output supersedes stays exactly as it is, so omit what needs no change;
- drafts: the n of every draft folded into an output; every draft should end up in some output;
- observation_ids: the new observations an output rests on, from those shown;
- keep statements self-contained, in the third person, grounded in the named apps, files, sites, \
people and projects; keep what user-confirmed propositions say unless the evidence clearly \
contradicts it."""


def revise_message(clusters: Sequence[ClusterView]) -> str:
    parts = []
    for number, cluster in enumerate(clusters, start=1):
        parts.append(
            "\n".join(
                [
                    f'<cluster n="{number}">',
                    section("existing_propositions", (render_proposition(p) for p in cluster.propositions)),
                    section("drafts", (render_draft(d) for d in cluster.drafts)),
                    section("observations", (render_observation(o) for o in cluster.observations)),
                    "</cluster>",
                ]
            )
        )
    parts.append(
        "For each cluster, write the propositions that replace it, naming the ids each supersedes "
        "and the drafts it folds in."
    )
    return "\n\n".join(parts)

"""Revising clusters of similar propositions and drafts: the reply, cluster view, system prompt and message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import Field

from gum_mcp.domain import Proposition, Sensitivity
from gum_mcp.engine.prompts.common import EXAMPLE_PERSON, EXAMPLE_PROJECT, Reply, Score, preamble, section
from gum_mcp.engine.prompts.ids import TypedId
from gum_mcp.engine.prompts.render import (
    DraftView,
    ObservationView,
    render_draft,
    render_observation,
    render_proposition,
)
from gum_mcp.engine.prompts.tagging import classes_text


class RevisedProposition(Reply):
    supersedes: list[TypedId] = Field(description="ids of existing propositions this one replaces (p34)")
    drafts: list[TypedId] = Field(description="ids of the drafts folded into this one (d3)")
    observation_ids: list[TypedId] = Field(description="ids of the new observations it rests on (o12)")
    reasoning: str = Field(description="first: why the evidence supports the revised claim")
    text: str = Field(description="then the claim: one self-contained sentence about the person")
    confidence: Score
    decay: Score
    sensitivity: Sensitivity | None = Field(None, description="the kind of knowledge it is: the most sensitive class "
                                                              "that applies")


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
- drafts: the ids of every draft folded into an output; every draft should end up in some output;
- sensitivity: the kind of knowledge each output is, the most sensitive class that applies (listed most \
sensitive first); an output that merges claims of different classes takes the most sensitive of them:
{classes_text()}
- observation_ids: the new observations an output rests on, from those shown;
- give for each output first the ids it replaces, folds in and rests on, then its reasoning, then \
its text;
- keep statements self-contained, in the third person, grounded in the named apps, files, sites, \
people and projects; keep what user-confirmed propositions say unless the evidence clearly \
contradicts it. Observations show what {user} viewed, not necessarily what they did: keep claims \
no stronger than the evidence.

Example (invented, not about {user}): a cluster of <proposition id="p0">{EXAMPLE_PERSON} works on \
Project {EXAMPLE_PROJECT}</proposition> and <draft id="d0">{EXAMPLE_PERSON} leads the {EXAMPLE_PROJECT} \
launch in May</draft> becomes {{"propositions": [{{"supersedes": ["p0"], "drafts": ["d0"], \
"observation_ids": [], "reasoning": "the draft narrows the same project to a role and a date", \
"text": "{EXAMPLE_PERSON} leads the May launch of Project {EXAMPLE_PROJECT}", "confidence": 7, \
"decay": 7}}]}}."""


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
        "For each cluster, write the propositions that replace it, naming the ids each supersedes (p...) "
        "and the drafts it folds in (d...)."
    )
    return "\n\n".join(parts)

"""Proposing new propositions from observations: the reply, system prompt and message."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from gum_mcp.engine.prompts.common import Reply, preamble, section
from gum_mcp.engine.prompts.render import ObservationView, render_observation


class ProposedDraft(Reply):
    text: str = Field(description="one self-contained statement about the person")
    reasoning: str = Field(description="why the observations support it, naming what was seen")
    confidence: int = Field(ge=1, le=10, description="1 = a guess, 10 = certain")
    decay: int = Field(ge=1, le=10, description="1 = fleeting (this hour), 10 = a lasting trait or preference")
    observation_ids: list[int] = Field(description="ids of the observations it rests on")


class ProposeReply(Reply):
    """New propositions inferred from the observations."""

    propositions: list[ProposedDraft]


def propose_system(user: str) -> str:
    return preamble(user) + f"""

Your task: infer propositions about {user} from the observations: what they work on, with whom, \
which tools they prefer, their habits, goals, skills and preferences.
- Each proposition is one self-contained statement in the third person about {user}, grounded in \
named entities that were actually observed: applications, files, repositories, websites, people, \
projects, events. Prefer "{user} is preparing the Q4 budget in Budget-Q4.xlsx" to "{user} uses \
spreadsheets".
- reasoning: two or three sentences naming what was seen and why it supports the claim.
- confidence (1-10): how sure the observations make you. 1-3 a plausible guess, 4-6 likely, 7-8 \
well supported, 9-10 explicit or repeated many times.
- decay (1-10): how long the claim stays true. 10 a lasting trait, identity or preference; 7-9 a \
long project, role or habit; 4-6 a task or interest over weeks; 1-3 fleeting, this hour or day.
- observation_ids: the ids it rests on, only from the observations shown. An observation with a \
seen="n" attribute was observed n times.
- Some inferences may go beyond what is literally shown (what the activity suggests about {user}); \
give those a lower confidence.
- Propose nothing about other people except in relation to {user}. Do not restate an observation \
as a proposition; say what it means about {user}. Prefer fewer, stronger propositions; none is a \
valid answer when the observations say nothing about {user}."""


def propose_message(observations: Sequence[ObservationView]) -> str:
    return "\n\n".join(
        [
            section("observations", (render_observation(o) for o in observations)),
            "Propose propositions about the person from these observations, citing their ids.",
        ]
    )

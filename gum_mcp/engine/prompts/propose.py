"""Proposing new propositions from observations: the reply, system prompt and message."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from gum_mcp.domain import PropositionKind, Sensitivity
from gum_mcp.engine.prompts.common import (
    EXAMPLE_APP,
    EXAMPLE_FILE,
    EXAMPLE_PERSON,
    EXAMPLE_PLACE,
    Reply,
    Score,
    preamble,
    section,
)
from gum_mcp.engine.prompts.ids import TypedId
from gum_mcp.engine.prompts.render import ObservationView, render_observation
from gum_mcp.engine.prompts.tagging import classes_text


class ProposedDraft(Reply):
    observation_ids: list[TypedId] = Field(description="ids of the observations it rests on, as shown (o12)")
    reasoning: str = Field(description="first: what was seen and why it supports the claim")
    text: str = Field(description="then the claim: one self-contained sentence about the person")
    confidence: Score = Field(description="1 = a guess, 10 = certain")
    decay: Score = Field(description="1 = fleeting (this hour), 10 = a lasting trait or preference")
    sensitivity: Sensitivity | None = Field(None, description="the kind of knowledge it is: the most sensitive class "
                                                              "that applies")
    kind: PropositionKind = Field("belief", description="instruction: a rule the person stated; preference: what "
                                                        "they like; belief: anything else")
    applies_to: str = Field("", max_length=300, description="for an instruction or preference: the situation it "
                                                            "applies to, in a few words (booking flights); else empty")


class ProposeReply(Reply):
    """New propositions inferred from the observations."""

    propositions: list[ProposedDraft]


def propose_system(user: str) -> str:
    return preamble(user) + f"""

Your task: infer propositions about {user} from the observations: what they work on, with whom, \
which tools they prefer, their habits, goals, skills and preferences.
- For each proposition give first the observation_ids it rests on (only ids shown; an observation \
with seen="n" was observed n times), then the reasoning (one or two sentences naming what was seen \
and why it supports the claim), then the text: one self-contained statement in the third person \
about {user}, grounded in named entities that were actually observed (applications, files, \
repositories, websites, people, projects, events) rather than vague ones ("uses spreadsheets").
- Be conservative. An observation shows what was on {user}'s screen or in their files: what they \
view, not necessarily what they do, write, own or believe. Reading an article, a message or a page \
is not agreeing with it or acting on it; a document may be someone else's, a colleague's name on \
screen is not a friend. Claim an action or preference only when the observations show {user} doing \
or stating it; otherwise write the weaker claim ("{user} read about ...") or nothing.
- confidence (1-10): how sure the observations make you. 1-3 a plausible guess, 4-6 likely, 7-8 \
well supported, 9-10 explicit or repeated many times. Inferences that go beyond what is literally \
shown get a low confidence.
- decay (1-10): how long the claim stays true. 10 a lasting trait, identity or preference; 7-9 a \
long project, role or habit; 4-6 a task or interest over weeks; 1-3 fleeting, this hour or day.
- sensitivity: the kind of knowledge the claim is, so that {user} can decide which assistants see it; \
when several classes apply, the most sensitive (listed first):
{classes_text()}
- kind: "instruction" only when an observation states a standing rule {user} wants applied ("always", \
"never", "from now on") or an agent reports {user} asking for one; never from behaviour alone. \
"preference" for what {user} likes or chooses (an edit report shows the preference behind the change: \
one edit is a guess, confidence 3-4). Otherwise "belief". For an instruction or preference, applies_to \
names the situation in a few words ("booking flights", "emails to Jordan").
- Propose nothing about other people except in relation to {user}. Do not restate an observation \
as a proposition; say what it means about {user}. Prefer fewer, stronger propositions; none is a \
valid answer when the observations say nothing about {user}.

Example (invented, not about {user}): for <observation id="o0" kind="screen">{EXAMPLE_APP} - \
{EXAMPLE_FILE} - sheet "Q3 travel" edited, row 14 "{EXAMPLE_PLACE} offsite"</observation> one proposition \
is {{"observation_ids": ["o0"], "reasoning": "They edited the Q3 travel sheet of {EXAMPLE_FILE}, adding \
the {EXAMPLE_PLACE} offsite.", "text": "{EXAMPLE_PERSON} is planning Q3 travel, including a {EXAMPLE_PLACE} \
offsite, in {EXAMPLE_FILE}", "confidence": 6, "decay": 5}}."""


def propose_message(observations: Sequence[ObservationView]) -> str:
    return "\n\n".join(
        [
            section("observations", (render_observation(o) for o in observations)),
            "Propose propositions about the person from these observations, citing their ids (o...).",
        ]
    )

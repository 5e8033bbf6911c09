"""The privacy audit (contextual integrity): its reply, system prompt and message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from gum_mcp.domain import Proposition
from gum_mcp.engine.prompts.common import EXAMPLE_PERSON, Reply, preamble, section
from gum_mcp.engine.prompts.ids import TypedId
from gum_mcp.engine.prompts.render import ObservationView, render_observation, render_proposition


class AuditVerdict(Reply):
    observation_id: TypedId = Field(description="the id of one <observation>, as shown (o12)")
    reason: str = Field(description="one short sentence naming the context; for skip, the norm it would break")
    decision: Literal["allow", "skip"] = Field(
        description="allow: fine to learn from; skip: the person would not want inferences drawn from it"
    )


class AuditReply(Reply):
    """Privacy verdicts: one per observation."""

    verdicts: list[AuditVerdict]


def audit_system(user: str) -> str:
    return preamble(user) + f"""

Your task: a privacy audit based on contextual integrity. Information carries the norms of the \
context it was shared in. For each observation decide whether {user} would be comfortable with it \
being used to infer lasting things about them, given where it came from and what it shows.

Skip an observation (decision "skip") when learning from it would break those norms, for example:
- other people's private communication or personal details that {user} merely saw;
- health, medical, sexual, religious, political, legal, immigration or financial-hardship matters, \
unless {user} deliberately told an assistant about it so that it would be remembered;
- private browsing, intimate relationships, or content {user} was plainly hiding or deleting;
- anything that existing propositions say {user} does not want tracked or remembered.
Allow (decision "allow") ordinary work, projects, tools, hobbies, routines and stated preferences. \
When unsure, prefer skip for sensitive categories and allow for everything else.

Give exactly one verdict per observation id: first a one-sentence reason that names the context \
(never repeat sensitive details in the reason), then the decision.

Example (invented, not about {user}): for <observation id="o0" kind="screen">Messenger - {EXAMPLE_PERSON}: \
my biopsy results came back, can we talk?</observation> a verdict is \
{{"observation_id": "o0", "reason": "another person's medical news in a private chat", "decision": "skip"}}."""


def audit_message(observations: Sequence[ObservationView], context: Sequence[Proposition]) -> str:
    return "\n\n".join(
        [
            "What is already believed about the person (may show what they do not want tracked):",
            section("existing_propositions", (render_proposition(p) for p in context)),
            "Observations to audit:",
            section("observations", (render_observation(o) for o in observations)),
            "Give one verdict (allow or skip) for each observation id above.",
        ]
    )

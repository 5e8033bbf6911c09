"""Deciding a choice an agent faces from what is known (issue 27): the reply, system prompt and message.

Used only when the local rule (`gum_mcp.engine.decide`) finds no instruction and no exact preference and
something relevant is known: one bounded call, reasoning first. The pipeline-style guards apply: the
option must be one of those given (an `enum` in the schema sent), the ids must be among those shown, and
the code, not the model, decides whether the confidence is enough.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from gum_mcp.domain import Proposition
from gum_mcp.engine.prompts.common import Reply, Score, escape_attr, escape_text, preamble, section
from gum_mcp.engine.prompts.ids import TypedId
from gum_mcp.engine.prompts.render import render_proposition

QUESTION_CHARS = 500
CONTEXT_CHARS = 1000
OPTION_CHARS = 200


class DecideReply(Reply):
    """Whether what is known settles the choice."""

    reasoning: str = Field(max_length=1200, description="first: which propositions bear on the choice and whether "
                                                        "they settle it")
    outcome: Literal["decide", "ask"] = Field(description="decide only when the propositions settle the choice")
    option: str = Field(description="the option chosen, copied exactly; empty when asking")
    proposition_ids: list[TypedId] = Field(max_length=10, description="ids of the propositions the decision rests "
                                                                      "on, as shown (p34)")
    confidence: Score = Field(description="how sure the propositions make the choice: 10 = stated by the person")
    question: str = Field(max_length=300, description="when asking: one short question for the person")


def decide_system(user: str) -> str:
    return preamble(user) + f"""

Your task: an assistant working for {user} faces a choice between options. Decide whether what is known \
about {user} (the propositions shown) settles it. Instructions are rules {user} stated: one that covers \
this situation settles the choice. A preference settles it only when it is about this very situation \
and well supported; a preference about a neighbouring situation (trains, not flights; a client, not a \
colleague) does not. When propositions disagree, or none covers the situation, or you would be \
guessing, answer "ask" with one short question the assistant can put to {user}. Give the reasoning \
first, then the outcome, the option copied exactly, the ids of the propositions it rests on and your \
confidence."""


def decide_message(question: str, options: Sequence[str], context: str, propositions: Sequence[Proposition]) -> str:
    known = []
    for prop in propositions:
        rendered = render_proposition(prop)
        extra = f' kind="{escape_attr(prop.kind)}"'
        if prop.applies_to:
            extra += f' applies_to="{escape_attr(prop.applies_to)}"'
        known.append(rendered.replace(">", extra + ">", 1))
    parts = [
        section("choice", [f"<question>{escape_text(question[:QUESTION_CHARS])}</question>",
                           f"<context>{escape_text(context[:CONTEXT_CHARS])}</context>",
                           *(f"<option>{escape_text(o[:OPTION_CHARS])}</option>" for o in options)]),
        section("propositions", known),
        "Decide the choice from these propositions, or ask.",
    ]
    return "\n\n".join(parts)

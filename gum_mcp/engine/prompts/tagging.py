"""Tagging propositions with their sensitivity class (the job in gum_mcp/engine/tagging.py): the reply, system
prompt and message. Many propositions per call; each is shown by its typed id and text only."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from gum_mcp.domain import SENSITIVITY_MEANINGS, SENSITIVITY_ORDER, Sensitivity
from gum_mcp.engine.prompts import ids
from gum_mcp.engine.prompts.common import EXAMPLE_PERSON, Reply, escape_text, preamble, section

#: Each proposition's text, at most (the class shows in its first sentence).
TEXT_CHARS = 300


class Tag(Reply):
    id: ids.TypedId = Field(description="a proposition id as shown (p34)")
    sensitivity: Sensitivity = Field(description="its class: the most sensitive one that applies")


class TagReply(Reply):
    """The sensitivity class of each proposition."""

    tags: list[Tag]


def classes_text() -> str:
    """The classes, most sensitive first, one per line (shared with the propose and revise prompts)."""
    return "\n".join(f"  - {name}: {SENSITIVITY_MEANINGS[name]}" for name in SENSITIVITY_ORDER)


def tag_system(user: str) -> str:
    return preamble(user) + f"""

Your task: give each proposition about {user} its sensitivity class, so that {user} can decide which \
assistants may see which kinds of knowledge. The classes, most sensitive first:
{classes_text()}
- When several apply, give the most sensitive (the one listed first): "{user} books physiotherapy \
between meetings" is health, not work.
- Judge what the proposition reveals about {user}, not the words it uses: a developer fixing a \
payments service is work, {user}'s own tax return is finance.
- Give every proposition shown exactly one class, by its id.

Example (invented, not about {user}): <proposition id="p0">{EXAMPLE_PERSON} tracks her migraines in a \
diary app</proposition> is {{"tags": [{{"id": "p0", "sensitivity": "health"}}]}}."""


def tag_message(propositions: Sequence[tuple[int, str]]) -> str:
    """`propositions`: (id, text) pairs."""
    lines = (f'<proposition id="{ids.typed(ids.PROPOSITION, pid)}">{escape_text(" ".join(text.split())[:TEXT_CHARS])}'
             "</proposition>" for pid, text in propositions)
    return "\n\n".join([section("propositions", lines),
                        "Give each proposition its sensitivity class, by its id (p...)."])

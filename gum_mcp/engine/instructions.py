"""Standing instructions (issue 27): when a draft may be recorded as one.

The propose step may mark a draft `instruction` (a rule the person wants applied: "always", "never",
"from now on", or an agent reporting such a request). An instruction is never inferred from behaviour
alone, so the pipeline keeps that kind only when an observation the draft cites states a rule (`states_rule`):
one with a rule's words, that is not an edit report (`edits.EDIT_MARK`: an edit shows behaviour, whatever
words the edited text holds). Otherwise the draft is kept as a preference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gum_mcp.domain import KIND_ORDER
from gum_mcp.engine.edits import EDIT_MARK

#: Words of a stated rule. An observation without one of these cannot ground an instruction.
RULE_CUES = re.compile(
    r"\b(always|never|from now on|every time|each time|whenever|going forward|in future|in the future|"
    r"from here on|as a rule|by default|make sure (?:to|you)|don'?t ever|do not ever|must(?: always| never)?|"
    r"only (?:ever )?(?:book|use|send|pick|choose|schedule|file|write|sign|run|request))\b",
    re.IGNORECASE,
)


def states_rule(content: str) -> bool:
    """Whether an observation's text states a rule (and is not an edit report)."""
    return not content.startswith(EDIT_MARK) and RULE_CUES.search(content) is not None


def kind_for(kind: str, cited: Iterable[str]) -> str:
    """The kind a draft is stored as: `instruction` only when a cited observation states a rule."""
    if kind == "instruction" and not any(states_rule(text) for text in cited):
        return "preference"
    return kind if kind in ("belief", "preference", "instruction") else "belief"


def strongest(kinds: Iterable[str]) -> str:
    """The strongest of `kinds` (instruction, then preference, then belief); belief when there are none."""
    found = set(kinds)
    return next((kind for kind in KIND_ORDER if kind in found), "belief")

"""Bounded calls: what one prompt and its reply may take of the model's context (GUM_LLM_CONTEXT).

Every call sends `max_tokens` sized to its step and batch: `REPLY_BASE_TOKENS` plus `ITEM_TOKENS[step]`
for each item the reply may hold; the items are capped in proportion to the batch (the pipeline) and so
that the reply takes at most half the context (`items`). The prompt (system, message and the JSON schema,
which some servers need spelt out in it) must fit in the rest, with a reserve for a repair request and
for the estimate's error: tokens are estimated at `CHARS_PER_TOKEN` characters each, on the safe side
for English and markup with the tokenizers of small local models.

A prompt that does not fit raises `PromptTooLarge` before anything is sent; the engine then decides the
batch in smaller parts (`gum_mcp.engine.loop`). One observation's text is cut to what a prompt can hold
(`observation_chars`), so a batch of one always fits its audit and propose prompts.
"""

from __future__ import annotations

import json
import math
from typing import Any

from gum_mcp.config import Settings

CHARS_PER_TOKEN = 3.0
REPLY_BASE_TOKENS = 64
#: Tokens one reply item may take, per step (reasoning, text, ids and numbers, JSON and its whitespace).
ITEM_TOKENS = {"audit": 60, "propose": 160, "relate": 90, "revise": 200}


class PromptTooLarge(Exception):
    """A step's prompt does not fit GUM_LLM_CONTEXT even in its leanest form: decide fewer observations."""

    def __init__(self, stage: str, needed: int, context: int) -> None:
        super().__init__(f"the {stage} prompt needs about {needed:,} tokens with its reply, more than "
                         f"GUM_LLM_CONTEXT={context:,}")
        self.stage = stage
        self.needed = needed


def tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def reserve(settings: Settings) -> int:
    """Tokens kept free: a repair request's excerpt (a tenth of the context) and the estimate's error."""
    return settings.llm_context // 10 + 128


def items(stage: str, wanted: int, settings: Settings) -> int:
    """How many items a reply of `stage` may hold: `wanted`, at most what half the context holds."""
    room = settings.llm_context // 2 - REPLY_BASE_TOKENS
    return max(1, min(wanted, room // ITEM_TOKENS[stage]))


def max_tokens(stage: str, count: int) -> int:
    """The reply bound for `count` items of `stage`."""
    return REPLY_BASE_TOKENS + ITEM_TOKENS[stage] * count


def needed(system: str, message: str, json_schema: dict[str, Any], reply_tokens: int, settings: Settings) -> int:
    """Tokens the call takes at most: prompt, schema, reply and the reserve."""
    schema = json.dumps(json_schema, separators=(",", ":"))
    return tokens(system) + tokens(message) + tokens(schema) + reply_tokens + reserve(settings)


def observation_chars(settings: Settings, fixed_tokens: int) -> int:
    """How many characters of one observation's text a prompt can hold beside `fixed_tokens` (its system
    prompt, schema, reply and the rest of its message); at least 400."""
    room = settings.llm_context - reserve(settings) - fixed_tokens
    return max(400, int(room * CHARS_PER_TOKEN))

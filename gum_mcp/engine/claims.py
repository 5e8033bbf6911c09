"""Whether a proposition's text is a claim at all, before it can be stored.

A small model under a grammar still fills a string with whatever it has: a fragment of the markup it
saw (`<table border=`), half a sentence cut off, or the prompt's own example copied over. None of these
is something learnt about the person. `problem(text)` says which it is, or None for a usable claim;
the pipeline drops such items (and a reply left with none is invalid: one repair, then the batch is
split). Text is taken unescaped first (`clean`): a model copies `&amp;` from the escaped prompt.
"""

from __future__ import annotations

import html
import re

from gum_mcp.engine.prompts.common import EXAMPLE_MARKERS

MIN_WORDS = 3

_TAG = re.compile(r"</?[A-Za-z!?][^<>]{0,200}(?:>|$)")  # an element, closed or cut off
_MARKUP_START = ("{", "[", "#", "```", "<", "|")
_BULLET = re.compile(r"^(?:[-*•]|\d+[.)])\s+")
_CUT_OFF_END = tuple("=<({[,:;/\\-")
_WORD = re.compile(r"[^\W\d_]+")
#: A sentence does not end on these: it was cut off.
_DANGLING = {"a", "an", "the", "of", "to", "in", "on", "at", "by", "for", "from", "with", "and", "or", "but",
             "her", "his", "their", "its", "my"}


def clean(text: str) -> str:
    """One line, entities unescaped, a leading bullet dropped."""
    return _BULLET.sub("", " ".join(html.unescape(text).split()))


def problem(text: str) -> str | None:
    """Why `text` (cleaned) is not a claim: "markup", "a fragment", "an echo of the prompt's example";
    None when it is one."""
    if not text:
        return "empty"
    if text.startswith(_MARKUP_START) or _TAG.search(text) or text.count("|") >= 2 or "{" in text or "}" in text:
        return "markup"
    words = _WORD.findall(text)
    dangling = words[-1].casefold() in _DANGLING and text[-1].isalpha() if words else False
    if len(words) < MIN_WORDS or dangling or text.endswith(_CUT_OFF_END) or text.count('"') % 2 \
            or text.count("(") != text.count(")"):
        return "a fragment"
    folded = text.casefold()
    if any(marker in folded for marker in EXAMPLE_MARKERS):
        return "an echo of the prompt's example"
    return None

"""An edit, computed here (issue 27): an agent's draft and the person's edited version become one bounded
observation that shows the change, never the whole documents.

`describe` diffs the two texts by words on this machine (difflib; no model sees either document) and
writes an edit report: a marker (`EDIT_MARK`, so the engine never takes an edit for a stated rule), the
reporting agent, a bounded context, how the shape changed (words, lines, bullet points, sentence length)
and the changed passages, each cut to `HUNK_CHARS`, at most `MAX_HUNKS` of them, the whole within
`REPORT_CHARS`. The store redacts it like any observation before it is kept (`Store.add_observation`), and
the engine's propose step infers the preference behind the change from it, with the report as evidence;
repeated edits of the same kind reinforce that preference, and a forget of the edit removes it.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from gum_mcp.domain import InvalidInput

EDIT_MARK = "[edit report]"
MAX_TEXT_CHARS = 200_000  # each of before and after, at most (the tool refuses more)
CONTEXT_CHARS = 300  # of the context shown
HUNK_CHARS = 240  # of each changed passage shown
MAX_HUNKS = 8
REPORT_CHARS = 3000

_TOKEN = re.compile(r"\n|[^\S\n]+|[^\s]+")
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")
_SENTENCE = re.compile(r"[.!?]+(?:\s|$)")


@dataclass(frozen=True)
class Shape:
    words: int
    lines: int
    bullets: int
    sentences: int

    @classmethod
    def of(cls, text: str) -> Shape:
        lines = [line for line in text.splitlines() if line.strip()]
        return cls(words=len(text.split()), lines=len(lines),
                   bullets=sum(1 for line in lines if _BULLET.match(line)),
                   sentences=max(1, len(_SENTENCE.findall(text))) if text.strip() else 0)


@dataclass(frozen=True)
class EditReport:
    content: str  # the observation's text (redacted by the store when it is added)
    before: Shape
    after: Shape
    changes: int  # changed passages in all (those shown: at most MAX_HUNKS)


def _cut(text: str, chars: int) -> str:
    text = text.strip()
    return text if len(text) <= chars else text[: chars - 1] + "\u2026"


def _quoted(tokens: list[str]) -> str:
    return repr(_cut("".join(tokens), HUNK_CHARS))


def check(before: str, after: str) -> None:
    """InvalidInput when the pair is no edit: too long, or the same text."""
    for name, value in (("before", before), ("after", after)):
        if len(value) > MAX_TEXT_CHARS:
            raise InvalidInput(f"{name}: at most {MAX_TEXT_CHARS:,} characters (got {len(value):,})")
    if not before.strip() and not after.strip():
        raise InvalidInput("before and after are both empty: nothing was edited")
    if " ".join(before.split()) == " ".join(after.split()):
        raise InvalidInput("before and after are the same text: nothing was edited")


def describe(before: str, after: str, context: str = "", source: str = "agent") -> EditReport:
    """The edit report of `before` (the agent's draft) changed into `after` (the person's version)."""
    check(before, after)
    a, b = _TOKEN.findall(before), _TOKEN.findall(after)
    hunks: list[str] = []
    changes = 0
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        changes += 1
        if len(hunks) >= MAX_HUNKS:
            continue
        if op in ("replace", "delete") and "".join(a[i1:i2]).strip():
            hunks.append(f"- {_quoted(a[i1:i2])}")
        if op in ("replace", "insert") and "".join(b[j1:j2]).strip():
            hunks.append(f"+ {_quoted(b[j1:j2])}")
    shape_a, shape_b = Shape.of(before), Shape.of(after)

    def per_sentence(shape: Shape) -> str:
        return f"{shape.words / shape.sentences:.0f}" if shape.sentences else "0"

    lines = [f"{EDIT_MARK} {_cut(source, 100)} wrote a draft and the person edited it before using it."]
    if context.strip():
        lines.append(f"Context: {_cut(' '.join(context.split()), CONTEXT_CHARS)}")
    lines.append(f"Shape: {shape_a.words} -> {shape_b.words} words; {shape_a.lines} -> {shape_b.lines} lines; "
                 f"{shape_a.bullets} -> {shape_b.bullets} bullet points; {per_sentence(shape_a)} -> "
                 f"{per_sentence(shape_b)} words per sentence.")
    lines.append("Changes (- removed, + added):")
    lines.extend(hunks)
    if changes > len(hunks):
        lines.append(f"(and {changes - len(hunks)} more changes not shown)")
    content = "\n".join(lines)
    return EditReport(content=_cut(content, REPORT_CHARS), before=shape_a, after=shape_b, changes=changes)

"""Decide or ask (issue 27): for a choice an agent faces, act on a known instruction or preference, or ask.

The rule, local and without a model (`decide`):

1. Which propositions apply (`applies`): those whose situation (`applies_to`) is this choice's: at least
   `SITUATION_COVER` of the situation's words (generic verbs and stop words left out, crudely stemmed) are in
   the question or the context. One without a situation applies nowhere.
2. What each applicable instruction or preference says about the options (`stance`): an option is named
   when all its distinctive words (those no other option has; numbers only when it has nothing else) are in
   the proposition's text; in a negated clause ("never", "not", "rather than", "avoid", ...) it is excluded.
   A proposition picks an option when it names exactly one positively, or excludes all but one.
3. An applicable instruction that picks an option decides, unless another instruction picks a different
   one (then ask). Instructions win over preferences: a stated rule beats an inferred taste.
4. Without an instruction, preferences decide when every applicable preference that picks an option picks
   the same one and at least one is strong: confidence at least GUM_DECIDE_CONFIDENCE, or at least
   `REINFORCED_CONFIDENCE` with `REINFORCED_SUPPORT` pieces of evidence (an edit repeated three times).
5. Otherwise ask, with a short question. When a provider is given and something relevant is known (and
   nothing conflicts), ONE bounded call (`prompts.decide`) may still decide; its decision stands only when
   it names a given option, rests on shown ids, and its confidence reaches GUM_DECIDE_CONFIDENCE.

The rule's thresholds were set on the tuning half of tests/fixtures/decide_choices.json (`bench/decide.py`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from gum_mcp.domain import InvalidInput, Proposition
from gum_mcp.engine.prompts import ids
from gum_mcp.engine.prompts.common import shaped
from gum_mcp.engine.prompts.decide import DecideReply, decide_message, decide_system

if TYPE_CHECKING:
    from gum_mcp.llm.base import LLMProvider

log = logging.getLogger("gum_mcp.engine")

STAGE = "decide"
MAX_OPTIONS = 20
OPTION_CHARS = 200
QUESTION_CHARS = 500
CONTEXT_CHARS = 2000
MAX_SHOWN = 20  # propositions shown to the model, at most
REPLY_TOKENS = 700
SITUATION_COVER = 2 / 3  # share of a situation's words the choice must mention
REINFORCED_CONFIDENCE = 3  # a one-off edit is a guess (3-4); three edits of that kind are not
REINFORCED_SUPPORT = 3

_STOP_WORDS = """a an the and or of to in on at for with by from as into onto about like than then that this these
those it its is are be been was were will would should could can may might i me my we our you your he him his she
her they them their whose which what when where who whom how whether any all every each some one's s
choose choosing chosen pick picking select selecting book booking booked buy buying use using used make making do
doing get getting have having take taking write writing written help handle handling put set"""
_STOP = frozenset(_STOP_WORDS.split())
_GENERAL = frozenset({"anything", "everything", "everywhere", "always", "general", "any task", "all tasks"})
_NEGATION = re.compile(r"\b(?:never|not|no|nor|without|avoid|avoids|avoiding|instead of|rather than|don'?t|"
                       r"doesn'?t|do not|does not|except|other than)\b", re.IGNORECASE)
_CLAUSE_END = re.compile(r"[.;:!?,()]|\b(?:but|instead|prefers?|rather)\b",
                         re.IGNORECASE)
_TOKEN = re.compile(r"[a-z0-9]+")


def stem(word: str) -> str:
    """A crude stem, the same on both sides of every comparison: flights/flight, booking/book, merges/merge."""
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 4 and w.endswith(("ses", "xes", "ches", "shes")):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    for suffix in ("ing", "ed"):
        if len(w) > len(suffix) + 2 and w.endswith(suffix):
            w = w[: -len(suffix)]
            if len(w) > 2 and w[-1] == w[-2] and w[-1] not in "lsz":
                w = w[:-1]
            break
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w


def words(text: str) -> list[str]:
    """The stems of the content words of `text`, in order."""
    text = text.lower().replace("\u2019", "'").replace("'s ", " ")
    return [stem(t) for t in _TOKEN.findall(text) if t not in _STOP]


# ------------------------------------------------------------------------------------------- the rule
def check_choice(question: str, options: object, context: str = "") -> list[str]:
    """The options as given, or InvalidInput saying what is wrong with them (the tool's clear error)."""
    if not isinstance(options, list | tuple) or not options:
        raise InvalidInput("options: give at least two options, as a list of strings")
    if not all(isinstance(o, str) for o in options):
        raise InvalidInput("options: every option must be a string")
    cleaned = [" ".join(o.split()) for o in options]
    if any(not o for o in cleaned):
        raise InvalidInput("options: an option is empty")
    if len(cleaned) < 2:
        raise InvalidInput("options: give at least two options (one option is no choice)")
    if len(cleaned) > MAX_OPTIONS:
        raise InvalidInput(f"options: at most {MAX_OPTIONS}")
    if any(len(o) > OPTION_CHARS for o in cleaned):
        raise InvalidInput(f"options: each at most {OPTION_CHARS} characters")
    if len({o.casefold() for o in cleaned}) != len(cleaned):
        raise InvalidInput("options: the same option twice")
    if not question.strip():
        raise InvalidInput("question: required")
    if len(question) > QUESTION_CHARS or len(context) > CONTEXT_CHARS:
        raise InvalidInput(f"question: at most {QUESTION_CHARS} characters; context: at most {CONTEXT_CHARS}")
    return cleaned


def applies(prop: Proposition, question: str, context: str = "") -> bool:
    """Whether an instruction's or preference's situation is this choice's (see the module docstring)."""
    situation = " ".join((prop.applies_to or "").lower().split())
    if not situation or prop.text is None:
        return False
    if situation in _GENERAL:
        return True
    needed = set(words(situation))
    if not needed:
        return False
    said = set(words(f"{question} {context}"))
    return len(needed & said) >= SITUATION_COVER * len(needed)


def distinctive(options: Sequence[str]) -> list[set[str]]:
    """Per option, the words that name it: those no other option has (numbers only when nothing else is left)."""
    sets = [set(words(o)) for o in options]
    out = []
    for i, own in enumerate(sets):
        others = set().union(*(s for j, s in enumerate(sets) if j != i))
        mine = own - others
        alpha = {w for w in mine if not w.isdigit()}
        out.append(alpha or mine)
    return out


def _clauses(text: str) -> tuple[set[str], set[str]]:
    """The words of `text` outside and inside negated clauses."""
    positive: list[str] = []
    negative: list[str] = []
    rest = text
    while rest:
        match = _NEGATION.search(rest)
        if match is None:
            positive.extend(words(rest))
            break
        positive.extend(words(rest[: match.start()]))
        after = rest[match.end():]
        end = _CLAUSE_END.search(after)
        scope, rest = (after, "") if end is None else (after[: end.start()], after[end.start():])
        negative.extend(words(scope))
        if end is not None and rest[:1] in ".;:!?,()":
            rest = rest[1:]
    return set(positive), set(negative)


def stance(text: str, options: Sequence[str]) -> tuple[set[int], set[int]]:
    """The options `text` names positively and those it excludes (indexes)."""
    positive, negative = _clauses(text)
    named, excluded = set(), set()
    for i, needed in enumerate(distinctive(options)):
        if not needed:
            continue
        if needed <= negative:
            excluded.add(i)
        elif needed <= positive:
            named.add(i)
    return named, excluded


def picks(text: str, options: Sequence[str]) -> int | None:
    """The option `text` picks: the one it names, or the one left when it excludes all the others."""
    named, excluded = stance(text, options)
    named -= excluded
    if len(named) == 1:
        return next(iter(named))
    if not named and len(excluded) == len(options) - 1:
        return next(i for i in range(len(options)) if i not in excluded)
    return None


@dataclass
class Outcome:
    """What decide_or_ask answers: a decision (an option, the ids it rests on, a confidence) or advice to ask."""

    outcome: Literal["decide", "ask"]
    option: str | None = None
    rests_on: list[int] = field(default_factory=list)
    confidence: int | None = None
    question: str | None = None  # when asking: what to ask the person
    why: str = ""
    by: Literal["instruction", "preference", "model", "none"] = "none"
    considered: list[int] = field(default_factory=list)  # applicable propositions, instructions first


def strong(prop: Proposition, confidence: int) -> bool:
    return prop.confidence >= confidence or (
        prop.confidence >= REINFORCED_CONFIDENCE and prop.support_count >= REINFORCED_SUPPORT)


def ask_question(question: str, options: Sequence[str]) -> str:
    listed = ", ".join(options[:-1]) + f" or {options[-1]}"
    return f"{question.strip().rstrip('?')}: {listed}? Should I do the same from now on?"[:QUESTION_CHARS]


def rule(question: str, options: Sequence[str], context: str, known: Iterable[Proposition], *,
         confidence: int = 7) -> tuple[Outcome, bool]:
    """The local rule; also whether the choice is contested (applicable propositions disagree), when a model
    must not be asked to settle it."""
    applicable = [p for p in known if p.current and p.text and p.kind in ("instruction", "preference")
                  and applies(p, question, context)]
    applicable.sort(key=lambda p: (p.kind != "instruction", -p.confidence, -p.support_count, p.id))
    considered = [p.id for p in applicable]
    ask = Outcome("ask", question=ask_question(question, options), considered=considered)
    chosen: dict[str, dict[int, list[Proposition]]] = {"instruction": {}, "preference": {}}
    for prop in applicable:
        index = picks(prop.text or "", options)
        if index is not None:
            chosen[prop.kind].setdefault(index, []).append(prop)
    for kind in ("instruction", "preference"):
        found = chosen[kind]
        if len(found) > 1:
            ask.why = (f"{kind}s disagree: " + "; ".join(f"{options[i]} ({', '.join(f'#{p.id}' for p in ps)})"
                                                        for i, ps in sorted(found.items())))
            return ask, True
        if len(found) == 1:
            [(index, props)] = found.items()
            if kind == "instruction" or any(strong(p, confidence) for p in props):
                best = max(p.confidence for p in props)
                return Outcome("decide", option=options[index], rests_on=[p.id for p in props], confidence=best,
                               why=f"{'an instruction' if kind == 'instruction' else 'a preference'} applies: "
                                   f"{props[0].text}", by=kind, considered=considered), False  # type: ignore[arg-type]
            ask.why = f"only a weak preference ({props[0].text}: confidence {props[0].confidence}, " \
                      f"{props[0].support_count} piece{'s' if props[0].support_count != 1 else ''} of evidence)"
            return ask, False
    ask.why = "no instruction or preference known for this situation names one of the options" if applicable \
        else "nothing known applies to this choice"
    return ask, False


async def decide(question: str, options: Sequence[str], context: str, known: Sequence[Proposition], *,
                 confidence: int = 7, provider: LLMProvider | None = None, user: str = "the user",
                 related: Sequence[Proposition] = ()) -> Outcome:
    """The rule, then (only when it asks, nothing is contested, something is known and a provider is given) one
    bounded model call. `known`: the instructions and preferences to check; `related`: other propositions the
    search found for the choice (shown to the model only). Raises `LLMError` from the provider."""
    outcome, contested = rule(question, options, context, known, confidence=confidence)
    if outcome.outcome == "decide" or contested or provider is None:
        return outcome
    seen: set[int] = set()
    shown = [p for p in [*(p for p in known if p.id in outcome.considered), *related, *known]
             if p.current and p.text and not (p.id in seen or seen.add(p.id))][:MAX_SHOWN]
    if not shown:
        return outcome
    by_id = {p.id: p for p in shown}
    schema = shaped(DecideReply, {"proposition_ids": ids.typed_all(ids.PROPOSITION, by_id)})
    schema["properties"]["option"]["enum"] = [*options, ""]

    def check(reply: DecideReply) -> str | None:
        if reply.outcome == "decide" and reply.option not in options:
            return f"option must be one of the options given, copied exactly: {', '.join(options)}"
        return None

    reply = await provider.complete(
        DecideReply, system=decide_system(user), messages=[{"role": "user", "content": decide_message(
            question, options, context, shown)}], stage=STAGE, check=check, max_tokens=REPLY_TOKENS, json_schema=schema)
    rests = [n for n in (ids.parse(pid, ids.PROPOSITION) for pid in reply.proposition_ids) if n in by_id]
    if reply.outcome == "decide" and reply.option in options and rests and reply.confidence >= confidence:
        return Outcome("decide", option=reply.option, rests_on=rests, confidence=reply.confidence,
                       why=reply.reasoning[:600], by="model", considered=outcome.considered)
    if reply.outcome == "ask" and reply.question.strip():
        outcome.question = " ".join(reply.question.split())[:QUESTION_CHARS]
    outcome.why = (outcome.why + "; the model did not settle it").strip("; ")
    return outcome

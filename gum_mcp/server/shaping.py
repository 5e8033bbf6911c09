"""What results look like: the output models tools and resources share, the bound on every result
(MAX_OUTPUT_BYTES, said so when it cuts), and compact text (the profile portrait)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, Field

from gum_mcp.domain import Proposition, human_age, utcnow
from gum_mcp.server import disclosure
from gum_mcp.store.suggestions import Suggestion

if TYPE_CHECKING:
    from gum_mcp.engine.suggest import Gate
    from gum_mcp.runtime import Runtime
    from gum_mcp.store import Store

MAX_OUTPUT_BYTES = 16 * 1024
#: `bounded` cuts long items to no fewer characters than this before it drops whole items.
MIN_ITEM_CHARS = 1000
SNIPPET_CHARS = 200
EVIDENCE_PER_PROPOSITION = 2

M = TypeVar("M", bound=BaseModel)
I = TypeVar("I")  # noqa: E741 (an item of a bounded list)


# ---------------------------------------------------------------------------------------- the bound
def json_size(model: BaseModel) -> int:
    """The size of `model` as JSON, measured generously (spaces after separators, non-ASCII escaped), so
    that compact JSON and the structured content on the wire are never larger."""
    return len(json.dumps(model.model_dump(mode="json")).encode())


def bounded(result: M, field: str, limit: int = MAX_OUTPUT_BYTES,
            shorten: Callable[[I, int], I] | None = None) -> M:
    """Make `result` fit in `limit` bytes of JSON, and say so in its note.

    With `shorten(item, chars)` (an item with its long text cut to `chars` characters), long items are
    cut first, as little as needed, and the first item is always kept, cut as short as it takes:
    one long item never empties the answer. Then (or without `shorten`) items are dropped from the end.
    """
    if json_size(result) <= limit:
        return result
    items = list(getattr(result, field))
    total = len(items)

    def attempt(kept: list[Any], note: str) -> M:
        return result.model_copy(update={field: kept, "truncated": True, "note": f"output limited to "
                                         f"{limit // 1024} KiB: {note}; ask for fewer or narrow the request"})

    if shorten is not None and items:
        longest = max(_text_chars(item) for item in items)
        if longest > MIN_ITEM_CHARS:
            def cut(chars: int, upto: int = total) -> M:
                return attempt([shorten(item, chars) for item in items[:upto]],
                               f"showing {upto} of {total}, long contents cut to {chars:,} characters")

            chars = _largest(MIN_ITEM_CHARS, longest, lambda c: json_size(cut(c)) <= limit)
            if chars is not None:
                return cut(chars)
            upto = total
            while upto > 1 and json_size(cut(MIN_ITEM_CHARS, upto)) > limit:
                upto -= 1
            if json_size(cut(MIN_ITEM_CHARS, upto)) <= limit:
                return cut(MIN_ITEM_CHARS, upto)
            chars = _largest(0, MIN_ITEM_CHARS, lambda c: json_size(cut(c, 1)) <= limit)
            return cut(chars or 0, 1)
    while items and json_size(result) > limit:
        items.pop()
        result = attempt(list(items), f"showing {len(items)} of {total}")
    return result


def _largest(low: int, high: int, fits: Callable[[int], bool]) -> int | None:
    """The largest n in [low, high] with fits(n) (fits is monotonic), or None."""
    if not fits(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def _text_chars(item: Any) -> int:
    return max((len(value) for value in vars(item).values() if isinstance(value, str)), default=0)


def cut_text(text: str | None, chars: int) -> str | None:
    """`text` cut to `chars` characters, marked with an ellipsis when it was longer."""
    if text is None or len(text) <= chars:
        return text
    return text[: max(0, chars - 1)] + "…"


# ---------------------------------------------------------------------------------------- propositions
class Evidence(BaseModel):
    observation_id: int
    kind: str
    source: str
    observed_at: datetime
    snippet: str | None = Field(description="the start of the observation; null once pruned by retention")


class PropositionOut(BaseModel):
    id: int
    text: str | None
    reasoning: str | None
    confidence: int = Field(description="1-10: how sure the inference is")
    decay: int = Field(description="1-10: 10 = a lasting trait, 1 = a passing state")
    age: str = Field(description="time since the last supporting observation, e.g. 3h, 2d")
    last_supported_at: datetime
    created_at: datetime
    support_count: int
    user_confirmed: bool
    score: float | None = Field(None, description="relevance x recency x confidence, for query results")
    matched: list[str] | None = Field(None, description="which signals matched: bm25 (words), vector (meaning)")
    evidence: list[Evidence] = Field(default_factory=list)
    kind: str = Field("belief", description="instruction: a standing rule the user stated (follow it); preference: "
                                            "what they like; belief: anything else")
    applies_to: str | None = Field(None, description="for an instruction or preference: the situation it applies to")


async def shape_propositions(store: Store, props: list[Proposition],
                             scores: dict[int, tuple[float, list[str]]] | None = None) -> list[PropositionOut]:
    props = disclosure.propositions(props)  # only what this client may see, evidence too (disclosure.py)
    snippets = await store.aio.evidence_snippets([p.id for p in props], per=disclosure.fetch(EVIDENCE_PER_PROPOSITION),
                                                  chars=SNIPPET_CHARS)
    snippets = await disclosure.evidence(store, snippets, per=EVIDENCE_PER_PROPOSITION)
    now = utcnow()
    out = []
    for p in props:
        score, matched = (scores or {}).get(p.id, (None, None))
        out.append(PropositionOut(
            id=p.id, text=p.text, reasoning=p.reasoning, confidence=p.confidence, decay=p.decay,
            age=human_age(p.last_supported_at, now), last_supported_at=p.last_supported_at,
            created_at=p.created_at, support_count=p.support_count, user_confirmed=p.user_confirmed,
            score=None if score is None else round(score, 4), matched=matched,
            evidence=[Evidence(**e) for e in snippets.get(p.id, [])], kind=p.kind, applies_to=p.applies_to,
        ))
    return out


async def portrait(runtime: Runtime, limit: int = 25) -> str:
    """A compact markdown portrait: the most relevant recent propositions, by recency x confidence."""
    result = await disclosure.search(runtime, "", k=min(limit, 20))
    props = [h.proposition for h in result.hits if h.proposition is not None]
    name = runtime.settings.user_name
    if not props:
        if disclosure.withheld():
            return f"# {name}\n\nNothing this client may see: {disclosure.note(None)}."
        return f"# {name}\n\nNothing is known yet: gum-mcp learns from observations as they arrive."
    lines = [f"# What gum-mcp believes about {name}", ""]
    lines += [f"- {'Instruction: ' if p.kind == 'instruction' else ''}{p.text} (confidence {p.confidence}/10,"
              f" decay {p.decay}/10, {human_age(p.last_supported_at)} ago, #{p.id})" for p in props]
    if disclosure.withheld():
        lines += ["", f"({disclosure.note(None)})"]
    text = "\n".join(lines)
    return text[:MAX_OUTPUT_BYTES]


# ---------------------------------------------------------------------------------------- suggestions
class Ground(BaseModel):
    id: int
    text: str | None = Field(description="the proposition; null once forgotten")
    confidence: int
    decay: int
    age: str = Field(description="time since its last support, e.g. 3h, 2d")
    current: bool = Field(description="false once a revision superseded it")


class SuggestionOut(BaseModel):
    id: int
    title: str
    action: str = Field(description="what the assistant would do for the user")
    rationale: str = Field(description="why it helps now")
    status: Literal["pending", "accepted", "dismissed", "done", "expired"]
    p_useful: float = Field(description="probability it is useful: from the grounding propositions' confidence "
                                        "and age, lowered for dismissed suggestions on the same grounds")
    benefit: int = Field(description="1-10: how much it helps if right")
    cost: int = Field(description="1-10: the cost of interrupting and of being wrong")
    utility: float = Field(description="p_useful x benefit - cost")
    threshold: float = Field(description="the utility it had to exceed (GUM_SUGGEST_THRESHOLD)")
    p_needed: float = Field(description="the least p_useful that would have passed: (cost + threshold) / benefit")
    dismissal_penalty: float | None = Field(None, description="factor applied to p_useful for dismissed "
                                                              "suggestions on the same grounds (1 = none)")
    explanation: str
    grounds: list[Ground] = Field(description="the propositions it rests on")
    created_at: datetime
    responded_at: datetime | None = None
    note: str | None = None


def shape_suggestion(suggestion: Suggestion, props: dict[int, Proposition], gate: Gate | None = None
                     ) -> SuggestionOut:
    now = utcnow()
    p_needed = (suggestion.cost + suggestion.threshold) / suggestion.benefit
    if gate is not None:
        explanation = gate.explain()
    else:
        passed = ">" if suggestion.utility > suggestion.threshold else "<="
        explanation = (f"p_useful {suggestion.p_useful:.2f} x benefit {suggestion.benefit} - cost {suggestion.cost}"
                       f" = utility {suggestion.utility:.2f} {passed} threshold {suggestion.threshold:g}")
    grounds = [Ground(id=p.id, text=p.text, confidence=p.confidence, decay=p.decay,
                      age=human_age(p.last_supported_at, now), current=p.current)
               for pid in suggestion.proposition_ids if (p := props.get(pid)) is not None]
    return SuggestionOut(
        id=suggestion.id, title=suggestion.title, action=suggestion.action, rationale=suggestion.rationale,
        status=suggestion.status, p_useful=round(suggestion.p_useful, 4), benefit=suggestion.benefit,
        cost=suggestion.cost, utility=round(suggestion.utility, 4), threshold=suggestion.threshold,
        p_needed=round(p_needed, 4), dismissal_penalty=None if gate is None else round(gate.penalty, 4),
        explanation=explanation, grounds=grounds, created_at=suggestion.created_at,
        responded_at=suggestion.responded_at, note=suggestion.note,
    )


async def shape_suggestions(store: Store, suggestions: Sequence[Suggestion]) -> list[SuggestionOut]:
    suggestions = await disclosure.suggestions(store, suggestions)  # only what this client may see
    ids = sorted({pid for s in suggestions for pid in s.proposition_ids})
    props = await store.aio.get_propositions(ids) if ids else {}
    return [shape_suggestion(s, props) for s in suggestions]

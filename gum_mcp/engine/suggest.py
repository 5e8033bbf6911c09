"""Proactive suggestions: candidates from the LLM, an expected-utility gate, memory of what was said.

    suggest(store, provider, related, settings, context="", limit=3) -> SuggestOutcome

1. **Generation.** The model sees, as escaped and delimited data (see `gum_mcp.engine.prompts.suggest`):
   the current propositions that matter most now (`related("", k)`: retrieval's empty query, the
   highest recency x confidence; plus `related(context, k)` when the caller gives a context), the
   recent activity (the newest observations of the last `RECENT_HOURS` that the engine has
   *processed*, so the privacy audit has passed them when it is on; skipped ones never appear), the
   caller's context, and the earlier suggestions it must not repeat (open and dismissed). It returns
   candidates: title, action (what the assistant would do), rationale, the proposition ids they rest
   on, benefit and cost (1-10 each). Cited ids the prompt did not show are dropped; a candidate left
   without one is dropped ("ungrounded").
2. **The gate** (mixed-initiative expected utility, after Horvitz 1999). For a candidate resting on
   propositions i = 1..n:

       p_i      = (confidence_i / 10) * 2 ** (-age_i / half_life_days(decay_i))
       p_base   = mean(p_i)
       penalty  = DISMISS_PENALTY ** mean(dismissed_i)
       p_useful = p_base * penalty
       utility  = p_useful * benefit - cost          admitted when utility > threshold

   - confidence / 10: the engine's confidence scale reads as a probability (its prompt: 1-3 a guess,
     4-6 likely, 7-8 well supported, 9-10 explicit); user-confirmed propositions have 10.
   - 2 ** (-age / half_life): the chance the premise still holds, with retrieval's half-life
     (decay 1 = 1 day ... decay 10 = 512 days, age from last support). A suggestion built on "is
     tired today" from three days ago is worth little; one built on a lasting preference keeps its
     weight. Unlike retrieval's recency weight there is no floor: a stale premise is a weak premise.
   - mean, not product or noisy-OR: the model cites the premises together with supporting context;
     a product would punish citing more, a noisy-OR would reward it. The mean does neither, and one
     weak premise still pulls p down in proportion.
   - dismissed_i: how many dismissed suggestions rested on proposition i or an earlier version of it
     (lineage). Each dismissal halves (DISMISS_PENALTY 0.5) the weight of suggestions resting wholly
     on what the person already turned down once; resting on it in part costs proportionally less.
   - benefit: how much it helps if it is right; cost: the price of interrupting and of being wrong.
     Both are the model's 1-10 judgements, on one scale, so utility is in "benefit points".
   - threshold: `settings.suggest_threshold` (env GUM_SUGGEST_THRESHOLD), default DEFAULT_THRESHOLD
     2.0: a suggestion must be expected to be worth at least two benefit points more than its cost.
     With it, p 0.8, benefit 7, cost 3 (2.6) passes; p 0.6, benefit 6, cost 2 (1.6) does not.
   Each admitted suggestion carries these numbers, and `p_needed` = (cost + threshold) / benefit,
   the least p_useful that would have admitted it.
3. **Memory.** A grounded candidate that is a near-duplicate of an open or dismissed suggestion
   (see `gum_mcp.store.suggestions`) is dropped before the gate; the admitted ones are stored best
   first, up to `limit`, skipping near-duplicates of a better one from the same call (the store
   checks again in its write transaction). Every candidate is reported with what became of it
   (admitted, below_threshold, ungrounded, invalid, duplicate, over_limit). When fewer than `limit`
   are suggested, `reason` says why: "nothing known yet: ...", "the model found nothing worth an
   interruption in 12 propositions and 5 recent observations", or "3 candidates, 1 suggested, 2
   below the threshold (best utility 1.50 is not above threshold 2)".
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from gum_mcp.config import Settings
from gum_mcp.domain import (
    SUGGEST_MAX_CONTEXT_CHARS,
    SUGGEST_MAX_LIMIT,
    InvalidInput,
    Observation,
    Proposition,
    half_life_days,
    utcnow,
)
from gum_mcp.engine.prompts import ObservationView, SuggestedAction, SuggestReply, suggest_message, suggest_system
from gum_mcp.llm.base import LLMProvider
from gum_mcp.store import Store
from gum_mcp.store.suggestions import NewSuggestion, Suggestion, find_duplicate

#: Default of `settings.suggest_threshold` (GUM_SUGGEST_THRESHOLD): the least utility a suggestion needs.
DEFAULT_THRESHOLD = 2.0
#: p_useful is multiplied by this per dismissal of the propositions it rests on (averaged over them).
DISMISS_PENALTY = 0.5

MAX_LIMIT = SUGGEST_MAX_LIMIT
MAX_CONTEXT_CHARS = SUGGEST_MAX_CONTEXT_CHARS
RECENT_PROPOSITIONS = 15  # from the empty query: what matters most now
CONTEXT_PROPOSITIONS = 10  # from the caller's context
RECENT_HOURS = 24
RECENT_OBSERVATIONS = 12
OBSERVATION_CHARS = 600
EARLIER_SUGGESTIONS = 25
STAGE = "suggest"

#: `related(text, k)`: up to k current propositions for `text`; "" = the most relevant recent ones.
RelatedFn = Callable[[str, int], Awaitable[Sequence[Proposition]]]


# -------------------------------------------------------------------------------------------- gate


def premise_probability(prop: Proposition, now: datetime) -> float:
    """(confidence / 10) x the chance it still holds after its age, at its decay's half-life."""
    age_days = max(0.0, (now - prop.last_supported_at).total_seconds() / 86400.0)
    return (prop.confidence / 10.0) * 2.0 ** (-age_days / half_life_days(prop.decay))


@dataclass(frozen=True)
class Gate:
    p_base: float
    dismissals: float  # mean dismissals per grounding proposition
    penalty: float
    p_useful: float
    benefit: int
    cost: int
    utility: float
    threshold: float

    @property
    def admitted(self) -> bool:
        return self.utility > self.threshold

    @property
    def p_needed(self) -> float:
        """The least p_useful that would pass the gate with this benefit and cost."""
        return (self.cost + self.threshold) / self.benefit

    def explain(self) -> str:
        sign = ">" if self.admitted else "<="
        penalty = f" (x{self.penalty:.2f} for dismissed suggestions on the same grounds)" if self.penalty < 1 else ""
        return (f"p_useful {self.p_useful:.2f}{penalty} x benefit {self.benefit} - cost {self.cost}"
                f" = utility {self.utility:.2f} {sign} threshold {self.threshold:g}")


def gate(grounds: Sequence[Proposition], dismissals: dict[int, int], benefit: int, cost: int, threshold: float,
         now: datetime) -> Gate:
    """The expected-utility gate for one candidate (see the module docstring)."""
    if not grounds:
        raise ValueError("a suggestion needs at least one grounding proposition")
    p_base = statistics.fmean(premise_probability(p, now) for p in grounds)
    mean_dismissals = statistics.fmean(dismissals.get(p.id, 0) for p in grounds)
    penalty = DISMISS_PENALTY ** mean_dismissals
    p_useful = min(1.0, max(0.0, p_base * penalty))
    utility = p_useful * benefit - cost
    return Gate(p_base=p_base, dismissals=mean_dismissals, penalty=penalty, p_useful=p_useful, benefit=benefit,
                cost=cost, utility=utility, threshold=threshold)


def threshold_of(settings: Settings) -> float:
    return float(getattr(settings, "suggest_threshold", DEFAULT_THRESHOLD))


# ----------------------------------------------------------------------------------------- the call


@dataclass
class Candidate:
    """One candidate the model proposed, and what became of it."""

    title: str
    action: str
    rationale: str
    benefit: int
    cost: int
    cited: tuple[int, ...]
    grounds: tuple[int, ...]  # the cited ids that were shown
    gate: Gate | None = None
    outcome: str = "considered"  # admitted | below_threshold | ungrounded | invalid | duplicate | over_limit
    why: str = ""
    suggestion: Suggestion | None = None


@dataclass
class SuggestOutcome:
    suggestions: list[Suggestion] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    reason: str | None = None  # why nothing (or less than asked) was suggested
    propositions: dict[int, Proposition] = field(default_factory=dict)  # what the prompt showed, by id
    observations_shown: int = 0
    threshold: float = DEFAULT_THRESHOLD

    def gate_of(self, suggestion_id: int) -> Gate | None:
        for candidate in self.candidates:
            if candidate.suggestion is not None and candidate.suggestion.id == suggestion_id:
                return candidate.gate
        return None


class Visible(Protocol):
    """What the client asking may see (gum_mcp/server/disclosure.py): the model is shown nothing else, so a
    suggestion never draws on knowledge the client's disclosure policy withholds."""

    async def observations(self, found: Sequence[Observation]) -> list[Observation]: ...

    async def suggestions(self, found: Sequence[Suggestion]) -> list[Suggestion]: ...


async def gather(
    store: Store, related: RelatedFn, context: str, now: datetime, visible: Visible | None = None,
) -> tuple[list[Proposition], list[Observation]]:
    """The propositions and recent observations a suggestion may draw on (`related` gives only propositions the
    client may see; `visible` filters the observations)."""
    found: dict[int, Proposition] = {}
    searches = [(context, CONTEXT_PROPOSITIONS)] if context.strip() else []
    searches.append(("", RECENT_PROPOSITIONS))
    for text, k in searches:
        for prop in await related(text, k):
            if prop.current and prop.text and prop.id not in found:
                found[prop.id] = prop
    observations = await store.aio.observations(status="processed", since=now - timedelta(hours=RECENT_HOURS),
                                                limit=RECENT_OBSERVATIONS * 2)
    if visible is not None:
        observations = await visible.observations(observations)
    recent = [o for o in observations if o.content][:RECENT_OBSERVATIONS]
    return list(found.values()), recent


async def suggest(
    store: Store,
    provider: LLMProvider | None,
    related: RelatedFn,
    settings: Settings,
    *,
    context: str = "",
    limit: int = 3,
    now: datetime | None = None,
    no_provider_reason: str | None = None,
    visible: Visible | None = None,
) -> SuggestOutcome:
    """Generate, gate and store suggestions (see the module docstring). Raises `InvalidInput` for bad
    arguments or when no LLM is configured and there is something to suggest from, `LLMError` when
    the provider fails (nothing is stored then)."""
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit: must be between 1 and {MAX_LIMIT}")
    context = context or ""
    if len(context) > MAX_CONTEXT_CHARS:
        raise InvalidInput(f"context: at most {MAX_CONTEXT_CHARS} characters")
    now = now or utcnow()
    threshold = threshold_of(settings)
    outcome = SuggestOutcome(threshold=threshold)

    props, observations = await gather(store, related, context, now, visible)
    outcome.propositions = {p.id: p for p in props}
    outcome.observations_shown = len(observations)
    if not props:
        outcome.reason = (f"nothing known yet: there are no propositions about {settings.user_name} to ground a "
                          "suggestion on")
        return outcome
    if provider is None:
        raise InvalidInput(f"suggestions need an LLM: {no_provider_reason or 'none is configured'}")

    blocking = await store.aio.blocking_suggestions(now=now)  # open and dismissed: not to be repeated
    shown = blocking if visible is None else await visible.suggestions(blocking[:4 * EARLIER_SUGGESTIONS])
    earlier = shown[:EARLIER_SUGGESTIONS]
    views = [ObservationView(id=o.id, kind=o.kind, source=o.source, at=o.observed_at,
                             content=(o.content or "")[:OBSERVATION_CHARS]) for o in observations]
    reply = await provider.complete(
        SuggestReply, system=suggest_system(settings.user_name, limit),
        messages=[{"role": "user", "content": suggest_message(context, props, views, earlier, limit)}],
        stage=STAGE,
    )

    # validate grounding, then gate
    cited_all = {pid for s in reply.suggestions for pid in s.proposition_ids if pid in outcome.propositions}
    dismissals = await store.aio.dismissals(sorted(cited_all)) if cited_all else {}
    for item in reply.suggestions:
        outcome.candidates.append(_screen(item, outcome.propositions, blocking, dismissals, threshold, now))

    chosen = _choose(outcome.candidates, limit)
    if chosen:
        await _save(store, chosen, observations, threshold, now)
        outcome.suggestions = [c.suggestion for c in chosen if c.suggestion is not None]

    outcome.reason = _reason(outcome, limit)
    return outcome


def _screen(item: SuggestedAction, shown: dict[int, Proposition], blocking: Sequence[Suggestion],
            dismissals: dict[int, int], threshold: float, now: datetime) -> Candidate:
    """One candidate from the model's reply: invalid, ungrounded, a duplicate of an earlier suggestion, or
    gated (outcome "considered" when the gate admits it, else "below_threshold")."""
    grounds = tuple(dict.fromkeys(pid for pid in item.proposition_ids if pid in shown))
    candidate = Candidate(title=item.title.strip(), action=item.action.strip(), rationale=item.rationale.strip(),
                          benefit=item.benefit, cost=item.cost, cited=tuple(item.proposition_ids),
                          grounds=grounds)
    if not candidate.title or not candidate.action:
        candidate.outcome, candidate.why = "invalid", "it has no title or no action"
        return candidate
    if not grounds:
        candidate.outcome = "ungrounded"
        candidate.why = ("it cited no proposition that was shown" if not item.proposition_ids else
                         f"it cited only unknown proposition ids ({', '.join(map(str, item.proposition_ids))})")
        return candidate
    earlier_match = find_duplicate(candidate.title, candidate.action, blocking)
    if earlier_match is not None:
        match, score = earlier_match
        candidate.outcome = "duplicate"
        candidate.why = (f"near-duplicate (similarity {score:.2f}) of suggestion {match.id}, which is "
                         f"{match.status}")
        return candidate
    candidate.gate = gate([shown[pid] for pid in grounds], dismissals, item.benefit, item.cost, threshold, now)
    if not candidate.gate.admitted:
        candidate.outcome, candidate.why = "below_threshold", candidate.gate.explain()
    return candidate


def _choose(candidates: Sequence[Candidate], limit: int) -> list[Candidate]:
    """The admitted candidates, best first, without near-duplicates of a better one, up to the limit."""
    admitted = sorted((c for c in candidates if c.outcome == "considered"),
                      key=lambda c: -c.gate.utility)  # type: ignore[union-attr]
    chosen: list[Candidate] = []
    for candidate in admitted:
        if any(find_duplicate(candidate.title, candidate.action, [_as_suggestion(c)]) for c in chosen):
            candidate.outcome, candidate.why = "duplicate", "near-duplicate of a better candidate in this call"
            continue
        if len(chosen) >= limit:
            candidate.outcome, candidate.why = "over_limit", f"limit {limit} reached"
            continue
        chosen.append(candidate)
    return chosen


async def _save(store: Store, chosen: Sequence[Candidate], observations: Sequence[Observation], threshold: float,
                now: datetime) -> None:
    """Store the chosen candidates; each ends admitted (with its suggestion), ungrounded or duplicate."""
    news = [NewSuggestion(title=c.title, action=c.action, rationale=c.rationale, benefit=c.benefit, cost=c.cost,
                          p_useful=c.gate.p_useful, utility=c.gate.utility,  # type: ignore[union-attr]
                          threshold=threshold, proposition_ids=c.grounds,
                          observation_ids=tuple(o.id for o in observations)) for c in chosen]
    saved = await store.aio.save_suggestions(news, now=now)
    for candidate, new, stored in zip(chosen, news, saved.stored, strict=True):
        if stored is not None:
            candidate.outcome, candidate.suggestion = "admitted", stored
            candidate.why = candidate.gate.explain()  # type: ignore[union-attr]
        elif any(new is gone for gone in saved.ungrounded):
            candidate.outcome, candidate.why = "ungrounded", "the propositions it rests on were forgotten meanwhile"
        else:
            candidate.outcome, candidate.why = "duplicate", "a similar suggestion was stored meanwhile"


def _as_suggestion(candidate: Candidate) -> Suggestion:
    return Suggestion(id=0, title=candidate.title, action=candidate.action, rationale=candidate.rationale,
                      benefit=candidate.benefit, cost=candidate.cost, p_useful=0.0, utility=0.0, threshold=0.0,
                      status="pending", created_at=utcnow(), proposition_ids=candidate.grounds)


def _reason(outcome: SuggestOutcome, limit: int) -> str | None:
    """Why nothing, or fewer than `limit`, was suggested; None when `limit` were."""
    if len(outcome.suggestions) >= limit:
        return None
    candidates = outcome.candidates
    if not candidates:
        return (f"the model found nothing worth an interruption in {len(outcome.propositions)} propositions and "
                f"{outcome.observations_shown} recent observations")
    counts: dict[str, int] = {}
    for c in candidates:
        counts[c.outcome] = counts.get(c.outcome, 0) + 1
    parts = [f"{len(candidates)} candidate{'s' if len(candidates) != 1 else ''}"]
    if counts.get("admitted"):
        parts.append(f"{counts['admitted']} suggested")
    if counts.get("invalid"):
        parts.append(f"{counts['invalid']} without a title or an action")
    if counts.get("ungrounded"):
        parts.append(f"{counts['ungrounded']} without a valid grounding proposition")
    if counts.get("duplicate"):
        parts.append(f"{counts['duplicate']} near-duplicate of an open, dismissed or better suggestion")
    below = [c for c in candidates if c.outcome == "below_threshold" and c.gate is not None]
    if below:
        best = max(below, key=lambda c: c.gate.utility)  # type: ignore[union-attr]
        parts.append(f"{len(below)} below the threshold (best utility {best.gate.utility:.2f} is not above "  # type: ignore[union-attr]
                     f"threshold {outcome.threshold:g})")
    return ", ".join(parts)

"""One batch of observations through audit -> propose -> gather -> relate -> revise -> commit.

`process_batch` decides everything first (at most four LLM calls: audit, propose, relate,
revise, each skipped when it has nothing to do), builds ONE `BatchResult` and hands it to
`Store.complete_batch`, which writes it in one transaction. Nothing is written before that, so an
error or a crash anywhere leaves the batch pending.

Rules that keep replies honest:
- Ids are typed (`o12`, `p34`, `d3`: `prompts.ids`). An id in a reply counts only if the prompt
  showed it, as its kind: observation ids of this batch (for propose and revise only those the audit
  allowed), draft ids, candidate proposition ids. The schema sent lists exactly those as an `enum`
  (`prompts.shaped`) for servers whose grammar enforces it; the same check runs here for those that
  do not. Unknown ids and ids of the wrong kind are dropped; a reply item left with no known id
  leaves no trace.
- The audit fails closed: only an observation with an allow verdict (and no skip) reaches propose.
  One without a verdict (left out, an empty list, only ids never shown) is held: left out of the
  commit, pending with one attempt counted, audited again, and after GUM_MAX_ATTEMPTS skipped with
  the reason (`store.skipped.hold`). One the person released (`gum-mcp audit --release`) is not
  judged again.
- A proposition's text must be a claim (`claims`): markup, a fragment or an echo of the prompt's
  example is dropped. Confidence and decay outside 1-10 fail validation.
- A reply is also judged as a whole: one with items of which none cites a shown id, or none has a
  usable text, is invalid (the provider asks once for a repair, then raises `LLMInvalidReply`),
  never a silent "processed".
- Every reply's list is capped in proportion to the batch (`maxItems` in the schema sent, and the
  pipeline reads no more): the `*_ITEMS_PER_*` constants, and at most what half of GUM_LLM_CONTEXT
  holds (`fit`). Every call sends `max_tokens` sized to its step and its cap.
- Every prompt fits GUM_LLM_CONTEXT (`fit`): an observation's text is cut to what one prompt holds;
  the audit shows fewer existing propositions, relate fewer candidates and revise shorter
  observations when they must; a prompt that still does not fit raises `PromptTooLarge`, and the
  loop decides fewer observations at a time (`fitting` says how many fit before asking).
- Identical observations inside a batch (screens repeat) are shown once with `seen="n"`; citing
  the shown id cites every repeat.
- A draft whose normalised text equals a claim the person rejected is dropped.
- A draft whose normalised text equals a candidate's is identical without asking the model, and so
  is a near duplicate of exactly one candidate (cosine at least `GUM_DEDUP_SIMILARITY` and the same
  words; `gum_mcp.engine.dedup`): both are reinforcements. Only candidates in the uncertain middle
  go to relate; a draft with none there is new.
- Retrieval queries leave out the person's name: every proposition contains it, so it carries no
  topic and would make a full-text search score every row.

Errors: every `LLMError` propagates (the caller counts the attempt, splits the batch or pauses), and so do
`PromptTooLarge`, and `StaleBatch` and `BatchForgotten` (a forget landed while the batch was decided)
from the commit.
"""

from __future__ import annotations

import functools
import logging
import re
import time
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol, TypeVar

import anyio
from pydantic import BaseModel

from gum_mcp.config import Settings
from gum_mcp.domain import (
    BatchResult,
    LineageCause,
    NewProposition,
    Observation,
    Proposition,
    PropositionDraft,
    Reinforcement,
    most_sensitive,
)
from gum_mcp.engine import claims, dedup, fit, instructions, prompts
from gum_mcp.engine.fit import PromptTooLarge
from gum_mcp.engine.prompts import ClusterView, DraftView, ObservationView, ids
from gum_mcp.store import skipped as skipped_store
from gum_mcp.store.db import crash_point

if TYPE_CHECKING:
    from gum_mcp.llm.base import LLMProvider
    from gum_mcp.store import Store

log = logging.getLogger("gum_mcp.engine")

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R", bound=prompts.Reply)

class Related(Protocol):
    """A proposition found for a query, with the cosine of the two when known (a retrieval `Hit`)."""

    @property
    def proposition(self) -> Proposition | None: ...

    @property
    def similarity(self) -> float | None: ...


#: `related(text, k)`: up to k current propositions related to `text`, most similar first (the runtime
#: wires the dedup search here: `gum_mcp.retrieval.dedup`). Items are propositions, or `Related`
#: items whose cosine enables the near-duplicate stage. Retired or forgotten propositions are ignored.
#: It may carry a batched form as its attribute `many(texts, k)` -> one such sequence per text, which the
#: gather step then uses for a batch's drafts (the runtime's embeds them in one call).
RelatedFn = Callable[[str, int], Awaitable[Sequence["Proposition | Related"]]]

#: Crash points the engine passes in each batch, in order (the store adds `db.BATCH_CRASH_POINTS`).
ENGINE_CRASH_POINTS = (
    "engine:after_audit",
    "engine:after_propose",
    "engine:after_relate",
    "engine:after_revise",
)

AUDIT_CONTEXT_K = 8  # existing propositions shown to the audit
GATHER_CONCURRENCY = 4  # related searches in flight at once (their embeddings run one pass per core)
AUDIT_QUERY_CHARS = 4000  # how much of the batch text the audit's retrieval query uses
GATHER_K = 20  # candidates gathered per draft (the dedup search's most)
MAX_CANDIDATES = 60  # candidates shown to relate, in all (each draft gets a fair share)
# Reply items allowed, in proportion to the batch (maxItems in the schema sent, and in code):
AUDIT_ITEMS_PER_OBSERVATION = 2  # one verdict each, with room for repeats
PROPOSE_ITEMS_PER_OBSERVATION = 3
RELATE_ITEMS_PER_DRAFT = 2  # one judgement each, with room for repeats
REVISE_ITEMS_PER_INPUT = 3  # per draft and proposition of the clusters: room to split
MIN_ITEMS = 5
RECALIBRATE_DELTA = 2  # identical, but judged this far from the stored confidence -> a revision
MAX_TEXT = 2000
MAX_REASONING = 8000
AUDIT_CONTEXT_LADDER = (1.0, 0.5, 0.0)  # shares of the audit's context shown, until the prompt fits
REVISE_OBSERVATION_CHARS = (None, 600, 0)  # observation text shown to revise, until the prompt fits
_GENERIC_WORDS = {"the", "user", "a", "an", "person", "me"}  # the default GUM_USER_NAME is "the user"


def _name_pattern(name: str) -> re.Pattern[str] | None:
    """The person's name as a whole and its distinctive words, for removal from search queries."""
    words = [w for w in re.findall(r"\w+", name) if len(w) > 1 and w.casefold() not in _GENERIC_WORDS]
    parts = sorted({" ".join(name.split()), *words}, key=len, reverse=True)
    parts = [re.escape(p).replace(r"\ ", r"\s+") for p in parts if p]
    if not parts:
        return None
    return re.compile(rf"(?<!\w)(?:{'|'.join(parts)})(?:'s)?(?!\w)", re.IGNORECASE)


@dataclass
class BatchOutcome:
    """What one batch did, for status, hooks and the benchmark."""

    observation_ids: tuple[int, ...]
    result: BatchResult
    new_ids: list[int] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)  # LLM stages called, in order
    llm_seconds: float = 0.0  # wall time inside provider.complete()
    seconds: float = 0.0  # wall time of the whole batch, commit included
    dropped_rejected: int = 0
    ignored_ids: int = 0  # ids in replies that were not shown (or of the wrong kind)
    rejected_texts: int = 0  # reply items whose text was markup, a fragment or the example's echo
    exact_merges: int = 0  # drafts with a candidate's very text: reinforced without asking
    near_duplicates: int = 0  # drafts that were near duplicates of one candidate: reinforced without asking
    related_drafts: int = 0  # drafts sent to relate
    held: tuple[int, ...] = ()  # the audit gave them no verdict: pending, audited again (store/skipped.py)

    @property
    def llm_calls(self) -> int:
        return len(self.stages)

    @property
    def overhead_seconds(self) -> float:
        return max(0.0, self.seconds - self.llm_seconds)


def cap(per: int, count: int) -> int:
    """How many items a reply may hold: `per` for each of `count` inputs, at least MIN_ITEMS."""
    return max(MIN_ITEMS, per * count)


def _unknown(what: str, shown: Sequence[str]) -> str:
    """Why a reply citing nothing that was shown is invalid (for the repair request; bounded)."""
    listed = ", ".join(list(shown)[:30]) + (", ..." if len(shown) > 30 else "")
    return f"none of the {what} in the reply was shown in the request; use only these: {listed or '(none)'}"


def _unusable(what: str, problems: Sequence[str]) -> str:
    """Why a reply whose every text was rejected is invalid. Names positions, never the texts (they came
    from observations and must not re-enter a prompt outside the delimiters)."""
    listed = "; ".join(problems[:8]) + ("; ..." if len(problems) > 8 else "")
    return (f"no {what} in the reply can be used: {listed}. Write each text as one plain sentence about the "
            "person, without markup, and never with the names of the instructions' example")


def _claim(text: str) -> tuple[str, str | None]:
    """A reply's text as stored (one line, unescaped, bounded) and why it is not a claim, if it is not."""
    cleaned = claims.clean(text)[:MAX_TEXT]
    return cleaned, claims.problem(cleaned)


_CUT_MARK = 48  # room for " [... 1,234,567 more characters not shown]"


def _cut(content: str, limit: int) -> str:
    """`content`, or its start and how much more there was, taking at most `limit` characters in the prompt
    once escaped (`&` becomes `&amp;`: text full of markup grows)."""
    if len(prompts.escape_text(content)) <= limit:
        return content
    keep = max(0, limit - _CUT_MARK)
    while keep and len(prompts.escape_text(content[:keep])) > limit - _CUT_MARK:
        keep = keep * (limit - _CUT_MARK) // len(prompts.escape_text(content[:keep]))
    return f"{content[:keep]} [... {len(content) - keep:,} more characters not shown]"


def _first_prompts(views: Sequence[ObservationView], settings: Settings) -> list[int]:
    """Tokens the audit (without existing propositions) and propose calls for `views` need, reserve aside."""
    user = settings.user_name
    shown = ids.typed_all(ids.OBSERVATION, (v.id for v in views))
    out = []
    for stage, system, message, model, listed, per in (
        ("audit", prompts.audit_system(user), prompts.audit_message(views, []), prompts.AuditReply, "verdicts",
         AUDIT_ITEMS_PER_OBSERVATION),
        ("propose", prompts.propose_system(user), prompts.propose_message(views), prompts.ProposeReply,
         "propositions", PROPOSE_ITEMS_PER_OBSERVATION),
    ):
        count = fit.items(stage, cap(per, len(views)), settings)
        schema = prompts.shaped(prompts.capped(model, listed, count), {"observation_id": shown,
                                                                       "observation_ids": shown}, ("observation_ids",))
        out.append(fit.needed(system, message, schema, fit.max_tokens(stage, count), settings) - fit.reserve(settings))
    return out


_CONTENT_LIMITS: dict[tuple[str, int], int] = {}


def content_limit(settings: Settings) -> int:
    """Characters of one observation's text that its audit and propose prompts can hold (`fit`)."""
    key = (settings.user_name, settings.llm_context)
    if key not in _CONTENT_LIMITS:
        probe = ObservationView(id=1, kind="screen", source="screen", at=datetime(2000, 1, 1, tzinfo=UTC), content="")
        # A few tokens to spare: the step's own prompt may differ from this probe by an attribute or two.
        _CONTENT_LIMITS[key] = fit.observation_chars(settings, max(_first_prompts([probe], settings)) + 32)
    return _CONTENT_LIMITS[key]


def fitting(observations: Sequence[Observation], settings: Settings) -> int:
    """How many of `observations`, from the first, one batch can decide within GUM_LLM_CONTEXT: their
    audit (without existing propositions) and propose prompts fit. At least 1 (its text is cut to fit)."""
    limit = content_limit(settings)
    views = [ObservationView(id=o.id, kind=o.kind, source=o.source, at=o.observed_at,
                             content=_cut(o.content or "", limit)) for o in observations]
    room = settings.llm_context - fit.reserve(settings)

    def fits(count: int) -> bool:
        return max(_first_prompts(views[:count], settings)) <= room

    if len(views) <= 1 or fits(len(views)):
        return len(views)
    low, high = 1, len(views) - 1  # the most that fit is in [low, high]; more items never take less room
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def normalise(text: str) -> str:
    """The form used to decide that two claims have the same text."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"\s+", " ", text).strip()
    return text.rstrip(" .!;")


@dataclass
class _Draft:
    n: int
    text: str
    reasoning: str
    confidence: int
    decay: int
    reps: list[int]  # shown observation ids it cites
    candidates: list[int] = field(default_factory=list)
    sensitivity: str | None = None  # its class as the model judged it (the store adds lineage)
    kind: str = "belief"  # instruction only when a cited observation states a rule (engine.instructions)
    applies_to: str | None = None

    def view(self) -> DraftView:
        return DraftView(
            n=self.n, text=self.text, reasoning=self.reasoning, confidence=self.confidence,
            decay=self.decay, observation_ids=tuple(self.reps), candidates=tuple(self.candidates),
        )


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[tuple[str, int], tuple[str, int]] = {}

    def find(self, node: tuple[str, int]) -> tuple[str, int]:
        self.parent.setdefault(node, node)
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node

    def union(self, a: tuple[str, int], b: tuple[str, int]) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


class _Batch:
    """The decisions of one batch, built step by step."""

    def __init__(
        self,
        observations: Sequence[Observation],
        *,
        store: Store,
        provider: LLMProvider,
        related: RelatedFn,
        settings: Settings,
    ) -> None:
        self.store = store
        self.provider = provider
        self.related = related
        self.settings = settings
        self.user = settings.user_name
        self._name_re = _name_pattern(self.user)
        self.outcome = BatchOutcome(observation_ids=tuple(o.id for o in observations), result=BatchResult(
            observation_ids=tuple(o.id for o in observations)))
        self.skipped: dict[int, str] = {}
        self.held: list[int] = []  # no verdict from the audit: never allowed by default
        # Identical observations are shown once: representative id -> members, member -> representative.
        self.members: dict[int, list[int]] = {}
        self.rep_of: dict[int, int] = {}
        self.views: dict[int, ObservationView] = {}
        groups: dict[tuple[str, str, str], int] = {}
        for obs in observations:
            if obs.content is None or not obs.content.strip():
                self.skipped[obs.id] = "no content (forgotten or pruned)"
                continue
            key = (obs.kind, obs.source, obs.content)
            rep = groups.setdefault(key, obs.id)
            self.members.setdefault(rep, []).append(obs.id)
            self.rep_of[obs.id] = rep
        limit = content_limit(settings)
        for obs in observations:
            if obs.id in self.members:
                self.views[obs.id] = ObservationView(
                    id=obs.id, kind=obs.kind, source=obs.source, at=obs.observed_at,
                    content=_cut(obs.content or "", limit), seen=len(self.members[obs.id]),
                )
        self.allowed: dict[int, ObservationView] = {}
        self._rejected: set[str] | None = None
        self.shown: set[int] = set()  # proposition ids the prompts showed: a forget of one abandons the batch

    # -- helpers

    async def _is_rejected(self, text: str) -> bool:
        if self._rejected is None:
            self._rejected = {normalise(t) for t in await self.store.aio.rejected_texts()}
        if normalise(text) in self._rejected:
            self.outcome.dropped_rejected += 1
            log.info("dropped a draft identical to a claim the person rejected")
            return True
        return False

    def _too_large(self, stage: str, system: str, message: str, json_schema: dict, reply_tokens: int) -> int | None:
        """The tokens the call needs when that is more than GUM_LLM_CONTEXT, else None."""
        needed = fit.needed(system, message, json_schema, reply_tokens, self.settings)
        return needed if needed > self.settings.llm_context else None

    async def _ask(self, schema: type[T], system: str, message: str, stage: str,
                   check: Callable[[T], str | None] | None, json_schema: dict, reply_tokens: int) -> T:
        needed = self._too_large(stage, system, message, json_schema, reply_tokens)
        if needed is not None:
            raise PromptTooLarge(stage, needed, self.settings.llm_context)
        started = time.perf_counter()
        try:
            return await self.provider.complete(
                schema, system=system, messages=[{"role": "user", "content": message}], stage=stage, check=check,
                max_tokens=reply_tokens, json_schema=json_schema,
            )
        finally:
            self.outcome.llm_seconds += time.perf_counter() - started
            self.outcome.stages.append(stage)

    def _sized(self, model: type[R], field: str, stage: str, wanted: int, shown: dict[str, Sequence[str]],
               cite: Sequence[str] = ()) -> tuple[type[R], dict, int, int]:
        """The reply model capped for this call, the schema sent, the item cap and the reply bound."""
        limit = fit.items(stage, wanted, self.settings)
        schema = prompts.capped(model, field, limit)
        return schema, prompts.shaped(schema, shown, cite), limit, fit.max_tokens(stage, limit)

    def _rep(self, oid: str, shown: dict[int, ObservationView]) -> int | None:
        number = ids.parse(oid, ids.OBSERVATION)
        rep = None if number is None else self.rep_of.get(number)
        return rep if rep is not None and rep in shown else None

    def _shown(self, oid: str, shown: dict[int, ObservationView]) -> bool:
        return self._rep(oid, shown) is not None

    def _reps(self, cited: Sequence[str], shown: dict[int, ObservationView]) -> list[int]:
        """Shown representative ids for cited ids; unknown ones and ids of another kind are counted and dropped."""
        reps: list[int] = []
        for oid in cited:
            rep = self._rep(oid, shown)
            if rep is None:
                self.outcome.ignored_ids += 1
                continue
            if rep not in reps:
                reps.append(rep)
        return reps

    def _typed_ids(self, kind: ids.Kind, cited: Sequence[str], allowed: set[int] | dict) -> list[int]:
        """The numbers of `cited` ids of `kind` that are in `allowed`, each once; the rest counted and dropped."""
        out: list[int] = []
        for value in cited:
            number = ids.parse(value, kind)
            if number is None or number not in allowed:
                self.outcome.ignored_ids += 1
            elif number not in out:
                out.append(number)
        return out

    def _excerpt(self, view: ObservationView, chars: int | None) -> ObservationView:
        """`view` with its text cut to `chars` (None: whole)."""
        if chars is None or len(view.content) <= chars:
            return view
        return replace(view, content=_cut(view.content, chars))

    def _evidence(self, reps: Sequence[int]) -> tuple[int, ...]:
        members: list[int] = []
        for rep in reps:
            members.extend(self.members[rep])
        return tuple(sorted(set(members)))

    def _query(self, text: str) -> str:
        # Every proposition names the person: their name says nothing about the topic and, in a
        # full-text search, matches every row. Leave it out of the query.
        query = self._name_re.sub(" ", text) if self._name_re is not None else text
        return query if query.strip() else text

    @staticmethod
    def _kept(found: Sequence[Proposition | Related], k: int) -> list[tuple[Proposition, float | None]]:
        out: list[tuple[Proposition, float | None]] = []
        for item in found:
            prop = item if isinstance(item, Proposition) else item.proposition
            if prop is not None and prop.current and prop.text:
                out.append((prop, None if isinstance(item, Proposition) else item.similarity))
        return out[:k]

    async def _related(self, text: str, k: int) -> list[tuple[Proposition, float | None]]:
        """Up to k current propositions related to `text`, each with its cosine to the query if known."""
        return self._kept(await self.related(self._query(text), k), k)

    async def _related_many(self, texts: Sequence[str], k: int) -> list[list[tuple[Proposition, float | None]]]:
        """`_related` for every text: in one call when `related` has a batched form (`related.many(texts, k)`,
        which the runtime wires: the drafts embedded in one embedder call), else concurrently: each search
        embeds its query, and the embedder runs one pass per core."""
        many = getattr(self.related, "many", None)
        if many is not None:
            found = await many([self._query(text) for text in texts], k)
            return [self._kept(items, k) for items in found]
        results: list[list[tuple[Proposition, float | None]]] = [[] for _ in texts]
        limiter = anyio.CapacityLimiter(GATHER_CONCURRENCY)

        async def one(i: int, text: str) -> None:
            async with limiter:
                results[i] = await self._related(text, k)

        async with anyio.create_task_group() as tg:
            for i, text in enumerate(texts):
                tg.start_soon(one, i, text)
        return results

    # -- steps

    async def audit(self) -> None:
        """Fails closed: only an observation with an allow verdict (and none to skip it) is allowed; one
        without a verdict is held (`self.held`), one the person released after a skip is not judged again."""
        if not self.settings.audit or not self.views:
            self.allowed = dict(self.views)
            return
        members = [oid for rep in self.views for oid in self.members[rep]]
        released = await anyio.to_thread.run_sync(skipped_store.released, self.store.db, members)
        trusted = {rep: v for rep, v in self.views.items() if any(o in released for o in self.members[rep])}
        audited = {rep: v for rep, v in self.views.items() if rep not in trusted}
        views = list(audited.values())
        if not views:
            self.allowed = dict(self.views)
            return
        query = "\n".join(v.content for v in views)[:AUDIT_QUERY_CHARS]
        context = [p for p, _ in await self._related(query, AUDIT_CONTEXT_K)]
        self.shown.update(p.id for p in context)
        shown_ids = ids.typed_all(ids.OBSERVATION, audited)
        schema, json_schema, limit, reply_tokens = self._sized(
            prompts.AuditReply, "verdicts", "audit", cap(AUDIT_ITEMS_PER_OBSERVATION, len(views)),
            {"observation_id": shown_ids})
        system = prompts.audit_system(self.user)
        for share in AUDIT_CONTEXT_LADDER:  # fewer existing propositions until the prompt fits
            message = prompts.audit_message(views, context[: int(len(context) * share)])
            if self._too_large("audit", system, message, json_schema, reply_tokens) is None:
                break

        def check(reply: prompts.AuditReply) -> str | None:
            if reply.verdicts and not any(self._shown(v.observation_id, audited) for v in reply.verdicts):
                return _unknown("observation ids", shown_ids)
            return None

        reply = await self._ask(schema, system, message, "audit", check, json_schema, reply_tokens)
        skip: dict[int, str] = {}
        allow: set[int] = set()
        for verdict in reply.verdicts[:limit]:
            rep = self._rep(verdict.observation_id, audited)
            if rep is None:
                self.outcome.ignored_ids += 1
                continue
            if verdict.decision == "skip":  # a skip wins over an allow for the same observation
                reason = " ".join(verdict.reason.split()) or "no reason given"
                skip.setdefault(rep, f"audit: {reason}"[:2000])
            else:
                allow.add(rep)
        for rep, reason in skip.items():
            for oid in self.members[rep]:
                self.skipped[oid] = reason
        # No verdict (left out, an empty list, only ids never shown): held, audited again, never allowed.
        self.held = [oid for rep in audited if rep not in skip and rep not in allow for oid in self.members[rep]]
        self.allowed = {**trusted, **{rep: view for rep, view in audited.items() if rep in allow and rep not in skip}}
        crash_point("engine:after_audit")

    async def propose(self) -> list[_Draft]:
        if not self.allowed:
            return []
        views = list(self.allowed.values())
        shown_ids = ids.typed_all(ids.OBSERVATION, self.allowed)
        schema, json_schema, limit, reply_tokens = self._sized(
            prompts.ProposeReply, "propositions", "propose", cap(PROPOSE_ITEMS_PER_OBSERVATION, len(views)),
            {"observation_ids": shown_ids}, cite=("observation_ids",))

        def check(reply: prompts.ProposeReply) -> str | None:
            items = reply.propositions[:limit]
            cited = [item for item in items if any(self._shown(oid, self.allowed) for oid in item.observation_ids)]
            if items and not cited:
                return _unknown("observation ids cited", shown_ids)
            problems = [f"proposition {n} is {problem}" for n, item in enumerate(items, 1)
                        if (problem := _claim(item.text)[1]) is not None]
            if cited and all(_claim(item.text)[1] is not None for item in cited):
                return _unusable("proposition", problems)
            return None

        reply = await self._ask(schema, prompts.propose_system(self.user), prompts.propose_message(views),
                                "propose", check, json_schema, reply_tokens)
        crash_point("engine:after_propose")
        drafts: dict[str, _Draft] = {}
        for item in reply.propositions[:limit]:
            reps = self._reps(item.observation_ids, self.allowed)
            text, problem = _claim(item.text)
            if not reps or not text:
                continue
            if problem is not None:
                self.outcome.rejected_texts += 1
                log.info("dropped a draft: its text is %s", problem)
                continue
            if await self._is_rejected(text):
                continue
            kind = instructions.kind_for(item.kind, (self.allowed[r].content for r in reps))
            key = normalise(text)
            if key in drafts:  # the same claim twice in one reply: one draft, both evidences
                drafts[key].reps.extend(r for r in reps if r not in drafts[key].reps)
                drafts[key].sensitivity = most_sensitive([drafts[key].sensitivity, item.sensitivity])
                drafts[key].kind = instructions.strongest([drafts[key].kind, kind])
                continue
            drafts[key] = _Draft(
                n=len(drafts) + 1, text=text, reasoning=item.reasoning.strip()[:MAX_REASONING],
                confidence=item.confidence, decay=item.decay, reps=reps, sensitivity=item.sensitivity,
                kind=kind, applies_to=" ".join(item.applies_to.split())[:300] or None,
            )
        return list(drafts.values())

    async def relate_and_revise(self, drafts: list[_Draft]) -> tuple[list[NewProposition], list[Reinforcement]]:
        candidates: dict[int, Proposition] = {}
        identical: dict[int, list[tuple[_Draft, int | None]]] = {}  # pid -> (draft, judged confidence)
        to_relate: list[_Draft] = []
        unrelated: list[_Draft] = []
        gathered = await self._related_many([d.text for d in drafts], GATHER_K)
        self.shown.update(p.id for found in gathered for p, _ in found)
        share = max(2, MAX_CANDIDATES // len(drafts))  # candidates per draft, so later drafts get theirs
        for draft, found in zip(drafts, gathered, strict=True):
            by_id = {p.id: p for p, _ in found}
            # 1. the same text
            key = normalise(draft.text)
            exact = next((p for p, _ in found if normalise(p.text or "") == key), None)
            if exact is not None:
                candidates[exact.id] = exact
                identical.setdefault(exact.id, []).append((draft, None))
                self.outcome.exact_merges += 1
                continue
            # 2. a near duplicate of exactly one (of several: they are duplicates; relate may merge them)
            triples = [(p.id, p.text or "", similarity) for p, similarity in found]
            near = dedup.near_duplicates(draft.text, triples, self.settings.dedup_similarity)
            if len(near) == 1:
                candidates[near[0]] = by_id[near[0]]
                identical.setdefault(near[0], []).append((draft, None))
                self.outcome.near_duplicates += 1
                continue
            # 3. the uncertain middle goes to relate; 4. nothing there: a new proposition
            middle = near + [pid for pid in dedup.for_relate(triples, share) if pid not in near]
            room: list[int] = []
            for pid in middle[: max(share, len(near))]:
                if pid in candidates or len(candidates) < MAX_CANDIDATES:
                    candidates.setdefault(pid, by_id[pid])
                    room.append(pid)
            draft.candidates = room
            (to_relate if room else unrelated).append(draft)

        links = _UnionFind()
        in_cluster: set[int] = set()
        clustered: set[int] = set()  # draft numbers
        if to_relate:
            by_n = {d.n: d for d in to_relate}
            draft_ids = ids.typed_all(ids.DRAFT, by_n)
            self.outcome.related_drafts += len(to_relate)
            system = prompts.relate_system(self.user)
            wanted = cap(RELATE_ITEMS_PER_DRAFT, len(to_relate))
            full = {d.n: list(d.candidates) for d in to_relate}
            for fraction in (1.0, 0.5, 0.0):  # fewer candidates per draft (at least one) until the prompt fits
                for d in to_relate:
                    d.candidates = full[d.n][: max(1, round(len(full[d.n]) * fraction))]
                shown = {p.id: p for d in to_relate for p in (candidates[c] for c in d.candidates)}
                schema, json_schema, limit, reply_tokens = self._sized(
                    prompts.RelateReply, "judgements", "relate", wanted,
                    {"draft": draft_ids, "proposition_ids": ids.typed_all(ids.PROPOSITION, shown)})
                message = prompts.relate_message([d.view() for d in to_relate], list(shown.values()))
                if self._too_large("relate", system, message, json_schema, reply_tokens) is None:
                    break

            def check(reply: prompts.RelateReply) -> str | None:
                usable = [j for j in reply.judgements if ids.parse(j.draft, ids.DRAFT) in by_n and (
                    j.relation == "unrelated"
                    or any(ids.parse(pid, ids.PROPOSITION) in shown for pid in j.proposition_ids))]
                if reply.judgements and not usable:
                    return _unknown("draft ids and proposition ids",
                                    [*draft_ids, *ids.typed_all(ids.PROPOSITION, shown)])
                return None

            reply = await self._ask(schema, system, message, "relate", check, json_schema, reply_tokens)
            judged: set[int] = set()
            for item in reply.judgements[:limit]:
                number = ids.parse(item.draft, ids.DRAFT)
                draft = by_n.get(number) if number is not None else None
                if draft is None or draft.n in judged:
                    self.outcome.ignored_ids += 1
                    continue
                pids = self._typed_ids(ids.PROPOSITION, item.proposition_ids, shown)
                if item.relation == "unrelated" or not pids:
                    continue  # stays unjudged: added as new below
                judged.add(draft.n)
                if item.relation == "identical" and len(pids) == 1:
                    identical.setdefault(pids[0], []).append((draft, item.confidence))
                else:  # similar, or identical to several (which are then duplicates: merge them)
                    for pid in pids:
                        links.union(("d", draft.n), ("p", pid))
                        in_cluster.add(pid)
                    clustered.add(draft.n)
            unrelated.extend(d for d in to_relate if d.n not in judged)
            crash_point("engine:after_relate")

        new: list[NewProposition] = []
        reinforce: list[Reinforcement] = []
        # Identical to a proposition that is being revised anyway: the draft joins that cluster.
        for pid, matches in list(identical.items()):
            if pid in in_cluster:
                for draft, _ in matches:
                    links.union(("d", draft.n), ("p", pid))
                    clustered.add(draft.n)
                del identical[pid]
        for pid, matches in identical.items():
            existing = candidates[pid]
            reps: list[int] = []
            for draft, _ in matches:
                reps.extend(r for r in draft.reps if r not in reps)
            evidence = self._evidence(reps)
            judged_conf = next((c for _, c in reversed(matches) if c is not None), None)
            if (
                judged_conf is not None
                and not existing.user_confirmed
                and abs(judged_conf - existing.confidence) >= RECALIBRATE_DELTA
            ):
                reasons = " ".join(d.reasoning for d, _ in matches if d.reasoning)
                reasoning = (existing.reasoning or "").strip()
                if reasons:
                    reasoning = f"{reasoning}\nNew evidence: {reasons}".strip()
                new.append(NewProposition(
                    draft=PropositionDraft(
                        text=existing.text or matches[0][0].text, reasoning=reasoning[:MAX_REASONING],
                        confidence=judged_conf, decay=existing.decay,
                    ),
                    evidence=evidence, supersedes=(pid,), cause="revised",
                    note=f"confidence {existing.confidence} -> {judged_conf} on new evidence",
                    sensitivity=most_sensitive(d.sensitivity for d, _ in matches),
                ))
            else:
                reinforce.append(Reinforcement(proposition_id=pid, evidence=evidence))

        drafts_by_n = {d.n: d for d in drafts}
        if clustered:
            revised, leftover = await self._revise(links, clustered, in_cluster, drafts_by_n, candidates)
            new.extend(revised[0])
            reinforce.extend(revised[1])
            unrelated.extend(leftover)

        for draft in sorted(unrelated, key=lambda d: d.n):
            new.append(NewProposition(
                draft=PropositionDraft(text=draft.text, reasoning=draft.reasoning,
                                       confidence=draft.confidence, decay=draft.decay),
                evidence=self._evidence(draft.reps), sensitivity=draft.sensitivity,
                kind=draft.kind, applies_to=draft.applies_to,
            ))
        return new, reinforce

    async def _revise(
        self,
        links: _UnionFind,
        clustered: set[int],
        in_cluster: set[int],
        drafts_by_n: dict[int, _Draft],
        candidates: dict[int, Proposition],
    ) -> tuple[tuple[list[NewProposition], list[Reinforcement]], list[_Draft]]:
        groups: dict[tuple[str, int], tuple[list[int], list[int]]] = {}
        for n in sorted(clustered):
            groups.setdefault(links.find(("d", n)), ([], []))[0].append(n)
        for pid in sorted(in_cluster):
            groups.setdefault(links.find(("p", pid)), ([], []))[1].append(pid)
        groups_list = list(groups.values())
        reps_of: list[list[int]] = []
        for ns, _pids in groups_list:
            reps: list[int] = []
            for n in ns:
                reps.extend(r for r in drafts_by_n[n].reps if r not in reps)
            reps_of.append(sorted(reps))
        prop_ids = ids.typed_all(ids.PROPOSITION, sorted(in_cluster))
        draft_ids = ids.typed_all(ids.DRAFT, sorted(clustered))
        system = prompts.revise_system(self.user)
        wanted = cap(REVISE_ITEMS_PER_INPUT, len(clustered) + len(in_cluster))
        for chars in REVISE_OBSERVATION_CHARS:  # shorter observations, then none, until the prompt fits
            clusters = [ClusterView(
                propositions=tuple(candidates[p] for p in pids),
                drafts=tuple(drafts_by_n[n].view() for n in ns),
                observations=tuple(self._excerpt(self.allowed[r], chars) for r in reps) if chars != 0 else (),
            ) for (ns, pids), reps in zip(groups_list, reps_of, strict=True)]
            observed = {o.id: o for c in clusters for o in c.observations}
            schema, json_schema, limit, reply_tokens = self._sized(
                prompts.ReviseReply, "propositions", "revise", wanted,
                {"supersedes": prop_ids, "drafts": draft_ids,
                 "observation_ids": ids.typed_all(ids.OBSERVATION, observed)})
            message = prompts.revise_message(clusters)
            if self._too_large("revise", system, message, json_schema, reply_tokens) is None:
                break

        def cites(item: prompts.RevisedProposition) -> bool:
            return (any(ids.parse(pid, ids.PROPOSITION) in in_cluster for pid in item.supersedes)
                    or any(ids.parse(n, ids.DRAFT) in clustered for n in item.drafts)
                    or any(self._shown(oid, self.allowed) for oid in item.observation_ids))

        def check(reply: prompts.ReviseReply) -> str | None:
            items = reply.propositions[:limit]
            cited = [item for item in items if cites(item)]
            if items and not cited:
                return _unknown("proposition ids, draft ids and observation ids", [*prop_ids, *draft_ids])
            if cited and all(_claim(item.text)[1] is not None for item in cited):
                return _unusable("revised proposition", [f"proposition {n} is {problem}" for n, item in
                                                         enumerate(items, 1) if (problem := _claim(item.text)[1])])
            return None

        reply = await self._ask(schema, system, message, "revise", check, json_schema, reply_tokens)
        crash_point("engine:after_revise")

        outputs: list[tuple[prompts.RevisedProposition, str, list[int], list[int], tuple[int, ...]]] = []
        used: set[int] = set()
        for item in reply.propositions[:limit]:
            sup = self._typed_ids(ids.PROPOSITION, item.supersedes, in_cluster)
            ns = self._typed_ids(ids.DRAFT, item.drafts, clustered)
            reps = self._reps(item.observation_ids, self.allowed)
            text, problem = _claim(item.text)
            if not text or not (sup or ns or reps):
                continue  # cites nothing that was shown: no trace
            if problem is not None:  # its drafts stay unused: they are added as they are
                self.outcome.rejected_texts += 1
                log.info("dropped a revised proposition: its text is %s", problem)
                continue
            for n in ns:
                reps.extend(r for r in drafts_by_n[n].reps if r not in reps)
            used.update(ns)
            if await self._is_rejected(text):
                continue
            outputs.append((item, text, sup, ns, self._evidence(reps)))

        times_superseded: dict[int, int] = {}
        for _, _, sup, _, _ in outputs:
            for pid in sup:
                times_superseded[pid] = times_superseded.get(pid, 0) + 1
        new: list[NewProposition] = []
        reinforce: list[Reinforcement] = []
        for item, text, sup, folded, evidence in outputs:
            if len(sup) == 1 and times_superseded[sup[0]] == 1:
                old = candidates[sup[0]]
                if (normalise(old.text or "") == normalise(text) and old.confidence == item.confidence
                        and old.decay == item.decay):
                    # "Replaced" by itself: nothing changed but the support.
                    if evidence:
                        reinforce.append(Reinforcement(proposition_id=old.id, evidence=evidence))
                    continue
            cause: LineageCause
            if any(times_superseded[pid] > 1 for pid in sup):
                cause = "split"
            elif len(sup) > 1:
                cause = "merged"
            elif sup:
                cause = "revised"
            else:
                cause = "proposed"
            note = None
            if sup:
                note = f"{cause} by the engine from {', '.join(str(p) for p in sup)}"
                if evidence:
                    note += f" with observations {', '.join(str(o) for o in evidence[:20])}"
                    if len(evidence) > 20:
                        note += ", ..."
            new.append(NewProposition(
                draft=PropositionDraft(text=text, reasoning=item.reasoning.strip()[:MAX_REASONING],
                                       confidence=item.confidence, decay=item.decay),
                evidence=evidence, supersedes=tuple(sup), cause=cause, note=note,
                # the most sensitive of its own class and its drafts'; the store adds what it supersedes
                sensitivity=most_sensitive([item.sensitivity, *(drafts_by_n[n].sensitivity for n in folded)]),
                kind=instructions.strongest(drafts_by_n[n].kind for n in folded),  # the store adds what it supersedes
                applies_to=next((drafts_by_n[n].applies_to for n in folded if drafts_by_n[n].applies_to), None),
            ))
        leftover = [drafts_by_n[n] for n in sorted(clustered - used)]
        return (new, reinforce), leftover


async def decide_batch(
    observations: Sequence[Observation],
    *,
    store: Store,
    provider: LLMProvider,
    related: RelatedFn,
    settings: Settings,
) -> BatchOutcome:
    """Run the LLM steps for one batch and return the decided `BatchResult` (nothing is written)."""
    batch = _Batch(observations, store=store, provider=provider, related=related, settings=settings)
    await batch.audit()
    drafts = await batch.propose()
    new, reinforce = await batch.relate_and_revise(drafts) if drafts else ([], [])
    batch.outcome.held = tuple(batch.held)
    batch.outcome.result = BatchResult(  # held observations stay pending: not part of what is committed
        observation_ids=tuple(o for o in batch.outcome.observation_ids if o not in batch.held),
        skipped=dict(batch.skipped),
        new=tuple(new),
        reinforce=tuple(reinforce),
        context=tuple(sorted(batch.shown)),
    )
    return batch.outcome


async def process_batch(
    observations: Sequence[Observation],
    *,
    store: Store,
    provider: LLMProvider,
    related: RelatedFn,
    settings: Settings,
    at: datetime | None = None,
) -> BatchOutcome:
    """Decide one claimed batch and commit it with one `complete_batch` (one transaction).

    `at` is when the beliefs are formed (default: now). Raises `LLMError` from the provider and
    `StaleBatch` from the store; in both cases nothing was written.
    """
    started = time.perf_counter()
    outcome = await decide_batch(observations, store=store, provider=provider, related=related, settings=settings)
    outcome.new_ids = await store.aio.complete_batch(outcome.result, at=at)
    if outcome.held:  # one attempt counted; after GUM_MAX_ATTEMPTS without a verdict they are skipped
        held, gave_up = await anyio.to_thread.run_sync(functools.partial(
            skipped_store.hold, store.db, outcome.held, skipped_store.NO_VERDICT, max_attempts=settings.max_attempts))
        log.info("audit: no verdict for %d observations: %d held to be audited again, %d skipped", len(outcome.held),
                 held, gave_up)
    outcome.seconds = time.perf_counter() - started
    return outcome

"""One batch of observations through audit -> propose -> gather -> relate -> revise -> commit.

`process_batch` decides everything first (at most four LLM calls: audit, propose, relate,
revise, each skipped when it has nothing to do), builds ONE `BatchResult` and hands it to
`Store.complete_batch`, which writes it in one transaction. Nothing is written before that, so an
error or a crash anywhere leaves the batch pending.

Rules that keep replies honest:
- An id in a reply counts only if the prompt showed it: observation ids of this batch (for
  propose and revise only those the audit allowed), draft numbers, candidate proposition ids.
  Unknown ids are dropped; a reply item left with no known id leaves no trace.
- Identical observations inside a batch (screens repeat) are shown once with `seen="n"`; citing
  the shown id cites every repeat.
- A draft whose normalised text equals a claim the person rejected is dropped.
- A draft whose normalised text equals a candidate's is identical without asking the model.
- Retrieval queries leave out the person's name: every proposition contains it, so it carries no
  topic and would make a full-text search score every row.

Errors: every `LLMError` propagates (the caller counts the attempt or pauses), and so does
`StaleBatch` from the commit.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

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
)
from gum_mcp.engine import prompts
from gum_mcp.engine.prompts import ClusterView, DraftView, ObservationView
from gum_mcp.store.db import crash_point

if TYPE_CHECKING:
    from gum_mcp.llm.base import LLMProvider
    from gum_mcp.store import Store

log = logging.getLogger("gum_mcp.engine")

T = TypeVar("T", bound=BaseModel)

#: `related(text, k)`: up to k current propositions related to `text` (the runtime wires hybrid
#: retrieval here). Retired or forgotten propositions it returns are ignored.
RelatedFn = Callable[[str, int], Awaitable[Sequence[Proposition]]]

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
CANDIDATES_K = 5  # related propositions gathered per draft
MAX_CANDIDATES = 60  # candidates shown to relate, in all
RECALIBRATE_DELTA = 2  # identical, but judged this far from the stored confidence -> a revision
MAX_TEXT = 2000
_GENERIC_WORDS = {"the", "user", "a", "an", "person", "me"}  # the default GUM_USER_NAME is "the user"


def _name_pattern(name: str) -> re.Pattern[str] | None:
    """The person's name as a whole and its distinctive words, for removal from search queries."""
    words = [w for w in re.findall(r"\w+", name) if len(w) > 1 and w.casefold() not in _GENERIC_WORDS]
    parts = sorted({" ".join(name.split()), *words}, key=len, reverse=True)
    parts = [re.escape(p).replace(r"\ ", r"\s+") for p in parts if p]
    if not parts:
        return None
    return re.compile(rf"(?<!\w)(?:{'|'.join(parts)})(?:'s)?(?!\w)", re.IGNORECASE)
MAX_REASONING = 8000


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
    ignored_ids: int = 0  # ids in replies that were not shown

    @property
    def llm_calls(self) -> int:
        return len(self.stages)

    @property
    def overhead_seconds(self) -> float:
        return max(0.0, self.seconds - self.llm_seconds)


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
        for obs in observations:
            if obs.id in self.members:
                self.views[obs.id] = ObservationView(
                    id=obs.id, kind=obs.kind, source=obs.source, at=obs.observed_at,
                    content=obs.content or "", seen=len(self.members[obs.id]),
                )
        self.allowed: dict[int, ObservationView] = {}
        self._rejected: set[str] | None = None

    # -- helpers

    async def _is_rejected(self, text: str) -> bool:
        if self._rejected is None:
            self._rejected = {normalise(t) for t in await self.store.aio.rejected_texts()}
        if normalise(text) in self._rejected:
            self.outcome.dropped_rejected += 1
            log.info("dropped a draft identical to a claim the person rejected")
            return True
        return False

    async def _ask(self, schema: type[T], system: str, message: str, stage: str) -> T:
        started = time.perf_counter()
        try:
            return await self.provider.complete(
                schema, system=system, messages=[{"role": "user", "content": message}], stage=stage
            )
        finally:
            self.outcome.llm_seconds += time.perf_counter() - started
            self.outcome.stages.append(stage)

    def _reps(self, ids: Sequence[int], shown: dict[int, ObservationView]) -> list[int]:
        """Shown representative ids for cited ids; unknown ones are counted and dropped."""
        reps: list[int] = []
        for oid in ids:
            rep = self.rep_of.get(oid)
            if rep is None or rep not in shown:
                self.outcome.ignored_ids += 1
                continue
            if rep not in reps:
                reps.append(rep)
        return reps

    def _evidence(self, reps: Sequence[int]) -> tuple[int, ...]:
        ids: list[int] = []
        for rep in reps:
            ids.extend(self.members[rep])
        return tuple(sorted(set(ids)))

    async def _related(self, text: str, k: int) -> list[Proposition]:
        # Every proposition names the person: their name says nothing about the topic and, in a
        # full-text search, matches every row. Leave it out of the query.
        query = self._name_re.sub(" ", text) if self._name_re is not None else text
        found = await self.related(query if query.strip() else text, k)
        return [p for p in found if p.current and p.text][:k]

    async def _related_many(self, texts: Sequence[str], k: int) -> list[list[Proposition]]:
        """`_related` for every text, concurrently: each search embeds its query, and the embedder
        runs one pass per core, so a batch's drafts are gathered about twice as fast as in turn."""
        results: list[list[Proposition]] = [[] for _ in texts]
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
        views = list(self.views.values())
        if not self.settings.audit or not views:
            self.allowed = dict(self.views)
            return
        query = "\n".join(v.content for v in views)[:AUDIT_QUERY_CHARS]
        context = await self._related(query, AUDIT_CONTEXT_K)
        reply = await self._ask(
            prompts.AuditReply, prompts.audit_system(self.user), prompts.audit_message(views, context), "audit"
        )
        skip: dict[int, str] = {}
        for verdict in reply.verdicts:
            rep = self.rep_of.get(verdict.observation_id)
            if rep is None or rep not in self.views:
                self.outcome.ignored_ids += 1
                continue
            if verdict.decision == "skip":
                reason = " ".join(verdict.reason.split()) or "no reason given"
                skip[rep] = f"audit: {reason}"[:2000]
            else:
                skip.pop(rep, None)
        for rep, reason in skip.items():
            for oid in self.members[rep]:
                self.skipped[oid] = reason
        self.allowed = {rep: view for rep, view in self.views.items() if rep not in skip}
        crash_point("engine:after_audit")

    async def propose(self) -> list[_Draft]:
        if not self.allowed:
            return []
        views = list(self.allowed.values())
        reply = await self._ask(
            prompts.ProposeReply, prompts.propose_system(self.user), prompts.propose_message(views), "propose"
        )
        crash_point("engine:after_propose")
        drafts: dict[str, _Draft] = {}
        for item in reply.propositions:
            reps = self._reps(item.observation_ids, self.allowed)
            text = " ".join(item.text.split())[:MAX_TEXT]
            if not reps or not text:
                continue
            if await self._is_rejected(text):
                continue
            key = normalise(text)
            if key in drafts:  # the same claim twice in one reply: one draft, both evidences
                drafts[key].reps.extend(r for r in reps if r not in drafts[key].reps)
                continue
            drafts[key] = _Draft(
                n=len(drafts) + 1, text=text, reasoning=item.reasoning.strip()[:MAX_REASONING],
                confidence=item.confidence, decay=item.decay, reps=reps,
            )
        return list(drafts.values())

    async def relate_and_revise(self, drafts: list[_Draft]) -> tuple[list[NewProposition], list[Reinforcement]]:
        candidates: dict[int, Proposition] = {}
        identical: dict[int, list[tuple[_Draft, int | None]]] = {}  # pid -> (draft, judged confidence)
        to_relate: list[_Draft] = []
        unrelated: list[_Draft] = []
        gathered = await self._related_many([d.text for d in drafts], CANDIDATES_K)
        for draft, found in zip(drafts, gathered, strict=True):
            key = normalise(draft.text)
            exact = next((p for p in found if normalise(p.text or "") == key), None)
            if exact is not None:
                candidates[exact.id] = exact
                identical.setdefault(exact.id, []).append((draft, None))
                continue
            room = [p for p in found if p.id in candidates or len(candidates) < MAX_CANDIDATES]
            for p in room:
                candidates.setdefault(p.id, p)
            draft.candidates = [p.id for p in room]
            (to_relate if room else unrelated).append(draft)

        links = _UnionFind()
        in_cluster: set[int] = set()
        clustered: set[int] = set()  # draft numbers
        if to_relate:
            shown = {p.id: p for d in to_relate for p in (candidates[c] for c in d.candidates)}
            by_n = {d.n: d for d in to_relate}
            reply = await self._ask(
                prompts.RelateReply,
                prompts.relate_system(self.user),
                prompts.relate_message([d.view() for d in to_relate], list(shown.values())),
                "relate",
            )
            judged: set[int] = set()
            for item in reply.judgements:
                draft = by_n.get(item.draft)
                if draft is None or draft.n in judged:
                    self.outcome.ignored_ids += 1
                    continue
                ids = []
                for pid in item.proposition_ids:
                    if pid in shown and pid not in ids:
                        ids.append(pid)
                    elif pid not in shown:
                        self.outcome.ignored_ids += 1
                if item.relation == "unrelated" or not ids:
                    continue  # stays unjudged: added as new below
                judged.add(draft.n)
                if item.relation == "identical" and len(ids) == 1:
                    identical.setdefault(ids[0], []).append((draft, item.confidence))
                else:  # similar, or identical to several (which are then duplicates: merge them)
                    for pid in ids:
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
                evidence=self._evidence(draft.reps),
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
        clusters = []
        for ns, pids in groups.values():
            reps: list[int] = []
            for n in ns:
                reps.extend(r for r in drafts_by_n[n].reps if r not in reps)
            clusters.append(ClusterView(
                propositions=tuple(candidates[p] for p in pids),
                drafts=tuple(drafts_by_n[n].view() for n in ns),
                observations=tuple(self.allowed[r] for r in sorted(reps)),
            ))
        reply = await self._ask(
            prompts.ReviseReply, prompts.revise_system(self.user), prompts.revise_message(clusters), "revise"
        )
        crash_point("engine:after_revise")

        outputs: list[tuple[prompts.RevisedProposition, list[int], list[int], tuple[int, ...]]] = []
        used: set[int] = set()
        for item in reply.propositions:
            sup: list[int] = []
            for pid in item.supersedes:
                if pid in in_cluster and pid not in sup:
                    sup.append(pid)
                elif pid not in in_cluster:
                    self.outcome.ignored_ids += 1
            ns: list[int] = []
            for n in item.drafts:
                if n in clustered and n not in ns:
                    ns.append(n)
                elif n not in clustered:
                    self.outcome.ignored_ids += 1
            reps = self._reps(item.observation_ids, self.allowed)
            text = " ".join(item.text.split())[:MAX_TEXT]
            if not text or not (sup or ns or reps):
                continue  # cites nothing that was shown: no trace
            for n in ns:
                reps.extend(r for r in drafts_by_n[n].reps if r not in reps)
            used.update(ns)
            if await self._is_rejected(text):
                continue
            outputs.append((item, sup, ns, self._evidence(reps)))

        times_superseded: dict[int, int] = {}
        for _, sup, _, _ in outputs:
            for pid in sup:
                times_superseded[pid] = times_superseded.get(pid, 0) + 1
        new: list[NewProposition] = []
        reinforce: list[Reinforcement] = []
        for item, sup, _ns, evidence in outputs:
            text = " ".join(item.text.split())[:MAX_TEXT]
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
    batch.outcome.result = BatchResult(
        observation_ids=batch.outcome.observation_ids,
        skipped=dict(batch.skipped),
        new=tuple(new),
        reinforce=tuple(reinforce),
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
    outcome.seconds = time.perf_counter() - started
    return outcome

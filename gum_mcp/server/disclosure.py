"""Who may see what: the disclosure policy (gum_mcp/store/policy.py) applied to everything a client reads.

The guard (guard.py) works out, for every call of a tool, resource or prompt, the caller's `Disclosure`
(its name, the classes its policy allows) and makes it current for the call (`applied`). The read paths then
go through the filters here, one per kind of output, so no tool body decides visibility itself:

- propositions: `search` (query_user, personalize, the profile, forget's preview, suggest_actions' grounds),
  `propositions` (everything shaping.shape_propositions outputs), `page_classes` and `count_outside`
  (list_propositions filters in SQL and counts the rest), `detail` (get_proposition and
  gum://propositions/{id}: the proposition, its history, successors and evidence);
- observations: `observations` (get_recent_activity, gum://activity/recent, what_am_i_doing), `evidence`
  (every evidence snippet);
- suggestions: `suggestions` (a suggestion is shown only when every proposition it rests on and every
  observation it was drawn from is), and `EngineView`, what suggest_actions lets the model see;
- actions on something: `require_proposition`, `require_suggestion` (a withheld id is answered like one
  that does not exist);
- forget: `forget_preview`, `forget_reports`; the access log: `access_entries`.

Rules: a client allowed every class is not restricted and sees everything. For a restricted client a
proposition is shown when its class is allowed (untagged: never); an observation when every class it
carries is allowed (not yet processed: never; gum_mcp/store/sensitivity.py). A withheld item is left out,
never an error, and counted: each result says how many (`withheld`, and `note`), never which. A call without
a current disclosure (no caller) is allowed nothing.

Last, the guard checks the ids a result carried (access.py) with `leaked`: a read path that skipped these
filters fails closed instead of answering.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from gum_mcp.domain import SENSITIVITY_ORDER, NotFound, Observation, Proposition, PropositionDetail
from gum_mcp.store.policy import ALL_CLASSES
from gum_mcp.store.sensitivity import UNPROCESSED, ObservationClasses

if TYPE_CHECKING:
    from gum_mcp.domain import ForgetReport
    from gum_mcp.forgetting import ForgetPreview
    from gum_mcp.retrieval import Hit
    from gum_mcp.runtime import Runtime, SearchResult
    from gum_mcp.server.clients import Caller
    from gum_mcp.server.context import GumState
    from gum_mcp.store import Store
    from gum_mcp.store.access_log import AccessEntry
    from gum_mcp.store.suggestions import Suggestion

T = TypeVar("T")

#: The description of every result's `withheld` field.
WITHHELD = ("how many items this client's disclosure policy left out of this result (never which); the person "
            "decides with `gum-mcp policy`")


@dataclass
class Disclosure:
    """One call's caller and what its policy allows; `withheld` counts what the call's result left out."""

    client: str
    allowed: frozenset[str]
    problem: str | None = None  # the policy file is not valid: nothing is allowed
    withheld: int = 0

    @property
    def restricted(self) -> bool:
        return not self.allowed >= ALL_CLASSES

    def shows_class(self, sensitivity: str | None) -> bool:
        return not self.restricted or (sensitivity is not None and sensitivity in self.allowed)

    def shows_observation(self, classes: ObservationClasses) -> bool:
        if not self.restricted:
            return True
        return classes is not UNPROCESSED and all(c is not None and c in self.allowed for c in classes)

    def keep(self, items: Iterable[T], shown: Callable[[T], bool], *, limit: int | None = None,
             count: bool = True) -> list[T]:
        """The items `shown` keeps, up to `limit`; the others met on the way are counted as withheld."""
        kept: list[T] = []
        for item in items:
            if limit is not None and len(kept) >= limit:
                break
            if shown(item):
                kept.append(item)
            elif count:
                self.withheld += 1
        return kept


_current: ContextVar[Disclosure | None] = ContextVar("gum_mcp_disclosure", default=None)


def of(caller: Caller, state: GumState) -> Disclosure:
    """The caller's disclosure under the policy as it is now."""
    policy = state.runtime.policy.current()
    return Disclosure(client=caller.name, allowed=policy.allowed(caller.name), problem=policy.problem)


@contextlib.contextmanager
def applied(disclosure: Disclosure) -> Iterator[Disclosure]:
    """Make `disclosure` the current one for the block (one call of a tool, resource or prompt)."""
    token = _current.set(disclosure)
    try:
        yield disclosure
    finally:
        _current.reset(token)


def current() -> Disclosure:
    """The current call's disclosure; without one (no caller), a disclosure that allows nothing."""
    found = _current.get()
    if found is None:
        found = Disclosure(client="unknown", allowed=frozenset(), problem="no caller: nothing is shown")
        _current.set(found)
    return found


def withheld() -> int:
    return current().withheld


def note(text: str | None) -> str | None:
    """`text` with how many items were withheld from this result, when any were."""
    count = current().withheld
    if not count:
        return text
    said = f"{count} item{'s' if count != 1 else ''} withheld by this client's disclosure policy"
    return f"{text}; {said}" if text else said


def count(number: int) -> None:
    current().withheld += max(0, number)


# ------------------------------------------------------------------------------------------- propositions
def propositions(props: Sequence[Proposition]) -> list[Proposition]:
    """The propositions this client may see."""
    disclosure = current()
    return disclosure.keep(props, lambda p: disclosure.shows_class(p.sensitivity))


def page_classes() -> frozenset[str] | None:
    """The classes a page of propositions may hold (None: any, untagged ones too)."""
    disclosure = current()
    return disclosure.allowed if disclosure.restricted else None


async def count_outside(store: Store, *, min_confidence: int | None = None) -> int:
    """Count (as withheld) the current propositions this client may not see; how many."""
    disclosure = current()
    if not disclosure.restricted:
        return 0
    number = await store.aio.current_outside(disclosure.allowed, min_confidence=min_confidence)
    disclosure.withheld += number
    return number


async def search(runtime: Runtime, query: str | None, *, k: int, counted: bool = True, **kwargs: Any
                 ) -> SearchResult:
    """`runtime.search` with only what this client may see: for a restricted client a wider pool is searched
    and the first k shown hits kept; the hidden ones ranked before them are counted (unless not `counted`:
    what a step reads, not what it returns)."""
    from gum_mcp.runtime import SearchResult

    disclosure = current()
    if not disclosure.restricted:
        return await runtime.search(query, k=k, **kwargs)
    from gum_mcp.retrieval import MAX_K  # numpy: not at the server's start

    result = await runtime.search(query, k=min(MAX_K, max(k, 2 * k + 10)), **kwargs)
    return SearchResult(await hits(runtime.store, result.hits, limit=k, counted=counted), result.note)


async def hits(store: Store, found: Sequence[Hit], *, limit: int | None = None, counted: bool = True) -> list[Hit]:
    disclosure = current()
    if not disclosure.restricted:
        return list(found if limit is None else found[:limit])
    classes = await store.aio.observation_classes([h.id for h in found if h.kind == "observation"])

    def shown(hit: Hit) -> bool:
        if hit.kind == "observation":
            return disclosure.shows_observation(classes.get(hit.id, UNPROCESSED))
        return hit.proposition is not None and disclosure.shows_class(hit.proposition.sensitivity)

    return disclosure.keep(found, shown, limit=limit, count=counted)


async def require_proposition(store: Store, proposition_id: int) -> None:
    """NotFound, worded like a missing id, when this client may not see the proposition."""
    disclosure = current()
    if not disclosure.restricted:
        return
    classes = await store.aio.proposition_classes([proposition_id])
    if proposition_id in classes and not disclosure.shows_class(classes[proposition_id]):
        raise NotFound(f"no proposition with id {proposition_id}")


async def detail(store: Store, found: PropositionDetail) -> PropositionDetail:
    """A proposition's detail as this client may see it: NotFound (like a missing id) for a withheld one;
    withheld versions, successors, edges and evidence left out and counted."""
    disclosure = current()
    if not disclosure.restricted:
        return found
    prop = found.proposition
    if not disclosure.shows_class(prop.sensitivity):
        raise NotFound(f"no proposition with id {prop.id}")
    edges = {e.parent_id for e in found.parents} | {e.child_id for e in found.children} | set(found.successors)
    classes = await store.aio.proposition_classes(edges)

    def shown_id(pid: int) -> bool:
        return pid == prop.id or disclosure.shows_class(classes.get(pid))

    return found.model_copy(update={
        "history": tuple(disclosure.keep(found.history, lambda p: disclosure.shows_class(p.sensitivity))),
        "successors": tuple(disclosure.keep(found.successors, shown_id)),
        "parents": tuple(e for e in found.parents if shown_id(e.parent_id)),
        "children": tuple(e for e in found.children if shown_id(e.child_id)),
        "evidence": tuple(await observations(store, found.evidence)),
    })


# ------------------------------------------------------------------------------------------- observations
async def observations(store: Store, found: Sequence[Observation], *, limit: int | None = None,
                       counted: bool = True) -> list[Observation]:
    """The observations this client may see (the first `limit` of them)."""
    disclosure = current()
    if not disclosure.restricted:
        return list(found if limit is None else found[:limit])
    classes = await store.aio.observation_classes([o.id for o in found])
    return disclosure.keep(found, lambda o: disclosure.shows_observation(classes.get(o.id, UNPROCESSED)),
                           limit=limit, count=counted)


def fetch(limit: int) -> int:
    """How many rows to read for `limit` shown ones: more for a restricted client, who may see fewer."""
    return limit if not current().restricted else min(1000, 4 * limit + 10)


async def evidence(store: Store, snippets: dict[int, list[dict[str, Any]]], *, per: int | None = None
                   ) -> dict[int, list[dict[str, Any]]]:
    """Evidence snippets (proposition id -> items with an `observation_id`) without withheld observations, at
    most `per` for each proposition."""
    disclosure = current()
    if not disclosure.restricted:
        return snippets if per is None else {pid: items[:per] for pid, items in snippets.items()}
    classes = await store.aio.observation_classes({e["observation_id"] for items in snippets.values()
                                                   for e in items})
    return {pid: disclosure.keep(items, lambda e: disclosure.shows_observation(
        classes.get(e["observation_id"], UNPROCESSED)), limit=per) for pid, items in snippets.items()}


# -------------------------------------------------------------------------------------------- suggestions
async def suggestions(store: Store, found: Sequence[Suggestion], *, counted: bool = True) -> list[Suggestion]:
    """The suggestions this client may see: those resting only on propositions, and drawn only from
    observations, it may see."""
    disclosure = current()
    if not disclosure.restricted or not found:
        return list(found)
    grounds = await store.aio.proposition_classes({pid for s in found for pid in s.proposition_ids})
    sources = await store.aio.suggestion_sources([s.id for s in found])
    drawn = await store.aio.observation_classes({oid for oids in sources.values() for oid in oids})

    def shown(suggestion: Suggestion) -> bool:
        return all(pid in grounds and disclosure.shows_class(grounds[pid]) for pid in suggestion.proposition_ids) \
            and all(disclosure.shows_observation(drawn.get(oid, UNPROCESSED)) for oid in sources.get(suggestion.id, ()))

    return disclosure.keep(found, shown, count=counted)


async def require_suggestion(store: Store, suggestion_id: int) -> None:
    """NotFound, worded like a missing id, when this client may not see the suggestion."""
    if not current().restricted:
        return
    try:
        found = await store.aio.get_suggestion(suggestion_id)
    except NotFound:
        return  # the store says so itself
    if not await suggestions(store, [found], counted=False):
        raise NotFound(f"no suggestion with id {suggestion_id} (it may have been forgotten)")


class EngineView:
    """What suggest_actions lets the model see for this client (gum_mcp.engine.suggest's `visible`): only
    observations and earlier suggestions the client may see. Inputs, not results: nothing is counted."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def observations(self, found: Sequence[Observation]) -> list[Observation]:
        return await observations(self.store, found, counted=False)

    async def suggestions(self, found: Sequence[Suggestion]) -> list[Suggestion]:
        return await suggestions(self.store, found, counted=False)


# ------------------------------------------------------------------------------------ forget, access log
async def forget_preview(store: Store, preview: ForgetPreview) -> ForgetPreview:
    """A forget preview without withheld matches; what a confirmation covers is recomputed from what is shown,
    so it never removes what the client was not shown."""
    disclosure = current()
    if not disclosure.restricted or not preview.matches:
        return preview
    classes = await store.aio.proposition_classes(preview.ids)
    matches = disclosure.keep(preview.matches, lambda m: disclosure.shows_class(classes.get(m.id)))
    if len(matches) == len(preview.matches):
        return preview
    ids = [m.id for m in matches]
    versions = await store.aio.proposition_versions(ids) if ids else {}
    evidence: set[int] = set()
    if preview.with_evidence:
        for pid in ids:
            evidence.update(await store.aio.evidence_ids(pid))
    return dataclasses.replace(preview, matches=tuple(m for m in matches if m.id in versions), versions=versions,
                               observations=len(evidence))


async def forget_reports(store: Store, reports: Sequence[ForgetReport]) -> list[ForgetReport]:
    """Forget's reports with only the proposition ids this client may see (the counts stay)."""
    disclosure = current()
    if not disclosure.restricted:
        return list(reports)
    classes = await store.aio.proposition_classes({pid for r in reports for pid in (*r.proposition_ids,
                                                                                      *r.rederive_ids)})

    def shown(pid: int) -> bool:
        return disclosure.shows_class(classes.get(pid))

    return [r.model_copy(update={"proposition_ids": tuple(disclosure.keep(r.proposition_ids, shown)),
                                 "rederive_ids": tuple(pid for pid in r.rederive_ids if shown(pid))})
            for r in reports]


async def access_entries(store: Store, entries: Sequence[AccessEntry]) -> list[AccessEntry]:
    """Access-log entries without the ids of what this client may not see (who called what stays)."""
    disclosure = current()
    if not disclosure.restricted:
        return list(entries)
    props = await store.aio.proposition_classes({pid for e in entries for pid in e.proposition_ids})
    obs = await store.aio.observation_classes({oid for e in entries for oid in e.observation_ids})
    out = []
    for e in entries:
        kept_p = tuple(p for p in e.proposition_ids if p not in props or disclosure.shows_class(props[p]))
        kept_o = tuple(o for o in e.observation_ids if o not in obs or disclosure.shows_observation(obs[o]))
        disclosure.withheld += len(e.proposition_ids) - len(kept_p) + len(e.observation_ids) - len(kept_o)
        out.append(e.model_copy(update={"proposition_ids": kept_p, "observation_ids": kept_o}))
    return out


# ------------------------------------------------------------------------------------------------ status
async def summary(runtime: Runtime) -> dict[str, Any]:
    """The disclosure part of status: who is asking, what it may see, how much is withheld from it, and the
    tagging job. Per-class counts only for a client allowed every class (a count per class says what)."""
    disclosure = current()
    store = runtime.store
    out: dict[str, Any] = {
        "client": disclosure.client,
        "allowed": [name for name in SENSITIVITY_ORDER if name in disclosure.allowed],
        "restricted": disclosure.restricted,
        "policy_file": str(runtime.settings.policy_path),
    }
    if disclosure.problem:
        out["problem"] = disclosure.problem
    if disclosure.restricted:
        out["withheld_propositions"] = await count_outside(store)
    else:
        out["classes"] = await store.aio.sensitivity_counts()
    out["tagging"] = runtime.status().get("tagging")
    return out


# ------------------------------------------------------------------------------------------ the last check
async def leaked(store: Store, disclosure: Disclosure, propositions: Iterable[int], observations: Iterable[int]
                 ) -> list[str]:
    """The ids a result carried that this client may not see ("p12", "o34"): a read path that skipped the
    filters. Ids that no longer exist are not counted (a forget's report names what it removed)."""
    if not disclosure.restricted:
        return []
    props = await store.aio.proposition_classes(set(propositions))
    obs = await store.aio.observation_classes(set(observations))
    return ([f"p{pid}" for pid, sensitivity in sorted(props.items()) if not disclosure.shows_class(sensitivity)]
            + [f"o{oid}" for oid, classes in sorted(obs.items()) if not disclosure.shows_observation(classes)])

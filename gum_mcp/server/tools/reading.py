"""Reading the user model: what is believed (query_user, list_propositions), one proposition with its
history (get_proposition), and what the user is doing now (get_recent_activity). Read-only."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field

from gum_mcp.domain import utcnow
from gum_mcp.server import disclosure
from gum_mcp.server.context import GumContext, gum
from gum_mcp.server.shaping import (
    MAX_OUTPUT_BYTES,
    SNIPPET_CHARS,
    Evidence,
    PropositionOut,
    bounded,
    cut_text,
    json_size,
    shape_propositions,
)
from gum_mcp.server.tools.base import MAX_ID, READ_ONLY, parse_time, tool_errors

if TYPE_CHECKING:
    from gum_mcp.store import Store


# ---------------------------------------------------------------------------------------- output models
class QueryResult(BaseModel):
    query: str
    propositions: list[PropositionOut]
    note: str | None = None
    truncated: bool = False
    withheld: int = Field(0, description=disclosure.WITHHELD)


class PropositionList(BaseModel):
    propositions: list[PropositionOut]
    next_cursor: str | None = Field(None, description="pass as cursor for the next page")
    truncated: bool = False
    note: str | None = None
    withheld: int = Field(0, description=disclosure.WITHHELD)


class Revision(BaseModel):
    id: int
    text: str | None
    confidence: int
    decay: int
    created_at: datetime
    retired_at: datetime | None
    cause: str | None = Field(None, description="why it was retired: merged, split, revised, feedback, forgotten")


class PropositionRecord(BaseModel):
    proposition: PropositionOut
    current: bool
    retired_at: datetime | None = None
    retired_cause: str | None = None
    superseded_by: list[int] = Field(default_factory=list, description="current propositions this one led to")
    history: list[Revision] = Field(default_factory=list, description="earlier versions, oldest first")
    feedback: list[dict[str, Any]] = Field(default_factory=list)
    truncated: bool = False
    note: str | None = None
    withheld: int = Field(0, description=disclosure.WITHHELD)


class ObservationOut(BaseModel):
    id: int
    kind: str
    source: str
    observed_at: datetime
    status: str
    content: str | None
    full_chars: int | None = Field(None, description="the content's full length, when it was cut to fit the output")


def shorten_observation(item: ObservationOut, chars: int) -> ObservationOut:
    """`item` with its content cut to `chars` characters (for `bounded`)."""
    if item.content is None or len(item.content) <= chars:
        return item
    return item.model_copy(update={"content": cut_text(item.content, chars),
                                   "full_chars": item.full_chars or len(item.content)})


class Activity(BaseModel):
    since: datetime
    observations: list[ObservationOut]
    truncated: bool = False
    note: str | None = None
    withheld: int = Field(0, description=disclosure.WITHHELD)


# ---------------------------------------------------------------------------------------- tools
@tool_errors
async def query_user(
    ctx: GumContext,
    query: Annotated[str, Field(description="what you want to know, in plain words; empty = the most "
                                            "relevant recent propositions", max_length=1000)] = "",
    limit: Annotated[int, Field(ge=1, le=20, description="how many propositions (1-20)")] = 5,
    since: Annotated[str | None, Field(description="only propositions supported since: ISO-8601 or an age "
                                                   "like 90m, 2h, 3d")] = None,
    until: Annotated[str | None, Field(description="only propositions supported before: ISO-8601 or an "
                                                   "age")] = None,
    min_confidence: Annotated[int | None, Field(ge=1, le=10, description="drop propositions below this "
                                                                         "confidence")] = None,
    depth: Annotated[Literal["fast", "deep"], Field(description="fast (default): ranked at once; deep: a wider "
                                                                "pool reranked by the configured LLM, for tasks "
                                                                "whose answer depends on the user's preferences "
                                                                "(seconds, uses tokens; fast with a note if the "
                                                                "LLM fails)")] = "fast",
) -> QueryResult:
    """Find what gum-mcp believes about the user that is relevant to a question or task: their projects,
    deadlines, people they work with, preferences, habits and current focus. Returns the most relevant
    current propositions with reasoning, confidence, age, score and up to two evidence snippets each.
    Use it before personalising an answer or assuming anything about the user."""
    state = gum(ctx)
    wanted = limit
    if depth == "deep":
        from gum_mcp.retrieval.deep import pool_size

        wanted = pool_size(limit)
    result = await disclosure.search(state.runtime, query, k=wanted, since=parse_time(since, "since"),
                                     until=parse_time(until, "until"), min_confidence=min_confidence)
    # a hit with score 0 matched nothing that counts: never shown, nor offered to the deep rerank
    hits, note = [h for h in result.hits if round(h.score, 4) > 0], result.note
    if depth == "deep":
        from gum_mcp.retrieval.deep import deep_rerank

        deep = await deep_rerank(state.settings, state.store, query, hits, limit)
        hits, note = deep.hits, "; ".join(n for n in (note, deep.note) if n) or None
    props = [h.proposition for h in hits if h.proposition is not None]
    if since is None and until is None:  # the standing instructions that apply to the task come first (issue 27)
        from gum_mcp.server.tools.deciding import instructions_for

        first = [p for p in await instructions_for(state.store, query)
                 if min_confidence is None or p.confidence >= min_confidence][:limit]
        chosen = {p.id for p in first}
        props = (first + [p for p in props if p.id not in chosen])[: max(limit, len(first))]
    scores = {h.id: (h.score, list(h.signals)) for h in hits}
    if not props:
        note = (note + "; " if note else "") + "nothing relevant is known yet"
    shaped = await shape_propositions(state.store, props, scores)
    return bounded(QueryResult(query=query, propositions=shaped, note=disclosure.note(note),
                               withheld=disclosure.withheld()), "propositions")


@tool_errors
async def list_propositions(
    ctx: GumContext,
    limit: Annotated[int, Field(ge=1, le=100, description="page size (1-100)")] = 20,
    cursor: Annotated[str | None, Field(description="next_cursor from the previous page")] = None,
    order: Annotated[Literal["recent", "confidence"], Field(description="recent: latest support first; "
                                                                        "confidence: most certain first")]
    = "recent",
    min_confidence: Annotated[int | None, Field(ge=1, le=10, description="drop propositions below this "
                                                                         "confidence")] = None,
    kind: Annotated[Literal["belief", "preference", "instruction"] | None,
                    Field(description="only this kind: instruction (standing rules the user stated), preference, "
                                      "belief; default all")] = None,
) -> PropositionList:
    """Page through everything currently believed about the user, newest support first or most confident
    first. Use query_user instead when you have a question."""
    store = gum(ctx).store
    page = await store.aio.current_propositions(limit=limit, cursor=cursor, order=order, kind=kind,
                                                min_confidence=min_confidence, sensitivity=disclosure.page_classes())
    await disclosure.count_outside(store, min_confidence=min_confidence)  # not on this page: in all
    result = PropositionList(propositions=await shape_propositions(store, list(page.items)),
                             next_cursor=page.next_cursor, note=disclosure.note(None), withheld=disclosure.withheld())
    return bounded(result, "propositions")


@tool_errors
async def get_proposition(ctx: GumContext,
                          id: Annotated[int, Field(ge=1, le=MAX_ID, description="a proposition id")]
                          ) -> PropositionRecord:
    """One proposition in full: reasoning, evidence, feedback and its revision history. A retired id says
    what superseded it (superseded_by)."""
    return await proposition_record(gum(ctx).store, id)


async def proposition_record(store: Store, id: int) -> PropositionRecord:
    """One proposition with its history, bounded (get_proposition and gum://propositions/{id}). Raises NotFound."""
    detail = await disclosure.detail(store, await store.aio.proposition_detail(id, evidence_limit=20))
    p = detail.proposition
    [shaped] = await shape_propositions(store, [p])
    shaped = shaped.model_copy(update={"evidence": [
        Evidence(observation_id=o.id, kind=o.kind, source=o.source, observed_at=o.observed_at,
                 snippet=None if o.content is None else o.content[:SNIPPET_CHARS * 2])
        for o in detail.evidence]})
    record = PropositionRecord(
        proposition=shaped, current=p.current, retired_at=p.retired_at, retired_cause=p.retired_cause,
        superseded_by=[] if p.current else list(detail.successors),
        history=[Revision(id=h.id, text=h.text, confidence=h.confidence, decay=h.decay, created_at=h.created_at,
                          retired_at=h.retired_at, cause=h.retired_cause) for h in detail.history],
        feedback=[f.model_dump(mode="json") for f in detail.feedback],
        note=disclosure.note(None), withheld=disclosure.withheld(),
    )
    return fit_record(record)


def fit_record(record: PropositionRecord) -> PropositionRecord:
    """Shorten evidence (last first), then history (oldest first), until the record fits MAX_OUTPUT_BYTES."""
    while json_size(record) > MAX_OUTPUT_BYTES and (
            record.history or record.proposition.evidence):
        if record.proposition.evidence:
            shaped = record.proposition.model_copy(update={"evidence": record.proposition.evidence[:-1]})
            record = record.model_copy(update={"proposition": shaped})
        else:
            record = record.model_copy(update={"history": record.history[1:]})
        record = record.model_copy(update={"truncated": True, "note": "evidence and history shortened to fit"})
    return record


@tool_errors
async def get_recent_activity(
    ctx: GumContext,
    minutes: Annotated[int, Field(ge=1, le=10080, description="look back this many minutes (max 7 days)")] = 60,
    limit: Annotated[int, Field(ge=1, le=100, description="how many observations (1-100)")] = 20,
) -> Activity:
    """Recent raw observations (screen transcripts, file activity, agent notes; secrets redacted), newest
    first: what the user is doing right now, before gum-mcp has drawn conclusions from it."""
    return await recent_activity(gum(ctx).store, minutes=minutes, limit=limit)


async def recent_activity(store: Store, minutes: int = 60, limit: int = 20) -> Activity:
    """The observations of the last `minutes`, newest first, bounded (get_recent_activity and gum://activity/recent)."""
    since = utcnow() - timedelta(minutes=minutes)
    # what the privacy audit skipped is never served raw (nor to what_am_i_doing, which reads this)
    rows = await store.aio.observations(since=since, limit=disclosure.fetch(limit), exclude_status="skipped")
    rows = await disclosure.observations(store, rows, limit=limit)  # only what this client may see
    result = Activity(since=since, observations=[
        ObservationOut(id=o.id, kind=o.kind, source=o.source, observed_at=o.observed_at, status=o.status,
                       content=o.content) for o in rows], withheld=disclosure.withheld())
    result = result.model_copy(update={"note": disclosure.note(
        None if rows else f"no observations in the last {minutes} minutes")})
    return bounded(result, "observations", shorten=shorten_observation)


def register(server: MCPServer) -> None:
    server.add_tool(query_user, title="Ask what is known about the user", annotations=READ_ONLY)
    server.add_tool(list_propositions, title="List propositions", annotations=READ_ONLY)
    server.add_tool(get_proposition, title="Get one proposition with its history", annotations=READ_ONLY)
    server.add_tool(get_recent_activity, title="What the user is doing now", annotations=READ_ONLY)

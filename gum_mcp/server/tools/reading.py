"""Reading the user model: what is believed (query_user, list_propositions), one proposition with its
history (get_proposition), and what the user is doing now (get_recent_activity). Read-only."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field

from gum_mcp.domain import utcnow
from gum_mcp.server.context import GumContext, gum
from gum_mcp.server.shaping import (
    MAX_OUTPUT_BYTES,
    SNIPPET_CHARS,
    Evidence,
    PropositionOut,
    bounded,
    shape_propositions,
)
from gum_mcp.server.tools.base import READ_ONLY, parse_time, tool_errors

if TYPE_CHECKING:
    from gum_mcp.store import Store


# ---------------------------------------------------------------------------------------- output models
class QueryResult(BaseModel):
    query: str
    propositions: list[PropositionOut]
    note: str | None = None
    truncated: bool = False


class PropositionList(BaseModel):
    propositions: list[PropositionOut]
    next_cursor: str | None = Field(None, description="pass as cursor for the next page")
    truncated: bool = False
    note: str | None = None


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


class ObservationOut(BaseModel):
    id: int
    kind: str
    source: str
    observed_at: datetime
    status: str
    content: str | None


class Activity(BaseModel):
    since: datetime
    observations: list[ObservationOut]
    truncated: bool = False
    note: str | None = None


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
) -> QueryResult:
    """Find what gum-mcp believes about the user that is relevant to a question or task: their projects,
    deadlines, people they work with, preferences, habits and current focus. Returns the most relevant
    current propositions with reasoning, confidence, age, score and up to two evidence snippets each.
    Use it before personalising an answer or assuming anything about the user."""
    state = gum(ctx)
    result = await state.runtime.search(query, k=limit, since=parse_time(since, "since"),
                                        until=parse_time(until, "until"), min_confidence=min_confidence)
    props = [h.proposition for h in result.hits if h.proposition is not None]
    scores = {h.id: (h.score, list(h.signals)) for h in result.hits}
    note = result.note
    if not props:
        note = (note + "; " if note else "") + "nothing relevant is known yet"
    shaped = await shape_propositions(state.store, props, scores)
    return bounded(QueryResult(query=query, propositions=shaped, note=note), "propositions")


@tool_errors
async def list_propositions(
    ctx: GumContext,
    limit: Annotated[int, Field(ge=1, le=100, description="page size (1-100)")] = 20,
    cursor: Annotated[str | None, Field(description="next_cursor from the previous page")] = None,
    order: Annotated[Literal["recent", "confidence"], Field(description="recent: latest support first; "
                                                                        "confidence: most certain first")]
    = "recent",
    min_confidence: Annotated[int | None, Field(ge=1, le=10)] = None,
) -> PropositionList:
    """Page through everything currently believed about the user, newest support first or most confident
    first. Use query_user instead when you have a question."""
    store = gum(ctx).store
    page = await store.aio.current_propositions(limit=limit, cursor=cursor, order=order,
                                                min_confidence=min_confidence)
    result = PropositionList(propositions=await shape_propositions(store, list(page.items)),
                             next_cursor=page.next_cursor)
    return bounded(result, "propositions")


@tool_errors
async def get_proposition(ctx: GumContext,
                          id: Annotated[int, Field(ge=1, description="a proposition id")]) -> PropositionRecord:
    """One proposition in full: reasoning, evidence, feedback and its revision history. A retired id says
    what superseded it (superseded_by)."""
    store = gum(ctx).store
    detail = await store.aio.proposition_detail(id, evidence_limit=20)
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
    )
    return fit_record(record)


def fit_record(record: PropositionRecord) -> PropositionRecord:
    """Shorten evidence (last first), then history (oldest first), until the record fits MAX_OUTPUT_BYTES."""
    while len(record.model_dump_json(indent=2).encode()) > MAX_OUTPUT_BYTES and (
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
    rows = await store.aio.observations(since=since, limit=limit)
    result = Activity(since=since, observations=[
        ObservationOut(id=o.id, kind=o.kind, source=o.source, observed_at=o.observed_at, status=o.status,
                       content=o.content) for o in rows])
    if not rows:
        result = result.model_copy(update={"note": f"no observations in the last {minutes} minutes"})
    return bounded(result, "observations")


def register(server: MCPServer) -> None:
    server.add_tool(query_user, title="Ask what is known about the user", annotations=READ_ONLY)
    server.add_tool(list_propositions, title="List propositions", annotations=READ_ONLY)
    server.add_tool(get_proposition, title="Get one proposition with its history", annotations=READ_ONLY)
    server.add_tool(get_recent_activity, title="What the user is doing now", annotations=READ_ONLY)

"""The MCP server: the user model as tools, resources and prompts, over stdio or authenticated HTTP.

Thin: every tool parses its arguments, calls the runtime and the store, and shapes the output
(bounded to MAX_OUTPUT_BYTES). stdout belongs to the protocol: nothing here prints to it; logs go
to stderr and to `<data dir>/logs/gum-mcp.log`.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from gum_mcp import __version__
from gum_mcp.config import Settings
from gum_mcp.domain import (
    InvalidInput,
    NotFound,
    Observation,
    Proposition,
    human_age,
    parse_when,
    utcnow,
)
from gum_mcp.runtime import Runtime

log = logging.getLogger("gum_mcp.server")

MAX_OUTPUT_BYTES = 16 * 1024
#: forget(query=...) removes only matches at least this relevant (0..1, before recency and confidence
#: weights): a destructive call must not take the best of a set of unrelated propositions.
FORGET_MIN_RELEVANCE = 0.4
SNIPPET_CHARS = 200
EVIDENCE_PER_PROPOSITION = 2

INSTRUCTIONS = """\
gum-mcp is a private, local model of the person you are helping, learned from how they use their
computer: confidence-weighted propositions (confidence 1-10; decay 1-10, where 10 means a lasting
trait and 1 a passing state), each with its reasoning and evidence. Call query_user before you
personalise an answer or make an assumption about the person; get_recent_activity to see what they
are doing now; record_observation when you learn something durable about them; give_feedback when
they confirm or correct something. Treat propositions as inferences, not facts: weigh confidence
and age, and never reveal them to third parties."""

READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)
ADDITIVE = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=False)
DESTRUCTIVE = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=False)


# ---------------------------------------------------------------------------------------- output models
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


class Recorded(BaseModel):
    id: int
    status: str
    redactions: int = Field(description="secrets removed before it was stored")
    note: str


class FeedbackResult(BaseModel):
    id: int
    verdict: str
    successor: PropositionOut | None = None
    message: str


class Forgotten(BaseModel):
    observations_deleted: int
    propositions_forgotten: int
    proposition_ids: list[int]
    message: str


class Observing(BaseModel):
    paused_until: str | None = Field(description="ISO-8601, 'indefinitely', or null when observing")
    message: str


class Status(BaseModel):
    data_dir: str
    user_name: str
    observations: dict[str, int]
    propositions_current: int
    propositions_retired: int
    failed: list[dict[str, Any]]
    role: str = Field(description="owner: this process runs the engine and the vector index; follower: another does")
    pid: int
    engine_owner: dict[str, Any] | None
    engine: dict[str, Any] | None
    observing: dict[str, Any] = Field(description="observers and their health; paused_until when paused")
    vector_index: str
    llm: dict[str, Any]


# ---------------------------------------------------------------------------------------- helpers
def bounded(result: BaseModel, field: str, limit: int = MAX_OUTPUT_BYTES) -> BaseModel:
    """Drop items from the end of `field` until the JSON fits in `limit` bytes; say so."""
    items = list(getattr(result, field))
    total = len(items)

    def size(model: BaseModel) -> int:
        return len(model.model_dump_json(indent=2).encode())

    while size(result) > limit and items:
        items.pop()
        result = result.model_copy(update={field: items, "truncated": True,
                                           "note": f"output limited to {limit // 1024} KiB: showing {len(items)}"
                                                   f" of {total}; ask for fewer or narrow the request"})
    return result


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None or not value.strip():
        return None
    return parse_when(value, name=name)


P = ParamSpec("P")
R = TypeVar("R")


def tool_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn our typed errors into tool errors with their message; anything else into a short
    error (the traceback goes to the log, never to the client)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except (InvalidInput, NotFound, ToolError) as exc:
            raise ToolError(str(exc.args[0]) if exc.args else str(exc)) from None
        except Exception as exc:
            log.exception("tool %s failed", fn.__name__)
            raise ToolError(f"{fn.__name__} failed: {type(exc).__name__} (details in the gum-mcp log)") from None

    return wrapper


# ---------------------------------------------------------------------------------------- the server
def build_server(runtime: Runtime, *, manage_runtime: bool = True) -> MCPServer:
    """The MCP server over `runtime`. With manage_runtime, the server's lifespan runs it."""
    store = runtime.store
    settings = runtime.settings

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[None]:
        if not manage_runtime:
            yield
            return
        async with anyio.create_task_group() as tg:
            await tg.start(runtime.run)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()

    server = MCPServer(
        name="gum-mcp", title="General User Model", version=__version__, instructions=INSTRUCTIONS,
        lifespan=lifespan, log_level="WARNING",
    )

    async def first_request(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        try:
            return await call_next(ctx)
        finally:
            runtime.request_served()

    server.middleware.append(first_request)

    async def shape(props: list[Proposition], scores: dict[int, tuple[float, list[str]]] | None = None
                    ) -> list[PropositionOut]:
        snippets = await store.aio.evidence_snippets([p.id for p in props], per=EVIDENCE_PER_PROPOSITION,
                                                      chars=SNIPPET_CHARS)
        now = utcnow()
        out = []
        for p in props:
            score, matched = (scores or {}).get(p.id, (None, None))
            out.append(PropositionOut(
                id=p.id, text=p.text, reasoning=p.reasoning, confidence=p.confidence, decay=p.decay,
                age=human_age(p.last_supported_at, now), last_supported_at=p.last_supported_at,
                created_at=p.created_at, support_count=p.support_count, user_confirmed=p.user_confirmed,
                score=None if score is None else round(score, 4), matched=matched,
                evidence=[Evidence(**e) for e in snippets.get(p.id, [])],
            ))
        return out

    # -- tools
    @server.tool(title="Ask what is known about the user", annotations=READ_ONLY)
    @tool_errors
    async def query_user(
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
        result = await runtime.search(query, k=limit, since=_parse_time(since, "since"),
                                      until=_parse_time(until, "until"), min_confidence=min_confidence)
        props = [h.proposition for h in result.hits if h.proposition is not None]
        scores = {h.id: (h.score, list(h.signals)) for h in result.hits}
        note = result.note
        if not props:
            note = (note + "; " if note else "") + "nothing relevant is known yet"
        return bounded(QueryResult(query=query, propositions=await shape(props, scores), note=note), "propositions")

    @server.tool(title="List propositions", annotations=READ_ONLY)
    @tool_errors
    async def list_propositions(
        limit: Annotated[int, Field(ge=1, le=100, description="page size (1-100)")] = 20,
        cursor: Annotated[str | None, Field(description="next_cursor from the previous page")] = None,
        order: Annotated[Literal["recent", "confidence"], Field(description="recent: latest support first; "
                                                                            "confidence: most certain first")]
        = "recent",
        min_confidence: Annotated[int | None, Field(ge=1, le=10)] = None,
    ) -> PropositionList:
        """Page through everything currently believed about the user, newest support first or most confident
        first. Use query_user instead when you have a question."""
        page = await store.aio.current_propositions(limit=limit, cursor=cursor, order=order,
                                                    min_confidence=min_confidence)
        result = PropositionList(propositions=await shape(list(page.items)), next_cursor=page.next_cursor)
        return bounded(result, "propositions")

    @server.tool(title="Get one proposition with its history", annotations=READ_ONLY)
    @tool_errors
    async def get_proposition(id: Annotated[int, Field(ge=1, description="a proposition id")]) -> PropositionRecord:
        """One proposition in full: reasoning, evidence, feedback and its revision history. A retired id says
        what superseded it (superseded_by)."""
        detail = await store.aio.proposition_detail(id, evidence_limit=20)
        p = detail.proposition
        [shaped] = await shape([p])
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
        while len(record.model_dump_json(indent=2).encode()) > MAX_OUTPUT_BYTES and (
                record.history or record.proposition.evidence):
            if record.proposition.evidence:
                shaped = record.proposition.model_copy(update={"evidence": record.proposition.evidence[:-1]})
                record = record.model_copy(update={"proposition": shaped})
            else:
                record = record.model_copy(update={"history": record.history[1:]})
            record = record.model_copy(update={"truncated": True, "note": "evidence and history shortened to fit"})
        return record

    @server.tool(title="What the user is doing now", annotations=READ_ONLY)
    @tool_errors
    async def get_recent_activity(
        minutes: Annotated[int, Field(ge=1, le=10080, description="look back this many minutes (max 7 days)")] = 60,
        limit: Annotated[int, Field(ge=1, le=100, description="how many observations (1-100)")] = 20,
    ) -> Activity:
        """Recent raw observations (screen transcripts, file activity, agent notes; secrets redacted), newest
        first: what the user is doing right now, before gum-mcp has drawn conclusions from it."""
        since = utcnow() - timedelta(minutes=minutes)
        rows = await store.aio.observations(since=since, limit=limit)
        result = Activity(since=since, observations=[
            ObservationOut(id=o.id, kind=o.kind, source=o.source, observed_at=o.observed_at, status=o.status,
                           content=o.content) for o in rows])
        if not rows:
            result = result.model_copy(update={"note": f"no observations in the last {minutes} minutes"})
        return bounded(result, "observations")

    @server.tool(title="Tell gum-mcp something about the user", annotations=ADDITIVE)
    @tool_errors
    async def record_observation(
        content: Annotated[str, Field(min_length=1, description="what you learned about the user, as a plain "
                                                                "statement (at most GUM_MAX_OBSERVATION_CHARS)")],
        source: Annotated[str, Field(min_length=1, max_length=100, description="who reports it, e.g. your "
                                                                                "client's name")] = "agent",
    ) -> Recorded:
        """Report something you learned about the user (a preference, a plan, a deadline, a correction) so
        other assistants can use it later. It is stored at once (secrets redacted) and turned into
        propositions by the engine like any observation."""
        obs: Observation = await store.aio.add_observation(content, kind="agent", source=source)
        runtime.notify()
        return Recorded(id=obs.id, status=obs.status, redactions=obs.redactions,
                        note=f"stored; the engine processes it within about {settings.batch_max_wait:g} s")

    @server.tool(title="Confirm, reject or correct a proposition", annotations=ADDITIVE)
    @tool_errors
    async def give_feedback(
        id: Annotated[int, Field(ge=1, description="the proposition id")],
        verdict: Annotated[Literal["confirm", "reject", "correct"], Field(description="confirm: it is right; "
                                                                                      "reject: it is wrong; "
                                                                                      "correct: replace it")],
        correction: Annotated[str | None, Field(max_length=2000, description="the right statement, required for "
                                                                             "verdict=correct")] = None,
    ) -> FeedbackResult:
        """Record the user's verdict on a proposition. confirm raises it to confidence 10; reject retires it and
        keeps it from coming back; correct replaces it with the user's statement."""
        successor = await store.aio.give_feedback(id, verdict, correction=correction)
        runtime.wake_index()
        shaped = (await shape([successor]))[0] if successor is not None else None
        message = {"confirm": f"confirmed: now proposition {successor.id if successor else id}",
                   "reject": f"proposition {id} rejected and retired",
                   "correct": f"corrected: now proposition {successor.id if successor else id}"}[verdict]
        return FeedbackResult(id=id, verdict=verdict, successor=shaped, message=message)

    @server.tool(title="Forget data about the user", annotations=DESTRUCTIVE)
    @tool_errors
    async def forget(
        proposition_id: Annotated[int | None, Field(ge=1, description="a proposition and all its versions")] = None,
        query: Annotated[str | None, Field(min_length=1, max_length=1000, description="the propositions that "
                                                                                      "closely match this text "
                                                                                      "(weak matches are kept)")]
        = None,
        since: Annotated[str | None, Field(description="with until: observations in a time range (ISO-8601 or an "
                                                       "age like 2h)")] = None,
        until: Annotated[str | None, Field(description="end of the time range")] = None,
        source: Annotated[str | None, Field(min_length=1, description="everything one source reported")] = None,
        with_evidence: Annotated[bool, Field(description="for proposition_id or query: also delete the "
                                                         "observations they rest on")] = False,
        max_matches: Annotated[int, Field(ge=1, le=20, description="for query: at most this many")] = 3,
    ) -> Forgotten:
        """Permanently remove data about the user: a proposition (with its history), the propositions matching a
        query, the observations in a time range, or everything one source reported. Propositions that rested only
        on removed observations are removed too. This cannot be undone; use it when the user asks."""
        chosen = [proposition_id is not None, query is not None, since is not None or until is not None,
                  source is not None]
        if sum(chosen) != 1:
            raise InvalidInput("give exactly one of proposition_id, query, since/until, source")
        if proposition_id is not None:
            reports = [await store.aio.forget_proposition(proposition_id, delete_evidence=with_evidence)]
        elif query is not None:
            result = await runtime.search(query, k=max_matches)
            reports = [await store.aio.forget_proposition(h.id, delete_evidence=with_evidence)
                       for h in result.hits if h.proposition is not None and h.relevance >= FORGET_MIN_RELEVANCE]
        elif source is not None:
            reports = [await store.aio.forget_source(source)]
        else:
            from gum_mcp.forgetting import forget_range

            window = (_parse_time(since, "since"), _parse_time(until, "until"))
            reports = [await anyio.to_thread.run_sync(forget_range, store, *window)]
        runtime.wake_index()
        observations = sum(r.observations_deleted for r in reports)
        ids = sorted({pid for r in reports for pid in r.proposition_ids})
        return Forgotten(observations_deleted=observations, propositions_forgotten=len(ids), proposition_ids=ids,
                         message=f"removed {observations} observation(s) and {len(ids)} proposition version(s)"
                                 if observations or ids else "nothing matched; nothing was removed")

    @server.tool(title="Pause observing", annotations=ADDITIVE)
    @tool_errors
    async def pause_observing(
        minutes: Annotated[int | None, Field(ge=1, le=10080, description="how long, in minutes (default 60, max "
                                                                         "7 days); null pauses until resumed")] = 60,
    ) -> Observing:
        """Stop watching the user's screen and files, for a while or until resume_observing: use it when the
        user asks you to stop watching (e.g. "stop watching for an hour"). Nothing is captured meanwhile;
        what the user tells you through record_observation still counts."""
        from gum_mcp.observers import pause_observing as pause

        until = None if minutes is None else utcnow() + timedelta(minutes=minutes)
        await anyio.to_thread.run_sync(pause, settings, until)
        shown = "until resumed" if until is None else f"until {until:%Y-%m-%d %H:%M} UTC"
        return Observing(paused_until=until.isoformat() if until else "indefinitely",
                         message=f"observing paused {shown}")

    @server.tool(title="Resume observing", annotations=ADDITIVE)
    @tool_errors
    async def resume_observing() -> Observing:
        """Start watching the user's screen and files again after pause_observing."""
        from gum_mcp.observers import resume_observing as resume

        was = await anyio.to_thread.run_sync(resume, settings)
        return Observing(paused_until=None, message="observing resumed" if was else "observing was not paused")

    @server.tool(title="gum-mcp status", annotations=READ_ONLY)
    @tool_errors
    async def status() -> Status:
        """Whether gum-mcp is learning: counts of observations by state and of propositions, failed work, which
        process runs the engine, and the LLM and vector-search state."""
        return await collect_status(runtime)

    # -- resources
    @server.resource("gum://profile", name="profile", title="User profile", mime_type="text/markdown",
                     description="A compact portrait of the user: the most confident and recent propositions.")
    async def profile() -> str:
        return await portrait(runtime)

    @server.resource("gum://propositions/{id}", name="proposition", mime_type="application/json",
                     description="One proposition with its history and evidence.")
    async def proposition_resource(id: str) -> str:
        try:
            record = await get_proposition(int(id))
        except ValueError:
            raise ToolError(f"id: {id!r} is not a proposition id") from None
        return record.model_dump_json(indent=2)

    @server.resource("gum://activity/recent", name="recent-activity", mime_type="application/json",
                     description="Observations from the last hour, newest first.")
    async def activity_resource() -> str:
        return (await get_recent_activity()).model_dump_json(indent=2)

    # -- prompts
    @server.prompt(title="Personalise a task", description="The task with what gum-mcp knows about the user.")
    async def personalize(task: str) -> list[UserMessage]:
        result = await runtime.search(task, k=8)
        lines = [f"- {h.proposition.text} (confidence {h.proposition.confidence}/10)"
                 for h in result.hits if h.proposition is not None]
        context = "\n".join(lines) or "- nothing relevant is known yet"
        return [UserMessage(f"{task}\n\nWhat is known about {settings.user_name} that may matter here "
                            f"(inferred from their computer use; weigh by confidence):\n{context}")]

    @server.prompt(title="What am I doing?", description="Summarise the user's current activity and focus.")
    async def what_am_i_doing() -> list[UserMessage]:
        activity = await get_recent_activity(minutes=60, limit=30)
        recent = "\n".join(f"- {o.observed_at:%H:%M} [{o.kind}] {(o.content or '')[:300]}"
                           for o in activity.observations) or "- (no observations in the last hour)"
        return [UserMessage(f"Summarise what {settings.user_name} is doing right now and what they seem to be "
                            f"focused on, from these recent observations:\n{recent}\n\nWhat is known about them:\n"
                            f"{await portrait(runtime, limit=10)}")]

    from gum_mcp.suggestion_tools import add_suggestion_tools

    add_suggestion_tools(server, runtime)
    server.gum_runtime = runtime  # type: ignore[attr-defined]
    return server


async def collect_status(runtime: Runtime) -> Status:
    from gum_mcp.llm.factory import llm_status

    store, settings = runtime.store, runtime.settings
    stats = await store.aio.stats()
    llm = await anyio.to_thread.run_sync(llm_status, settings, store)
    state = runtime.status()
    return Status(
        data_dir=str(settings.data_dir), user_name=settings.user_name, observations=stats.observations,
        propositions_current=stats.propositions_current, propositions_retired=stats.propositions_retired,
        failed=[{"id": o.id, "error": o.last_error, "attempts": o.attempts} for o in stats.failed],
        role=state["role"], pid=state["pid"], engine_owner=state["engine_owner"], engine=state["engine"],
        observing=state["observing"],
        vector_index=state["vector_index"], llm=llm,
    )


async def portrait(runtime: Runtime, limit: int = 25) -> str:
    """A compact markdown portrait: the most relevant recent propositions, by recency x confidence."""
    result = await runtime.search("", k=min(limit, 20))
    props = [h.proposition for h in result.hits if h.proposition is not None]
    name = runtime.settings.user_name
    if not props:
        return f"# {name}\n\nNothing is known yet: gum-mcp learns from observations as they arrive."
    lines = [f"# What gum-mcp believes about {name}", ""]
    lines += [f"- {p.text} (confidence {p.confidence}/10, decay {p.decay}/10, {human_age(p.last_supported_at)} ago,"
              f" #{p.id})" for p in props]
    text = "\n".join(lines)
    return text[:MAX_OUTPUT_BYTES]


# ---------------------------------------------------------------------------------------- running it
def log_to_file(settings: Settings) -> None:
    from gum_mcp.store.db import ensure_private_dir

    ensure_private_dir(settings.log_dir)
    handler = logging.FileHandler(settings.log_dir / "gum-mcp.log", encoding="utf-8")
    (settings.log_dir / "gum-mcp.log").chmod(0o600)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger("gum_mcp")
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.INFO, logging.INFO))
    for handler in root.handlers:  # stderr stays at the level the CLI chose
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)


def serve(settings: Settings, args: argparse.Namespace) -> int:
    if getattr(args, "http", False):
        from gum_mcp.http import serve_http

        return serve_http(settings, args)
    log_to_file(settings)
    if sys.stdin.isatty():
        print(
            "gum-mcp serve speaks MCP over stdio: an MCP client starts it, not a terminal.\n"
            f"  command: {sys.executable}   args: -m gum_mcp serve\n"
            f"  data dir: {settings.data_dir}\n"
            "  `gum-mcp install <client>` writes this into a client's config. Ctrl-C to stop.",
            file=sys.stderr,
        )
    runtime = Runtime(settings)
    try:
        build_server(runtime).run("stdio")
    except KeyboardInterrupt:
        pass
    finally:
        runtime.close()
    return 0

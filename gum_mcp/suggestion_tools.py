"""Proactive suggestions over MCP: the suggest_actions and respond_to_suggestion tools, and the
`gum://suggestions` resource with change notifications in both protocol eras.

`add_suggestion_tools(server, runtime)` registers them on a server `build_server` made (idempotent).

Notifications. `gum://suggestions` lists the open suggestions; a client that subscribed is told
when that list changes:
- 2026-07-28 era: `subscriptions/listen` with `resource_subscriptions=["gum://suggestions"]`; we
  publish a `ResourceUpdated` event on the server's subscription bus.
- handshake era: `resources/subscribe` (MCPServer serves no handler for it, so we register one on
  the low-level server) and a `notifications/resources/updated` on that connection.
What counts as a change is the fingerprint of the open list (ids and statuses,
`Store.suggestions_fingerprint`). It is checked at once after suggest_actions and
respond_to_suggestion, woken by every forget done through this process's store (an after-forget
hook), and polled every `WATCH_INTERVAL` seconds while the server runs, which catches changes made
by other processes (another client's server, `gum-mcp forget`) and suggestions expiring.

The SDK offers no public way to reach the subscription bus or to add the handshake-era handler and a
background task to an MCPServer after construction, so this module uses `server._subscriptions`
and `server._lowlevel_server` (mcp 2.3); `_require_sdk_internals` fails loudly if they move.

This module is part of the server layer: it imports `gum_mcp.server` lazily (server imports it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import mcp_types
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from gum_mcp.domain import SUGGEST_MAX_CONTEXT_CHARS as MAX_CONTEXT_CHARS
from gum_mcp.domain import SUGGEST_MAX_LIMIT as MAX_LIMIT
from gum_mcp.domain import ForgetReport, Proposition, human_age, utcnow
from gum_mcp.store.suggestions import Suggestion

if TYPE_CHECKING:
    from gum_mcp.engine.suggest import Candidate, Gate, SuggestOutcome
    from gum_mcp.runtime import Runtime
    from gum_mcp.store import Store

log = logging.getLogger("gum_mcp.server")

SUGGESTIONS_URI = "gum://suggestions"
WATCH_INTERVAL = 2.0
OPEN_LIST_LIMIT = 50

SUGGEST = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=False)
RESPOND = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=True, openWorldHint=False)


# ---------------------------------------------------------------------------------------- output models
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


class Considered(BaseModel):
    title: str
    outcome: Literal["admitted", "below_threshold", "ungrounded", "invalid", "duplicate", "over_limit",
                     "considered"]
    why: str
    utility: float | None = None


class SuggestResult(BaseModel):
    suggestions: list[SuggestionOut] = Field(description="what is worth offering now, best first; often empty")
    reason: str | None = Field(None, description="why nothing, or fewer than asked, is suggested")
    considered: list[Considered] = Field(default_factory=list, description="every candidate and what became of it")
    threshold: float
    note: str | None = None
    truncated: bool = False


class SuggestionResponse(BaseModel):
    suggestion: SuggestionOut
    message: str


class OpenSuggestions(BaseModel):
    suggestions: list[SuggestionOut]
    threshold: float
    note: str | None = None
    truncated: bool = False


# ---------------------------------------------------------------------------------------- notifications
def _require_sdk_internals(server: MCPServer) -> None:
    if not hasattr(server, "_lowlevel_server") or not hasattr(server, "_subscriptions"):
        raise RuntimeError("this mcp SDK version moved MCPServer._lowlevel_server / _subscriptions; "
                           "update gum_mcp/suggestion_tools.py")


class ResourceNotifier:
    """Tells the clients subscribed to a resource that it changed, in both protocol eras."""

    def __init__(self, server: MCPServer) -> None:
        _require_sdk_internals(server)
        self._bus = server._subscriptions
        self._sessions: dict[str, dict[object, Any]] = {}  # uri -> connection -> a session on it
        low = server._lowlevel_server
        if low.get_request_handler("resources/subscribe") is None:
            low.add_request_handler("resources/subscribe", mcp_types.SubscribeRequestParams, self._subscribe)
            low.add_request_handler("resources/unsubscribe", mcp_types.UnsubscribeRequestParams, self._unsubscribe)
        else:
            log.warning("resources/subscribe already has a handler; handshake-era clients will not be notified "
                        "of %s", SUGGESTIONS_URI)

    @staticmethod
    def _key(ctx: Any) -> object:
        # One entry per client connection: each request gets its own session proxy over the connection.
        return getattr(ctx.session, "_connection", ctx.session)

    async def _subscribe(self, ctx: Any, params: mcp_types.SubscribeRequestParams) -> mcp_types.EmptyResult:
        self._sessions.setdefault(str(params.uri), {})[self._key(ctx)] = ctx.session
        return mcp_types.EmptyResult()

    async def _unsubscribe(self, ctx: Any, params: mcp_types.UnsubscribeRequestParams) -> mcp_types.EmptyResult:
        self._sessions.get(str(params.uri), {}).pop(self._key(ctx), None)
        return mcp_types.EmptyResult()

    def subscribers(self, uri: str) -> int:
        """Handshake-era subscribers (listen streams are counted by the SDK, not here)."""
        return len(self._sessions.get(uri, {}))

    async def notify(self, uri: str) -> None:
        await self._bus.publish(ResourceUpdated(uri=uri))
        for key, session in list(self._sessions.get(uri, {}).items()):
            try:
                await session.send_resource_updated(uri)
            except Exception as exc:  # the client went away: forget its subscription
                log.info("dropping a %s subscriber: %s", uri, type(exc).__name__)
                self._sessions.get(uri, {}).pop(key, None)


class SuggestionWatch:
    """Notifies subscribers of gum://suggestions when the open list changes (see the module docstring)."""

    def __init__(self, store: Store, notifier: ResourceNotifier, interval: float = WATCH_INTERVAL) -> None:
        self.store = store
        self.notifier = notifier
        self.interval = interval
        self.last = store.suggestions_fingerprint()
        self._waiters: list[tuple[int, Any, anyio.Event]] = []  # (loop thread id, loop token, wake event)
        self._lock = threading.Lock()

    async def check(self) -> bool:
        """Notify if the open list changed since the last notification; True if it did."""
        fingerprint = await self.store.aio.suggestions_fingerprint()
        if fingerprint == self.last:
            return False
        self.last = fingerprint
        await self.notifier.notify(SUGGESTIONS_URI)
        return True

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        waiter = (threading.get_ident(), anyio.lowlevel.current_token(), anyio.Event())
        with self._lock:
            self._waiters.append(waiter)
        task_status.started()
        try:
            while True:
                with anyio.move_on_after(self.interval):
                    await waiter[2].wait()
                with self._lock:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                    waiter = (waiter[0], waiter[1], anyio.Event())
                    self._waiters.append(waiter)
                try:
                    await self.check()
                except Exception:  # a busy or closing store must not end the watch
                    log.exception("checking %s for changes failed", SUGGESTIONS_URI)
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def poke(self, _report: ForgetReport | None = None) -> None:
        """Wake the watchers now (an after-forget hook: runs in whatever thread forgot)."""
        with self._lock:
            waiters = list(self._waiters)
        here = threading.get_ident()
        for thread_id, token, event in waiters:
            try:
                if thread_id == here:
                    event.set()
                else:
                    anyio.from_thread.run_sync(event.set, token=token)
            except Exception:  # that loop is closing; its watcher is gone
                pass


def _watch_in_lifespan(server: MCPServer, watch: SuggestionWatch) -> None:
    """Run `watch` for as long as the server runs (each connection's lifespan, in-process clients too)."""
    low = server._lowlevel_server
    inner = low.lifespan

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with inner(app) as state, anyio.create_task_group() as tg:
            await tg.start(watch.run)
            try:
                yield state
            finally:
                tg.cancel_scope.cancel()

    low.lifespan = lifespan


# ---------------------------------------------------------------------------------------- shaping
def _shape(suggestion: Suggestion, props: dict[int, Proposition], gate: Gate | None = None) -> SuggestionOut:

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


async def _shape_all(store: Store, suggestions: Sequence[Suggestion]) -> list[SuggestionOut]:
    ids = sorted({pid for s in suggestions for pid in s.proposition_ids})
    props = await store.aio.get_propositions(ids) if ids else {}
    return [_shape(s, props) for s in suggestions]


def _considered(candidate: Candidate) -> Considered:
    return Considered(title=candidate.title[:200], outcome=candidate.outcome, why=candidate.why,  # type: ignore[arg-type]
                      utility=None if candidate.gate is None else round(candidate.gate.utility, 4))


# ---------------------------------------------------------------------------------------- registration
def add_suggestion_tools(server: MCPServer, runtime: Runtime) -> None:
    """Register suggest_actions, respond_to_suggestion and gum://suggestions on `server` (once)."""
    if getattr(server, "gum_suggestions", None) is not None:
        return
    from gum_mcp.llm.errors import LLMError, LLMNotConfigured
    from gum_mcp.llm.factory import build_provider
    from gum_mcp.server import MAX_OUTPUT_BYTES, bounded, tool_errors

    store, settings = runtime.store, runtime.settings
    notifier = ResourceNotifier(server)
    watch = SuggestionWatch(store, notifier)
    store.after_forget_hooks.append(watch.poke)
    _watch_in_lifespan(server, watch)
    server.gum_suggestions = watch  # type: ignore[attr-defined]

    async def run_suggest(context: str, limit: int) -> tuple[SuggestOutcome, list[str]]:
        from gum_mcp.engine.suggest import suggest  # the engine loads on first use, not at start-up

        notes: list[str] = []

        async def related(text: str, k: int) -> list[Proposition]:
            result = await runtime.search(text, k=k)
            if result.note and result.note not in notes:
                notes.append(result.note)
            return [hit.proposition for hit in result.hits if hit.proposition is not None]

        if runtime.provider is not None:
            return await suggest(store, runtime.provider, related, settings, context=context, limit=limit), notes
        try:
            provider = build_provider(settings, store)
        except LLMNotConfigured as exc:  # suggest() says so, once it knows there is something to suggest from
            return await suggest(store, None, related, settings, context=context, limit=limit,
                                 no_provider_reason=str(exc)), notes
        async with provider:
            return await suggest(store, provider, related, settings, context=context, limit=limit), notes

    @server.tool(title="Suggest something helpful to do for the user", annotations=SUGGEST)
    @tool_errors
    async def suggest_actions(
        context: Annotated[str, Field(max_length=MAX_CONTEXT_CHARS,
                                      description="what you and the user are working on now, in a sentence or "
                                                  "two; empty = judge from what gum-mcp knows and recent "
                                                  "activity")] = "",
        limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description=f"at most this many suggestions "
                                                                    f"(1-{MAX_LIMIT})")] = 3,
    ) -> SuggestResult:
        """Ask gum-mcp whether there is something worth proactively offering the user right now: a deadline to
        prepare for, a follow-up, a tedious step you could take off their hands. Candidates come from what is
        known about the user and their recent activity, and only those whose expected utility (probability of
        being useful x benefit - cost of interrupting) clears a threshold are returned, each with its numbers
        and the propositions it rests on. Often the answer is none, with the reason: then say nothing. Call it at
        natural pauses (the start of a session, after finishing a task, when the user asks what to do next), not
        on every turn: each call makes one LLM request. Offer a suggestion in your own words, then record the
        user's reaction with respond_to_suggestion."""
        try:
            outcome, notes = await run_suggest(context, limit)
        except LLMError as exc:
            raise ToolError(f"suggest_actions: the LLM call failed ({exc.detail}); nothing was suggested or stored. "
                            "Try again later.") from None
        props = dict(outcome.propositions)
        missing = sorted({pid for s in outcome.suggestions for pid in s.proposition_ids} - set(props))
        if missing:
            props.update(await store.aio.get_propositions(missing))
        shaped = [_shape(s, props, outcome.gate_of(s.id)) for s in outcome.suggestions]
        if outcome.suggestions:
            await watch.check()
        result = SuggestResult(suggestions=shaped, reason=outcome.reason,
                               considered=[_considered(c) for c in outcome.candidates], threshold=outcome.threshold,
                               note="; ".join(notes) or None)
        if len(result.model_dump_json(indent=2).encode()) > MAX_OUTPUT_BYTES:
            result = result.model_copy(update={"considered": [c for c in result.considered
                                                              if c.outcome == "admitted"]})
        return bounded(result, "suggestions")  # type: ignore[return-value]

    @server.tool(title="Record how the user received a suggestion", annotations=RESPOND)
    @tool_errors
    async def respond_to_suggestion(
        id: Annotated[int, Field(ge=1, description="the suggestion id from suggest_actions or gum://suggestions")],
        verdict: Annotated[Literal["accepted", "dismissed", "done"],
                           Field(description="accepted: the user wants it; dismissed: they do not (it and similar "
                                             "ones are not offered again, and suggestions on the same grounds weigh "
                                             "less); done: it has been carried out")],
        note: Annotated[str | None, Field(max_length=2000, description="optional: what the user said, e.g. why "
                                                                       "they dismissed it")] = None,
    ) -> SuggestionResponse:
        """Record the user's reaction to a suggestion you offered from suggest_actions: accepted, dismissed or
        done. Call it whenever the user reacts, including a plain "no": it is how gum-mcp learns which
        suggestions are worth an interruption. A later verdict replaces an earlier one (accepted, then done)."""
        updated = await store.aio.respond_to_suggestion(id, verdict, note=note)
        await watch.check()
        [shaped] = await _shape_all(store, [updated])
        message = {"accepted": f"suggestion {id} accepted: go ahead, and record done when it is",
                   "dismissed": f"suggestion {id} dismissed: it and similar ones will not be offered again",
                   "done": f"suggestion {id} recorded as done"}[verdict]
        return SuggestionResponse(suggestion=shaped, message=message)

    @server.resource(SUGGESTIONS_URI, name="suggestions", title="Open suggestions", mime_type="application/json",
                     description="Suggestions offered to the user and not yet answered, dismissed or done (pending "
                                 "or accepted), newest first. Subscribe to hear when the list changes.")
    async def suggestions_resource() -> str:
        open_now = await store.aio.suggestions(status="open", limit=OPEN_LIST_LIMIT)
        result = OpenSuggestions(suggestions=await _shape_all(store, open_now), threshold=settings.suggest_threshold)
        if not open_now:
            result = result.model_copy(update={"note": "no open suggestions"})
        return bounded(result, "suggestions").model_dump_json(indent=2)

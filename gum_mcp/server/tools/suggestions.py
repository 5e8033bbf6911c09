"""Proactive suggestions: suggest_actions (is anything worth offering the user now?) and
respond_to_suggestion (how the user received one). The open list is the gum://suggestions resource
(resources.py); its change notifications are in notifications.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from gum_mcp.domain import SUGGEST_MAX_CONTEXT_CHARS as MAX_CONTEXT_CHARS
from gum_mcp.domain import SUGGEST_MAX_LIMIT as MAX_LIMIT
from gum_mcp.domain import Proposition
from gum_mcp.llm.errors import LLMError, LLMNotConfigured
from gum_mcp.llm.factory import build_provider
from gum_mcp.server import disclosure
from gum_mcp.server.context import GumContext, GumState, gum
from gum_mcp.server.shaping import (
    MAX_OUTPUT_BYTES,
    SuggestionOut,
    bounded,
    json_size,
    shape_suggestion,
    shape_suggestions,
)
from gum_mcp.server.tools.base import ADDITIVE, IDEMPOTENT, MAX_ID, tool_errors

if TYPE_CHECKING:
    from gum_mcp.engine.suggest import Candidate, SuggestOutcome
    from gum_mcp.runtime import Runtime


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
    withheld: int = Field(0, description=disclosure.WITHHELD)


class SuggestionResponse(BaseModel):
    suggestion: SuggestionOut
    message: str


@tool_errors
async def suggest_actions(
    ctx: GumContext,
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
    state = gum(ctx)
    try:
        outcome, notes = await run_suggest(state, context, limit)
    except LLMError as exc:
        raise ToolError(f"suggest_actions: the LLM call failed ({exc.detail}); nothing was suggested or stored. "
                        "Try again later.") from None
    props = dict(outcome.propositions)
    missing = sorted({pid for s in outcome.suggestions for pid in s.proposition_ids} - set(props))
    if missing:
        props.update(await state.store.aio.get_propositions(missing))
    shown = await disclosure.suggestions(state.store, outcome.suggestions)  # only what this client may see
    hidden = {s.id for s in outcome.suggestions} - {s.id for s in shown}
    shaped = [shape_suggestion(s, props, outcome.gate_of(s.id)) for s in shown]
    if outcome.suggestions:
        await state.suggestions.check()
    result = SuggestResult(suggestions=shaped, reason=outcome.reason,
                           considered=[considered(c) for c in outcome.candidates
                                       if c.suggestion is None or c.suggestion.id not in hidden],
                           threshold=outcome.threshold, note=disclosure.note("; ".join(notes) or None),
                           withheld=disclosure.withheld())
    if json_size(result) > MAX_OUTPUT_BYTES:
        result = result.model_copy(update={"considered": [c for c in result.considered if c.outcome == "admitted"]})
    return bounded(result, "suggestions")


async def run_suggest(state: GumState, context: str, limit: int) -> tuple[SuggestOutcome, list[str]]:
    """One suggestion round with the runtime's LLM provider, or one built for the call."""
    from gum_mcp.engine.suggest import suggest  # the engine loads on first use, not at start-up

    runtime, store, settings = state.runtime, state.store, state.settings
    notes: list[str] = []

    async def related(text: str, k: int) -> list[Proposition]:
        result = await disclosure.search(runtime, text, k=k, counted=False)  # only what this client may see
        if result.note and result.note not in notes:
            notes.append(result.note)
        return [hit.proposition for hit in result.hits if hit.proposition is not None]

    visible = disclosure.EngineView(store)
    if runtime.provider is not None:
        return await suggest(store, runtime.provider, related, settings, context=context, limit=limit,
                             visible=visible), notes
    try:
        provider = build_provider(settings, store)
    except LLMNotConfigured as exc:  # suggest() says so, once it knows there is something to suggest from
        return await suggest(store, None, related, settings, context=context, limit=limit,
                             no_provider_reason=str(exc), visible=visible), notes
    async with provider:
        return await suggest(store, provider, related, settings, context=context, limit=limit,
                             visible=visible), notes


def considered(candidate: Candidate) -> Considered:
    return Considered(title=candidate.title[:200], outcome=candidate.outcome, why=candidate.why,  # type: ignore[arg-type]
                      utility=None if candidate.gate is None else round(candidate.gate.utility, 4))


@tool_errors
async def respond_to_suggestion(
    ctx: GumContext,
    id: Annotated[int, Field(ge=1, le=MAX_ID, description="the suggestion id from suggest_actions or "
                                                          "gum://suggestions")],
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
    state = gum(ctx)
    await disclosure.require_suggestion(state.store, id)  # a withheld one is answered like a missing one
    updated = await state.store.aio.respond_to_suggestion(id, verdict, note=note)
    await state.suggestions.check()
    [shaped] = await shape_suggestions(state.store, [updated])
    message = {"accepted": f"suggestion {id} accepted: go ahead, and record done when it is",
               "dismissed": f"suggestion {id} dismissed: it and similar ones will not be offered again",
               "done": f"suggestion {id} recorded as done"}[verdict]
    return SuggestionResponse(suggestion=shaped, message=message)


def register(server: MCPServer) -> None:
    server.add_tool(suggest_actions, title="Suggest something helpful to do for the user", annotations=ADDITIVE)
    server.add_tool(respond_to_suggestion, title="Record how the user received a suggestion",
                    annotations=IDEMPOTENT)


def add_suggestion_tools(server: MCPServer, runtime: Runtime) -> None:
    """Kept for callers of the former `gum_mcp.suggestion_tools`: `build_server` registers the suggestion
    tools, gum://suggestions and its notifications itself, so on a server it made this does nothing."""
    if getattr(server, "gum_suggestions", None) is None or getattr(server, "gum_runtime", None) is not runtime:
        raise ValueError("add_suggestion_tools: the suggestion tools come with build_server(runtime); "
                         "pass a server it made over this runtime")

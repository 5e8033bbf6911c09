"""Correcting the user model: the user's verdict on a proposition (give_feedback) and removing data
for good (forget)."""

from __future__ import annotations

from typing import Annotated, Literal

import anyio
from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field

from gum_mcp.domain import ForgetReport, InvalidInput
from gum_mcp.server.context import GumContext, GumState, gum
from gum_mcp.server.shaping import PropositionOut, shape_propositions
from gum_mcp.server.tools.base import ADDITIVE, DESTRUCTIVE, parse_time, tool_errors

#: forget(query=...) removes only matches at least this relevant (0..1, before recency and confidence
#: weights): a destructive call must not take the best of a set of unrelated propositions.
FORGET_MIN_RELEVANCE = 0.4


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


@tool_errors
async def give_feedback(
    ctx: GumContext,
    id: Annotated[int, Field(ge=1, description="the proposition id")],
    verdict: Annotated[Literal["confirm", "reject", "correct"], Field(description="confirm: it is right; "
                                                                                  "reject: it is wrong; "
                                                                                  "correct: replace it")],
    correction: Annotated[str | None, Field(max_length=2000, description="the right statement, required for "
                                                                         "verdict=correct")] = None,
) -> FeedbackResult:
    """Record the user's verdict on a proposition. confirm raises it to confidence 10; reject retires it and
    keeps it from coming back; correct replaces it with the user's statement."""
    state = gum(ctx)
    successor = await state.store.aio.give_feedback(id, verdict, correction=correction)
    state.runtime.wake_index()
    shaped = (await shape_propositions(state.store, [successor]))[0] if successor is not None else None
    message = {"confirm": f"confirmed: now proposition {successor.id if successor else id}",
               "reject": f"proposition {id} rejected and retired",
               "correct": f"corrected: now proposition {successor.id if successor else id}"}[verdict]
    return FeedbackResult(id=id, verdict=verdict, successor=shaped, message=message)


@tool_errors
async def forget(
    ctx: GumContext,
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
    state = gum(ctx)
    if proposition_id is not None:
        reports = [await state.store.aio.forget_proposition(proposition_id, delete_evidence=with_evidence)]
    elif query is not None:
        reports = await forget_matches(state, query, max_matches, with_evidence)
    elif source is not None:
        reports = [await state.store.aio.forget_source(source)]
    else:
        from gum_mcp.forgetting import forget_range

        window = (parse_time(since, "since"), parse_time(until, "until"))
        reports = [await anyio.to_thread.run_sync(forget_range, state.store, *window)]
    state.runtime.wake_index()
    observations = sum(r.observations_deleted for r in reports)
    ids = sorted({pid for r in reports for pid in r.proposition_ids})
    return Forgotten(observations_deleted=observations, propositions_forgotten=len(ids), proposition_ids=ids,
                     message=f"removed {observations} observation(s) and {len(ids)} proposition version(s)"
                             if observations or ids else "nothing matched; nothing was removed")


async def forget_matches(state: GumState, query: str, max_matches: int, with_evidence: bool) -> list[ForgetReport]:
    """Forget the current propositions that match `query` at least FORGET_MIN_RELEVANCE."""
    result = await state.runtime.search(query, k=max_matches)
    return [await state.store.aio.forget_proposition(h.id, delete_evidence=with_evidence)
            for h in result.hits if h.proposition is not None and h.relevance >= FORGET_MIN_RELEVANCE]


def register(server: MCPServer) -> None:
    server.add_tool(give_feedback, title="Confirm, reject or correct a proposition", annotations=ADDITIVE)
    server.add_tool(forget, title="Forget data about the user", annotations=DESTRUCTIVE)

"""Correcting the user model: the user's verdict on a proposition (give_feedback) and removing data
for good (forget).

forget by proposition_id, source, app or time range is one step. forget by query is two: the first
call previews the propositions the query describes (each with why it matched) and returns a
confirmation token; a second call with that token removes exactly those (gum_mcp/server/confirm.py).
A client that declared elicitation is asked in the client instead, in either protocol era: the
preview and the question are the tool's resolvers (`Resolve`), so the SDK sends the question mid-call
(handshake era) or as an input-required round (2026-07-28 era) and the body sees the answer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, Literal

import anyio
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.resolve import Elicit, Resolve
from pydantic import BaseModel, Field

from gum_mcp.domain import ForgetReport, InvalidInput
from gum_mcp.forgetting import (
    FORGET_MIN_SIMILARITY,
    ForgetPreview,
    confirm_forget,
    content_words,
    describe_preview,
    forget_range,
    preview_forget,
)
from gum_mcp.server import disclosure
from gum_mcp.server.confirm import TOKEN_TTL, client_key, confirmations, supports_elicitation
from gum_mcp.server.context import GumContext, GumState, gum
from gum_mcp.server.shaping import PropositionOut, shape_propositions
from gum_mcp.server.tools.base import ADDITIVE, DESTRUCTIVE, parse_time, tool_errors

MAX_MATCHES = 50


class FeedbackResult(BaseModel):
    id: int
    verdict: str
    successor: PropositionOut | None = None
    message: str


class ForgetMatchOut(BaseModel):
    id: int
    text: str
    why: str
    words: list[str] = Field(description="content words of the query the text contains")
    similarity: float | None = Field(None, description=f"cosine similarity when it counted (>= "
                                                       f"{FORGET_MIN_SIMILARITY})")


class Forgotten(BaseModel):
    status: Literal["removed", "confirm", "declined", "nothing"] = Field(
        description="removed: done; confirm: a preview, nothing removed yet (call again with confirm_token); "
                    "declined: the person said no in the client; nothing: nothing matched")
    observations_deleted: int = 0
    propositions_forgotten: int = 0
    proposition_ids: list[int] = []
    rederiving: list[int] = Field([], description="propositions that lost part of their evidence: scrubbed, and "
                                                  "re-derived by the engine from the evidence left")
    matches: list[ForgetMatchOut] = []
    more_matches: int = 0
    confirm_token: str | None = Field(None, description="for status confirm: pass it back as confirm_token, once, "
                                                        "from this client, within 5 minutes")
    message: str
    withheld: int = Field(0, description=disclosure.WITHHELD)


class ConfirmForget(BaseModel):
    confirm: bool = Field(description="Remove these for good")


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
    await disclosure.require_proposition(state.store, id)  # a withheld one is answered like a missing one
    successor = await state.store.aio.give_feedback(id, verdict, correction=correction)
    state.runtime.wake_index()
    shaped = next(iter(await shape_propositions(state.store, [successor])), None) if successor is not None else None
    message = {"confirm": f"confirmed: now proposition {successor.id if successor else id}",
               "reject": f"proposition {id} rejected and retired",
               "correct": f"corrected: now proposition {successor.id if successor else id}"}[verdict]
    return FeedbackResult(id=id, verdict=verdict, successor=shaped, message=message)


@dataclass(frozen=True)
class _Plan:
    """What forget(query=...) previews, or why it cannot."""

    preview: ForgetPreview | None = None
    error: str | None = None


async def _plan(ctx: GumContext, query: str | None, confirm_token: str | None, max_matches: int,
                with_evidence: bool) -> _Plan | None:
    """Resolver: the preview for a query (None when the call is not a query's first step)."""
    if query is None or confirm_token is not None:
        return None
    try:
        return _Plan(preview=await preview_matches(gum(ctx), query, max_matches, with_evidence))
    except InvalidInput as exc:  # a resolver's error would reach the client without its message
        return _Plan(error=str(exc.args[0]) if exc.args else str(exc))


async def _ask(ctx: GumContext, plan: Annotated[_Plan | None, Resolve(_plan)]) -> Elicit[ConfirmForget] | None:
    """Resolver: ask the person in the client, when it can be asked and there is something to confirm."""
    if plan is None or plan.preview is None or not plan.preview.matches or not supports_elicitation(ctx):
        return None
    preview = plan.preview
    return Elicit(f"Forget {len(preview.matches)} thing(s) gum-mcp believes about you, matching "
                  f"{preview.query!r}?\n{describe_preview(preview)}", ConfirmForget)


@tool_errors
async def forget(
    ctx: GumContext,
    proposition_id: Annotated[int | None, Field(ge=1, description="a proposition and all its versions")] = None,
    query: Annotated[str | None, Field(min_length=1, max_length=1000, description="describe what to forget: "
                                                                                  "the first call previews "
                                                                                  "the matching propositions "
                                                                                  "and removes nothing")]
    = None,
    since: Annotated[str | None, Field(description="with until: observations in a time range (ISO-8601 or an "
                                                   "age like 2h)")] = None,
    until: Annotated[str | None, Field(description="end of the time range")] = None,
    source: Annotated[str | None, Field(min_length=1, description="everything one source reported")] = None,
    app: Annotated[str | None, Field(min_length=1, max_length=200, description="screen observations of one "
                                                                               "application, and its "
                                                                               "screenshots")] = None,
    with_evidence: Annotated[bool, Field(description="for proposition_id or query: also delete the "
                                                     "observations they rest on")] = False,
    max_matches: Annotated[int, Field(ge=1, le=MAX_MATCHES, description="for query: preview at most this "
                                                                        "many")] = 10,
    confirm_token: Annotated[str | None, Field(min_length=1, max_length=200, description="the token a query's "
                                                                                       "preview returned: "
                                                                                       "removes exactly what "
                                                                                       "it showed")] = None,
    plan: Annotated[_Plan | None, Resolve(_plan)] = None,
    answer: Annotated[ElicitationResult[ConfirmForget], Resolve(_ask)] = None,
) -> Forgotten:
    """Permanently remove data about the user: a proposition (with its history), the observations in a time
    range, everything one source or one application reported, or what a query describes. A query is two
    steps: the first call returns the matching propositions, why each matched and a confirm_token, and
    removes nothing; show them to the user, and only if they agree call forget(confirm_token=...). Clients
    that support elicitation ask the user directly instead. Propositions that rested on removed observations
    are removed (or re-derived from what remains). This cannot be undone; use it when the user asks."""
    chosen = [proposition_id is not None, query is not None, since is not None or until is not None,
              source is not None, app is not None, confirm_token is not None and query is None]
    if sum(chosen) != 1:
        raise InvalidInput("give exactly one of proposition_id, query, since/until, source, app "
                           "(or the confirm_token of a query's preview)")
    state = gum(ctx)
    if confirm_token is not None:
        entry = confirmations(state.runtime).redeem(client_key(ctx), confirm_token)
        if query is not None and query != entry.query:
            raise InvalidInput("confirm_token: it was issued for another query; nothing was removed: preview again")
        if with_evidence and not entry.with_evidence:
            raise InvalidInput("with_evidence: decide it in the preview (its token covers the propositions only); "
                               "nothing was removed: preview again with with_evidence")
        report = await anyio.to_thread.run_sync(confirm_forget, state.store, entry.versions, entry.with_evidence)
        return await _removed(state, [report])
    if query is not None:
        if plan is None or plan.preview is None:
            raise InvalidInput(plan.error if plan is not None and plan.error else "query: could not preview")
        return await _answer(ctx, state, plan.preview, answer)
    if proposition_id is not None:
        await disclosure.require_proposition(state.store, proposition_id)
        reports = [await state.store.aio.forget_proposition(proposition_id, delete_evidence=with_evidence)]
    elif source is not None:
        reports = [await state.store.aio.forget_source(source)]
    elif app is not None:
        reports = [await state.store.aio.forget_app(app)]
    else:
        window = (parse_time(since, "since"), parse_time(until, "until"))
        reports = [await anyio.to_thread.run_sync(forget_range, state.store, *window)]
    return await _removed(state, reports)


async def preview_matches(state: GumState, query: str, max_matches: int, with_evidence: bool) -> ForgetPreview:
    """The current propositions `query` describes (gum_mcp.forgetting): nothing is removed."""
    from gum_mcp.retrieval import MAX_K  # numpy: not at the server's start

    words = content_words(query, state.settings.user_name)
    result = await state.runtime.search(" ".join(words), k=min(MAX_K, max(20, 3 * max_matches)))
    preview = await anyio.to_thread.run_sync(functools.partial(
        preview_forget, state.store, query, words, result.hits, max_matches=max_matches,
        with_evidence=with_evidence, note=result.note))
    return await disclosure.forget_preview(state.store, preview)  # a confirmation covers only what was shown


async def _answer(ctx: GumContext, state: GumState, preview: ForgetPreview,
                  answer: ElicitationResult[ConfirmForget] | None) -> Forgotten:
    """A query's first step: the preview and a token, or (asked in the client) the person's answer."""
    matches = [ForgetMatchOut(id=m.id, text=m.text, why=m.why, words=list(m.words),
                              similarity=None if m.similarity is None else round(m.similarity, 3))
               for m in preview.matches]
    if not matches:
        note = f" ({preview.note})" if preview.note else ""
        return Forgotten(status="nothing", message=f"nothing matched {preview.query!r}; nothing was removed{note}",
                         withheld=disclosure.withheld())
    asked = isinstance(answer, AcceptedElicitation) and isinstance(answer.data, ConfirmForget)
    if asked and answer.data.confirm:  # confirmed in the client: exactly what the question showed
        report = await anyio.to_thread.run_sync(confirm_forget, state.store, preview.versions, preview.with_evidence)
        return await _removed(state, [report])
    if answer is not None and (asked or not isinstance(answer, AcceptedElicitation)):
        return Forgotten(status="declined", matches=matches, more_matches=preview.more,
                         message="the person did not confirm in the client; nothing was removed",
                         withheld=disclosure.withheld())
    token = confirmations(state.runtime).issue(client_key(ctx), preview.query, preview.versions,
                                               preview.with_evidence)
    return Forgotten(
        status="confirm", matches=matches, more_matches=preview.more, confirm_token=token,
        message=(f"nothing was removed yet: {len(matches)} proposition(s) match. Show them to the user; only if "
                 f"they agree, call forget(confirm_token=...) within {TOKEN_TTL / 60:.0f} minutes to remove "
                 "exactly these" + (f" ({preview.note})" if preview.note else "")),
        withheld=disclosure.withheld(),
    )


async def _removed(state: GumState, reports: list[ForgetReport]) -> Forgotten:
    state.runtime.wake_index()
    reports = await disclosure.forget_reports(state.store, reports)  # ids only of what this client may see
    observations = sum(r.observations_deleted for r in reports)
    ids = sorted({pid for r in reports for pid in r.proposition_ids})
    rederiving = sorted({pid for r in reports for pid in r.rederive_ids})
    message = (f"removed {observations} observation(s) and {len(ids)} proposition version(s)"
               if observations or ids else "nothing matched; nothing was removed")
    if rederiving:
        message += (f"; {len(rederiving)} proposition(s) lost part of their evidence and will be re-derived "
                    "from the rest")
    return Forgotten(status="removed" if observations or ids else "nothing", observations_deleted=observations,
                     propositions_forgotten=len(ids), proposition_ids=ids, rederiving=rederiving, message=message,
                     withheld=disclosure.withheld())


def register(server: MCPServer) -> None:
    server.add_tool(give_feedback, title="Confirm, reject or correct a proposition", annotations=ADDITIVE)
    server.add_tool(forget, title="Forget data about the user", annotations=DESTRUCTIVE)

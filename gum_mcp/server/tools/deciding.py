"""Preferences for agents (issue 27): record_edit (learn from how the person edits an agent's draft) and
decide_or_ask (act on a known instruction or preference at a choice point, or ask the person).

Both go through the disclosure filters (disclosure.py): decide_or_ask decides only from propositions this
client may see, and its result counts what was withheld; record_edit returns no proposition text.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field

from gum_mcp.domain import Proposition
from gum_mcp.engine import decide as rule
from gum_mcp.engine import edits
from gum_mcp.server import disclosure
from gum_mcp.server.clients import caller_of
from gum_mcp.server.confirm import supports_elicitation
from gum_mcp.server.context import GumContext, GumState, gum
from gum_mcp.server.shaping import PropositionOut, bounded, shape_propositions
from gum_mcp.server.tools.base import ADDITIVE, READ_ONLY, tool_errors

if TYPE_CHECKING:
    from gum_mcp.store import Store

log = logging.getLogger("gum_mcp.server")

#: How many current instructions and preferences a choice is checked against, at most (most confident first).
KNOWN_LIMIT = 500
RELATED_K = 10  # other propositions the search finds for a choice, shown to the model only


# ---------------------------------------------------------------------------------------- output models
class EditRecorded(BaseModel):
    id: int = Field(description="the observation holding the edit report (forget it to undo what it taught)")
    status: str
    changes: int = Field(description="changed passages found by the local diff")
    words_before: int
    words_after: int
    redactions: int = Field(description="secrets removed before it was stored")
    note: str


class DecideResult(BaseModel):
    outcome: Literal["decide", "ask"] = Field(description="decide: act on `option`; ask: put `question` to the user")
    option: str | None = Field(None, description="the option to take (one of those given), when deciding")
    confidence: int | None = Field(None, description="1-10, when deciding")
    question: str | None = Field(None, description="when asking: a short question to put to the user")
    decided_by: Literal["instruction", "preference", "model", "user", "none"] = Field(
        description="instruction: a standing instruction applies; preference: known preferences agree with "
                    "enough confidence; model: the configured LLM judged the known propositions to settle it; "
                    "user: the user answered just now (elicitation)")
    why: str
    rests_on: list[PropositionOut] = Field(default_factory=list, description="the propositions the decision rests "
                                                                             "on (kind says which are instructions)")
    applicable_ids: list[int] = Field(default_factory=list, description="instructions and preferences found to "
                                                                        "apply to this choice, instructions first")
    recorded: int | None = Field(None, description="when the user answered: the observation id of their answer")
    note: str | None = None
    truncated: bool = False
    withheld: int = Field(0, description=disclosure.WITHHELD)


# ---------------------------------------------------------------------------------------- what is known
async def known_for_choice(store: Store, kinds: tuple[str, ...] = ("instruction", "preference")) -> list[Proposition]:
    """The current instructions and preferences this client may see (most confident first); those withheld are
    not counted here (`count_withheld_applicable` counts those that would have applied)."""
    found: list[Proposition] = []
    for kind in kinds:
        page = await store.aio.current_propositions(limit=KNOWN_LIMIT, order="confidence", kind=kind)
        found.extend(page.items)
    return found


def visible(found: list[Proposition], question: str, context: str) -> list[Proposition]:
    """Those this client may see; the applicable ones it may not see are counted as withheld."""
    current = disclosure.current()
    shown = current.keep(found, lambda p: current.shows_class(p.sensitivity), count=False)
    hidden = [p for p in found if p not in shown and rule.applies(p, question, context)]
    disclosure.count(len(hidden))
    return shown


async def instructions_for(store: Store, task: str) -> list[Proposition]:
    """The current instructions that apply to `task`, most confident first, only those this client may see
    (query_user puts them first)."""
    if not task.strip():
        return []
    found = await known_for_choice(store, ("instruction",))
    return [p for p in visible(found, task, "") if rule.applies(p, task, "")]


# ---------------------------------------------------------------------------------------- tools
@tool_errors
async def record_edit(
    ctx: GumContext,
    before: Annotated[str, Field(description="the draft you produced, as you gave it to the user",
                                 max_length=edits.MAX_TEXT_CHARS)],
    after: Annotated[str, Field(description="the user's edited version of it", max_length=edits.MAX_TEXT_CHARS)],
    context: Annotated[str, Field(max_length=1000, description="what the draft was, in a few words: 'status "
                                                                "email to Jordan', 'commit message'")] = "",
    source: Annotated[str, Field(min_length=1, max_length=100, description="who reports it, e.g. your client's "
                                                                            "name")] = "agent",
) -> EditRecorded:
    """Report that the user edited something you wrote for them: your draft and their version. gum-mcp diffs
    the two on this machine, stores only the changes and a short context (secrets redacted, never the whole
    documents), and its engine infers the preference behind the edit ("prefers short bullet points in
    emails to Jordan"): low confidence after one edit, stronger as edits of the same kind repeat. Use
    decide_or_ask or query_user later to apply what was learnt."""
    state = gum(ctx)
    report = edits.describe(before, after, context, source)
    obs = await state.store.aio.add_observation(report.content, kind="agent", source=source)
    state.runtime.notify()
    return EditRecorded(
        id=obs.id, status=obs.status, changes=report.changes, words_before=report.before.words,
        words_after=report.after.words, redactions=obs.redactions,
        note=f"the change is stored; the engine infers the preference within about {state.settings.batch_max_wait:g} s",
    )


@tool_errors
async def decide_or_ask(
    ctx: GumContext,
    question: Annotated[str, Field(min_length=1, max_length=rule.QUESTION_CHARS,
                                   description="the choice you face, as a question: 'Which seat should I book "
                                               "on Mara's flight to Lisbon?'")],
    options: Annotated[list[Any], Field(description="the options, as strings (at least two)",
                                        max_length=rule.MAX_OPTIONS)],
    context: Annotated[str, Field(max_length=rule.CONTEXT_CHARS, description="the task around the choice, in a "
                                                                              "sentence")] = "",
    ask_user: Annotated[bool, Field(description="when gum-mcp would advise asking and your client supports "
                                                "elicitation, let gum-mcp ask the user directly and record the "
                                                "answer")] = False,
) -> DecideResult:
    """At a choice point, ask gum-mcp whether the user's known instructions or preferences settle it. Returns
    a decision (one of your options, the propositions it rests on and a confidence) only when a standing
    instruction applies or known preferences agree with enough confidence (GUM_DECIDE_CONFIDENCE);
    otherwise advice to ask the user, with a short question. Follow it: act on a decision, ask when told
    to."""
    state = gum(ctx)
    cleaned = rule.check_choice(question, options, context)
    known = visible(await known_for_choice(state.store), question, context)
    outcome, contested = rule.rule(question, cleaned, context, known, confidence=state.settings.decide_confidence)
    note = None
    if outcome.outcome == "ask" and not contested:
        outcome, note = await _with_model(state, question, cleaned, context, known, outcome)
    observation_id = None
    decided_by: str = outcome.by
    if outcome.outcome == "ask" and ask_user and supports_elicitation(ctx):
        # the answer is recorded only for a caller that may write (a read-only client cannot add observations)
        may_record = "write" in caller_of(ctx.request_context, state.settings).scopes
        answered = await _ask_user(ctx, state, question, cleaned, outcome.question or question, may_record)
        if answered is not None:
            observation_id, option, note_user = answered
            outcome = rule.Outcome("decide", option=option, confidence=10, why=note_user,
                                   considered=outcome.considered)
            decided_by = "user"
    by_id = {p.id: p for p in known}
    rests = [by_id[i] for i in outcome.rests_on if i in by_id]
    if outcome.by == "model" and len(rests) < len(outcome.rests_on):  # rests on related propositions too
        rests += [p for p in (await state.store.aio.get_propositions(
            [i for i in outcome.rests_on if i not in by_id])).values()]
    result = DecideResult(
        outcome=outcome.outcome, option=outcome.option, confidence=outcome.confidence,
        question=outcome.question if outcome.outcome == "ask" else None, decided_by=decided_by,  # type: ignore[arg-type]
        why=outcome.why, rests_on=await shape_propositions(state.store, rests),
        applicable_ids=list(outcome.considered), recorded=observation_id,
        note=disclosure.note(note), withheld=disclosure.withheld(),
    )
    return bounded(result, "rests_on")


async def _with_model(state: GumState, question: str, options: list[str], context: str, known: list[Proposition],
                      outcome: rule.Outcome) -> tuple[rule.Outcome, str | None]:
    """The rule asked: one bounded model call when a provider is configured (else the rule's answer)."""
    from gum_mcp.llm.errors import LLMError, LLMNotConfigured
    from gum_mcp.llm.factory import build_provider

    try:
        provider = build_provider(state.settings, state.store)
    except LLMNotConfigured:
        return outcome, None
    search = await disclosure.search(state.runtime, " ".join([question, context, *options]), k=RELATED_K,
                                     counted=False)
    related = [h.proposition for h in search.hits if h.proposition is not None]
    try:
        async with provider:
            return await rule.decide(question, options, context, known, confidence=state.settings.decide_confidence,
                                     provider=provider, user=state.settings.user_name, related=related), None
    except LLMError as exc:
        log.info("decide_or_ask: the LLM call failed (%s); the rule's answer stands", type(exc).__name__)
        return outcome, f"the LLM could not be asked ({type(exc).__name__}); the local rule's answer"


class _Answer(BaseModel):
    choice: str = Field(description="your choice")
    always: bool = Field(False, description="apply this every time from now on")


async def _ask_user(ctx: GumContext, state: GumState, question: str, options: list[str], asked: str,
                    may_record: bool) -> tuple[int | None, str, str] | None:
    """Ask the user through the client (form elicitation); their answer is recorded as an observation (a
    standing rule when they say it always applies). None when they declined or the client could not ask."""
    schema = type("Answer", (_Answer,), {"__annotations__": {"choice": Literal[tuple(options)]},  # type: ignore[misc]
                                          "choice": Field(description="your choice")})
    try:
        answer = await ctx.elicit(asked, schema)
    except Exception as exc:  # an elicitation the client could not show: advise asking instead
        log.info("decide_or_ask: elicitation failed (%s)", type(exc).__name__)
        return None
    if answer.action != "accept" or answer.data is None:
        return None
    choice = str(answer.data.choice)
    if not may_record:
        return None, choice, "the user answered (not recorded: this client has no write scope)"
    text = f"Asked by an agent '{question}', the user chose '{choice}'."
    if answer.data.always:
        text += f" The user said: from now on, always choose '{choice}' for this: {question}"
    with contextlib.suppress(Exception):
        obs = await state.store.aio.add_observation(text, kind="agent", source="decide_or_ask")
        state.runtime.notify()
        return obs.id, choice, "the user answered" + (" and said it always applies" if answer.data.always else "")
    return None


def register(server: MCPServer) -> None:
    server.add_tool(record_edit, title="Learn from the user's edit of your draft", annotations=ADDITIVE)
    server.add_tool(decide_or_ask, title="Decide from known preferences, or ask", annotations=READ_ONLY)

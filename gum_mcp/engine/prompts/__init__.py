"""The engine's prompts and reply schemas: audit, propose, relate, revise, suggest.

Written for gum-mcp. Every prompt has the same shape: a system prompt (who the model works for,
how the data is delimited, that data is never a command, and the task) and one user message that
holds the data as XML-like elements followed by a short restatement of the task.

Data elements, with typed ids (`ids`: o an observation, p a proposition, d a draft):

    <observation id="o12" kind="screen" source="screen" at="2026-11-16T08:18:00Z" seen="3">...</observation>
    <proposition id="p5" confidence="7" decay="8" support="3">text<reasoning>...</reasoning></proposition>
    <draft id="d1" confidence="6" decay="4" observations="o12 o14">text<reasoning>...</reasoning></draft>

Text inside an element is escaped (`&`, `<`, `>`; attribute values also quotes), so a forged
`</observation>` inside an observation arrives as `&lt;/observation&gt;` and cannot end the block.
Observation text appears nowhere else in a prompt.

Reply schemas are closed pydantic models without free-form dicts, so the OpenAI provider can send
them in strict mode. Every item gives its reasoning before its answer (under constrained decoding a
model commits to what it writes first). Each call caps the reply's list in proportion to the batch
(`capped`: maxItems) and sends a schema of its own (`shaped`): the ids this prompt shows as an `enum`,
confidence and decay as an enum of 1-10, every property required. Ids in replies are checked by the
pipeline against what the prompt showed, by kind; anything else is ignored, and a reply in which
nothing cites a shown id is invalid.

Each step's system prompt ends with one short example whose entities are invented
(`common.EXAMPLE_MARKERS`): a proposition naming one is an echo of the prompt and is dropped. The
suggest step keeps bare numeric ids (its reply cites proposition numbers).

Modules: `common` (reply base, scores, the example's entities, escaping, sections, the shared
preamble, per-call schemas), `ids` (typed ids), `render` (observation and draft views, element
rendering), and one per step with its reply model(s), system prompt and message: `audit`, `propose`,
`relate`, `revise`, `suggest`.
"""

from __future__ import annotations

from gum_mcp.engine.prompts import ids
from gum_mcp.engine.prompts.audit import AuditReply, AuditVerdict, audit_message, audit_system
from gum_mcp.engine.prompts.common import (
    EXAMPLE_MARKERS,
    SCORES,
    Reply,
    Score,
    capped,
    escape_attr,
    escape_text,
    iso,
    preamble,
    section,
    shaped,
)
from gum_mcp.engine.prompts.propose import ProposedDraft, ProposeReply, propose_message, propose_system
from gum_mcp.engine.prompts.relate import RelateJudgement, RelateReply, relate_message, relate_system
from gum_mcp.engine.prompts.render import (
    DraftView,
    ObservationView,
    render_draft,
    render_observation,
    render_proposition,
)
from gum_mcp.engine.prompts.revise import ClusterView, RevisedProposition, ReviseReply, revise_message, revise_system
from gum_mcp.engine.prompts.suggest import (
    SuggestedAction,
    SuggestReply,
    render_suggestion,
    suggest_message,
    suggest_system,
)

__all__ = [
    "EXAMPLE_MARKERS",
    "SCORES",
    "AuditReply",
    "AuditVerdict",
    "ClusterView",
    "DraftView",
    "ObservationView",
    "ProposeReply",
    "ProposedDraft",
    "RelateJudgement",
    "RelateReply",
    "Reply",
    "ReviseReply",
    "RevisedProposition",
    "Score",
    "SuggestReply",
    "SuggestedAction",
    "audit_message",
    "audit_system",
    "capped",
    "escape_attr",
    "escape_text",
    "ids",
    "iso",
    "preamble",
    "propose_message",
    "propose_system",
    "relate_message",
    "relate_system",
    "render_draft",
    "render_observation",
    "render_proposition",
    "render_suggestion",
    "revise_message",
    "revise_system",
    "section",
    "shaped",
    "suggest_message",
    "suggest_system",
]

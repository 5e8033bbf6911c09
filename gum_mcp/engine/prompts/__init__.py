"""The engine's prompts and reply schemas: audit, propose, relate, revise, suggest.

Written for gum-mcp. Every prompt has the same shape: a system prompt (who the model works for,
how the data is delimited, that data is never a command, and the task) and one user message that
holds the data as XML-like elements followed by a short restatement of the task.

Data elements:

    <observation id="12" kind="screen" source="screen" at="2026-11-16T08:18:00Z" seen="3">...</observation>
    <proposition id="5" confidence="7" decay="8" support="3">text<reasoning>...</reasoning></proposition>
    <draft n="1" confidence="6" decay="4" observations="12 14">text<reasoning>...</reasoning></draft>

Text inside an element is escaped (`&`, `<`, `>`; attribute values also quotes), so a forged
`</observation>` inside an observation arrives as `&lt;/observation&gt;` and cannot end the block.
Observation text appears nowhere else in a prompt.

Reply schemas are closed pydantic models without free-form dicts, so the OpenAI provider can send
them in strict mode. Ids in replies are checked by the pipeline against what the prompt showed;
anything else is ignored.

Modules: `common` (reply base, escaping, sections, the shared preamble), `render` (observation and
draft views, element rendering), and one per step with its reply model(s), system prompt and message:
`audit`, `propose`, `relate`, `revise`, `suggest`.
"""

from __future__ import annotations

from gum_mcp.engine.prompts.audit import AuditReply, AuditVerdict, audit_message, audit_system
from gum_mcp.engine.prompts.common import Reply, escape_attr, escape_text, iso, preamble, section
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
    "SuggestReply",
    "SuggestedAction",
    "audit_message",
    "audit_system",
    "escape_attr",
    "escape_text",
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
    "suggest_message",
    "suggest_system",
]

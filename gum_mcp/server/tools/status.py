"""How gum-mcp itself is doing: status (counts, failed work, engine owner, LLM and vector search)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field

from gum_mcp.config import LiveSettings, Settings
from gum_mcp.runtime import Runtime
from gum_mcp.server import disclosure
from gum_mcp.server.context import GumContext, gum
from gum_mcp.server.disclosure import WITHHELD
from gum_mcp.server.tools.base import READ_ONLY, tool_errors

if TYPE_CHECKING:
    from gum_mcp.store.retention import RetentionReport


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
    retention: dict[str, Any] = Field(description="when retention last ran (the engine's process runs it at start "
                                                  "and periodically), what it removed, and the periods it keeps")
    privacy: dict[str, Any] = Field(default_factory=dict, description="redaction: whether stored text is redacted "
                                    "with the current redactor (a background job re-redacts it, with its count); "
                                    "audit: on or off, observations it skipped or holds for a verdict")
    disclosure: dict[str, Any] = Field(default_factory=dict, description="this client's name, the classes of "
                                       "knowledge its disclosure policy allows, how many current propositions "
                                       "are withheld from it, and the job that tags propositions with classes")
    withheld: int = Field(0, description=WITHHELD)


@tool_errors
async def status(ctx: GumContext) -> Status:
    """Whether gum-mcp is learning: counts of observations by state and of propositions, failed work, which
    process runs the engine, the LLM and vector-search state, and when retention last ran."""
    return await collect_status(gum(ctx).runtime)


async def collect_status(runtime: Runtime) -> Status:
    from gum_mcp.llm.factory import llm_status

    store, settings = runtime.store, runtime.settings
    stats = await store.aio.stats()
    llm = await anyio.to_thread.run_sync(llm_status, settings, store)
    state = runtime.status()
    last = await store.aio.last_retention()
    from gum_mcp.store.skipped import privacy_status

    privacy = await anyio.to_thread.run_sync(privacy_status, store.db, store.redactor, settings)
    failed = await disclosure.observations(store, stats.failed)  # not processed: only for clients allowed all
    return Status(
        data_dir=str(settings.data_dir), user_name=settings.user_name, observations=stats.observations,
        propositions_current=stats.propositions_current, propositions_retired=stats.propositions_retired,
        failed=[{"id": o.id, "error": o.last_error, "attempts": o.attempts} for o in failed],
        role=state["role"], pid=state["pid"], engine_owner=state["engine_owner"], engine=state["engine"],
        observing=state["observing"],
        vector_index=state["vector_index"], llm=llm, privacy=privacy,
        # the retention days a change on the page (<data dir>/.env) set since the start, as retention applies them
        retention=retention_status(LiveSettings(settings).current(), last),
        disclosure=await disclosure.summary(runtime), withheld=disclosure.withheld(),
    )


def retention_status(settings: Settings, last: RetentionReport | None) -> dict[str, Any]:
    return {
        "last_run_at": None if last is None else last.at.isoformat(),
        "removed": {} if last is None else last.removed,
        "interval_seconds": settings.retention_interval,
        "observation_text_days": settings.retention_days, "evidence_kept_per_proposition": settings.evidence_keep,
        "llm_calls_days": settings.llm_calls_days, "suggestion_days": settings.suggestion_days,
    }


def register(server: MCPServer) -> None:
    server.add_tool(status, title="gum-mcp status", annotations=READ_ONLY)

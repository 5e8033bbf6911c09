"""How gum-mcp itself is doing: status (counts, failed work, engine owner, LLM and vector search)."""

from __future__ import annotations

from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field

from gum_mcp.runtime import Runtime
from gum_mcp.server.context import GumContext, gum
from gum_mcp.server.tools.base import READ_ONLY, tool_errors


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


@tool_errors
async def status(ctx: GumContext) -> Status:
    """Whether gum-mcp is learning: counts of observations by state and of propositions, failed work, which
    process runs the engine, and the LLM and vector-search state."""
    return await collect_status(gum(ctx).runtime)


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


def register(server: MCPServer) -> None:
    server.add_tool(status, title="gum-mcp status", annotations=READ_ONLY)

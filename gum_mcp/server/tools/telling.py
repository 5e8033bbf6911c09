"""Telling gum-mcp something new about the user: record_observation. Additive."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field

from gum_mcp.domain import Observation
from gum_mcp.server.context import GumContext, gum
from gum_mcp.server.tools.base import ADDITIVE, tool_errors


class Recorded(BaseModel):
    id: int
    status: str
    redactions: int = Field(description="secrets removed before it was stored")
    note: str


@tool_errors
async def record_observation(
    ctx: GumContext,
    content: Annotated[str, Field(min_length=1, description="what you learned about the user, as a plain "
                                                            "statement (at most GUM_MAX_OBSERVATION_CHARS)")],
    source: Annotated[str, Field(min_length=1, max_length=100, description="who reports it, e.g. your "
                                                                            "client's name")] = "agent",
) -> Recorded:
    """Report something you learned about the user (a preference, a plan, a deadline, a correction) so
    other assistants can use it later. It is stored at once (secrets redacted) and turned into
    propositions by the engine like any observation."""
    state = gum(ctx)
    obs: Observation = await state.store.aio.add_observation(content, kind="agent", source=source)
    state.runtime.notify()
    return Recorded(id=obs.id, status=obs.status, redactions=obs.redactions,
                    note=f"stored; the engine processes it within about {state.settings.batch_max_wait:g} s")


def register(server: MCPServer) -> None:
    server.add_tool(record_observation, title="Tell gum-mcp something about the user", annotations=ADDITIVE)
